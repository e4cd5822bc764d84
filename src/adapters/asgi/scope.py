"""ASGI's types, and an HTTP scope turned into the core's ``RequestHead``.

The one subtle part is the path under a mount. ASGI (spec 2.4 and Starlette since
0.33) says ``scope["path"]`` is the full path and ``root_path`` the prefix the app is
mounted at, which the app strips; older servers passed the path already stripped.
``raw_path`` differs between servers again: uvicorn prefixes it with ``--root-path``,
Starlette's ``Mount`` leaves the client's bytes alone. So the prefix is removed from
whichever form starts with it, and the core routes what is left: ``/llm/api/tags``
mounted at ``/llm`` is ``/api/tags``, and ``/llm/nope`` is the core's own 404 in
the Ollama envelope, not the host framework's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias
from urllib.parse import quote

from gateway_core import RequestHead

__all__ = [
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "peer_name",
    "request_head",
    "route_target",
]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

# What ``quote`` leaves alone in a path: RFC 3986's pchar and "/", plus "%" so an
# already encoded path is not encoded twice.
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"


def request_head(scope: Scope) -> RequestHead:
    """The head of the request in an HTTP ``scope``.

    Header bytes are decoded as latin-1, which maps every byte, as the trio server
    does: the core checks what it relies on.

    Raises:
        ValueError: the scope holds something the core cannot take (a method or
            header name that is not an HTTP token, a control character).
    """
    target = route_target(scope)
    query = scope.get("query_string", b"")
    if query:
        target = f"{target}?{query.decode('latin-1')}"
    headers = tuple(
        (bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
        for name, value in scope.get("headers", ())
    )
    return RequestHead(method=str(scope["method"]), target=target, headers=headers)


def route_target(scope: Scope) -> str:
    """The request path as the client spelled it (percent-encoded), with the mount
    prefix (``root_path``) removed; ``/`` if nothing is left."""
    root = str(scope.get("root_path", "")).rstrip("/")
    raw = scope.get("raw_path")
    if raw:
        target = bytes(raw).decode("latin-1")
        prefixes: tuple[str, ...] = (quote(root, safe=_PATH_SAFE), root)
    else:
        target = quote(str(scope["path"]), safe=_PATH_SAFE)
        prefixes = (quote(root, safe=_PATH_SAFE),)
    if root:
        for prefix in prefixes:
            if target == prefix:
                return "/"
            if target.startswith(prefix + "/"):
                return target[len(prefix) :]
    return target or "/"


def peer_name(scope: Scope) -> str:
    """``host:port`` of the client, for the access log; ``-`` if the server did not
    say (an in-process call)."""
    client = scope.get("client")
    if not client:
        return "-"
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
