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

import logging
import math
from collections.abc import AsyncIterator
from typing import assert_never

import anyio
import anyio.abc

from gateway_core import (
    EndResponse,
    ResponseEffect,
    SendBody,
    StartResponse,
    error_response,
)

from ..effect_loop import EffectLoop
from ..exchange_contract import (
    WRITE_INTERVAL,
    BodyFailed,
    DrivenExchange,
    ExchangeObserver,
    ExchangeRecord,
    NoWork,
    WorkPerformer,
)
from .scope import Message, Receive, Send

__all__ = ["drive_asgi", "send_asgi_error"]

logger = logging.getLogger("adapters.asgi")


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


class _Driver(EffectLoop):
    def __init__(
        self,
        exchange: DrivenExchange,
        receive: Receive,
        send: Send,
        path: str | None,
        work: WorkPerformer,
    ) -> None:
        super().__init__(exchange, work, logger)
        self.receive = receive
        self.send = send
        self.path = path
        self.body_timeout: float | None = None
        self.send_timeout: float | None = None
        self.tasks: anyio.abc.TaskGroup | None = None
        self.body_over = False  # the client sent its last body message

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

    async def _send_error(self, status: int, message: str) -> ExchangeRecord:
        return await send_asgi_error(
            self.send,
            status,
            message,
            path=self.path,
            request_id=self.exchange.request_id,
        )

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
