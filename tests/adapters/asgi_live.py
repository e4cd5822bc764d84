"""The ASGI app under uvicorn on a loopback port, for trio tests.

uvicorn runs its own asyncio loop in a thread (``adapters.asgi.serve.UvicornThread``);
the test's trio loop only waits on it through worker threads. ``LiveAsgi`` has the
fields of ``LiveServer`` that the official-client tests use (``host``, ``port``,
``server.models``, ``server.shutdown()``, ``done``), so one fixture can hand either.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from gateway_core_adapters.asgi import GatewayApp, create_app
from gateway_core_adapters.asgi.serve import UvicornThread
from gateway_core_adapters.model_service import ModelService
from gateway_core_adapters.settings import ServerSettings


@dataclass(frozen=True, slots=True)
class AsgiServer:
    """What the tests ask of ``live.server``: the models, and a way to stop."""

    app: GatewayApp
    thread: UvicornThread

    @property
    def models(self) -> ModelService | None:
        return self.app.models

    def shutdown(self) -> None:
        """Begin uvicorn's graceful shutdown; ``LiveAsgi.done`` is set at its end."""
        self.thread.server.should_exit = True


@dataclass(frozen=True, slots=True)
class LiveAsgi:
    server: AsgiServer
    host: str
    port: int
    done: trio.Event
    """Set when uvicorn's thread has ended (its lifespan shutdown included)."""


async def start_live_asgi(
    nursery: trio.Nursery, settings: ServerSettings, app: GatewayApp | None = None
) -> LiveAsgi:
    """Serve ``app`` (else one made from ``settings``) with uvicorn; stopped and
    joined when ``nursery`` is cancelled, if the test has not stopped it."""
    app = app if app is not None else create_app(settings)
    thread = UvicornThread(app, settings)
    await trio.to_thread.run_sync(thread.start)
    done = trio.Event()

    async def stop_at_teardown() -> None:
        try:
            await trio.sleep_forever()
        finally:
            # Shielded: the nursery is being cancelled, and the thread must end
            # (and its models unload) before the test's temporary store goes.
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(thread.stop)

    async def set_when_joined() -> None:
        await trio.to_thread.run_sync(thread.join, abandon_on_cancel=True)
        done.set()

    nursery.start_soon(stop_at_teardown)
    nursery.start_soon(set_when_joined)
    return LiveAsgi(AsgiServer(app, thread), thread.host, thread.port, done)
