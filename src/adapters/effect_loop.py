"""``EffectLoop``: the effect interpreter both HTTP adapters share.

The trio server's driver (``adapters.driver``, over h11) and the ASGI adapter
(``adapters.asgi.drive``, over ``receive``/``send``) carry out an ``Exchange`` by
the same rules: pull one effect, perform it, pull the next; hand work effects to a
``WorkPerformer``; batch body writes that follow one another within
``write_interval``; let the server's shutdown deadline interrupt the waits (never a
write) so that the answer ends with an error instead of being cut. Those rules live
here, once, on anyio (which runs on trio as well as on asyncio). What differs between
the two is only how bytes move: ``_perform`` (write one response effect),
``_read_body`` (feed one body chunk) and ``_body_chunks`` (a streamed body for the
work), which each subclass implements.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Protocol

import anyio

from gateway_core import (
    Effect,
    EndResponse,
    LocalProtocolError,
    ResponseEffect,
    Result,
    SendBody,
    StartResponse,
    Wait,
)

from .exchange_contract import (
    COALESCE_LIMIT,
    WRITE_INTERVAL,
    DrivenExchange,
    ExchangeObserver,
    ExchangeRecord,
    WorkPerformer,
)

__all__ = ["INTERRUPTED", "EffectLoop", "StopSignal"]

INTERRUPTED = (
    "the server is shutting down and this request did not finish within its "
    "shutdown timeout; retry it"
)


class StopSignal(Protocol):
    """The server's shutdown deadline: a ``trio.Event`` or an ``anyio.Event``."""

    async def wait(self) -> object: ...


class EffectLoop(abc.ABC):
    """Runs one exchange's effects in order; subclasses move the bytes.

    Attributes a subclass and its caller share: ``record`` (what happened, for the
    access log), ``finished`` (no more effects will be performed),
    ``response_complete`` (every byte of the answer was handed over), and
    ``watch_scope`` (the disconnect watcher's, cancelled once the answer is out).
    """

    def __init__(
        self,
        exchange: DrivenExchange,
        work: WorkPerformer,
        logger: logging.Logger,
    ) -> None:
        self.exchange = exchange
        self.work = work
        self.logger = logger
        self.record = ExchangeRecord()
        self.observer: ExchangeObserver | None = None
        self.write_interval = WRITE_INTERVAL
        self.last_write = -math.inf
        self.finished = False
        self.response_complete = False
        self.watching = False
        self.watch_scope = anyio.CancelScope()
        # Covers each wait for the client's body or for work, never a write: an
        # interrupt cancels it, and the loop goes on to send the error answer.
        self.wait_scope = anyio.CancelScope()

    # -- what a subclass provides -----------------------------------------------------

    @abc.abstractmethod
    async def _perform(self, effect: ResponseEffect) -> bool:
        """Write one response effect; False if the client is gone (after
        ``_abort``)."""

    @abc.abstractmethod
    async def _read_body(self) -> bool:
        """Feed the exchange one piece of the request body; False if the exchange
        had to stop."""

    @abc.abstractmethod
    def _body_chunks(self) -> AsyncIterator[bytes]:
        """The request body, for work that streams it (a blob upload to disk)."""

    @abc.abstractmethod
    async def _send_error(self, status: int, message: str) -> ExchangeRecord:
        """Answer a failure of the request itself (a stalled or malformed body)
        outside the exchange, in the envelope of the API that was called."""

    # -- the loop ---------------------------------------------------------------------

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

    async def interrupt_when(self, stop: StopSignal) -> None:
        """Once ``stop`` is set, interrupt the exchange unless its answer is out."""
        await stop.wait()
        if self.finished or self.response_complete:
            return
        self.record.interrupted = True
        self.logger.warning(
            "request %s: cut at the shutdown deadline", self.exchange.request_id
        )
        self.exchange.interrupt(503, INTERRUPTED)
        self.wait_scope.cancel()

    # -- write batching ---------------------------------------------------------------

    async def _gather(self, data: bytes) -> tuple[bytes, Effect | Wait]:
        """``data``, joined with what follows it within ``write_interval`` of the
        previous write (see ``_coalesce``); returns the bytes and the next effect."""
        data, effect = self._coalesce(data)
        pause = self.last_write + self.write_interval - anyio.current_time()
        if effect is Wait.NEED_RESULT and pause > 0 and len(data) < COALESCE_LIMIT:
            await anyio.sleep(pause)
            more, effect = self._coalesce(b"")
            data += more
        return data, effect

    def _coalesce(self, data: bytes) -> tuple[bytes, Effect | Wait]:
        """``data`` and the body that can follow it without waiting, as one write.

        Streamed tokens the work has already made are fed to the exchange now and
        their frames joined, so a loop that fell behind the model catches up with
        one write instead of one per token. Nothing is waited for: what is not at
        hand goes in a later write. Returns the joined bytes and the next effect
        (a ``SendBody`` only if the joined bytes reached ``COALESCE_LIMIT``).
        """
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

    # -- ending early -----------------------------------------------------------------

    def _abort(self, reason: str) -> None:
        if self.record.aborted is not None:
            return  # a write and the watcher can both see the same hang-up; first wins
        self.record.aborted = reason
        self.logger.debug("request %s: aborted: %s", self.exchange.request_id, reason)
        self.exchange.abort(reason)
        self.finished = True

    async def _fail_request(self, status: int, message: str) -> bool:
        """The request failed under the exchange: abort it, and answer ``status``
        if no response has started; always False (the loop stops)."""
        self._abort(message)
        if not self.exchange.response_started:
            sent = await self._send_error(status, message)
            self.record.status, self.record.body_bytes = sent.status, sent.body_bytes
        return False

    def abort_after_failure(self) -> None:
        """The loop was cancelled from outside, or broke: the core must know that no
        more effects will be performed."""
        if self.finished:
            return
        # If the exchange itself broke, it refuses this too; the exception already on
        # its way out says what happened.
        with contextlib.suppress(LocalProtocolError):
            self._abort("server stopped the exchange")
