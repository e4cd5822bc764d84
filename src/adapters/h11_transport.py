"""``H11Transport``: one h11 server connection bound to one trio stream.

This is the typed counterpart of the ``TrioHTTPWrapper`` in h11's
``examples/trio-server.py``. h11 parses and frames; this class moves its bytes, and
turns the many ways a socket can fail into the two facts the layers above care about:
the peer went away (a read sees EOF), or our bytes could not be delivered (a send
raises ``SendFailed``). Timeouts other than the send timeout are the caller's, because
each read means something different (an idle wait, a head, a body) and deserves its
own answer.
"""

from __future__ import annotations

import math
from typing import Final, TypeAlias, final

import h11
import trio

__all__ = [
    "LINGER_MAX_BYTES",
    "LINGER_SECONDS",
    "RECEIVE_SIZE",
    "H11Transport",
    "NextEvent",
    "SendFailed",
]

# One read's worth. Large enough that a multi-megabyte body arrives in few events,
# small enough that h11's buffer of pipelined bytes stays small (hypercorn's MAX_RECV).
RECEIVE_SIZE: Final = 64 * 1024

# A lingering close reads and drops what the client is still sending so that it sees
# our response (a 413, a 431) instead of a reset: closing a socket with unread input
# makes the kernel send RST, and the client's stack may throw away our response with
# it. Two seconds and 16 MiB let a client finish a rejected upload of twice the default
# body limit over a fast link, and bound what a hostile one costs us.
LINGER_SECONDS: Final = 2.0
LINGER_MAX_BYTES: Final = 16 * 1024 * 1024

# Failures that mean "this connection is dead" for reads and writes alike. Closed is
# included because a stream closed under a waiting reader is just as dead.
_STREAM_FAILURES: Final = (
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    ConnectionError,
)

NextEvent: TypeAlias = h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]


class SendFailed(Exception):
    """Our bytes could not be delivered: the client left, or stopped reading.

    By the time this is raised, h11 has been told (``send_failed``), so the connection
    can only be closed.
    """


@final
class H11Transport:
    """An ``h11.Connection(SERVER)`` and the stream it talks over.

    Args:
        stream: the accepted connection.
        max_header_bytes: h11's ``max_incomplete_event_size``; a head that grows past it
            makes ``next_buffered_event`` raise ``RemoteProtocolError`` with hint 431.
        send_timeout: the longest a single ``send`` may block.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        max_header_bytes: int,
        send_timeout: float = math.inf,
    ) -> None:
        self.stream = stream
        self.conn = h11.Connection(
            h11.SERVER, max_incomplete_event_size=max_header_bytes
        )
        self.max_header_bytes = max_header_bytes
        self.send_timeout = send_timeout
        self.peer_closed = False
        """True once a read has seen EOF or a broken stream."""

    # -- reading -------------------------------------------------------------------

    @property
    def has_buffered_data(self) -> bool:
        """Whether h11 holds bytes it has not turned into events yet."""
        return bool(self.conn.trailing_data[0])

    def next_buffered_event(self) -> NextEvent:
        """The next event from bytes already received; never waits.

        Raises:
            h11.RemoteProtocolError: the client broke HTTP; see ``error_status_hint``.
        """
        return self.conn.next_event()

    async def read_more(self) -> None:
        """Receive once and feed it to h11; EOF or a dead stream is fed as EOF.

        If the client sent ``Expect: 100-continue`` and is waiting, the 100 goes out
        first: otherwise a client that honours the expectation never sends its body
        and this read would wait for nothing.
        """
        if self.conn.they_are_waiting_for_100_continue:
            try:
                await self.send(h11.InformationalResponse(status_code=100, headers=[]))
            except SendFailed:
                # Gone before we could invite the body: for the reader that is EOF.
                self.peer_closed = True
                self.conn.receive_data(b"")
                return
        try:
            data = await self.stream.receive_some(self._read_size())
        except _STREAM_FAILURES:
            data = b""
        if not data:
            self.peer_closed = True
        self.conn.receive_data(bytes(data))

    def _read_size(self) -> int:
        # h11 checks its limit only while a head is incomplete, so a head that arrives
        # whole in one large read would pass however big it is. Reading heads in
        # pieces no larger than the room left under the limit makes the limit hold
        # however the head arrives (to the byte h11 needs to see it crossed).
        if self.conn.their_state is h11.SEND_BODY:
            return RECEIVE_SIZE
        room = self.max_header_bytes - len(self.conn.trailing_data[0])
        return max(1, min(room, RECEIVE_SIZE))

    async def next_event(self, *, read_timeout: float = math.inf) -> h11.Event:
        """The next event, reading as needed; each read may stall ``read_timeout``.

        Raises:
            trio.TooSlowError: a single read stalled past ``read_timeout``.
            h11.RemoteProtocolError: the client broke HTTP, or left mid-message
                (then ``peer_closed`` is true).
        """
        while True:
            event = self.next_buffered_event()
            if event is h11.NEED_DATA:
                with trio.fail_after(read_timeout):
                    await self.read_more()
            elif event is h11.PAUSED:
                raise RuntimeError("h11 is paused: call start_next_cycle() first")
            else:
                assert isinstance(event, h11.Event)
                return event

    # -- writing -------------------------------------------------------------------

    async def send(self, event: h11.Event) -> None:
        """Serialize ``event`` and write it, within ``send_timeout``.

        Raises:
            SendFailed: the client went away or stopped reading.
            h11.LocalProtocolError: we broke HTTP ourselves; a bug, never the client's.
        """
        data = self.conn.send(event)
        if not data:
            return
        try:
            with trio.fail_after(self.send_timeout):
                await self.stream.send_all(data)
        except trio.TooSlowError:
            self.conn.send_failed()
            raise SendFailed(
                f"client read nothing for {self.send_timeout:g} s"
            ) from None
        except _STREAM_FAILURES as exc:
            self.conn.send_failed()
            raise SendFailed(f"client went away ({type(exc).__name__})") from exc
        except BaseException:
            # Cancelled mid-write: part of the message may be out, so the connection
            # is unusable. h11 must know, or it would let us start another response.
            self.conn.send_failed()
            raise

    # -- closing -------------------------------------------------------------------

    @property
    def may_have_unread_input(self) -> bool:
        """Whether the client may still be sending something we did not read.

        True when a request body was left unread (an early 413), a head was cut off
        (408, 431, garbage), or pipelined bytes wait in h11's buffer. A connection
        that is idle between requests, or whose peer has closed, has nothing to drain.
        """
        if self.peer_closed:
            return False
        if self.has_buffered_data:
            return True
        return self.conn.their_state not in (
            h11.IDLE,
            h11.DONE,
            h11.MUST_CLOSE,
            h11.CLOSED,
        )

    async def aclose(self) -> None:
        """Close the connection, lingering first if the client may still be sending.

        Lingering means: send EOF (our response is complete), read and drop what
        arrives until the client closes too, within ``LINGER_SECONDS`` and
        ``LINGER_MAX_BYTES``, then close. Safe to call under cancellation.
        """
        try:
            if self.may_have_unread_input and isinstance(
                self.stream, trio.abc.HalfCloseableStream
            ):
                await self._linger(self.stream)
        finally:
            await trio.aclose_forcefully(self.stream)

    @staticmethod
    async def _linger(stream: trio.abc.HalfCloseableStream) -> None:
        with trio.move_on_after(LINGER_SECONDS):
            try:
                await stream.send_eof()
                dropped = 0
                while dropped < LINGER_MAX_BYTES:
                    data = await stream.receive_some(RECEIVE_SIZE)
                    if not data:
                        return
                    dropped += len(data)
            except _STREAM_FAILURES:
                return
