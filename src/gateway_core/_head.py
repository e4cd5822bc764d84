"""The request head: what the adapter knows before the first body byte."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["RequestHead", "client_request_id"]

# RFC 9110 token characters; methods and header names are tokens.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# What a client may name its request: ids as tracing systems and proxies make them
# (UUIDs, hex, base64), short enough to log, with nothing a log reader could trip on.
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+=@-]{0,127}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestHead:
    """Method, target and headers of one HTTP request.

    Header names are stored lower-cased, in the order received, so that repeated
    headers survive. The adapter's HTTP parser has already enforced the wire syntax;
    this re-checks only what the core relies on, so that an invalid head cannot exist.

    Attributes:
        method: e.g. ``"POST"``; case-sensitive, as HTTP says.
        target: the request target as sent, e.g. ``"/api/tags?x=1"``.
        headers: ``(name, value)`` pairs.
    """

    method: str
    target: str
    headers: tuple[tuple[str, str], ...] = ()
    path: str = field(init=False)
    """The target's path, without query string; absolute-form targets are reduced."""

    def __post_init__(self) -> None:
        if not _TOKEN.fullmatch(self.method):
            raise ValueError(f"invalid method {self.method!r}")
        if not self.target or any(ch in self.target for ch in " \r\n\x00"):
            raise ValueError(f"invalid request target {self.target!r}")
        normalized = []
        for name, value in self.headers:
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"invalid header name {name!r}")
            if any(ch in value for ch in "\r\n\x00"):
                raise ValueError(f"invalid value for header {name!r}")
            normalized.append((name.lower(), value))
        object.__setattr__(self, "headers", tuple(normalized))
        if self.target.startswith("/"):
            path = self.target.partition("?")[0]
        else:
            # absolute-form ("http://host/path") is legal for servers to receive.
            path = urlsplit(self.target).path or "/"
        object.__setattr__(self, "path", path)

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (any case), or None; repeats comma-joined."""
        wanted = name.lower()
        values = [value for key, value in self.headers if key == wanted]
        return ", ".join(values) if values else None


def client_request_id(head: RequestHead) -> str | None:
    """The ``X-Request-Id`` the client sent, if it is a sane one (at most 128
    characters of letters, digits and ``._:/+=@-``); None means "make one up"."""
    value = head.header("x-request-id")
    if value is None:
        return None
    value = value.strip()
    return value if _CLIENT_REQUEST_ID.fullmatch(value) else None
