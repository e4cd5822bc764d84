"""``GatewayApp``: the gateway as an ASGI 3 application.

Everything an app serves hangs off its instance: the model service (store, runner
pool, scheduler), the ``AccessGate``, the metrics registry. Nothing is kept at
module level, so two apps with different stores can live in one process, each
seeing only its own models.

Its life is ``running()``, an async context manager that starts the model service
(its pool's timers and the runners' tasks), and at its end interrupts requests
still in flight and unloads every model. The ASGI ``lifespan`` protocol runs it;
a host app whose server does not pass lifespan events to mounted apps (Starlette's
and FastAPI's ``mount`` do not) enters it from its own lifespan instead. Until it
runs, requests that need the model service get a 503 saying so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final, final

import anyio
import anyio.to_thread

from gateway_core import (
    Exchange,
    GatewayConfig,
    client_request_id,
)

from ..assembly import ServerParts, gateway_config, new_request_id
from ..exchange_contract import ExchangeRecord
from ..metrics import ExchangeTally
from ..model_service import ModelService
from ..settings import ServerSettings
from .drive import drive_asgi, send_asgi_error
from .scope import Receive, Scope, Send, peer_name, request_head

__all__ = ["GatewayApp", "create_app"]

logger = logging.getLogger("adapters.asgi")
access_logger = logging.getLogger("adapters.access")

# As the trio server: a stuck unload must not hold the host's shutdown forever, and
# interrupted requests get a moment to send their final error.
_UNLOAD_TIMEOUT: Final = 10.0
_INTERRUPT_GRACE: Final = 2.0

_NOT_RUNNING = (
    "the gateway is not running: its lifespan has not started (run it under an "
    "ASGI server with lifespan on, or enter GatewayApp.running() from the host "
    "app's lifespan)"
)


@final
class GatewayApp:
    """An ASGI 3 application serving the gateway's APIs.

    Args:
        settings: the same ``ServerSettings`` as the trio server. The ASGI app uses
            ``models`` and the model scheduler's settings, ``max_body_bytes``,
            ``body_timeout``, ``send_timeout``, ``shutdown_timeout``, ``metrics``
            and the access settings (``host`` decides the Host check as for the
            trio server: a loopback ``host`` refuses foreign Host headers). The
            listening address, header limits and keep-alive belong to the ASGI
            server.
        models: a ready ``ModelService`` instead of one opened on
            ``settings.models``.
    """

    def __init__(
        self, settings: ServerSettings, *, models: ModelService | None = None
    ) -> None:
        self.settings = settings
        parts = ServerParts.assemble(settings, models)
        self.models, self.access, self.metrics = (
            parts.models,
            parts.access,
            parts.metrics,
        )
        # Known at once when the settings say; else the accelerator is probed (a
        # child process) when the app starts, off the event loop.
        self.config: GatewayConfig | None = None
        if settings.context_length is not None:
            self.config = self._make_config()
        self._running = False
        self._stop: anyio.Event | None = None
        self._in_flight = 0

    @property
    def running_now(self) -> bool:
        """Whether ``running()`` has started and not yet ended."""
        return self._running

    def _make_config(self) -> GatewayConfig:
        return gateway_config(self.settings)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[GatewayApp]:
        """Run the model service for the length of the block; on leaving it,
        interrupt what is still in flight and unload every model."""
        if self._running:
            raise RuntimeError("this GatewayApp is running already")
        if self.config is None:
            self.config = await anyio.to_thread.run_sync(self._make_config)
        stop = self._stop = anyio.Event()
        async with anyio.create_task_group() as background:
            if self.models is not None:
                background.start_soon(self.models.run)
            self._running = True
            try:
                yield self
            finally:
                self._running = False
                with anyio.CancelScope(shield=True):
                    await self._stop_requests(stop)
                    if self.models is not None:
                        await self._unload(self.models)
                background.cancel_scope.cancel()

    async def _stop_requests(self, stop: anyio.Event) -> None:
        """Requests still running when the host shuts the app down: most ASGI
        servers have waited (or cancelled them) by now, but a host app may not.
        Each one cut logs it (``drive_asgi``); one whose answer is complete and
        whose work is closing is left to finish."""
        stop.set()
        with anyio.move_on_after(_INTERRUPT_GRACE):
            while self._in_flight:
                await anyio.sleep(0.01)

    async def _unload(self, models: ModelService) -> None:
        with anyio.move_on_after(_UNLOAD_TIMEOUT) as unloading:
            await models.aclose()
        if unloading.cancelled_caught:
            logger.warning("models still loaded after %g s", _UNLOAD_TIMEOUT)

    # -- ASGI ----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            # No API here speaks WebSocket: refuse the handshake (403 to the client).
            await send({"type": "websocket.close", "code": 1008})
        else:
            raise ValueError(f"unsupported ASGI scope type {kind!r}")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":
            raise RuntimeError(f"lifespan began with {message['type']!r}")
        started = False
        try:
            async with self.running():
                started = True
                await send({"type": "lifespan.startup.complete"})
                while (await receive())["type"] != "lifespan.shutdown":
                    pass
        except Exception as exc:
            logger.exception("gateway %s failed", "shutdown" if started else "startup")
            phase = "shutdown" if started else "startup"
            await send({"type": f"lifespan.{phase}.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.shutdown.complete"})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = anyio.current_time()
        tally = ExchangeTally(self.metrics, time.perf_counter())
        request_id = new_request_id()
        method = str(scope.get("method", "-"))
        line = f"{method} {scope.get('path', '-')} HTTP/{scope.get('http_version')}"
        peer = peer_name(scope)
        exchange: Exchange | None = None
        record = ExchangeRecord(aborted="cancelled")
        self._in_flight += 1
        try:
            try:
                head = request_head(scope)
            except ValueError as exc:
                record = await send_asgi_error(
                    send,
                    400,
                    f"malformed request: {exc}",
                    path=None,
                    request_id=request_id,
                )
                return
            request_id = client_request_id(head) or request_id
            if self.config is None or (self.models is not None and not self._running):
                record = await send_asgi_error(
                    send, 503, _NOT_RUNNING, path=head.path, request_id=request_id
                )
                return
            exchange = Exchange(
                head,
                config=self.config,
                request_id=request_id,
                now=time.time(),
                access=self.access,
                shutting_down=self._stop is not None and self._stop.is_set(),
            )
            record = await drive_asgi(
                exchange,
                receive,
                send,
                path=head.path,
                work=None if self.models is None else self.models.work(),
                body_timeout=self.settings.body_timeout,
                send_timeout=self.settings.send_timeout,
                stop=self._stop,
                observer=tally,
            )
        except Exception:
            logger.exception("request %s (%s) failed", request_id, line)
            if exchange is None or not exchange.response_started:
                record = await send_asgi_error(
                    send,
                    500,
                    "internal server error",
                    path=str(scope.get("path")),
                    request_id=request_id,
                )
            # Not re-raised: the ASGI server would only log it again and answer
            # a plain-text 500 of its own.
        finally:
            self._in_flight -= 1
            route = exchange.route if exchange is not None else None
            tally.finish(
                route=route.path if route is not None else "unmatched",
                method=method,
                status=record.status,
                dialect=route.dialect.value if route is not None else "ollama",
            )
            _log_access(peer, line, record, started, request_id, tally)


def _log_access(
    peer: str,
    line: str,
    record: ExchangeRecord,
    started: float,
    request_id: str,
    tally: ExchangeTally,
) -> None:
    """The trio server's access line, so one log parser reads both."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    elapsed_ms = (anyio.current_time() - started) * 1000
    status = "-" if record.status is None else str(record.status)
    model = f" model={tally.model}" if tally.model else ""
    tokens = tally.prompt_tokens + tally.generated_tokens
    counted = (
        f" tokens={tally.prompt_tokens}+{tally.generated_tokens}" if tokens else ""
    )
    if record.interrupted:
        outcome = " (cut at the shutdown deadline)"
    else:
        outcome = f" ({record.aborted})" if record.aborted else ""
    access_logger.info(
        '%s "%s" %s %d %.1fms id=%s%s%s%s',
        peer,
        line,
        status,
        record.body_bytes,
        elapsed_ms,
        request_id,
        model,
        counted,
        outcome,
    )


def create_app(
    settings: ServerSettings, *, models: ModelService | None = None
) -> GatewayApp:
    """The gateway as an ASGI application; see ``GatewayApp``."""
    return GatewayApp(settings, models=models)
