"""The routing policy: least busy, session affinity, health and the breaker."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from gateway_core import Policy, Pool, Router, Upstream, UpstreamKind


def pool(count: int = 2, *, policy: Policy = Policy.LEAST_BUSY) -> Pool:
    return Pool(
        name="p",
        models=("m*",),
        upstreams=tuple(
            Upstream(name=f"u{i}", kind=UpstreamKind.OLLAMA, url=f"http://h{i}:1")
            for i in range(count)
        ),
        policy=policy,
        failure_threshold=3,
        cooldown=30.0,
    )


def test_least_busy_spreads_concurrent_requests_evenly() -> None:
    router, p = Router(), pool(2)
    started = Counter[str]()
    for _ in range(32):
        chosen = router.pick(p, now=0.0)
        assert chosen is not None
        router.started(p, chosen)
        started[chosen.name] += 1
    assert started == {"u0": 16, "u1": 16}


def test_least_busy_prefers_the_idle_upstream() -> None:
    router, p = Router(), pool(3)
    busy = p.upstreams[0]
    router.started(p, busy)
    router.started(p, p.upstreams[1])
    assert router.pick(p, now=0.0) == p.upstreams[2]


@given(st.text(min_size=1, max_size=40))
def test_a_session_key_always_lands_on_the_same_upstream(key: str) -> None:
    router, p = Router(), pool(4, policy=Policy.SESSION)
    first = router.pick(p, now=0.0, session=key)
    for _ in range(5):
        other = p.upstreams[0]
        router.started(p, other)  # load elsewhere does not move a session
        assert router.pick(p, now=0.0, session=key) == first


def test_session_keys_move_only_off_a_dead_upstream() -> None:
    router, p = Router(), pool(3, policy=Policy.SESSION)
    keys = [f"session-{n}" for n in range(300)]
    before = {key: router.pick(p, now=0.0, session=key) for key in keys}
    assert len({up.name for up in before.values() if up}) == 3
    dead = p.upstreams[1]
    router.checked(p, dead, healthy=False)
    after = {key: router.pick(p, now=0.0, session=key) for key in keys}
    for key in keys:
        if before[key] != dead:
            assert after[key] == before[key]
        else:
            assert after[key] not in (None, dead)


def test_a_refused_connection_marks_the_upstream_down_until_checked() -> None:
    router, p = Router(), pool(2)
    first = p.upstreams[0]
    router.failed(p, first, now=0.0, down=True)
    assert all(router.pick(p, now=t) == p.upstreams[1] for t in (0.0, 100.0))
    router.checked(p, first, healthy=True)
    picks = {router.pick(p, now=0.0) for _ in range(4)}
    assert first in picks


def test_the_breaker_opens_after_the_threshold_then_lets_one_try() -> None:
    router, p = Router(), pool(1)
    only = p.upstreams[0]
    for _ in range(2):
        router.failed(p, only, now=0.0)
    assert router.pick(p, now=0.0) == only  # two failures: still closed
    router.failed(p, only, now=0.0)
    assert router.state(p, only).circuit == "open"
    assert router.pick(p, now=10.0) is None
    assert router.pick(p, now=31.0) == only  # half-open: one may try
    assert router.state(p, only).circuit == "half-open"
    assert router.pick(p, now=31.0) is None  # and only one
    router.succeeded(p, only)
    assert router.state(p, only).circuit == "closed"
    assert router.pick(p, now=31.0) == only


def test_a_failed_trial_opens_the_circuit_again() -> None:
    router, p = Router(), pool(1)
    only = p.upstreams[0]
    for _ in range(3):
        router.failed(p, only, now=0.0)
    assert router.pick(p, now=31.0) == only
    router.failed(p, only, now=31.0)
    assert router.pick(p, now=32.0) is None
    assert router.pick(p, now=62.0) == only


def test_tried_upstreams_are_not_picked_again() -> None:
    router, p = Router(), pool(2)
    first = router.pick(p, now=0.0)
    assert first is not None
    second = router.pick(p, now=0.0, tried={first.name})
    assert second is not None
    assert second != first
    assert router.pick(p, now=0.0, tried={"u0", "u1"}) is None


def test_ended_requests_free_their_upstream() -> None:
    router, p = Router(), pool(2)
    up = p.upstreams[0]
    router.started(p, up)
    router.ended(p, up)
    router.ended(p, up)  # never below zero
    state = router.state(p, up)
    assert (state.in_flight, state.requests) == (0, 1)
