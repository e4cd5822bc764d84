"""What each operation answers, as pure functions from request to reply.

A handler sees one complete, type-checked request and returns a ``Reply`` value; the
``Exchange`` turns replies into effects. Handlers that need model work arrive with the
runner and will return jobs instead of replies; until then their operations answer 501,
so a client can tell "not yet" from "no such endpoint".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeAlias

from ._config import GatewayConfig
from ._json import JsonValue
from ._routes import Operation

__all__ = ["ErrorReply", "JsonReply", "Reply", "Request", "TextReply", "handle"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """A request that passed every generic check: route, method, size, JSON shape."""

    operation: Operation
    method: str
    path: str
    param: str | None
    """The path parameter (model name or blob digest) of routes that have one."""
    body: Mapping[str, JsonValue] | None
    """The decoded JSON object, for operations that take one."""
    config: GatewayConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class JsonReply:
    value: JsonValue
    status: int = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class TextReply:
    text: str
    status: int = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorReply:
    status: int
    message: str
    param: str | None = None


Reply: TypeAlias = JsonReply | TextReply | ErrorReply


def _root(request: Request) -> Reply:
    # The exact sentence Ollama answers: health checks in the wild compare against it.
    return TextReply(text="Ollama is running")


def _version(request: Request) -> Reply:
    return JsonReply(value={"version": request.config.reported_version})


def _no_registry(request: Request) -> Reply:
    # There is no registry to talk to: this gateway never downloads weights.
    return ErrorReply(
        status=501,
        message=(
            "this gateway does not pull or push models from a registry; "
            "upload a GGUF file with /api/blobs and register it with /api/create"
        ),
    )


def _not_implemented(request: Request) -> Reply:
    return ErrorReply(
        status=501, message=f"{request.method} {request.path} is not implemented yet"
    )


_HANDLERS: Mapping[Operation, Callable[[Request], Reply]] = MappingProxyType(
    {
        Operation.ROOT: _root,
        Operation.VERSION: _version,
        Operation.PULL: _no_registry,
        Operation.PUSH: _no_registry,
    }
)


def handle(request: Request) -> Reply:
    """Answer a request."""
    return _HANDLERS.get(request.operation, _not_implemented)(request)
