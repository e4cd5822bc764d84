"""The work effect of a proxied completion, and its results.

``ProxyCompletion`` asks the adapter to send a completion to one of a pool's
upstreams. The adapter asks the ``Router`` which one, takes its request from
``request_for`` (written by the core for each dialect in the pool), sends it, and
moves on to the next upstream when one fails before its answer starts. It then
answers ``UpstreamOpened`` (which upstream, in which dialect), one
``UpstreamBytes`` per read, and ``UpstreamEnded``. A failure is a ``WorkFailed``:
before the opening, the status the client gets (502 no upstream answered, 503 none
is available, 504 none answered in time, or the upstream's own 4xx); after it, the
stream ends with the dialect's in-band error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from ._table import Dialect, Pool, Upstream, UpstreamKind

__all__ = [
    "ProxyCompletion",
    "UpstreamBytes",
    "UpstreamEnded",
    "UpstreamOpened",
    "UpstreamRequest",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamRequest:
    """One HTTP request to an upstream: ``POST`` of a JSON ``body`` to ``path``
    under its base URL. The adapter adds the upstream's own key, never the
    client's."""

    path: str
    body: bytes
    sse: bool
    """The answer is an SSE stream (OpenAI); else NDJSON (Ollama)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamOpened:
    """The upstream answered 200 and its answer starts: ``upstream`` of the pool,
    speaking ``kind``."""

    upstream: str
    kind: UpstreamKind


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamBytes:
    """The next bytes of the upstream's answer, as read. Never empty."""

    data: bytes

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError("UpstreamBytes needs at least one byte")


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamEnded:
    """The upstream closed its answer."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyCompletion:
    """Send a completion to an upstream of ``pool``.

    Attributes:
        model: the model as the client named it (for logs).
        pool: where it may go.
        requests: the request for each dialect the pool's upstreams speak
            (``Upstream.dialect``).
        session: the session key the pool's session policy routes by, if any.
    """

    answers: ClassVar[tuple[type, ...]] = (
        UpstreamOpened,
        UpstreamBytes,
        UpstreamEnded,
    )
    model: str
    pool: Pool
    requests: Mapping[Dialect, UpstreamRequest]
    session: str | None = None

    def __post_init__(self) -> None:
        for upstream in self.pool.upstreams:
            if upstream.dialect not in self.requests:
                raise ValueError(f"no request written for upstream {upstream.name!r}")

    def request_for(self, upstream: Upstream) -> tuple[str, UpstreamRequest]:
        """The URL to send to, and the request, for ``upstream`` (one of the
        pool's)."""
        request = self.requests[upstream.dialect]
        base = upstream.url
        if request.path.startswith("/v1/") and base.endswith("/v1"):
            base = base[: -len("/v1")]  # a base URL given with OpenAI's /v1
        return base + request.path, request
