"""The runner pool: carries out the scheduler's decisions with anyio.

``gateway_core._scheduler.Scheduler`` decides who gets which runner and when runners
load and unload; this module does the waiting. It owns the timers (keep_alive expiry),
the background loads and unloads, and the per-request waits. It is written against
anyio, not trio, so that it also runs under asyncio.

How it is used::

    async with anyio.create_task_group() as tg:
        tg.start_soon(pool.run)            # loads, unloads, the expiry timer
        async with pool.lease(key, spec, keep_alive) as lease:
            ...                            # lease.runner is yours until the block ends
        await pool.aclose()                # unload everything, then
        tg.cancel_scope.cancel()           # stop run()

Every scheduler call happens on the event loop, between checkpoints, and its actions
are applied before the next checkpoint: the scheduler's state and the pool's never
disagree where another task could see it.

Decisions worth knowing:

- Loads run as tasks of ``run()``, never in the requesting task: several requests may
  wait for one load, and one of them giving up must not cancel it for the others.
- A load failure fails every request waiting for that load with ``LoadFailed``.
- An unload error is logged, never raised into a request: the runner is forgotten
  either way, so that the place it held can be reused.
- ``aclose()`` fails the queued requests, lets leases in use finish, waits for loads in
  progress (a half-cancelled load could leak a runner the pool never saw) and unloads
  everything. Bound it with a timeout if needed; cancelling ``run()`` then cancels the
  loads, and the ``load`` callable must clean up after itself when cancelled.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import anyio

from gateway_core._scheduler import (
    Action,
    Fail,
    Grant,
    Reject,
    RunnerState,
    Scheduler,
    StartLoad,
    Unload,
    UnloadReason,
)

__all__ = [
    "Lease",
    "LoadFailed",
    "PoolClosed",
    "PoolEvents",
    "QueueFull",
    "RunnerPool",
    "RunningModel",
]

logger = logging.getLogger("adapters.runner_pool")

R = TypeVar("R")

QUEUE_FULL_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"


class QueueFull(Exception):
    """Too many requests are waiting already (Ollama answers 503)."""

    def __init__(self, message: str = QUEUE_FULL_MESSAGE) -> None:
        super().__init__(message)
        self.message = message


class LoadFailed(Exception):
    """The model could not be loaded; ``message`` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PoolClosed(LoadFailed):
    """The pool is shutting down: no runner will be handed out any more."""


@dataclass(frozen=True, slots=True)
class Lease(Generic[R]):
    """A runner, yours until the ``lease()`` block ends.

    ``load_duration`` is the seconds from the request to the grant when the runner was
    loaded meanwhile (queueing included, as Ollama's ``load_duration``); 0 if it was
    already loaded.
    """

    runner: R
    load_duration: float


@dataclass(frozen=True, slots=True)
class RunningModel(Generic[R]):
    """A loaded runner, for ``/api/ps``.

    ``expires_at_wall`` is Unix time; ``math.inf`` when keep_alive is forever. A busy
    runner is shown as expiring one keep_alive from now, as Ollama does.
    """

    key: str
    spec: Hashable
    expires_at_wall: float
    busy: int
    """Slots in use."""
    slots: int
    runner: R
    waiting: int = 0
    """Requests queued for this runner's key."""


class PoolEvents(Protocol):
    """What the pool reports as it happens (the server's metrics listen)."""

    def loaded(self, key: str, seconds: float) -> None: ...

    def load_failed(self, key: str) -> None: ...

    def unloaded(self, key: str, reason: UnloadReason) -> None: ...


@dataclass(slots=True)
class _Waiter:
    submitted: float
    done: anyio.Event
    runner_id: int | None = None
    load_duration: float = 0.0
    error: Exception | None = None

    @property
    def waiting(self) -> bool:
        return self.runner_id is None and self.error is None


class RunnerPool(Generic[R]):
    """Runners of type ``R``, loaded and unloaded as the scheduler decides.

    ``load(key, spec)`` makes a runner and ``unload(runner)`` frees it; both are
    awaited in tasks of ``run()``. ``clock`` must be the event loop's clock (it
    measures the scheduler's time and the expiry timer's deadlines); ``wall_clock``
    only converts expiry times for ``running()``.
    """

    def __init__(
        self,
        *,
        scheduler: Scheduler,
        load: Callable[[str, Hashable], Awaitable[R]],
        unload: Callable[[R], Awaitable[None]],
        clock: Callable[[], float] = anyio.current_time,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._scheduler = scheduler
        self._load = load
        self._unload = unload
        self._clock = clock
        self._wall_clock = wall_clock
        self._tickets = itertools.count(1)
        self._waiters: dict[int, _Waiter] = {}  # every ticket the scheduler holds
        self._runners: dict[int, R] = {}
        self._keys: dict[int, str] = {}
        self._loaded_at: dict[int, float] = {}
        self._unloaded: dict[int, anyio.Event] = {}
        self._jobs: list[StartLoad | Unload] = []
        # anyio events belong to a running event loop: created in run(), not here.
        self._wake: anyio.Event | None = None
        self._running = False
        self._closed = False
        self.events: PoolEvents | None = None
        """Told of loads and unloads, when set."""

    # Requests ------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lease(
        self, key: str, spec: Hashable, keep_alive: float | None, *, slots: int = 1
    ) -> AsyncIterator[Lease[R]]:
        """Wait for a slot of a runner for ``key`` loaded as ``spec`` (with ``slots``
        slots, if this request loads it); release it on exit.

        Raises ``QueueFull`` at once when the queue is full, ``LoadFailed`` when the
        load failed (``PoolClosed`` when the pool closed). A request cancelled while
        it waits leaves the queue.
        """
        if self._closed:
            raise PoolClosed("the runner pool is closed")
        ticket = next(self._tickets)
        waiter = _Waiter(submitted=self._clock(), done=anyio.Event())
        self._waiters[ticket] = waiter
        try:
            self._apply(
                self._scheduler.submit(
                    ticket, key, spec, keep_alive, waiter.submitted, slots=slots
                )
            )
            await waiter.done.wait()
            if waiter.error is not None:
                raise waiter.error
            assert waiter.runner_id is not None
            yield Lease(
                runner=self._runners[waiter.runner_id],
                load_duration=waiter.load_duration,
            )
        finally:
            if self._waiters.pop(ticket, None) is not None:
                self._apply(self._scheduler.release(ticket, self._clock()))

    async def unload(self, key: str) -> None:
        """The keep_alive 0 shortcut: unload ``key`` now if it is idle.

        Returns once it is unloaded, or at once if it is busy (it then unloads when
        its last lease ends) or not loaded.
        """
        self._apply(self._scheduler.unload(key, self._clock()))
        for view in self._scheduler.snapshot():
            if view.key == key and view.state is RunnerState.UNLOADING:
                await self._unloaded[view.runner_id].wait()

    def retire(self, key: str) -> None:
        """``key``'s model was deleted: its runner takes no new request and unloads
        once idle (now, if it is); ``running()`` no longer shows it. A later request
        for ``key`` waits for it to go, then loads afresh. Does not wait."""
        self._apply(self._scheduler.retire(key, self._clock()))

    def lost(self, runner: R) -> None:
        """``runner`` died by itself: it is unloaded now, busy or not (its requests
        fail on their own), and the next request for its model loads it afresh."""
        for runner_id, known in self._runners.items():
            if known is runner:
                self._apply(self._scheduler.lost(runner_id, self._clock()))
                return

    def waiting(self) -> int:
        """Requests waiting for a runner (what ``max_queue`` bounds)."""
        return self._scheduler.waiting

    def running(self) -> list[RunningModel[R]]:
        """The loaded runners that take requests, in load order (a retired one,
        finishing its last requests, is on its way out)."""
        now, wall = self._clock(), self._wall_clock()
        waiting = self._scheduler.waiting_by_key
        models = []
        for view in self._scheduler.snapshot():
            if view.state is not RunnerState.READY or view.retired:
                continue
            if view.expires_at is None:
                expires = wall + max(view.keep_alive, 0.0)
            else:
                expires = wall + (view.expires_at - now)
            models.append(
                RunningModel(
                    key=view.key,
                    spec=view.spec,
                    expires_at_wall=expires,
                    busy=view.busy,
                    slots=view.slots,
                    runner=self._runners[view.runner_id],
                    waiting=waiting.get(view.key, 0),
                )
            )
        return models

    # The background task ----------------------------------------------------------

    async def run(self) -> None:
        """Carry out loads and unloads and fire keep_alive expiry; cancel to stop.

        Stop it only after ``aclose()``: runners still loaded then are not unloaded.
        """
        if self._running:
            raise RuntimeError("RunnerPool.run() is already running")
        self._running = True
        try:
            async with anyio.create_task_group() as tg:
                while True:
                    self._wake = anyio.Event()
                    for job in self._jobs:
                        if isinstance(job, StartLoad):
                            tg.start_soon(self._carry_out_load, job)
                        else:
                            tg.start_soon(self._carry_out_unload, job)
                    self._jobs.clear()
                    deadline = self._scheduler.next_expiry()
                    delay = math.inf if deadline is None else deadline - self._clock()
                    with anyio.move_on_after(delay):
                        await self._wake.wait()
                    self._apply(self._scheduler.expire(self._clock()))
        finally:
            self._running = False
            self._closed = True
            self._wake = None
            for ticket, waiter in list(self._waiters.items()):
                if waiter.waiting:
                    del self._waiters[ticket]
                    waiter.error = PoolClosed("the runner pool stopped")
                    waiter.done.set()
            for event in self._unloaded.values():
                event.set()

    async def aclose(self) -> None:
        """Shut down: fail queued requests, then unload every runner.

        Waits for leases in use to end and for loads in progress to finish. Needs
        ``run()``: if it is not running, whatever is still loaded stays loaded (and is
        logged).
        """
        self._closed = True
        now = self._clock()
        # Last first: a ticket leaving never changes what an earlier one gets, so no
        # queued request is granted while the queue is being emptied.
        for ticket, waiter in reversed(list(self._waiters.items())):
            if waiter.waiting:
                del self._waiters[ticket]
                waiter.error = PoolClosed("the runner pool is closing")
                waiter.done.set()
                self._apply(self._scheduler.release(ticket, now))
        while views := self._scheduler.snapshot():
            if not self._running:
                keys = ", ".join(view.key for view in views)
                logger.warning("run() is not running; left loaded: %s", keys)
                return
            for view in views:
                self._apply(self._scheduler.unload(view.key, self._clock()))
                if view.runner_id not in self._unloaded:
                    self._unloaded[view.runner_id] = anyio.Event()
            await self._unloaded[views[0].runner_id].wait()

    # Carrying out actions -----------------------------------------------------------

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Grant):
                self._grant(action)
            elif isinstance(action, Reject):
                self._finish_waiter(action.ticket, QueueFull())
            elif isinstance(action, Fail):
                self._finish_waiter(action.ticket, LoadFailed(action.message))
            else:
                if isinstance(action, StartLoad):
                    self._keys[action.runner_id] = action.key
                elif action.runner_id not in self._unloaded:
                    self._unloaded[action.runner_id] = anyio.Event()
                self._jobs.append(action)
        if self._wake is not None:
            self._wake.set()  # new jobs, or an expiry armed or moved

    def _grant(self, action: Grant) -> None:
        waiter = self._waiters[action.ticket]
        waiter.runner_id = action.runner_id
        now = self._clock()
        if self._loaded_at[action.runner_id] >= waiter.submitted:
            waiter.load_duration = now - waiter.submitted
        waiter.done.set()

    def _finish_waiter(self, ticket: int, error: Exception) -> None:
        waiter = self._waiters.pop(ticket)
        waiter.error = error
        waiter.done.set()

    async def _carry_out_load(self, job: StartLoad) -> None:
        started = self._clock()
        try:
            runner = await self._load(job.key, job.spec)
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            logger.warning("loading %s failed: %s", job.key, message)
            if self.events is not None:
                self.events.load_failed(job.key)
            del self._keys[job.runner_id]
            self._apply(
                self._scheduler.load_failed(job.runner_id, message, self._clock())
            )
            self._gone(job.runner_id)
            return
        now = self._clock()
        logger.info("loaded %s in %.2fs", job.key, now - started)
        if self.events is not None:
            self.events.loaded(job.key, now - started)
        self._runners[job.runner_id] = runner
        self._loaded_at[job.runner_id] = now
        self._apply(self._scheduler.load_finished(job.runner_id, now))

    async def _carry_out_unload(self, job: Unload) -> None:
        key = self._keys.pop(job.runner_id)
        runner = self._runners.pop(job.runner_id)
        del self._loaded_at[job.runner_id]
        try:
            await self._unload(runner)
        except Exception:
            logger.exception("unloading %s failed; forgetting it anyway", key)
        else:
            logger.info("unloaded %s (%s)", key, job.reason.value)
        if self.events is not None:
            self.events.unloaded(key, job.reason)
        self._apply(self._scheduler.unload_finished(job.runner_id, self._clock()))
        self._gone(job.runner_id)

    def _gone(self, runner_id: int) -> None:
        if (event := self._unloaded.pop(runner_id, None)) is not None:
            event.set()
