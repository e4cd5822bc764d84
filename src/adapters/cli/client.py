"""The CLI's way to the server: its address, and JSON calls with clear failures.

The address is ``GATEWAY_HOST``, else ``OLLAMA_HOST``, else 127.0.0.1:11434, read
as ``serve`` reads its ``--host`` (``PORT``, ``:PORT``, ``HOST:PORT`` ...). A server
listening on every interface (0.0.0.0, ``[::]``) is reached on loopback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from ..settings import parse_host

__all__ = ["ApiError", "Client", "server_url"]

_ANY = {"0.0.0.0": "127.0.0.1", "::": "::1"}


class ApiError(Exception):
    """The server answered an error, or could not be reached; ``message`` is for
    the user as it stands."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def server_url(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    text = environ.get("GATEWAY_HOST") or environ.get("OLLAMA_HOST") or ""
    try:
        host, port = parse_host(text) if text else ("127.0.0.1", 11434)
    except ValueError as exc:
        raise ApiError(f"GATEWAY_HOST/OLLAMA_HOST: {exc}") from None
    host = _ANY.get(host, host)
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class Client:
    """JSON calls to one server. Streams are read line by line (NDJSON)."""

    def __init__(self, base_url: str | None = None) -> None:
        self.base_url = base_url or server_url()
        self._http = httpx.Client(
            base_url=self.base_url, timeout=httpx.Timeout(30.0, read=None)
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The decoded JSON answer (None for an empty body); ApiError otherwise."""
        try:
            reply = self._http.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        _check(reply)
        return reply.json() if reply.content else None

    def stream(self, path: str, body: Any) -> Iterator[dict[str, Any]]:
        """Each NDJSON object of a streamed answer; an ``error`` line is ApiError."""
        try:
            with self._http.stream("POST", path, json=body) as reply:
                if reply.status_code >= 400:
                    reply.read()
                    _check(reply)
                for line in reply.iter_lines():
                    if not line.strip():
                        continue
                    value = json.loads(line)
                    if isinstance(value, dict) and "error" in value:
                        raise ApiError(str(value["error"]), 500)
                    yield value
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def exists(self, path: str) -> bool:
        """HEAD ``path``: True on 200, False on 404."""
        try:
            reply = self._http.head(path)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if reply.status_code == 404:
            return False
        _check(reply)
        return True

    def upload(self, path: str, data: Iterator[bytes], size: int) -> None:
        try:
            reply = self._http.post(
                path, content=data, headers={"content-length": str(size)}
            )
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        _check(reply)

    def _unreachable(self, exc: Exception) -> ApiError:
        return ApiError(
            f"could not reach gateway-core at {self.base_url} ({exc}): is it "
            "running? Start it with `gateway-core serve`, or set GATEWAY_HOST."
        )


def _check(reply: httpx.Response) -> None:
    if reply.status_code < 400:
        return
    try:
        value = reply.json()
    except ValueError:
        value = None
    message = reply.text.strip() or reply.reason_phrase
    if isinstance(value, dict):
        error = value.get("error")
        if isinstance(error, dict):
            error = error.get("message")
        if isinstance(error, str):
            message = error
    raise ApiError(message, reply.status_code)
