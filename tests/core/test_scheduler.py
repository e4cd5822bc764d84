"""The scheduler's policy: scenarios first, then a state machine that checks invariants.

The scenarios pin down the rules one at a time (keep_alive, eviction, queue bound,
reloads, failures). The hypothesis state machine then drives random sequences of every
input and checks, after each step, what must always hold, and that the queue drains
once runners are released.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from gateway_core._errors import LocalProtocolError
from gateway_core._scheduler import (
    Action,
    Fail,
    Grant,
    Reject,
    RunnerState,
    RunnerView,
    Scheduler,
    StartLoad,
    Unload,
    UnloadReason,
)

FOREVER = math.inf


def make(
    *,
    max_loaded: int = 2,
    max_queue: int = 8,
    default_keep_alive: float = 300.0,
    slots: int = 1,
) -> Scheduler:
    return Scheduler(
        max_loaded=max_loaded,
        max_queue=max_queue,
        default_keep_alive=default_keep_alive,
        slots=slots,
    )


def started(actions: list[Action]) -> StartLoad:
    (start,) = actions
    assert isinstance(start, StartLoad)
    return start


def loaded(s: Scheduler, ticket: int, key: str, *, now: float = 0.0) -> int:
    """Submit a ticket for a model nobody has loaded; finish the load; its runner."""
    start = started(s.submit(ticket, key, "spec", None, now))
    assert s.load_finished(start.runner_id, now) == [
        Grant(ticket=ticket, runner_id=start.runner_id)
    ]
    return start.runner_id


def view(s: Scheduler, runner_id: int) -> RunnerView:
    (found,) = [v for v in s.snapshot() if v.runner_id == runner_id]
    return found


# Loading and granting ---------------------------------------------------------


def test_first_request_loads_then_is_granted_and_the_runner_is_reused() -> None:
    s = make()
    assert s.submit(1, "m", "spec", None, 0.0) == [
        StartLoad(runner_id=1, key="m", spec="spec")
    ]
    assert view(s, 1).state is RunnerState.LOADING
    assert s.submit(2, "m", "spec", None, 0.5) == []  # waits for the same load
    assert s.load_finished(1, 1.0) == [Grant(ticket=1, runner_id=1)]
    assert s.release(1, 2.0) == [Grant(ticket=2, runner_id=1)]
    assert s.release(2, 3.0) == []
    assert s.submit(3, "m", "spec", None, 4.0) == [Grant(ticket=3, runner_id=1)]


def test_parallel_slots_grant_that_many_at_once() -> None:
    s = make(slots=2)
    runner = loaded(s, 1, "m")
    assert s.submit(2, "m", "spec", None, 1.0) == [Grant(ticket=2, runner_id=runner)]
    assert s.submit(3, "m", "spec", None, 1.0) == []
    assert view(s, runner).busy == 2
    assert s.release(1, 2.0) == [Grant(ticket=3, runner_id=runner)]


def test_the_ticket_that_loads_a_runner_decides_its_slots() -> None:
    s = make()
    start = started(s.submit(1, "m", "four", None, 0.0, slots=4))
    s.load_finished(start.runner_id, 0.0)
    for ticket in (2, 3, 4):
        assert s.submit(ticket, "m", "four", None, 1.0) == [
            Grant(ticket=ticket, runner_id=start.runner_id)
        ]
    assert s.submit(5, "m", "four", None, 1.0) == []  # all four slots busy
    runner = view(s, start.runner_id)
    assert (runner.busy, runner.slots) == (4, 4)
    with pytest.raises(ValueError, match="slots"):
        s.submit(6, "m", "four", None, 1.0, slots=0)


def test_a_lost_runner_is_unloaded_at_once_and_never_granted_again() -> None:
    s = make(slots=2)
    runner = loaded(s, 1, "m")
    assert s.lost(runner, 1.0) == [Unload(runner_id=runner, reason=UnloadReason.LOST)]
    assert view(s, runner).state is RunnerState.UNLOADING
    # A newcomer waits for the runner to be gone, then loads the model afresh.
    assert s.submit(2, "m", "spec", None, 1.0) == []
    assert s.lost(runner, 1.5) == []  # told twice: nothing more to do
    assert s.release(1, 2.0) == []  # the dead runner's request fails and lets go
    start = started(s.unload_finished(runner, 3.0))
    assert start.key == "m"
    assert s.load_finished(start.runner_id, 4.0) == [
        Grant(ticket=2, runner_id=start.runner_id)
    ]


def test_a_lost_runners_grants_may_be_released_after_it_is_gone() -> None:
    s = make()
    runner = loaded(s, 1, "m")
    s.lost(runner, 1.0)
    assert s.unload_finished(runner, 2.0) == []
    assert s.release(1, 3.0) == []
    with pytest.raises(LocalProtocolError):
        s.lost(runner, 4.0)


def test_a_different_spec_for_the_same_key_reloads_after_the_runner_drains() -> None:
    s = make()
    runner = loaded(s, 1, "m")
    assert s.submit(2, "m", "other", None, 1.0) == []
    # FIFO per key: a later request for the old spec waits behind the reload.
    assert s.submit(3, "m", "spec", None, 1.0) == []
    assert s.release(1, 2.0) == [Unload(runner_id=runner, reason=UnloadReason.EVICTED)]
    start = started(s.unload_finished(runner, 3.0))
    assert (start.key, start.spec) == ("m", "other")
    assert s.load_finished(start.runner_id, 4.0) == [
        Grant(ticket=2, runner_id=start.runner_id)
    ]


def test_load_failure_fails_every_waiter_of_that_load_and_only_them() -> None:
    s = make()
    start = started(s.submit(1, "m", "spec", None, 0.0))
    assert s.submit(2, "m", "spec", None, 0.0) == []
    assert s.submit(3, "m", "other", None, 0.0) == []
    actions = s.load_failed(start.runner_id, "bad file", 1.0)
    assert actions[:2] == [
        Fail(ticket=1, message="bad file"),
        Fail(ticket=2, message="bad file"),
    ]
    # The waiter for another spec is not failed: its load starts now.
    assert actions[2:] == [StartLoad(runner_id=2, key="m", spec="other")]
    assert s.waiting == 1


# keep_alive ---------------------------------------------------------------------


def test_default_keep_alive_sets_the_expiry_on_release() -> None:
    s = make(default_keep_alive=300.0)
    runner = loaded(s, 1, "m")
    assert view(s, runner).expires_at is None  # busy
    s.release(1, 10.0)
    assert view(s, runner).expires_at == 310.0
    assert s.next_expiry() == 310.0
    assert s.expire(309.9) == []
    assert s.expire(310.0) == [Unload(runner_id=runner, reason=UnloadReason.EXPIRED)]
    assert s.next_expiry() is None


def test_keep_alive_zero_unloads_on_the_last_release() -> None:
    s = make(slots=2)
    start = started(s.submit(1, "m", "spec", 0.0, 0.0))
    s.load_finished(start.runner_id, 0.0)
    s.submit(2, "m", "spec", None, 0.0)
    assert s.release(1, 1.0) == []  # still busy with ticket 2
    assert s.release(2, 2.0) == [Unload(runner_id=start.runner_id)]


def test_a_waiter_keeps_a_keep_alive_zero_runner_busy() -> None:
    s = make()
    start = started(s.submit(1, "m", "spec", 0.0, 0.0))
    s.load_finished(start.runner_id, 0.0)
    s.submit(2, "m", "spec", None, 0.0)
    assert s.release(1, 1.0) == [Grant(ticket=2, runner_id=start.runner_id)]
    assert s.release(2, 2.0) == [Unload(runner_id=start.runner_id)]


def test_keep_alive_is_sticky_per_runner_until_a_request_gives_another() -> None:
    s = make(default_keep_alive=300.0)
    start = started(s.submit(1, "m", "spec", 60.0, 0.0))
    s.load_finished(start.runner_id, 0.0)
    s.release(1, 0.0)
    assert view(s, start.runner_id).expires_at == 60.0
    s.submit(2, "m", "spec", None, 10.0)  # no keep_alive: keeps 60
    s.release(2, 10.0)
    assert view(s, start.runner_id).expires_at == 70.0
    s.submit(3, "m", "spec", 5.0, 20.0)
    s.release(3, 20.0)
    assert view(s, start.runner_id).keep_alive == 5.0
    assert view(s, start.runner_id).expires_at == 25.0


def test_forever_never_expires() -> None:
    s = make()
    start = started(s.submit(1, "m", "spec", FOREVER, 0.0))
    s.load_finished(start.runner_id, 0.0)
    s.release(1, 0.0)
    assert view(s, start.runner_id).expires_at == FOREVER
    assert s.next_expiry() is None
    assert s.expire(1e18) == []


def test_a_runner_loaded_for_nobody_expires_like_any_idle_one() -> None:
    s = make(default_keep_alive=30.0)
    start = started(s.submit(1, "m", "spec", None, 0.0))
    assert s.release(1, 1.0) == []  # gave up while it loaded
    assert s.load_finished(start.runner_id, 5.0) == []
    assert s.next_expiry() == 35.0


def test_the_unload_shortcut_unloads_an_idle_runner_now() -> None:
    s = make()
    runner = loaded(s, 1, "m")
    s.release(1, 1.0)
    assert s.unload("m", 2.0) == [Unload(runner_id=runner)]
    assert s.unload("m", 2.0) == []  # already on its way out
    assert s.unload("unknown", 2.0) == []


def test_the_unload_shortcut_waits_for_a_busy_runner_to_drain() -> None:
    s = make()
    runner = loaded(s, 1, "m")
    assert s.unload("m", 1.0) == []
    assert s.release(1, 2.0) == [Unload(runner_id=runner)]


# Retiring (the model was deleted) --------------------------------------------------


def test_a_retired_idle_runner_unloads_at_once() -> None:
    s = make()
    runner = loaded(s, 1, "m")
    s.release(1, 1.0)
    assert s.retire("m", 2.0) == [Unload(runner_id=runner)]
    assert s.retire("m", 2.0) == []  # already on its way out
    assert s.retire("unknown", 2.0) == []


def test_a_retired_busy_runner_finishes_its_requests_but_takes_no_new_one() -> None:
    s = make(slots=2)
    runner = loaded(s, 1, "m")
    assert s.retire("m", 1.0) == []
    assert view(s, runner).retired
    # A free slot for the same key and spec, yet the ticket waits for a new runner.
    assert s.submit(2, "m", "spec", None, 2.0) == []
    assert s.release(1, 3.0) == [Unload(runner_id=runner)]
    fresh = started(s.unload_finished(runner, 4.0))
    assert (fresh.key, fresh.runner_id != runner) == ("m", True)
    assert s.load_finished(fresh.runner_id, 5.0) == [
        Grant(ticket=2, runner_id=fresh.runner_id)
    ]
    assert not view(s, fresh.runner_id).retired


def test_a_runner_retired_while_loading_unloads_once_loaded() -> None:
    s = make()
    start = started(s.submit(1, "m", "spec", None, 0.0))
    assert s.retire("m", 1.0) == []
    assert s.load_finished(start.runner_id, 2.0) == [Unload(runner_id=start.runner_id)]
    # The ticket that waited for it gets a runner of its own.
    assert started(s.unload_finished(start.runner_id, 3.0)).runner_id != (
        start.runner_id
    )


# Room, eviction, the queue bound ---------------------------------------------------


def test_no_room_evicts_the_least_recently_used_idle_runner() -> None:
    s = make(max_loaded=2)
    a = loaded(s, 1, "a", now=0.0)
    b = loaded(s, 2, "b", now=0.0)
    s.release(2, 1.0)  # b idle since 1
    s.release(1, 2.0)  # a idle since 2: more recent
    assert s.submit(3, "c", "spec", None, 3.0) == [
        Unload(runner_id=b, reason=UnloadReason.EVICTED)
    ]
    assert s.submit(4, "d", "spec", None, 3.0) == [
        Unload(runner_id=a, reason=UnloadReason.EVICTED)
    ]
    assert started(s.unload_finished(b, 4.0)).key == "c"


def test_one_eviction_per_load_that_needs_room() -> None:
    s = make(max_loaded=2)
    loaded(s, 1, "a")
    loaded(s, 2, "b")
    s.release(2, 1.0)
    s.release(1, 1.5)
    assert s.submit(3, "c", "spec", None, 2.0) == [
        Unload(runner_id=2, reason=UnloadReason.EVICTED)
    ]
    # Nothing happening meanwhile evicts the other runner too: it stays usable.
    assert s.expire(2.5) == []
    assert s.submit(4, "a", "spec", None, 3.0) == [Grant(ticket=4, runner_id=1)]
    # A second newcomer needs its own place: now "a" is the victim, once it drains.
    assert s.submit(5, "d", "spec", None, 3.0) == []
    assert s.release(4, 4.0) == [Unload(runner_id=1, reason=UnloadReason.EVICTED)]


def test_when_every_runner_is_busy_the_lru_one_drains_and_is_evicted() -> None:
    s = make(max_loaded=1, slots=2)
    runner = loaded(s, 1, "a")
    assert s.submit(2, "b", "spec", None, 1.0) == []
    # Traffic for "a" no longer gets the free slot: "b" would starve otherwise.
    assert s.submit(3, "a", "spec", None, 2.0) == []
    assert s.release(1, 3.0) == [Unload(runner_id=runner, reason=UnloadReason.EVICTED)]
    assert started(s.unload_finished(runner, 4.0)).key == "b"


def test_the_queue_bound_counts_every_waiting_ticket() -> None:
    s = make(max_queue=2)
    loaded(s, 1, "m")
    assert s.submit(2, "m", "spec", None, 1.0) == []  # waits for a slot: counts
    assert s.submit(3, "other", "spec", None, 1.0) != []  # waits for a load
    assert s.submit(4, "m", "spec", None, 1.0) == [Reject(ticket=4)]
    assert s.waiting == 2
    s.release(2, 2.0)
    assert s.submit(4, "m", "spec", None, 2.0) == []  # room again; same id is fine


def test_a_full_queue_still_grants_what_is_free_now() -> None:
    s = make(max_loaded=3, max_queue=1)
    loaded(s, 1, "a")
    s.release(1, 0.0)
    loaded(s, 2, "b")
    assert s.submit(3, "b", "spec", None, 1.0) == []  # the queue is now full
    assert s.submit(4, "a", "spec", None, 1.0) == [Grant(ticket=4, runner_id=1)]
    # Nor does a rejected ticket leave anything behind: no load was started for it.
    assert s.submit(5, "c", "spec", None, 1.0) == [Reject(ticket=5)]
    assert len(s.snapshot()) == 2


# Misuse ------------------------------------------------------------------------------


def test_misuse_is_refused() -> None:
    s = make()
    s.submit(1, "m", "spec", None, 0.0)
    with pytest.raises(LocalProtocolError):
        s.submit(1, "m", "spec", None, 0.0)
    with pytest.raises(LocalProtocolError):
        s.release(99, 0.0)
    with pytest.raises(LocalProtocolError):
        s.unload_finished(1, 0.0)  # it is loading, not unloading
    with pytest.raises(LocalProtocolError):
        s.load_finished(99, 0.0)
    s.load_finished(1, 0.0)
    with pytest.raises(LocalProtocolError):
        s.load_finished(1, 0.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_loaded": 0},
        {"max_queue": 0},
        {"slots": 0},
        {"default_keep_alive": math.nan},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    settings_ = {"max_loaded": 1, "max_queue": 1, "default_keep_alive": 1.0} | kwargs
    with pytest.raises(ValueError):  # noqa: PT011
        Scheduler(**settings_)  # type: ignore[arg-type]


# The state machine -----------------------------------------------------------------


KEYS = st.sampled_from(["a", "b", "c"])
SPECS = st.sampled_from(["s1", "s2"])
# A runner's slots are part of how it is loaded: each spec has its own count.
SLOTS: dict[Hashable, int] = {"s1": 1, "s2": 2}
KEEP_ALIVES = st.sampled_from([None, 0.0, 5.0, 60.0, FOREVER])


class SchedulerMachine(RuleBasedStateMachine):
    """Mirrors what the adapter would know, and checks every action against it."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.next_ticket = 1
        self.waiting: dict[int, tuple[str, Hashable]] = {}  # FIFO order
        self.granted: dict[int, int] = {}
        self.loading: dict[int, tuple[str, Hashable]] = {}
        self.ready: set[int] = set()
        self.unloading: set[int] = set()
        self.lost: set[int] = set()
        self.retired: set[int] = set()

    @initialize(
        max_loaded=st.integers(1, 3),
        max_queue=st.integers(1, 5),
        default=st.sampled_from([0.0, 30.0, FOREVER]),
    )
    def setup(self, max_loaded: int, max_queue: int, default: float) -> None:
        self.s = make(
            max_loaded=max_loaded, max_queue=max_queue, default_keep_alive=default
        )
        self.max_loaded, self.max_queue = max_loaded, max_queue

    def step(
        self,
        method: Callable[..., list[Action]],
        *args: object,
        submitted: int | None = None,
    ) -> list[Action]:
        """Make one call to the scheduler and check its actions against the model."""
        before = {runner.runner_id: runner for runner in self.s.snapshot()}
        actions = method(*args)
        self.apply(actions, before, submitted=submitted)
        return actions

    def apply(
        self,
        actions: list[Action],
        before: dict[int, RunnerView],
        *,
        submitted: int | None = None,
    ) -> None:
        evictions = 0
        for action in actions:
            if isinstance(action, Grant):
                key, spec = self.waiting.pop(action.ticket)
                assert action.runner_id in self.ready
                assert action.runner_id not in self.retired, "a retired runner granted"
                runner = view(self.s, action.runner_id)
                assert (runner.key, runner.spec) == (key, spec)
                earlier = [t for t, (k, _) in self.waiting.items() if k == key]
                assert all(t > action.ticket for t in earlier), "FIFO per key"
                self.granted[action.ticket] = action.runner_id
            elif isinstance(action, StartLoad):
                assert action.runner_id not in self.ready | self.unloading
                assert action.runner_id not in self.loading
                self.loading[action.runner_id] = (action.key, action.spec)
            elif isinstance(action, Unload):
                assert action.runner_id in self.ready
                if action.runner_id in self.lost:
                    # Busy or not: a dead runner is dropped at once.
                    self.ready.remove(action.runner_id)
                    self.unloading.add(action.runner_id)
                    continue
                assert action.runner_id not in self.granted.values()
                evictions += self.is_eviction(
                    before[action.runner_id], view(self.s, action.runner_id)
                )
                self.ready.remove(action.runner_id)
                self.unloading.add(action.runner_id)
            elif isinstance(action, Reject):
                assert action.ticket == submitted
                del self.waiting[action.ticket]
            else:
                assert isinstance(action, Fail)
                del self.waiting[action.ticket]
        # Each ticket that needs room evicts at most one runner.
        runner_keys = {runner.key for runner in self.s.snapshot()}
        needing_room = {key for key, _ in self.waiting.values()} - runner_keys
        assert evictions <= len(needing_room), "needless eviction"

    def is_eviction(self, runner: RunnerView, after: RunnerView) -> bool:
        """Whether an unload is for room, not keep_alive, expiry or a reload.

        keep_alive is read after the call: the unload shortcut sets it to 0.
        """
        expired = runner.expires_at is not None and runner.expires_at <= self.now
        reload = any(
            key == runner.key and spec != runner.spec
            for key, spec in self.waiting.values()
        )
        return not (expired or reload or after.keep_alive <= 0)

    @rule(key=KEYS, spec=SPECS, keep_alive=KEEP_ALIVES, dt=st.sampled_from([0, 1, 7]))
    def submit(
        self, key: str, spec: Hashable, keep_alive: float | None, dt: float
    ) -> None:
        self.now += dt
        ticket, self.next_ticket = self.next_ticket, self.next_ticket + 1
        self.waiting[ticket] = (key, spec)
        self.step(
            lambda *args: self.s.submit(*args, slots=SLOTS[spec]),
            ticket,
            key,
            spec,
            keep_alive,
            self.now,
            submitted=ticket,
        )

    @precondition(lambda self: self.granted)
    @rule(data=st.data())
    def release_granted(self, data: st.DataObject) -> None:
        ticket = data.draw(st.sampled_from(sorted(self.granted)))
        runner_id = self.granted.pop(ticket)
        self.step(self.s.release, ticket, self.now)
        if runner_id not in {r.runner_id for r in self.s.snapshot()}:
            assert runner_id in self.lost  # gone while its grant was still held
            return
        runner = view(self.s, runner_id)
        if runner.state is RunnerState.READY and runner.busy == 0:
            assert runner.expires_at == self.now + runner.keep_alive

    @precondition(lambda self: self.waiting)
    @rule(data=st.data())
    def give_up_waiting(self, data: st.DataObject) -> None:
        ticket = data.draw(st.sampled_from(sorted(self.waiting)))
        del self.waiting[ticket]
        self.step(self.s.release, ticket, self.now)

    @precondition(lambda self: self.loading)
    @rule(data=st.data(), ok=st.booleans())
    def finish_load(self, data: st.DataObject, ok: bool) -> None:
        runner_id = data.draw(st.sampled_from(sorted(self.loading)))
        key, spec = self.loading.pop(runner_id)
        if ok:
            self.ready.add(runner_id)
            self.step(self.s.load_finished, runner_id, self.now)
            return
        doomed = {t for t, wanted in self.waiting.items() if wanted == (key, spec)}
        actions = self.step(self.s.load_failed, runner_id, "boom", self.now)
        assert {a.ticket for a in actions if isinstance(a, Fail)} == doomed

    @precondition(lambda self: self.unloading)
    @rule(data=st.data())
    def finish_unload(self, data: st.DataObject) -> None:
        runner_id = data.draw(st.sampled_from(sorted(self.unloading)))
        self.unloading.remove(runner_id)
        self.step(self.s.unload_finished, runner_id, self.now)

    @rule(dt=st.sampled_from([0, 1, 5, 30, 100]))
    def expire(self, dt: float) -> None:
        self.now += dt
        before = {v.runner_id: v for v in self.s.snapshot()}
        for action in self.step(self.s.expire, self.now):
            assert isinstance(action, Unload), "expire only unloads"
            runner = before[action.runner_id]
            assert runner.state is RunnerState.READY
            assert runner.busy == 0
            assert runner.keep_alive != FOREVER
            assert runner.expires_at is not None
            assert runner.expires_at <= self.now
        for runner in self.s.snapshot():
            if runner.state is RunnerState.READY and runner.expires_at is not None:
                assert runner.expires_at > self.now, "an expired runner survived"

    @precondition(lambda self: self.ready)
    @rule(data=st.data())
    def lose(self, data: st.DataObject) -> None:
        """A runner dies, busy or idle: it is unloaded at once, never granted."""
        runner_id = data.draw(st.sampled_from(sorted(self.ready)))
        self.lost.add(runner_id)
        actions = self.step(self.s.lost, runner_id, self.now)
        assert Unload(runner_id=runner_id, reason=UnloadReason.LOST) in actions
        assert all(
            not (isinstance(a, Grant) and a.runner_id == runner_id) for a in actions
        )

    @rule(key=KEYS)
    def unload_shortcut(self, key: str) -> None:
        self.step(self.s.unload, key, self.now)

    @rule(key=KEYS)
    def retire(self, key: str) -> None:
        """The model was deleted: its runner, loading or ready, is never granted
        again (checked in ``apply``) and unloads once idle."""
        self.retired |= {
            runner.runner_id
            for runner in self.s.snapshot()
            if runner.key == key and runner.state is not RunnerState.UNLOADING
        }
        self.step(self.s.retire, key, self.now)

    @rule()
    def everyone_finishes(self) -> None:
        """Liveness: with no new requests, finishing all work empties the queue."""
        for _ in range(4 * (len(self.waiting) + self.max_loaded) + 4):
            for ticket in sorted(self.granted):
                del self.granted[ticket]
                self.step(self.s.release, ticket, self.now)
            for runner_id in sorted(self.loading):
                del self.loading[runner_id]
                self.ready.add(runner_id)
                self.step(self.s.load_finished, runner_id, self.now)
            for runner_id in sorted(self.unloading):
                self.unloading.remove(runner_id)
                self.step(self.s.unload_finished, runner_id, self.now)
            if not (self.waiting or self.granted or self.loading or self.unloading):
                break
        assert not self.waiting, "a waiting ticket was never served"

    @invariant()
    def limits_hold(self) -> None:
        if not hasattr(self, "s"):
            return
        runners = self.s.snapshot()
        assert len(runners) <= self.max_loaded
        assert len({r.key for r in runners}) == len(runners), "one runner per key"
        assert self.s.waiting == len(self.waiting) <= self.max_queue
        for runner in runners:
            assert runner.busy <= runner.slots == SLOTS[runner.spec]
            assert runner.busy == sum(
                1 for r in self.granted.values() if r == runner.runner_id
            )
            if runner.busy and runner.runner_id not in self.lost:
                assert runner.state is RunnerState.READY
            if runner.state is RunnerState.READY and runner.busy == 0:
                assert runner.keep_alive > 0, "an idle keep_alive 0 runner survived"
        states = {r.runner_id: r.state for r in runners}
        assert {i for i, st_ in states.items() if st_ is RunnerState.LOADING} == set(
            self.loading
        )
        assert {i for i, st_ in states.items() if st_ is RunnerState.READY} == (
            self.ready
        )
        assert {i for i, st_ in states.items() if st_ is RunnerState.UNLOADING} == (
            self.unloading
        )


SchedulerMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None
)
test_scheduler_state_machine = SchedulerMachine.TestCase
