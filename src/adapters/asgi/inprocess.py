"""Calling an ASGI app in-process, with no socket: for tests and notebooks.

``InProcessGateway`` runs an app (a ``GatewayApp``, or a host app that mounts one)
on an event loop in a thread of its own, with its lifespan, and hands out httpx
transports that reach it directly, so the official synchronous clients work
unchanged::

    with InProcessGateway(create_app(settings)) as gateway:
        ollama.Client(host="http://localhost", transport=gateway.httpx_transport())
        openai.OpenAI(base_url="http://localhost/v1", api_key="-",
                      http_client=httpx2.Client(transport=gateway.httpx2_transport()))

Why not httpx's own ``ASGITransport``: it is async only (the synchronous clients
cannot use it), it does not run the app's lifespan (the model service would never
start), and it gathers the whole response before returning, so a stream arrives
in one piece and closing it early tells the app nothing. Here each body message
crosses to the caller's thread as it is sent, through a small buffer, so streams
stream, a slow reader slows the app (backpressure), and closing a response early
is an ``http.disconnect``: the gateway stops the generation.

The request body is read whole before the app is called: what in-process callers
send (JSON, a test's model file) fits in memory.

The openai and anthropic clients are built on httpx2, the ollama client on httpx:
hence a transport for each.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

import anyio
import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal

from .lifespan import lifespan
from .scope import ASGIApp, Message, Scope

if TYPE_CHECKING:
    import httpx2

__all__ = ["InProcessGateway", "InProcessResponse"]

# Body messages the app may be ahead of the reader by: enough to keep the app busy
# while the caller's thread wakes up, small enough that a reader who stops stops
# the app (and through it the model).
_BUFFER: Final = 16


class InProcessGateway:
    """``app`` running on an event loop in its own thread, lifespan included.

    Use it as a context manager: entering starts the loop and the app (for a
    ``GatewayApp``, its model service), leaving shuts the app down and stops the
    loop. ``backend`` is anyio's: ``"asyncio"`` or ``"trio"``.
    """

    def __init__(self, app: ASGIApp, *, backend: str = "asyncio") -> None:
        self.app = app
        self.backend = backend
        self._stack = contextlib.ExitStack()
        self._portal: BlockingPortal | None = None
        self._state: dict[str, Any] = {}

    def __enter__(self) -> InProcessGateway:
        with contextlib.ExitStack() as stack:
            portal = stack.enter_context(
                start_blocking_portal(self.backend, name="gateway-in-process")
            )
            self._state = stack.enter_context(
                portal.wrap_async_context_manager(lifespan(self.app))
            )
            self._portal = portal
            self._stack = stack.pop_all()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._portal = None
        self._stack.__exit__(exc_type, exc, tb)

    @property
    def portal(self) -> BlockingPortal:
        """The app's loop, for calling into it from this thread (``portal.call``):
        a test reading the app's state does it there.

        Raises:
            RuntimeError: not running (outside the ``with``).
        """
        if self._portal is None:
            raise RuntimeError("InProcessGateway is not running: use it in a with")
        return self._portal

    def httpx_transport(self) -> httpx.BaseTransport:
        """A transport for ``httpx.Client`` (and the ollama client)."""
        return _HttpxTransport(self)

    def httpx2_transport(self) -> httpx2.BaseTransport:
        """A transport for ``httpx2.Client`` (and the openai, anthropic clients)."""
        from ._httpx2 import Httpx2Transport  # httpx2 comes with those clients

        return Httpx2Transport(self)

    def request(
        self,
        method: str,
        url: tuple[str, str, int | None, bytes],
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> InProcessResponse:
        """Call the app; returns once it has started its response.

        ``url`` is ``(scheme, host, port, raw target)``, the target with its
        query. The response's body is read from ``chunks()``; ``close()`` before
        its end is a disconnect.

        Raises:
            RuntimeError: the gateway is not running, or the app ended without
                starting a response.
            Exception: whatever the app raised before it started one.
        """
        portal = self._portal
        if portal is None:
            raise RuntimeError("InProcessGateway is not running: use it in a with")
        scope = _scope(method, url, headers, self._state)
        call = portal.call(_Call.open, body)
        finished = portal.start_task_soon(call.run, self.app, scope)
        start = _next_message(portal, call, finished)
        if start is None or start["type"] != "http.response.start":
            portal.call(call.hang_up)
            raise RuntimeError(f"the app answered {start!r} instead of a response")
        headers_out = [(bytes(k), bytes(v)) for k, v in start.get("headers", ())]
        return InProcessResponse(
            status=int(start["status"]),
            headers=headers_out,
            _portal=portal,
            _call=call,
            _finished=finished,
        )


@dataclass(slots=True)
class InProcessResponse:
    """A response the app has started: its status, headers, and body to come."""

    status: int
    headers: list[tuple[bytes, bytes]]
    _portal: BlockingPortal
    _call: _Call
    _finished: Future[None]
    _complete: bool = False

    def chunks(self) -> Iterator[bytes]:
        """The body, as the app sends it."""
        while not self._complete:
            message = _next_message(self._portal, self._call, self._finished)
            if message is None:
                raise RuntimeError("the app ended before its response did")
            self._complete = not message.get("more_body", False)
            data = bytes(message.get("body", b""))
            if data:
                yield data

    def close(self) -> None:
        """Done reading: if the body is not over, the app sees a disconnect."""
        if not self._complete:
            self._complete = True
            with contextlib.suppress(RuntimeError):  # the loop has stopped already
                self._portal.call(self._call.hang_up)


class _Call:
    """One request's two directions, on the app's loop."""

    def __init__(self, body: bytes) -> None:
        self.body: bytes | None = body
        self.gone = anyio.Event()
        self.outbox, self.inbox = anyio.create_memory_object_stream[Message](_BUFFER)

    @classmethod
    async def open(cls, body: bytes) -> _Call:
        # Made on the app's loop: that is where its event and streams are used.
        return cls(body)

    async def receive(self) -> Message:
        if self.body is not None:
            body, self.body = self.body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.gone.is_set():
            return  # as uvicorn does: a send to a client that left is dropped
        with contextlib.suppress(anyio.BrokenResourceError):
            await self.outbox.send(message)

    async def run(self, app: ASGIApp, scope: Scope) -> None:
        async with self.outbox:
            await app(scope, self.receive, self.send)

    async def next_message(self) -> Message | None:
        """The app's next message; None once it has returned. The inbox is
        closed after the last one, here on the loop that owns it."""
        try:
            message = await self.inbox.receive()
        except anyio.EndOfStream:
            self.inbox.close()
            return None
        if message["type"] == "http.response.body" and not message.get("more_body"):
            self.inbox.close()
        return message

    async def hang_up(self) -> None:
        self.gone.set()
        self.inbox.close()  # a send waiting for room gives up


def _next_message(
    portal: BlockingPortal, call: _Call, finished: Future[None]
) -> Message | None:
    """The app's next message, or None if it has returned; its exception if it
    raised."""
    message = portal.call(call.next_message)
    if message is None:
        finished.result()  # raises what the app raised
    return message


def _scope(
    method: str,
    url: tuple[str, str, int | None, bytes],
    headers: list[tuple[bytes, bytes]],
    state: dict[str, Any],
) -> Scope:
    scheme, host, port, target = url
    raw_path, _, query = target.partition(b"?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": unquote(raw_path.decode("ascii")),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": [(name.lower(), value) for name, value in headers],
        "client": None,
        "server": (
            host,
            port if port is not None else 443 if scheme == "https" else 80,
        ),
        "state": dict(state),  # each request its own copy, as ASGI servers do
    }


class _HttpxTransport(httpx.BaseTransport):
    def __init__(self, gateway: InProcessGateway) -> None:
        self._gateway = gateway

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        reply = self._gateway.request(
            request.method,
            (url.scheme, url.host, url.port, url.raw_path),
            list(request.headers.raw),
            request.read(),
        )
        return httpx.Response(
            reply.status,
            headers=reply.headers,
            stream=_HttpxBody(reply),
            extensions={"http_version": b"HTTP/1.1"},
        )


class _HttpxBody(httpx.SyncByteStream):
    def __init__(self, reply: InProcessResponse) -> None:
        self._reply = reply

    def __iter__(self) -> Iterator[bytes]:
        return self._reply.chunks()

    def close(self) -> None:
        self._reply.close()
