"""The effect interpreter: runs one ``Exchange`` over one ``H11Transport``.

``drive_exchange`` pulls effects from the exchange and performs them, one at a time and
in order, until the exchange says it is finished. Three rules shape it:

- Backpressure. The next effect is pulled only after the previous write completed, so
  a client that reads slowly slows the core down, and through the core the model: the
  next token is asked for only when the last one is on the wire.
- Work. Work effects (look a model up, load it, generate) go to a ``WorkPerformer``;
  each ``Wait.NEED_RESULT`` awaits its next result. The performer is closed when the
  exchange ends, however it ends, which is what stops a generation.
- Disconnects. Once the whole request is in, a sibling task becomes the only reader of
  the socket. If it sees EOF or a broken stream, the client is gone: it aborts the
  exchange and cancels the work. If it sees bytes instead, those are the next pipelined
  request; it hands them to h11 (which holds them, paused, until the next cycle) and
  stops watching.
- Early answers. The core may answer before reading the body (404, 405, 413). Unread
  body bytes would be read as the next request, so such a response carries
  ``connection: close``, unless the rest of the request already sits in h11's buffer.

``send_error_response`` is the one way the adapter answers a failure found below the
exchange (a malformed head, a stalled body); the error's JSON comes from the core.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import assert_never

import h11
import trio

from gateway_core import (
    EndResponse,
    ResponseEffect,
    SendBody,
    StartResponse,
    error_response,
)

from .effect_loop import EffectLoop
from .exchange_contract import (
    COALESCE_LIMIT,
    WRITE_INTERVAL,
    BodyFailed,
    BodySource,
    DrivenExchange,
    ExchangeObserver,
    ExchangeRecord,
    NoWork,
    WorkPerformer,
)
from .h11_transport import H11Transport, SendFailed

# The contract's names are re-exported: they were born here, and callers use them.
__all__ = [
    "COALESCE_LIMIT",
    "WRITE_INTERVAL",
    "BodyFailed",
    "BodySource",
    "DrivenExchange",
    "ExchangeObserver",
    "ExchangeRecord",
    "NoWork",
    "WorkPerformer",
    "drive_exchange",
    "send_error_response",
]

logger = logging.getLogger("adapters.driver")

# The client's h11 states once its whole request is in: MUST_CLOSE instead of DONE
# when it said "connection: close" or spoke HTTP/1.0.
_REQUEST_RECEIVED = (h11.DONE, h11.MUST_CLOSE)


def _never() -> bool:
    return False


async def drive_exchange(
    exchange: DrivenExchange,
    transport: H11Transport,
    *,
    path: str | None,
    body_timeout: float = math.inf,
    closing: Callable[[], bool] = _never,
    work: WorkPerformer | None = None,
    write_interval: float = WRITE_INTERVAL,
    stop: trio.Event | None = None,
    observer: ExchangeObserver | None = None,
) -> ExchangeRecord:
    """Perform ``exchange``'s effects on ``transport`` until it is finished.

    Args:
        path: the request path, so that errors found here (a stalled or malformed
            body) are answered in the envelope of the API that was called.
        body_timeout: the longest one body read may stall before the answer is 408.
        closing: asked when a response starts; True adds ``connection: close``
            (graceful shutdown uses it).
        work: performs the exchange's work effects; without one, each fails.
        write_interval: the shortest time between two body writes while work is
            still running (``WRITE_INTERVAL``); 0 writes as soon as anything is ready.
        stop: set when the server's shutdown deadline has come: the exchange is
            interrupted (its work dropped, its answer ended with an error, in-band
            if it was streaming) and what is left of the response is sent.
        observer: told of each work effect, result and body write.

    Client failures (a disconnect, a stall, a bad body) end up in the returned record,
    never as exceptions. An exception out of here is a bug, in the core or here.
    """
    performer = work if work is not None else NoWork()
    driver = _Driver(exchange, transport, path, body_timeout, closing, performer)
    driver.write_interval = write_interval
    driver.observer = observer
    try:
        async with trio.open_nursery() as nursery:
            driver.nursery = nursery
            if stop is not None:
                nursery.start_soon(driver.interrupt_when, stop)
            try:
                await driver.run()
            except BaseException:
                # Cancelled from outside (the shutdown deadline, a client that left)
                # or a bug: either way no more effects will be performed, and the
                # core must know.
                driver.abort_after_failure()
                raise
            nursery.cancel_scope.cancel()  # the watcher, if it is still reading
    finally:
        # Shielded: this runs while being cancelled, and it is what stops a
        # generation and gives the model back.
        with trio.CancelScope(shield=True):
            await performer.aclose()
    for note in exchange.notes:
        logger.warning("request %s: %s", exchange.request_id, note)
    return driver.record


class _Driver(EffectLoop):
    def __init__(
        self,
        exchange: DrivenExchange,
        transport: H11Transport,
        path: str | None,
        body_timeout: float,
        closing: Callable[[], bool],
        work: WorkPerformer,
    ) -> None:
        super().__init__(exchange, work, logger)
        self.transport = transport
        self.path = path
        self.body_timeout = body_timeout
        self.closing = closing
        self.nursery: trio.Nursery | None = None

    # -- the response ----------------------------------------------------------------

    async def _perform(self, effect: ResponseEffect) -> bool:
        """Write one response effect; False if the client is gone."""
        close = False
        if isinstance(effect, StartResponse):
            close = not self._request_complete() or self.closing()
            self.record.status = effect.status
            self._watch_if_possible()
        try:
            await self.transport.send(_to_h11(effect, close=close))
        except SendFailed as exc:
            self._abort(str(exc))
            return False
        if isinstance(effect, SendBody):
            self.record.body_bytes += len(effect.data)
        elif isinstance(effect, EndResponse):
            # Every byte is with the kernel. A client that closes now, or closed while
            # the last write was returning, left after its answer: no abort.
            self.response_complete = True
            self.record.aborted = None
            self.watch_scope.cancel()
        return True

    def _request_complete(self) -> bool:
        """Whether all of the request has been received, reading nothing new.

        For a GET, h11 produces the EndOfMessage from its buffer; for an early answer
        to a POST, any body bytes already buffered are dropped (the core has decided
        without them). Only if the buffer runs dry before the end is the request
        really incomplete.
        """
        conn = self.transport.conn
        try:
            while conn.their_state is h11.SEND_BODY:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    return False
                # Data is dropped: the answer no longer depends on it.
        except h11.RemoteProtocolError:
            return False  # bad framing in the rest: nothing to keep alive for
        return conn.their_state in _REQUEST_RECEIVED

    # -- the request body ------------------------------------------------------------

    async def _read_body(self) -> bool:
        """Feed the exchange one body event; False if the exchange had to stop."""
        try:
            event = await self.transport.next_event(read_timeout=self.body_timeout)
        except trio.TooSlowError:
            return await self._fail_request(
                408, f"request body stalled for more than {self.body_timeout:g} s"
            )
        except h11.RemoteProtocolError as exc:
            if self.transport.peer_closed:
                self._abort("client disconnected while sending the body")
                return False
            return await self._fail_request(
                exc.error_status_hint, f"malformed request body: {exc}"
            )
        if isinstance(event, h11.Data):
            self.exchange.receive_body(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            self.exchange.end_body()
            self._watch_if_possible()
        else:
            raise TypeError(f"unexpected h11 event while reading a body: {event!r}")
        return True

    async def _body_chunks(self) -> AsyncIterator[bytes]:
        """The request body, for work that streams it (a blob upload to disk)."""
        while True:
            try:
                event = await self.transport.next_event(read_timeout=self.body_timeout)
            except trio.TooSlowError:
                raise BodyFailed(
                    408, f"request body stalled for more than {self.body_timeout:g} s"
                ) from None
            except h11.RemoteProtocolError as exc:
                raise BodyFailed(400, f"malformed request body: {exc}") from None
            if isinstance(event, h11.EndOfMessage):
                return
            if not isinstance(event, h11.Data):
                raise TypeError(f"unexpected h11 event in a body: {event!r}")
            yield bytes(event.data)

    async def _send_error(self, status: int, message: str) -> ExchangeRecord:
        return await send_error_response(
            self.transport,
            status,
            message,
            path=self.path,
            request_id=self.exchange.request_id,
        )

    # -- the disconnect watcher ------------------------------------------------------

    def _watch_if_possible(self) -> None:
        # Only once the request is complete: before that, reading is the body's job.
        # Not if bytes are already buffered: the client is pipelining and h11 holds
        # enough; reading on would only grow its buffer.
        transport = self.transport
        if (
            self.watching
            or transport.conn.their_state not in _REQUEST_RECEIVED
            or transport.has_buffered_data
            or transport.peer_closed
        ):
            return
        assert self.nursery is not None
        self.watching = True
        self.nursery.start_soon(self._watch, self.nursery.cancel_scope)

    async def _watch(self, work: trio.CancelScope) -> None:
        with self.watch_scope:
            await self.transport.read_more()
        if self.transport.peer_closed and not (self.finished or self.response_complete):
            self._abort("client disconnected")
            work.cancel()
        # Otherwise the bytes were a pipelined request, now in h11's buffer.


# -- effects onto the wire ----------------------------------------------------------


def _to_h11(effect: ResponseEffect, *, close: bool) -> h11.Event:
    match effect:
        case StartResponse(status=status, headers=headers):
            fields = [
                (name.encode("ascii"), value.encode("latin-1"))
                for name, value in headers
            ]
            names = {name for name, _ in headers}
            if "date" not in names:
                fields.append((b"date", formatdate(usegmt=True).encode("ascii")))
            if close and "connection" not in names:
                fields.append((b"connection", b"close"))
            return h11.Response(
                status_code=status, headers=fields, reason=_reason(status)
            )
        case SendBody(data=data):
            return h11.Data(data=data)
        case EndResponse():
            return h11.EndOfMessage()
        case _:
            assert_never(effect)


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


async def send_error_response(
    transport: H11Transport,
    status: int,
    message: str,
    *,
    path: str | None,
    request_id: str,
) -> ExchangeRecord:
    """Answer a failure the exchange never saw, then let the connection close.

    The response always says ``connection: close``: whatever went wrong left the
    connection in a state no next request should inherit. The returned record has no
    status if nothing could be sent: the client is gone, or a response had already
    started. ``message`` becomes its ``aborted`` note either way.
    """
    record = ExchangeRecord(aborted=message)
    if transport.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return record
    body_bytes = 0
    try:
        for effect in error_response(status, message, path=path, request_id=request_id):
            await transport.send(_to_h11(effect, close=True))
            if isinstance(effect, SendBody):
                body_bytes += len(effect.data)
    except SendFailed:
        return record
    record.status, record.body_bytes = status, body_bytes
    return record
