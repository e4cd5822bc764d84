"""``Request``: what a handler sees once every generic check has passed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ._config import GatewayConfig
from ._flow import Timeline
from ._json import JsonValue
from ._routes import Operation

__all__ = ["Request"]


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
    request_id: str
    """The adapter's name for this request; seeds tool-call ids."""
    timeline: Timeline
    """When the request arrived and what time it is now, for timestamps."""
    session_id: str | None = None
    """The client's ``X-Session-Id`` header: keeps a conversation on one upstream."""
    shutting_down: bool = False
    """The server has begun to shut down (health checks then answer 503)."""
    notes: list[str] = field(default_factory=list)
    """Warnings for the adapter's log (unknown options, a truncated prompt): the
    core does not log, and the client should not fail for them."""
