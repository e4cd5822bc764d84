"""What an HTTP adapter and the work it runs agree on, whatever the transport.

The trio server's driver (``driver``) and the ASGI adapter (``asgi``) both drive a
``gateway_core.Exchange`` and hand its work effects to a ``WorkPerformer`` (the
model service). The protocols, the record of one exchange and the write-batching
constants live here, so that neither side imports the other's event loop or HTTP
library: the model service needs neither trio nor h11.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from gateway_core import Effect, Result, Wait, WorkEffect, WorkFailed

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
]

# Body bytes joined into one write at most: past this a write is worth its cost, and
# the client sees the next frames a write sooner.
COALESCE_LIMIT = 64 * 1024
# The shortest time between two body writes of a stream whose work is still running:
# a stream faster than this (a small model makes a token every 0.1 ms) has its frames
# gathered for one write per interval, instead of a system call, and a wake-up of
# the event loop, per token. A person reading cannot tell 2 ms apart; a stream
# slower than this (any model worth chatting with) never waits.
WRITE_INTERVAL = 0.002


class DrivenExchange(Protocol):
    """What the driver needs of an exchange; ``gateway_core.Exchange`` is one."""

    @property
    def request_id(self) -> str: ...

    @property
    def response_started(self) -> bool: ...

    def next_effect(self) -> Effect | Wait: ...

    def receive_body(self, data: bytes) -> None: ...

    def end_body(self) -> None: ...

    def receive_result(self, result: Result, *, now: float) -> None: ...

    def abort(self, reason: str) -> None: ...

    def interrupt(self, status: int, message: str) -> None: ...

    @property
    def notes(self) -> tuple[str, ...]: ...


class ExchangeObserver(Protocol):
    """Told what one exchange does, as it does it (the server's metrics).

    Called from the driver's loop, so each call must be quick and must not raise.
    """

    def work_started(self, effect: WorkEffect) -> None: ...

    def result(self, result: Result) -> None: ...

    def wrote(self, size: int) -> None: ...


class BodyFailed(Exception):
    """Reading a streamed request body failed; ``status`` is the answer it earns."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


BodySource = Callable[[], AsyncIterator[bytes]]
"""Yields the request body's chunks, for the one effect that streams it to disk."""


class WorkPerformer(Protocol):
    """Performs the work effects of one exchange, in order.

    ``start`` begins an effect (after it, the previous effect's results are no longer
    wanted); ``next_result`` waits for its next result, and ``ready_result`` returns
    it only if it is already at hand (a token made ahead), else None. Failures come
    back as ``WorkFailed`` results, not exceptions. ``aclose`` ends whatever is
    running and releases what the exchange held (a loaded model); it is always
    called, shielded.
    """

    async def start(self, effect: WorkEffect, body: BodySource) -> None: ...

    async def next_result(self) -> Result: ...

    def ready_result(self) -> Result | None: ...

    async def aclose(self) -> None: ...


class NoWork:
    """The performer of a server without a model store: every effect fails."""

    async def start(self, effect: WorkEffect, body: BodySource) -> None:
        self._effect = type(effect).__name__

    async def next_result(self) -> Result:
        return WorkFailed(
            status=500, message="this server has no model store configured"
        )

    def ready_result(self) -> Result | None:
        return None

    async def aclose(self) -> None:
        pass


@dataclass(slots=True)
class ExchangeRecord:
    """What happened to one exchange, for the access log.

    Attributes:
        status: the status sent, or None if no response started.
        body_bytes: response body bytes written.
        aborted: why the exchange was aborted, or None if it ran to its end.
        interrupted: the server cut it short at its shutdown deadline (its answer
            then ended with an error, in-band if it was streaming).
    """

    status: int | None = None
    body_bytes: int = 0
    aborted: str | None = None
    interrupted: bool = False
