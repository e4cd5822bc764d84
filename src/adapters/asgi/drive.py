"""``drive_asgi``: one ``Exchange`` carried out over ASGI's ``receive`` and ``send``.

The rules are those of the trio server's driver (``adapters.driver``), on anyio so
that the same code runs under uvicorn and hypercorn's asyncio worker and under
hypercorn's trio worker:

- Backpressure. The next effect is pulled only after ``send`` returned, and ASGI
  servers make ``send`` wait while their transport's buffer is full (uvicorn's
  ``drain``), so a slow reader slows the token pulls. A ``send`` that blocks longer
  than ``send_timeout`` drops the client, as the trio server does.
- Work. Work effects go to a ``WorkPerformer`` (the same ``ModelWork``), which is
  closed, shielded, however the exchange ends: that is what stops a generation.
- Disconnects. Once the core needs no more of the body, a sibling task is the only
  caller of ``receive``: ``http.disconnect`` aborts the exchange and cancels the
  work, so generation stops within the runner's next step. Body messages it sees
  are the rest of a body the core answered without (an early 404, a GET's empty
  body), and are dropped.
- Limits. The core's ``max_body_bytes`` holds as in the trio server (413 before a
  byte is read when ``Content-Length`` says so). The ASGI server owns the head
  (size, read timeout) and keep-alive; a body read that stalls past
  ``body_timeout`` is answered 408 here, since ASGI servers do not time it.

What differs from h11: no ``connection: close`` or ``date`` here (the ASGI server
decides keep-alive and writes its own ``date``), and nothing is read ahead of a
pipelined request (the server holds it).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import assert_never

import anyio
import anyio.abc

from gateway_core import (
    Effect,
    EndResponse,
    LocalProtocolError,
    ResponseEffect,
    Result,
    SendBody,
    StartResponse,
    Wait,
    error_response,
)

from ..exchange_contract import (
    COALESCE_LIMIT,
    WRITE_INTERVAL,
    BodyFailed,
    DrivenExchange,
    ExchangeObserver,
    ExchangeRecord,
    NoWork,
    WorkPerformer,
)
from .scope import Message, Receive, Send

__all__ = ["INTERRUPTED", "drive_asgi", "send_asgi_error"]

logger = logging.getLogger("adapters.asgi")

INTERRUPTED = (
    "the server is shutting down and this request did not finish within its "
    "shutdown timeout; retry it"
)


async def drive_asgi(
    exchange: DrivenExchange,
    receive: Receive,
    send: Send,
    *,
    path: str | None,
    work: WorkPerformer | None = None,
    body_timeout: float = math.inf,
    send_timeout: float = math.inf,
    write_interval: float = WRITE_INTERVAL,
    stop: anyio.Event | None = None,
    observer: ExchangeObserver | None = None,
) -> ExchangeRecord:
    """Perform ``exchange``'s effects through ``receive``/``send`` until it ends.

    Arguments as ``adapters.driver.drive_exchange``; ``send_timeout`` bounds one
    ``send`` (a client that stopped reading). Client failures end up in the
    returned record, never as exceptions; an exception out of here is a bug.
    """
    performer = work if work is not None else NoWork()
    driver = _Driver(exchange, receive, send, path, performer)
    driver.body_timeout = _timeout(body_timeout)
    driver.send_timeout = _timeout(send_timeout)
    driver.write_interval = write_interval
    driver.observer = observer
    try:
        async with anyio.create_task_group() as tasks:
            driver.tasks = tasks
            if stop is not None:
                tasks.start_soon(driver.interrupt_when, stop)
            try:
                await driver.run()
            except BaseException:
                # Cancelled (the client left, the server gave up on us) or a bug:
                # no more effects will be performed, and the core must know.
                driver.abort_after_failure()
                raise
            tasks.cancel_scope.cancel()  # the watcher and the interrupt timer
    finally:
        # Shielded: this runs while being cancelled, and it is what stops a
        # generation and gives the model back.
        with anyio.CancelScope(shield=True):
            await performer.aclose()
    for note in exchange.notes:
        logger.warning("request %s: %s", exchange.request_id, note)
    return driver.record


def _timeout(seconds: float) -> float | None:
    return None if math.isinf(seconds) else seconds


class _Driver:
    def __init__(
        self,
        exchange: DrivenExchange,
        receive: Receive,
        send: Send,
        path: str | None,
        work: WorkPerformer,
    ) -> None:
        self.exchange = exchange
        self.receive = receive
        self.send = send
        self.path = path
        self.work = work
        self.record = ExchangeRecord()
        self.body_timeout: float | None = None
        self.send_timeout: float | None = None
        self.write_interval = WRITE_INTERVAL
        self.observer: ExchangeObserver | None = None
        self.tasks: anyio.abc.TaskGroup | None = None
        self.finished = False
        self.response_complete = False
        self.body_over = False  # the client sent its last body message
        self.watching = False
        self.watch_scope = anyio.CancelScope()
        # Covers each wait for the body or for work, never a send: an interrupt
        # cancels it, and the loop goes on to send the error answer.
        self.wait_scope = anyio.CancelScope()
        self.last_write = -math.inf

    async def run(self) -> None:
        effect = self.exchange.next_effect()
        while True:
            match effect:
                case SendBody(data=data):
                    data, effect = await self._gather(data)
                    if not await self._perform(SendBody(data=data)):
                        return
                    self.last_write = anyio.current_time()
                    if self.observer is not None:
                        self.observer.wrote(len(data))
                    continue
                case StartResponse() | EndResponse():
                    if not await self._perform(effect):
                        return
                case Wait.NEED_BODY:
                    with self._interruptible():
                        if not await self._read_body():
                            return
                case Wait.NEED_RESULT:
                    with self._interruptible():
                        self._receive(await self.work.next_result())
                case Wait.FINISHED:
                    self.finished = True
                    return
                case _:
                    if self.observer is not None:
                        self.observer.work_started(effect)
                    with self._interruptible():
                        await self.work.start(effect, self._body_chunks)
            effect = self.exchange.next_effect()

    def _receive(self, result: Result) -> None:
        if self.observer is not None:
            self.observer.result(result)
        self.exchange.receive_result(result, now=time.time())

    def _interruptible(self) -> anyio.CancelScope:
        self.wait_scope = anyio.CancelScope()
        if self.record.interrupted:
            self.wait_scope.cancel()  # interrupted between two waits
        return self.wait_scope

    async def interrupt_when(self, stop: anyio.Event) -> None:
        await stop.wait()
        if self.finished or self.response_complete:
            return
        self.record.interrupted = True
        logger.warning(
            "request %s: cut at the shutdown deadline", self.exchange.request_id
        )
        self.exchange.interrupt(503, INTERRUPTED)
        self.wait_scope.cancel()

    async def _gather(self, data: bytes) -> tuple[bytes, Effect | Wait]:
        """``data`` joined with the frames that follow within ``write_interval``
        of the previous write; see ``adapters.driver`` for why."""
        data, effect = self._coalesce(data)
        pause = self.last_write + self.write_interval - anyio.current_time()
        if effect is Wait.NEED_RESULT and pause > 0 and len(data) < COALESCE_LIMIT:
            await anyio.sleep(pause)
            more, effect = self._coalesce(b"")
            data += more
        return data, effect

    def _coalesce(self, data: bytes) -> tuple[bytes, Effect | Wait]:
        """``data`` and the body that can follow it without waiting (tokens the
        work has made already), as one write, and the next effect."""
        parts = [data]
        size = len(data)
        while True:
            effect = self.exchange.next_effect()
            if isinstance(effect, SendBody) and size < COALESCE_LIMIT:
                parts.append(effect.data)
                size += len(effect.data)
                continue
            if effect is Wait.NEED_RESULT and size < COALESCE_LIMIT:
                result = self.work.ready_result()
                if result is not None:
                    self._receive(result)
                    continue
            return b"".join(parts), effect

    def _abort(self, reason: str) -> None:
        if self.record.aborted is not None:
            return  # a send and the watcher can both see the same hang-up
        self.record.aborted = reason
        logger.debug("request %s: aborted: %s", self.exchange.request_id, reason)
        self.exchange.abort(reason)
        self.finished = True

    def abort_after_failure(self) -> None:
        if self.finished:
            return
        with contextlib.suppress(LocalProtocolError):
            self._abort("server stopped the exchange")

    # -- the response ----------------------------------------------------------------

    async def _perform(self, effect: ResponseEffect) -> bool:
        """Send one response effect; False if the client is gone."""
        if isinstance(effect, StartResponse):
            self.record.status = effect.status
            # The core has what it needs of the request now.
            self._watch()
        try:
            with anyio.fail_after(self.send_timeout):
                await self.send(asgi_message(effect))
        except TimeoutError:
            self._abort(f"client read nothing for {self.send_timeout:g} s")
            return False
        except OSError as exc:
            # ASGI 2.4: a send to a client that is gone may raise OSError (hypercorn,
            # Starlette's test client); uvicorn drops it and the watcher reports.
            self._abort(f"client disconnected ({exc})")
            return False
        if isinstance(effect, SendBody):
            self.record.body_bytes += len(effect.data)
        elif isinstance(effect, EndResponse):
            self.response_complete = True
            self.record.aborted = None  # a hang-up after the last byte is no abort
            self.watch_scope.cancel()
        return True

    # -- the request body ------------------------------------------------------------

    async def _read_body(self) -> bool:
        """Feed the exchange one body message; False if the exchange had to stop."""
        try:
            with anyio.fail_after(self.body_timeout):
                message = await self.receive()
        except TimeoutError:
            return await self._fail_request(
                408, f"request body stalled for more than {self.body_timeout:g} s"
            )
        if message["type"] == "http.disconnect":
            self._abort("client disconnected while sending the body")
            return False
        data = bytes(message.get("body", b""))
        if data:
            self.exchange.receive_body(data)
        if not message.get("more_body", False):
            self.body_over = True
            self.exchange.end_body()
            self._watch()
        return True

    async def _body_chunks(self) -> AsyncIterator[bytes]:
        """The request body, for work that streams it (a blob upload to disk)."""
        while not self.body_over:
            try:
                with anyio.fail_after(self.body_timeout):
                    message = await self.receive()
            except TimeoutError:
                raise BodyFailed(
                    408, f"request body stalled for more than {self.body_timeout:g} s"
                ) from None
            if message["type"] == "http.disconnect":
                self._abort("client disconnected while sending the body")
                raise BodyFailed(400, "client disconnected while sending the body")
            self.body_over = not message.get("more_body", False)
            data = bytes(message.get("body", b""))
            if data:
                yield data

    async def _fail_request(self, status: int, message: str) -> bool:
        self._abort(message)
        if not self.exchange.response_started:
            sent = await send_asgi_error(
                self.send,
                status,
                message,
                path=self.path,
                request_id=self.exchange.request_id,
            )
            self.record.status, self.record.body_bytes = sent.status, sent.body_bytes
        return False

    # -- the disconnect watcher ------------------------------------------------------

    def _watch(self) -> None:
        if self.watching:
            return
        assert self.tasks is not None
        self.watching = True
        self.tasks.start_soon(self._watch_for_disconnect)

    async def _watch_for_disconnect(self) -> None:
        with self.watch_scope:
            while (await self.receive())["type"] != "http.disconnect":
                pass  # body the core decided without
            if not (self.finished or self.response_complete):
                self._abort("client disconnected")
                assert self.tasks is not None
                self.tasks.cancel_scope.cancel()


# -- effects as ASGI messages -------------------------------------------------------


def asgi_message(effect: ResponseEffect) -> Message:
    """The ASGI message that carries out one response effect."""
    match effect:
        case StartResponse(status=status, headers=headers):
            return {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (name.encode("latin-1"), value.encode("latin-1"))
                    for name, value in headers
                ],
            }
        case SendBody(data=data):
            return {"type": "http.response.body", "body": data, "more_body": True}
        case EndResponse():
            return {"type": "http.response.body", "body": b"", "more_body": False}
        case _:
            assert_never(effect)


async def send_asgi_error(
    send: Send, status: int, message: str, *, path: str | None, request_id: str
) -> ExchangeRecord:
    """Answer a failure no exchange could (a malformed scope, a bug, a stalled
    body), in the envelope of the API ``path`` belongs to; the record has no status
    if nothing could be sent."""
    record = ExchangeRecord(aborted=message)
    body_bytes = 0
    try:
        for effect in error_response(status, message, path=path, request_id=request_id):
            await send(asgi_message(effect))
            if isinstance(effect, SendBody):
                body_bytes += len(effect.data)
    except (OSError, RuntimeError):
        # RuntimeError: the server refuses a start after a start (the response had
        # begun after all); OSError: the client is gone.
        return record
    record.status, record.body_bytes = status, body_bytes
    return record
