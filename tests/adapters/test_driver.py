"""``drive_exchange`` with a streaming response: disconnects, stalls and backpressure.

These tests drive the driver with ``StandInStream``, a stand-in exchange that streams
NDJSON frames, forever or a fixed number. A real generation is tested end to end in
test_ollama_client.py (including a disconnect mid-stream); here the point is the
driver's own rules, which need streams of exact and unbounded length and a count of
frames pulled, with no model, thread or sampling in the way.
"""

from __future__ import annotations

from collections.abc import Iterator

import h11
import pytest
import trio
import trio.testing

from adapters.driver import ExchangeRecord, drive_exchange
from adapters.h11_transport import H11Transport
from gateway_core import Effect, EndResponse, Result, SendBody, StartResponse, Wait

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


async def drive(
    exchange: StandInStream, stream: trio.abc.Stream, *, send_timeout: float = 60.0
) -> tuple[ExchangeRecord, H11Transport]:
    """Read one request head from ``stream``, then drive ``exchange`` as its answer.

    The stand-in streams forever, so a driver that misses a disconnect would never
    return: the deadline turns that into a failure (at once, on the autojump clock).
    """
    transport = H11Transport(stream, max_header_bytes=65536, send_timeout=send_timeout)
    with trio.fail_after(DRIVE_DEADLINE):
        head = await transport.next_event()
        assert isinstance(head, h11.Request)
        record = await drive_exchange(exchange, transport, path="/api/generate")
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


async def read_frames(client: H11Client, count: int) -> list[bytes]:
    frames: list[bytes] = []
    while len(frames) < count:
        event = await client.next_event()
        if isinstance(event, h11.Data):
            frames.append(bytes(event.data))
        else:
            assert isinstance(event, h11.Response), event
    return frames


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
    async with trio.open_nursery() as nursery:
        client, server_stream = send_generate_request(nursery)
        nursery.start_soon(drive, exchange, server_stream)
        received = 0
        for target in (1, 5, 20):
            received += len(await read_frames(client, target - received))
            await trio.testing.wait_all_tasks_blocked()
            # The server is blocked writing the next frame; it may not pull further.
            assert received <= exchange.pulled <= received + 1
        nursery.cancel_scope.cancel()


async def test_a_pipelined_request_during_a_stream_is_kept_for_the_next_cycle() -> None:
    exchange = StandInStream(frames=10)
    async with trio.open_nursery() as nursery:
        client, server_stream = send_generate_request(nursery)
        result: list[tuple[ExchangeRecord, H11Transport]] = []

        async def server() -> None:
            result.append(await drive(exchange, server_stream))

        nursery.start_soon(server)
        await read_frames(client, 3)
        # Only the watcher is reading now; the write returns once it has these bytes.
        await client.send_raw(b"GET /api/version HTTP/1.1\r\nhost: t\r\n\r\n")
        await read_frames(client, 7)
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
