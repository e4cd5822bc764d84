"""``drive_exchange`` with a streaming response: disconnects, stalls, backpressure and
the joining of frames into writes.

These tests drive the driver with ``StandInStream``, a stand-in exchange that streams
NDJSON frames, forever or a fixed number, and with ``StandInTokens`` and
``StandInWork``, a stand-in exchange that turns each work result into one frame and a
stand-in performer whose results the test hands out. A real generation is tested end
to end in test_ollama_client.py (including a disconnect mid-stream); here the point
is the driver's own rules, which need streams of exact and unbounded length, a count
of frames pulled and results that are ready exactly when the test says, with no
model, thread or sampling in the way.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from functools import partial

import h11
import pytest
import trio
import trio.testing

from gateway_core import (
    Effect,
    EndResponse,
    Piece,
    Result,
    SendBody,
    StartResponse,
    Wait,
    WorkEffect,
)
from gateway_core_adapters.driver import (
    COALESCE_LIMIT,
    BodySource,
    DrivenExchange,
    ExchangeRecord,
    WorkPerformer,
    drive_exchange,
)
from gateway_core_adapters.h11_transport import H11Transport

from .helpers import H11Client, request

DRIVE_DEADLINE = 10.0


class StandInStream:
    """A stand-in exchange that streams frames; see the module docstring for why.

    It satisfies ``DrivenExchange`` and treats ``abort`` as ``Exchange`` does: after
    it, nothing more is produced.
    """

    request_id = "stand-in"
    notes: tuple[str, ...] = ()

    def __init__(self, frames: int | None = None) -> None:
        self._effects = self._generate(frames)
        self.pulled = 0
        """Body frames handed to the driver so far."""
        self.abort_reason: str | None = None
        self.response_started = False

    def _generate(self, frames: int | None) -> Iterator[Effect]:
        self.response_started = True
        yield StartResponse(
            status=200, headers=(("content-type", "application/x-ndjson"),)
        )
        number = 0
        while frames is None or number < frames:
            number += 1
            self.pulled = number
            yield SendBody(data=b'{"n":%d}\n' % number)
        yield EndResponse()

    def next_effect(self) -> Effect | Wait:
        if self.abort_reason is not None:
            return Wait.FINISHED
        return next(self._effects, Wait.FINISHED)

    def receive_body(self, data: bytes) -> None:
        raise AssertionError("a GET has no body to feed")

    def end_body(self) -> None:
        raise AssertionError("the stand-in answers from the head alone")

    def receive_result(self, result: Result, *, now: float) -> None:
        raise AssertionError("the stand-in asks for no work")

    def abort(self, reason: str) -> None:
        if self.abort_reason is None:
            self.abort_reason = reason

    def interrupt(self, status: int, message: str) -> None:
        raise AssertionError("no test here reaches a shutdown deadline")


async def drive(
    exchange: DrivenExchange,
    stream: trio.abc.Stream,
    *,
    send_timeout: float = 60.0,
    work: WorkPerformer | None = None,
    write_interval: float = 0.0,
) -> tuple[ExchangeRecord, H11Transport]:
    """Read one request head from ``stream``, then drive ``exchange`` as its answer.

    The stand-in streams forever, so a driver that misses a disconnect would never
    return: the deadline turns that into a failure (at once, on the autojump clock).
    Body writes are not spaced out unless ``write_interval`` says so.
    """
    transport = H11Transport(stream, max_header_bytes=65536, send_timeout=send_timeout)
    with trio.fail_after(DRIVE_DEADLINE):
        head = await transport.next_event()
        assert isinstance(head, h11.Request)
        record = await drive_exchange(
            exchange,
            transport,
            path="/api/generate",
            work=work,
            write_interval=write_interval,
        )
    return record, transport


def send_generate_request(
    nursery: trio.Nursery, *, lockstep: bool = True
) -> tuple[H11Client, trio.abc.Stream]:
    """Connect a client that sends ``GET /api/generate`` in the background.

    Returns the client and the server's end of the connection. Lockstep streams have
    no buffer, so a write completes only when the other side reads: that is what makes
    stalls and backpressure visible. Memory streams buffer, like a socket.
    """
    pair = (
        trio.testing.lockstep_stream_pair
        if lockstep
        else trio.testing.memory_stream_pair
    )
    client_stream, server_stream = pair()
    client = H11Client(client_stream)
    nursery.start_soon(client.send, request("GET", "/api/generate"), h11.EndOfMessage())
    return client, server_stream


class FrameReader:
    """NDJSON frames as a client reads them, one line each.

    The driver joins frames that are ready together into one write, so a ``Data``
    event may hold many frames; the ones not yet asked for are kept for later.
    """

    def __init__(self, client: H11Client) -> None:
        self.client = client
        self.seen = 0
        """Frames that reached the client, asked for or not."""
        self._backlog: list[bytes] = []
        self._partial = b""

    async def read(self, count: int) -> list[bytes]:
        while len(self._backlog) < count:
            event = await self.client.next_event()
            if isinstance(event, h11.Data):
                lines = (self._partial + bytes(event.data)).split(b"\n")
                self._partial = lines.pop()
                self._backlog += [line + b"\n" for line in lines]
                self.seen += len(lines)
            else:
                assert isinstance(event, h11.Response), event
        frames, self._backlog = self._backlog[:count], self._backlog[count:]
        return frames


async def read_frames(client: H11Client, count: int) -> list[bytes]:
    return await FrameReader(client).read(count)


async def test_a_client_that_hangs_up_mid_stream_aborts_the_exchange() -> None:
    exchange = StandInStream()
    async with trio.open_nursery() as nursery:
        client, server_stream = send_generate_request(nursery, lockstep=False)
        result: list[ExchangeRecord] = []

        async def server() -> None:
            record, _ = await drive(exchange, server_stream)
            result.append(record)

        nursery.start_soon(server)
        assert await read_frames(client, 3) == [
            b'{"n":1}\n',
            b'{"n":2}\n',
            b'{"n":3}\n',
        ]
        await client.stream.aclose()
    # The hang-up is seen by the watcher (EOF) or by the next write (broken pipe),
    # whichever comes first; either way the endless stream stopped and was aborted.
    assert exchange.abort_reason is not None
    assert result[0].aborted == exchange.abort_reason
    assert result[0].status == 200


@pytest.mark.parametrize(
    "headers",
    [[], [("connection", "close")]],
    ids=["keep-alive", "connection-close"],
)
async def test_the_watcher_notices_a_disconnect_while_writes_still_succeed(
    headers: list[tuple[str, str]],
) -> None:
    # The client sends EOF but keeps reading, so every write succeeds: only the
    # sibling reader can notice. This is the case of a client that leaves while the
    # model is still thinking and nothing is being written. (With "connection:
    # close" h11 files the finished request under MUST_CLOSE, not DONE.)
    client_stream, server_stream = trio.testing.memory_stream_pair()
    client = H11Client(client_stream)
    exchange = StandInStream()
    await client.send(request("GET", "/api/generate", headers), h11.EndOfMessage())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_frames, client, 1_000_000_000)
        await client_stream.send_eof()
        record, transport = await drive(exchange, server_stream)
        nursery.cancel_scope.cancel()
    assert exchange.abort_reason == "client disconnected"
    assert record.aborted == "client disconnected"
    assert transport.peer_closed
    assert transport.conn.our_state is h11.ERROR  # cut mid-response: cannot be reused


async def test_a_client_that_stops_reading_is_dropped_after_the_send_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    exchange = StandInStream()
    async with trio.open_nursery() as nursery:
        # The client never reads: every write blocks.
        _client, server_stream = send_generate_request(nursery)
        start = trio.current_time()
        record, _ = await drive(exchange, server_stream, send_timeout=5.0)
        elapsed = trio.current_time() - start
    assert elapsed == pytest.approx(5.0)
    assert exchange.abort_reason == "client read nothing for 5 s"
    assert record.aborted == exchange.abort_reason
    assert exchange.pulled == 0  # the head never got out, so no frame was pulled


async def test_no_effect_is_pulled_before_the_previous_write_completed() -> None:
    exchange = StandInStream()
    # Frames ready together go out in one write of at most COALESCE_LIMIT bytes
    # (plus the frame that crosses it); the shortest frame here is 8 bytes.
    per_write = COALESCE_LIMIT // len(b'{"n":1}\n') + 1
    async with trio.open_nursery() as nursery:
        client, server_stream = send_generate_request(nursery)
        nursery.start_soon(drive, exchange, server_stream)
        frames = FrameReader(client)
        for target in (1, 5, 20, 20_000):
            await frames.read(target - frames.seen)
            await trio.testing.wait_all_tasks_blocked()
            # The server is blocked in its next write; it may not pull beyond it.
            assert frames.seen <= exchange.pulled <= frames.seen + per_write
        nursery.cancel_scope.cancel()


async def test_a_pipelined_request_during_a_stream_is_kept_for_the_next_cycle() -> None:
    exchange = StandInStream(frames=10)
    async with trio.open_nursery() as nursery:
        client, server_stream = send_generate_request(nursery)
        result: list[tuple[ExchangeRecord, H11Transport]] = []

        async def server() -> None:
            result.append(await drive(exchange, server_stream))

        nursery.start_soon(server)
        frames = FrameReader(client)
        await frames.read(3)
        # Only the watcher is reading now; the write returns once it has these bytes.
        await client.send_raw(b"GET /api/version HTTP/1.1\r\nhost: t\r\n\r\n")
        await frames.read(7)
        assert isinstance(await client.next_event(), h11.EndOfMessage)
    ((record, transport),) = result
    assert record.aborted is None
    assert exchange.abort_reason is None
    assert transport.conn.our_state is h11.DONE
    transport.conn.start_next_cycle()
    following = await transport.next_event()
    assert isinstance(following, h11.Request)
    assert following.target == b"/api/version"


async def test_cancelling_the_driver_aborts_the_exchange(
    autojump_clock: trio.testing.MockClock,
) -> None:
    exchange = StandInStream()
    async with trio.open_nursery() as nursery:
        _client, server_stream = send_generate_request(nursery)
        with trio.move_on_after(1.0):  # the shutdown deadline, say
            await drive(exchange, server_stream)
    assert exchange.abort_reason == "server stopped the exchange"


# -- results joined into one write ----------------------------------------------------


def frame(token: int, data: bytes = b"") -> bytes:
    return b'{"n":%d,"data":"%s"}\n' % (token, data)


def piece(token: int, data: bytes = b"") -> Piece:
    return Piece(token=token, data=data, duration=0.0)


class StandInTokens:
    """A stand-in exchange that answers each work result with one frame.

    It asks for a result (``Wait.NEED_RESULT``) and turns each ``Piece`` into one
    ``SendBody`` frame naming its token, as ``Exchange`` streams a generation, until
    it had ``count`` (None: forever); then it ends the response. It refuses a result
    it did not ask for. See the module docstring for why a stand-in.
    """

    request_id = "stand-in"
    notes: tuple[str, ...] = ()

    def __init__(self, count: int | None = None) -> None:
        self.count = count
        self.received: list[int] = []
        """The tokens of the results fed to it, in order."""
        self.abort_reason: str | None = None
        self.response_started = False
        self._frame: bytes | None = None
        self._asking = False
        self._ended = False

    def next_effect(self) -> Effect | Wait:
        if self.abort_reason is not None or self._ended:
            return Wait.FINISHED
        if not self.response_started:
            self.response_started = True
            return StartResponse(
                status=200, headers=(("content-type", "application/x-ndjson"),)
            )
        if self._frame is not None:
            data, self._frame = self._frame, None
            return SendBody(data=data)
        if self.count is not None and len(self.received) == self.count:
            self._ended = True
            return EndResponse()
        self._asking = True
        return Wait.NEED_RESULT

    def receive_body(self, data: bytes) -> None:
        raise AssertionError("a GET has no body to feed")

    def end_body(self) -> None:
        raise AssertionError("the stand-in answers from the head alone")

    def receive_result(self, result: Result, *, now: float) -> None:
        assert self._asking, "a result the exchange did not ask for"
        assert isinstance(result, Piece), result
        self._asking = False
        self.received.append(result.token)
        self._frame = frame(result.token, result.data)

    def abort(self, reason: str) -> None:
        if self.abort_reason is None:
            self.abort_reason = reason

    def interrupt(self, status: int, message: str) -> None:
        raise AssertionError("no test here reaches a shutdown deadline")


class StandInWork:
    """A stand-in ``WorkPerformer``: the results are what the test sends to ``results``.

    The ones sent already are ready (``ready_result`` returns them without waiting,
    as a token a generation made ahead); ``next_result`` waits for the next one.
    ``ready_calls`` and ``waiting`` show whether the driver polls or waits.
    """

    def __init__(self) -> None:
        self.results, self._receive = trio.open_memory_channel[Result](math.inf)
        self.ready_calls = 0
        self.waiting = False
        self.closed = False

    async def start(self, effect: WorkEffect, body: BodySource) -> None:
        raise AssertionError("the stand-in exchange starts no work")

    async def next_result(self) -> Result:
        self.waiting = True
        try:
            return await self._receive.receive()
        finally:
            self.waiting = False

    def ready_result(self) -> Result | None:
        self.ready_calls += 1
        try:
            return self._receive.receive_nowait()
        except trio.WouldBlock:
            return None

    async def aclose(self) -> None:
        self.closed = True


class CountingStream(trio.abc.Stream):
    """A stream that keeps each ``send_all``'s bytes: how the driver grouped writes.

    With an exchange to watch, it also notes how many results the exchange had been
    fed when each write began.
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.writes: list[bytes] = []
        self.times: list[float] = []
        """When each write began, on trio's clock."""
        self.watched: StandInTokens | None = None
        self.fed: list[int] = []

    @property
    def body_writes(self) -> list[bytes]:
        """The writes that carry frames (not the head or the end of the response)."""
        return [data for data in self.writes if b'{"n":' in data]

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        self.times.append(trio.current_time())
        if self.watched is not None:
            self.fed.append(len(self.watched.received))
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.stream.aclose()


async def connect_counting() -> tuple[H11Client, CountingStream]:
    """A client that has sent ``GET /api/generate``, and the server's end, counted.

    Memory streams buffer, so writes never wait for the client: what is counted is
    the driver's grouping alone.
    """
    client_stream, server_stream = trio.testing.memory_stream_pair()
    client = H11Client(client_stream)
    await client.send(request("GET", "/api/generate"), h11.EndOfMessage())
    return client, CountingStream(server_stream)


async def body_events(client: H11Client) -> list[bytes]:
    """The ``Data`` events of one whole response, as the client's h11 parsed them."""
    response = await client.next_event()
    assert isinstance(response, h11.Response), response
    events = []
    while not isinstance(event := await client.next_event(), h11.EndOfMessage):
        assert isinstance(event, h11.Data), event
        events.append(bytes(event.data))
    return events


async def test_results_already_made_go_out_in_one_write_in_their_order() -> None:
    count = 5
    exchange = StandInTokens(count)
    work = StandInWork()
    for token in range(1, count + 1):
        work.results.send_nowait(piece(token))
    client, stream = await connect_counting()
    record, _ = await drive(exchange, stream, work=work)
    assert record.aborted is None
    assert exchange.received == [1, 2, 3, 4, 5]
    frames = b"".join(frame(token) for token in range(1, count + 1))
    # One chunk on the wire: the client's h11 sees it as one Data event.
    assert await body_events(client) == [frames]
    assert len(stream.body_writes) == 1
    assert work.closed


async def test_joined_results_stop_at_the_coalesce_limit() -> None:
    """A write takes frames until it reaches COALESCE_LIMIT bytes, the frame that
    crosses the limit included; the rest go in the next writes, in order. A result
    is not taken from the work for a write that is already full: backpressure."""
    data = b"x" * 20_000
    size = len(frame(1, data))
    per_write = -(-COALESCE_LIMIT // size)  # the last of them crosses the limit
    count = 2 * per_write + 2
    exchange = StandInTokens(count)
    work = StandInWork()
    for token in range(1, count + 1):
        work.results.send_nowait(piece(token, data))
    client, stream = await connect_counting()
    stream.watched = exchange
    await drive(exchange, stream, work=work)
    # Counted on the server's side: the client reads 64 KiB at a time, so its h11
    # splits a chunk this large into several Data events.
    frames_per_write = [data.count(b'{"n":') for data in stream.body_writes]
    assert frames_per_write == [per_write, per_write, 2]
    # Head, three body writes, end: fed only the results whose frames were written.
    assert stream.fed == [0, per_write, 2 * per_write, count, count]
    assert b"".join(await body_events(client)) == b"".join(
        frame(token, data) for token in range(1, count + 1)
    )


async def test_a_result_that_is_not_ready_is_waited_for_not_polled() -> None:
    exchange = StandInTokens()
    work = StandInWork()
    client, stream = await connect_counting()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(drive, exchange, stream, work=work))
        frames = FrameReader(client)
        # A driver that polled ready_result would never let every task block;
        # drive's deadline would then end it, and ``waiting`` would be False.
        await trio.testing.wait_all_tasks_blocked()
        assert work.waiting
        assert work.ready_calls == 0
        await work.results.send(piece(1))
        assert await frames.read(1) == [frame(1)]
        await trio.testing.wait_all_tasks_blocked()
        # Once looked for a ready result after the frame, found none, wrote, waits.
        assert work.waiting
        assert work.ready_calls == 1
        # Three sent at once: the first wakes the driver, two are ready after it.
        for token in (2, 3, 4):
            work.results.send_nowait(piece(token))
        await trio.testing.wait_all_tasks_blocked()
        assert work.waiting
        assert work.ready_calls == 4
        assert await frames.read(3) == [frame(2), frame(3), frame(4)]
        nursery.cancel_scope.cancel()
    assert exchange.received == [1, 2, 3, 4]
    assert len(stream.body_writes) == 2


async def test_a_fast_stream_is_written_once_per_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Tokens every 0.5 ms against a 2 ms interval: the first goes out at once, the
    # rest in one write per interval; a token after a pause longer than the interval
    # goes out at once again. Only the clock is mocked; the writes are counted.
    exchange = StandInTokens(count=10)
    work = StandInWork()
    client, stream = await connect_counting()

    async def tokens() -> None:
        for token in range(1, 10):
            await work.results.send(piece(token))
            await trio.sleep(0.0005)
        await trio.sleep(0.1)  # a slow token: nothing to wait for
        await work.results.send(piece(10))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tokens)
        record, _ = await drive(exchange, stream, work=work, write_interval=0.002)
    assert record.aborted is None
    assert exchange.received == list(range(1, 11))
    frames_per_write = [data.count(b'{"n":') for data in stream.body_writes]
    assert sum(frames_per_write) == 10
    assert frames_per_write[0] == 1  # the first token is never held back
    assert frames_per_write[-1] == 1  # nor one that comes after a pause
    assert len(frames_per_write) <= 2 + math.ceil(9 * 0.0005 / 0.002) + 1
    written_at = [
        t
        for t, d in zip(stream.times, stream.writes, strict=True)
        if d in stream.body_writes
    ]
    # Every write of the fast part waited out the interval after the one before.
    gaps = [b - a for a, b in itertools.pairwise(written_at[:-1])]
    assert gaps
    assert all(gap >= 0.002 - 1e-9 for gap in gaps)
    await body_events(client)  # the response is complete and well formed
