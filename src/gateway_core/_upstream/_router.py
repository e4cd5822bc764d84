"""Which upstream of a pool serves a request: the routing policy and each
upstream's health, as pure state.

The adapter holds one ``Router`` per server and tells it what happened (a request
started or ended, failed, a health check's answer), with the time as a value; the
router answers which upstream to try next. Nothing here waits or reads a clock.

Health has two sources. Background checks mark an upstream up or down outright.
Requests feed a circuit breaker: ``failure_threshold`` failures in a row open it
(no requests for ``cooldown`` seconds), then one request may try (half-open); a
success closes it. A refused connection is as good as a failed health check: the
upstream is marked down at once, so the requests behind it go elsewhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass

from ._table import Policy, Pool, Upstream

__all__ = ["Router", "UpstreamState"]


@dataclass(slots=True)
class UpstreamState:
    """What the router knows of one upstream (``/api/ps`` and metrics show it)."""

    pool: str
    upstream: Upstream
    up: bool = True
    in_flight: int = 0
    failures: int = 0
    """Consecutive failed requests."""
    open_until: float | None = None
    """While the circuit is open: when one request may try again."""
    trial: bool = False
    """Half-open: a request is trying; no other goes until it ends."""
    requests: int = 0
    failovers: int = 0
    """Requests that failed here before their first byte and went to another."""

    def available(self, now: float) -> bool:
        if not self.up or self.trial:
            return False
        return self.open_until is None or now >= self.open_until

    @property
    def circuit(self) -> str:
        """``closed`` (requests flow), ``open`` (none go), ``half-open``."""
        if self.open_until is None:
            return "closed"
        return "half-open" if self.trial else "open"


class Router:
    """Routing state for every upstream of every pool it has been asked about."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], UpstreamState] = {}
        self._turn = 0

    def state(self, pool: Pool, upstream: Upstream) -> UpstreamState:
        key = (pool.name, upstream.name)
        found = self._states.get(key)
        if found is None or found.upstream != upstream:
            found = self._states[key] = UpstreamState(pool=pool.name, upstream=upstream)
        return found

    def states(self) -> list[UpstreamState]:
        """Every upstream known, pool by pool, in the order they were first seen."""
        return list(self._states.values())

    def pick(
        self,
        pool: Pool,
        *,
        now: float,
        session: str | None = None,
        tried: Collection[str] = (),
    ) -> Upstream | None:
        """The upstream to try next, None when none is available (all down, open,
        or ``tried`` already by this request). With the session policy and a key,
        the key's own upstream (rendezvous hashing: the same key lands on the same
        upstream as long as it is available, and only its keys move when one
        goes); otherwise the least busy, ties taken in turn."""
        candidates = [
            self.state(pool, up)
            for up in pool.upstreams
            if up.name not in tried and self.state(pool, up).available(now)
        ]
        if not candidates:
            return None
        if pool.policy is Policy.SESSION and session is not None:
            chosen = max(candidates, key=lambda s: _weight(session, s.upstream.name))
        else:
            fewest = min(s.in_flight for s in candidates)
            idle = [s for s in candidates if s.in_flight == fewest]
            self._turn += 1
            chosen = idle[self._turn % len(idle)]
        if chosen.open_until is not None:
            chosen.trial = True  # half-open: this request is the one trying
        return chosen.upstream

    def started(self, pool: Pool, upstream: Upstream) -> None:
        state = self.state(pool, upstream)
        state.in_flight += 1
        state.requests += 1

    def ended(self, pool: Pool, upstream: Upstream) -> None:
        """A request started with ``started`` is over, however it went."""
        state = self.state(pool, upstream)
        state.in_flight = max(0, state.in_flight - 1)

    def succeeded(self, pool: Pool, upstream: Upstream) -> None:
        """The upstream answered (its first byte came): its circuit closes."""
        state = self.state(pool, upstream)
        state.failures, state.open_until, state.trial = 0, None, False

    def failed(
        self,
        pool: Pool,
        upstream: Upstream,
        *,
        now: float,
        down: bool = False,
        failover: bool = False,
    ) -> None:
        """A request failed at the upstream (``down``: it refused the connection:
        it is down until a health check says otherwise; ``failover``: the request
        goes on to another upstream)."""
        state = self.state(pool, upstream)
        state.failures += 1
        state.trial = False
        if failover:
            state.failovers += 1
        if down:
            state.up = False
        if state.failures >= pool.failure_threshold or state.open_until is not None:
            state.open_until = now + pool.cooldown

    def checked(self, pool: Pool, upstream: Upstream, *, healthy: bool) -> None:
        """A background health check's answer: up (and its circuit closed), or
        down."""
        state = self.state(pool, upstream)
        state.up = healthy
        if healthy:
            state.failures, state.open_until, state.trial = 0, None, False


def _weight(session: str, upstream: str) -> int:
    digest = hashlib.blake2b(
        f"{upstream}\x00{session}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big")
