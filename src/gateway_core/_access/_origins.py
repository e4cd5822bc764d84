"""CORS: which web pages may call the gateway from a browser, and what to tell them.

Browsers attach an ``Origin`` header to cross-origin requests, and before any
request that is not "simple" they ask first (a preflight: ``OPTIONS`` with
``Access-Control-Request-Method``). Being silent on CORS, as the gateway was, is not
safe: a "simple" request (a ``text/plain`` POST) is sent without asking, so a page
on any site could create or delete models, and its answer merely hidden from it.
So a request whose ``Origin`` is not allowed is refused before any work, and an
allowed origin gets the headers that let its page read the answer.

Allowed by default, as Ollama allows them: pages served from this machine
(``localhost``, ``127.0.0.1``, ``[::1]`` and ``0.0.0.0``, on any port, over http or
https) and desktop-app and extension schemes, whose pages the user installed.
Operators add more with ``GATEWAY_ORIGINS`` (``OLLAMA_ORIGINS`` is read too):
``https://chat.example.com``, ``https://*.example.com`` or ``*``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._patterns import matches_any

__all__ = [
    "ALLOWED_METHODS",
    "DEFAULT_ORIGINS",
    "allowed_request_headers",
    "origin_allowed",
]

_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]", "0.0.0.0")

DEFAULT_ORIGINS: tuple[str, ...] = (
    *(
        f"{scheme}://{host}{port}"
        for host in _LOCAL_HOSTS
        for scheme in ("http", "https")
        for port in ("", ":*")
    ),
    "app://*",
    "file://*",
    "tauri://*",
    "vscode-webview://*",
    "vscode-file://*",
    "chrome-extension://*",
    "moz-extension://*",
    "safari-web-extension://*",
)

ALLOWED_METHODS = "GET, HEAD, POST, DELETE, OPTIONS"

# What the official SDKs and browser UIs send. Listing them (rather than echoing
# whatever a preflight asks for) keeps the answer the same for every page.
_ALLOWED_HEADERS: tuple[str, ...] = (
    "accept",
    "authorization",
    "content-type",
    "user-agent",
    "x-requested-with",
    "x-request-id",
    "x-session-id",
    "x-api-key",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    "openai-organization",
    "openai-project",
)
# The OpenAI and Anthropic SDKs send a family of these (x-stainless-os, -arch, ...).
_ALLOWED_HEADER_PREFIXES = ("x-stainless-",)


def origin_allowed(origin: str, extra: Sequence[str] = ()) -> bool:
    """May a page from ``origin`` call the gateway? ``null`` (sandboxed frames,
    some ``file:`` pages) names no one, so only an explicit ``*`` allows it."""
    if origin == "null":
        return "*" in extra
    return matches_any(origin, DEFAULT_ORIGINS) or matches_any(origin, extra)


def allowed_request_headers(requested: str | None) -> str:
    """The ``Access-Control-Allow-Headers`` answer to a preflight's request list:
    those it asked for that we accept, plus our own list."""
    names = list(_ALLOWED_HEADERS)
    for raw in (requested or "").split(","):
        name = raw.strip().lower()
        if name.startswith(_ALLOWED_HEADER_PREFIXES) and name not in names:
            names.append(name)
    return ", ".join(names)
