"""Which runner serves which request, and when runners load and unload: pure policy.

The scheduler decides; the adapter (``adapters.runner_pool``) waits. Every method takes
the current monotonic time as ``now`` and returns the actions the adapter must carry
out, in order. Nothing here sleeps, arms a timer or reads a clock: the adapter asks
``next_expiry()`` when to call ``expire()``.

Words. A *ticket* is one request wanting a runner (its id is the caller's). A *key*
names a model (its GGUF digest); a *spec* is everything that fixes how it is loaded
(the adapter passes ``(model_file, LoadOptions)``). One runner serves one key; the same
key with another spec means unload and load again.

Runner lifecycle (``_RUNNER_MOVES`` is the whole of it)::

    StartLoad -> LOADING --load_finished--> READY --Unload--> UNLOADING
                    |                         |                   |
                    |                         +--lost--> UNLOADING (busy or not)
                    +--load_failed--> gone          unload_finished--> gone

Rules, following Ollama (ollama-api.md §7.2-7.3) except where marked:

- A runner has slots: as many requests as it serves at once (llama-server's
  ``--parallel``), fixed when it loads, from the ticket that loads it (``slots``;
  a different count is a different spec, so a reload). A READY runner for the
  ticket's key and spec with a free slot is granted at once. Otherwise the ticket
  waits.
- Waiting is FIFO per key: once a ticket for a key waits, every later ticket for that
  key waits behind it, whatever its spec. So a reload cannot be starved by requests
  that still want the old spec.
- Runners (loading, ready or unloading) never exceed ``max_loaded``. A ticket that
  needs a new runner when there is no room evicts the least-recently-used *idle* runner
  (Ollama sorts by keep_alive first: deliberate difference). If every runner is busy,
  it picks the least-recently-used busy one, hands it no new work, and evicts it when it
  drains. Without that, steady traffic to loaded models would starve the newcomer.
- ``max_queue`` bounds every waiting ticket, not only those waiting for a load
  (Ollama's waits for a busy slot are unbounded: deliberate difference). The ticket
  past the bound gets ``Reject`` and never enters the queue.
- keep_alive is sticky per runner: set on load (the request's, else the default),
  replaced by each granted request that gives one. When the last grant is released:
  ``<= 0`` unloads now, ``math.inf`` (FOREVER) never expires, anything else expires
  that many seconds later. Waiting tickets for the runner are granted before that rule
  applies, as Ollama's waiters already hold a reference.
- A load failure fails every waiting ticket with the same key and spec: the same load
  would fail again.
- A runner that died (``lost``: its process crashed or was killed) is unloaded at
  once, busy or not: it is granted to no one again, its requests fail on their own
  and release their grants whenever they do, and the next ticket for its key loads
  it afresh.
- A retired runner (``retire``: its model was deleted) is granted to no one again:
  idle, it unloads at once; busy, its requests finish and it unloads when the last
  one is released; loading, it unloads when the load finishes. Tickets for its key
  wait for it to go and then load afresh (one runner per key), so a model created
  again under the same name never gets the deleted model's runner. (Ollama keeps
  serving a deleted model's runner until it expires: deliberate difference.)
"""

from __future__ import annotations

import enum
import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeAlias

from ._errors import LocalProtocolError

__all__ = [
    "Action",
    "Fail",
    "Grant",
    "Reject",
    "RunnerState",
    "RunnerView",
    "Scheduler",
    "StartLoad",
    "Unload",
    "UnloadReason",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class StartLoad:
    """Load a runner for ``key`` as ``spec`` describes; report load_finished/failed."""

    runner_id: int
    key: str
    spec: Hashable


class UnloadReason(enum.Enum):
    """Why a runner is unloaded: what operators count (``gateway_model_unloads``)."""

    EXPIRED = "expired"
    """Idle past its keep_alive."""
    EVICTED = "evicted"
    """Idle, and its place was needed by another model (or another spec)."""
    RELEASED = "released"
    """Asked to go: keep_alive 0, its model deleted, or the server stopping."""
    LOST = "lost"
    """It died by itself."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Unload:
    """Unload this runner (it has no grants); report unload_finished, even on error."""

    runner_id: int
    reason: UnloadReason = UnloadReason.RELEASED


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """The ticket may use this runner until it is released."""

    ticket: int
    runner_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject:
    """The queue is full: the ticket was not queued (503 "server busy")."""

    ticket: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Fail:
    """The load the ticket waited for failed; the ticket is gone."""

    ticket: int
    message: str


Action: TypeAlias = StartLoad | Unload | Grant | Reject | Fail


class RunnerState(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    UNLOADING = "unloading"


class _Move(enum.Enum):
    LOADED = "load_finished"
    LOAD_FAILED = "load_failed"
    UNLOAD = "unload"
    LOST = "lost"
    UNLOADED = "unload_finished"


_S, _M = RunnerState, _Move
# None: the runner is gone. A pair missing here is adapter misuse (fail closed).
_RUNNER_MOVES: Mapping[tuple[RunnerState, _Move], RunnerState | None] = (
    MappingProxyType(
        {
            (_S.LOADING, _M.LOADED): _S.READY,
            (_S.LOADING, _M.LOAD_FAILED): None,
            (_S.READY, _M.UNLOAD): _S.UNLOADING,
            (_S.READY, _M.LOST): _S.UNLOADING,
            (_S.UNLOADING, _M.LOST): _S.UNLOADING,
            (_S.UNLOADING, _M.UNLOADED): None,
        }
    )
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunnerView:
    """One runner as ``snapshot()`` shows it (for ``/api/ps``, logs and tests).

    ``expires_at`` is None unless the runner is ready and idle; ``math.inf`` when its
    keep_alive is FOREVER. ``busy`` of its ``slots`` are granted.
    """

    runner_id: int
    key: str
    spec: Hashable
    state: RunnerState
    busy: int
    slots: int
    keep_alive: float
    expires_at: float | None
    last_used: float
    retired: bool = False
    """Granted to no one again; it unloads once idle (see ``retire``)."""


@dataclass(slots=True, kw_only=True)
class _Runner:
    runner_id: int
    key: str
    spec: Hashable
    keep_alive: float
    last_used: float
    slots: int
    state: RunnerState = RunnerState.LOADING
    grants: set[int] = field(default_factory=set)
    expires_at: float | None = None
    retired: bool = False

    @property
    def idle(self) -> bool:
        return self.state is RunnerState.READY and not self.grants


@dataclass(frozen=True, slots=True, kw_only=True)
class _Ticket:
    ticket: int
    key: str
    spec: Hashable
    keep_alive: float | None
    slots: int


class _Kind(enum.Enum):
    GRANT = "grant"
    LOAD = "load"
    UNLOAD = "unload"
    WAIT = "wait"


@dataclass(slots=True)
class _Plan:
    """What one pass over the queue has promised so far.

    Each ticket that needs a new runner claims one place: a free one (``room``), one
    that an unloading runner will free (``incoming``), an idle victim, or a busy victim
    (``doomed``: no new grants, evicted once idle). Claims last for one pass only, so
    a ticket that leaves releases its claim without bookkeeping.
    """

    room: int
    incoming: int
    blocked: set[str] = field(default_factory=set)
    doomed: set[int] = field(default_factory=set)


class Scheduler:
    """The runner policy as a state machine. See the module docstring for the rules."""

    def __init__(
        self,
        *,
        max_loaded: int,
        max_queue: int,
        default_keep_alive: float,
        slots: int = 1,
    ) -> None:
        if max_loaded < 1:
            raise ValueError(f"max_loaded must be at least 1, not {max_loaded}")
        # A queue of 0 could never load anything: every load has a waiting ticket.
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, not {max_queue}")
        if slots < 1:
            raise ValueError(f"slots must be at least 1, not {slots}")
        _check_keep_alive(default_keep_alive)
        self._max_loaded = max_loaded
        self._max_queue = max_queue
        self._default_slots = slots
        self._default_keep_alive = default_keep_alive
        self._runners: dict[int, _Runner] = {}
        self._by_key: dict[str, _Runner] = {}
        self._waiting: dict[int, _Ticket] = {}  # insertion order is FIFO order
        self._granted: dict[int, _Runner] = {}
        self._next_runner_id = 1

    # Inputs -----------------------------------------------------------------

    def submit(
        self,
        ticket: int,
        key: str,
        spec: Hashable,
        keep_alive: float | None,
        now: float,
        *,
        slots: int | None = None,
    ) -> list[Action]:
        """A request wants a runner for ``key`` loaded as ``spec``.

        ``keep_alive`` is the request's own (seconds; None when it gave none);
        ``slots`` the runner's slots if this ticket loads it (None: the scheduler's
        default).
        """
        if ticket in self._waiting or ticket in self._granted:
            raise LocalProtocolError(f"ticket {ticket} was already submitted")
        if keep_alive is not None:
            _check_keep_alive(keep_alive)
        slots = self._default_slots if slots is None else slots
        if slots < 1:
            raise ValueError(f"slots must be at least 1, not {slots}")
        new = _Ticket(
            ticket=ticket, key=key, spec=spec, keep_alive=keep_alive, slots=slots
        )
        self._waiting[ticket] = new
        if len(self._waiting) > self._max_queue and not self._grantable_now(new):
            del self._waiting[ticket]
            return [Reject(ticket=ticket)]
        return self._settle(now)

    def release(self, ticket: int, now: float) -> list[Action]:
        """A granted ticket is done, or a waiting one gave up."""
        if ticket in self._waiting:
            del self._waiting[ticket]
        elif (runner := self._granted.pop(ticket, None)) is not None:
            runner.grants.discard(ticket)
            runner.last_used = now
            if not runner.grants:
                runner.expires_at = now + max(runner.keep_alive, 0.0)
        else:
            raise LocalProtocolError(f"ticket {ticket} is neither waiting nor granted")
        return self._settle(now)

    def load_finished(self, runner_id: int, now: float) -> list[Action]:
        runner = self._move(runner_id, _Move.LOADED)
        runner.last_used = now
        runner.expires_at = now + max(runner.keep_alive, 0.0)
        return self._settle(now)

    def load_failed(self, runner_id: int, message: str, now: float) -> list[Action]:
        runner = self._move(runner_id, _Move.LOAD_FAILED)
        actions: list[Action] = []
        for ticket in list(self._waiting.values()):
            if ticket.key == runner.key and ticket.spec == runner.spec:
                del self._waiting[ticket.ticket]
                actions.append(Fail(ticket=ticket.ticket, message=message))
        return actions + self._settle(now)

    def lost(self, runner_id: int, now: float) -> list[Action]:
        """The runner died by itself: unload it now, busy or not (see the rules)."""
        runner = self._runners.get(runner_id)
        if runner is None:
            raise LocalProtocolError(f"lost: no runner {runner_id}")
        was_ready = runner.state is RunnerState.READY
        self._move(runner_id, _Move.LOST)
        runner.expires_at = None
        lost = Unload(runner_id=runner_id, reason=UnloadReason.LOST)
        actions: list[Action] = [lost] if was_ready else []
        return actions + self._settle(now)

    def unload_finished(self, runner_id: int, now: float) -> list[Action]:
        self._move(runner_id, _Move.UNLOADED)
        return self._settle(now)

    def expire(self, now: float) -> list[Action]:
        """Unload every idle runner whose keep_alive has run out by ``now``."""
        actions: list[Action] = [
            self._unload(runner, UnloadReason.EXPIRED)
            for runner in list(self._runners.values())
            if runner.idle
            and runner.expires_at is not None
            and runner.expires_at <= now
        ]
        return actions + self._settle(now)

    def unload(self, key: str, now: float) -> list[Action]:
        """The keep_alive 0 shortcut: unload ``key`` now if idle, else when it drains.

        Like Ollama's, it sets the runner's sticky keep_alive to 0, so a request that
        is granted meanwhile without its own keep_alive does not bring it back.
        """
        runner = self._by_key.get(key)
        if runner is None or runner.state is RunnerState.UNLOADING:
            return []
        runner.keep_alive = 0.0
        return self._settle(now)

    def retire(self, key: str, now: float) -> list[Action]:
        """``key``'s model is gone: its runner serves no new grant and unloads as
        soon as it is idle (now, if it is), ready or still loading."""
        runner = self._by_key.get(key)
        if runner is None or runner.state is RunnerState.UNLOADING:
            return []
        runner.retired = True
        # keep_alive 0 is what unloads an idle runner in every pass; no grant can
        # raise it again, since a retired runner gets none.
        runner.keep_alive = 0.0
        return self._settle(now)

    # Queries ----------------------------------------------------------------

    def next_expiry(self) -> float | None:
        """When ``expire()`` next has something to do; None if nothing will expire."""
        deadlines = [
            runner.expires_at
            for runner in self._runners.values()
            if runner.idle
            and runner.expires_at is not None
            and math.isfinite(runner.expires_at)
        ]
        return min(deadlines, default=None)

    def snapshot(self) -> tuple[RunnerView, ...]:
        return tuple(
            RunnerView(
                runner_id=runner.runner_id,
                key=runner.key,
                spec=runner.spec,
                state=runner.state,
                busy=len(runner.grants),
                slots=runner.slots,
                keep_alive=runner.keep_alive,
                expires_at=runner.expires_at if runner.idle else None,
                last_used=runner.last_used,
                retired=runner.retired,
            )
            for runner in self._runners.values()
        )

    @property
    def waiting_by_key(self) -> dict[str, int]:
        """Tickets waiting, per key (``/api/ps`` shows them per model)."""
        counts: dict[str, int] = {}
        for ticket in self._waiting.values():
            counts[ticket.key] = counts.get(ticket.key, 0) + 1
        return counts

    @property
    def waiting(self) -> int:
        """How many tickets wait (granted ones excluded)."""
        return len(self._waiting)

    # The policy ---------------------------------------------------------------

    def _settle(self, now: float) -> list[Action]:
        """Run passes until one has nothing to do: every public call ends settled.

        Submit's queue-full check relies on it: in a settled state every waiting ticket
        would choose to wait again.
        """
        actions: list[Action] = []
        while step := self._pass(now):
            actions.extend(step)
        return actions

    def _pass(self, now: float) -> list[Action]:
        actions: list[Action] = []
        plan = self._new_plan()
        for ticket in list(self._waiting.values()):
            kind, runner = self._choose(ticket, plan)
            if kind is _Kind.GRANT and runner is not None:
                actions.append(self._grant(ticket, runner, now))
            elif kind is _Kind.LOAD:
                actions.append(self._start_load(ticket, now))
            elif kind is _Kind.UNLOAD and runner is not None:
                actions.append(self._unload(runner, UnloadReason.EVICTED))
        # After the grants: a waiter keeps a keep_alive 0 runner busy, as in Ollama.
        actions.extend(
            self._unload(runner)
            for runner in list(self._runners.values())
            if runner.idle and runner.keep_alive <= 0
        )
        return actions

    def _new_plan(self) -> _Plan:
        unloading = sum(
            runner.state is RunnerState.UNLOADING for runner in self._runners.values()
        )
        return _Plan(room=self._max_loaded - len(self._runners), incoming=unloading)

    def _choose(self, ticket: _Ticket, plan: _Plan) -> tuple[_Kind, _Runner | None]:
        """What this ticket should get now. Changes only ``plan``."""
        if ticket.key in plan.blocked:
            return _Kind.WAIT, None
        runner = self._by_key.get(ticket.key)
        choice: tuple[_Kind, _Runner | None]
        if runner is None:
            choice = self._make_room(plan)
        elif runner.retired:
            choice = _Kind.WAIT, None  # for it to go; the next pass loads afresh
        elif runner.spec != ticket.spec:
            choice = (_Kind.UNLOAD, runner) if runner.idle else (_Kind.WAIT, None)
        elif (
            runner.state is RunnerState.READY
            and runner.runner_id not in plan.doomed
            and len(runner.grants) < runner.slots
        ):
            choice = _Kind.GRANT, runner
        else:
            choice = _Kind.WAIT, None
        if choice[0] is not _Kind.GRANT:
            plan.blocked.add(ticket.key)
        return choice

    def _make_room(self, plan: _Plan) -> tuple[_Kind, _Runner | None]:
        if plan.room > 0:
            plan.room -= 1
            return _Kind.LOAD, None
        if plan.incoming > 0:
            plan.incoming -= 1
            return _Kind.WAIT, None
        candidates = [
            runner
            for runner in self._runners.values()
            if runner.state is RunnerState.READY and runner.runner_id not in plan.doomed
        ]
        idle = [runner for runner in candidates if not runner.grants]
        if idle:
            return _Kind.UNLOAD, min(idle, key=_lru_order)
        if candidates:
            plan.doomed.add(min(candidates, key=_lru_order).runner_id)
        return _Kind.WAIT, None

    def _grantable_now(self, new: _Ticket) -> bool:
        plan = self._new_plan()
        for ticket in self._waiting.values():
            kind, _ = self._choose(ticket, plan)
            if ticket is new:
                return kind is _Kind.GRANT
        raise AssertionError("the new ticket is in the queue")  # pragma: no cover

    # Effects on the state -------------------------------------------------------

    def _grant(self, ticket: _Ticket, runner: _Runner, now: float) -> Grant:
        del self._waiting[ticket.ticket]
        self._granted[ticket.ticket] = runner
        runner.grants.add(ticket.ticket)
        runner.last_used = now
        runner.expires_at = None
        if ticket.keep_alive is not None:
            runner.keep_alive = ticket.keep_alive
        return Grant(ticket=ticket.ticket, runner_id=runner.runner_id)

    def _start_load(self, ticket: _Ticket, now: float) -> StartLoad:
        keep_alive = ticket.keep_alive
        runner = _Runner(
            runner_id=self._next_runner_id,
            key=ticket.key,
            spec=ticket.spec,
            keep_alive=self._default_keep_alive if keep_alive is None else keep_alive,
            last_used=now,
            slots=ticket.slots,
        )
        self._next_runner_id += 1
        self._runners[runner.runner_id] = runner
        self._by_key[runner.key] = runner
        return StartLoad(runner_id=runner.runner_id, key=runner.key, spec=runner.spec)

    def _unload(
        self, runner: _Runner, reason: UnloadReason = UnloadReason.RELEASED
    ) -> Unload:
        self._move(runner.runner_id, _Move.UNLOAD)
        runner.expires_at = None
        return Unload(runner_id=runner.runner_id, reason=reason)

    def _move(self, runner_id: int, move: _Move) -> _Runner:
        runner = self._runners.get(runner_id)
        if runner is None:
            raise LocalProtocolError(f"{move.value}: no runner {runner_id}")
        try:
            after = _RUNNER_MOVES[runner.state, move]
        except KeyError:
            raise LocalProtocolError(
                f"{move.value}: runner {runner_id} is {runner.state.value}"
            ) from None
        if after is None:
            del self._runners[runner_id]
            del self._by_key[runner.key]
        else:
            runner.state = after
        return runner


def _lru_order(runner: _Runner) -> tuple[float, int]:
    return runner.last_used, runner.runner_id


def _check_keep_alive(seconds: float) -> None:
    if math.isnan(seconds):
        raise ValueError("keep_alive cannot be NaN")
