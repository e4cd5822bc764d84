"""The in-process transport for httpx2, which the openai and anthropic clients use.

A module of its own so that ``adapters.asgi.inprocess`` imports httpx2 only when
someone asks for its transport.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx2

if TYPE_CHECKING:
    from .inprocess import InProcessGateway, InProcessResponse

__all__ = ["Httpx2Transport"]


class Httpx2Transport(httpx2.BaseTransport):
    def __init__(self, gateway: InProcessGateway) -> None:
        self._gateway = gateway

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        reply = self._gateway.request(
            request.method,
            (url.scheme, url.host, url.port, url.raw_path),
            list(request.headers.raw),
            request.read(),
        )
        return httpx2.Response(
            reply.status,
            headers=reply.headers,
            stream=_Body(reply),
            extensions={"http_version": b"HTTP/1.1"},
        )


class _Body(httpx2.SyncByteStream):
    def __init__(self, reply: InProcessResponse) -> None:
        self._reply = reply

    def __iter__(self) -> Iterator[bytes]:
        return self._reply.chunks()

    def close(self) -> None:
        self._reply.close()
