"""Serving a ``GatewayApp`` with uvicorn: its settings mapped, and a thread runner.

``uvicorn_config`` gives uvicorn the limits the trio server enforces itself: the
head's size, the keep-alive timeout, the time in-flight requests get at shutdown.
``UvicornThread`` runs uvicorn on an event loop in a thread of its own, on a socket
bound before it starts (so port 0 works and the port is known at once): the tests
and the benchmarks use it, and so can a notebook. ``main`` is
``python -m adapters.asgi``: the app under uvicorn, configured like
``gateway-core serve`` from ``GATEWAY_*`` variables.

uvicorn is imported here only: the ``asgi`` extra brings it, and the app itself
needs none of it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from types import TracebackType
from typing import Final

import uvicorn

from ..settings import ServerSettings, resolve_settings
from .app import GatewayApp, create_app
from .scope import ASGIApp

__all__ = ["UvicornThread", "main", "serve_with_uvicorn", "uvicorn_config"]

_START_TIMEOUT: Final = 60.0  # the model service starts, the accelerator is probed


def uvicorn_config(
    app: ASGIApp, settings: ServerSettings, **overrides: object
) -> uvicorn.Config:
    """uvicorn's ``Config`` for ``app`` with ``settings``' address and limits.

    ``overrides`` go to ``uvicorn.Config`` as they are (``log_level``, ...).
    """
    options: dict[str, object] = {
        "host": settings.host,
        "port": settings.port,
        "lifespan": "on",  # a model service that fails to start stops the server
        "http": "h11",
        "loop": "asyncio",
        "access_log": False,  # the app writes the gateway's own access line
        "timeout_keep_alive": settings.keep_alive_timeout,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        # Without it uvicorn waits for streams forever; with it, it cancels them,
        # and the app closes their work.
        "timeout_graceful_shutdown": settings.shutdown_timeout,
        **overrides,
    }
    return uvicorn.Config(app, **options)  # type: ignore[arg-type]


class UvicornThread:
    """uvicorn serving ``app`` in a thread; ``with`` starts it and stops it.

    ``host`` and ``port`` say where it listens once started; ``settings.port`` 0
    picks a free port.
    """

    def __init__(
        self, app: ASGIApp, settings: ServerSettings, **overrides: object
    ) -> None:
        self.app = app
        self.settings = settings
        overrides.setdefault("log_level", "warning")
        self._config = uvicorn_config(app, settings, **overrides)
        self.server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None
        self.host = settings.host
        self.port = settings.port

    def start(self) -> None:
        """Bind, start serving, and return once the app's lifespan has started.

        Raises:
            RuntimeError: uvicorn stopped before it was serving (a failed startup).
        """
        family = socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET
        sock = socket.create_server(
            (self.settings.host, self.settings.port), family=family
        )
        self.host, self.port = sock.getsockname()[:2]
        self._thread = threading.Thread(
            target=self.server.run,
            kwargs={"sockets": [sock]},
            name=f"uvicorn:{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError("uvicorn stopped before it was serving")
            time.sleep(0.005)

    def stop(self, timeout: float | None = None) -> None:
        """Shut uvicorn down gracefully (its lifespan shutdown unloads the models)
        and wait for its thread."""
        self.server.should_exit = True
        self.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        """Wait for uvicorn's thread to end, however it was asked to."""
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __enter__(self) -> UvicornThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_with_uvicorn(settings: ServerSettings) -> int:
    """Serve a new app with ``settings`` under uvicorn until it is signalled; the
    exit status (2: the settings were refused, 1: uvicorn did not start)."""
    try:
        app: GatewayApp = create_app(settings)
    except ValueError as exc:
        print(f"gateway-core: {exc}", file=sys.stderr)
        return 2
    server = uvicorn.Server(uvicorn_config(app, settings))
    # uvicorn finishes requests in flight on SIGINT or SIGTERM, then raises the
    # signal again for the handler it found: this one, so that a graceful stop
    # exits 0 as the trio server's does (not 130 or -15).
    quiet = {sig: signal.signal(sig, _ignore) for sig in _STOP_SIGNALS}
    try:
        server.run()
    finally:
        for sig, handler in quiet.items():
            signal.signal(sig, handler)
    return 0 if server.started else 1


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _ignore(signum: int, frame: object) -> None:
    """A signal uvicorn has already acted on."""


def main() -> int:
    """``python -m adapters.asgi``: the app under uvicorn, from ``GATEWAY_*``."""
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = resolve_settings({}, os.environ)
    except ValueError as exc:
        print(f"gateway-core: {exc}", file=sys.stderr)
        return 2
    return serve_with_uvicorn(settings)
