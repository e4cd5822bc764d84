"""The runner pool: waiting, loading, expiry and shutdown, on stand-in runners.

The runners here are stand-ins (``StubRunner``), made and freed by a ``Backend`` that
records every call and can hold a load at a gate or make it fail. The real llama.cpp
runner has its own tests (tests/adapters/runner/); what is tested here is the pool's
policy and its waiting: who gets a runner, when loads and unloads happen, what a
request sees when things fail.

Time is trio's ``MockClock`` with autojump: sleeping jumps virtual time to the next
deadline, so keep_alive expiry is checked to the exact second, with no real waiting
and nothing that depends on the machine's speed. A watchdog far in virtual time turns
a would-be hang into a failure.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable
from dataclasses import dataclass

import anyio
import pytest
import trio
import trio.testing

from gateway_core._scheduler import Scheduler
from gateway_core_adapters.runner_pool import (
    LoadFailed,
    PoolClosed,
    QueueFull,
    RunnerPool,
)

LOAD_SECONDS = 2.0
HANG = 1e12  # virtual seconds: a test still waiting then has hung


@dataclass(eq=False)
class StubRunner:
    key: str
    spec: Hashable
    unloaded: bool = False


class Backend:
    """Loads and unloads stand-in runners, and remembers it did."""

    def __init__(self, *, load_seconds: float = LOAD_SECONDS) -> None:
        self.load_seconds = load_seconds
        self.calls: list[str] = []
        self.gates: dict[str, anyio.Event] = {}
        self.failures: dict[str, str] = {}
        self.unload_error: str | None = None
        self._changed: anyio.Event | None = None

    async def load(self, key: str, spec: Hashable) -> StubRunner:
        self._record(f"load {key}")
        if key in self.gates:
            await self.gates[key].wait()
        await anyio.sleep(self.load_seconds)
        if key in self.failures:
            raise RuntimeError(self.failures[key])
        return StubRunner(key, spec)

    async def unload(self, runner: StubRunner) -> None:
        self._record(f"unload {runner.key}")
        runner.unloaded = True
        if self.unload_error is not None:
            raise RuntimeError(self.unload_error)

    async def wait_for(self, call: str) -> None:
        """Return once ``call`` has happened (now or later)."""
        while call not in self.calls:
            self._changed = self._changed or anyio.Event()
            await self._changed.wait()

    def _record(self, call: str) -> None:
        self.calls.append(call)
        if self._changed is not None:
            self._changed.set()
            self._changed = None


def start_watchdog(nursery: trio.Nursery) -> None:
    """Turn a hang (every task waiting on something that never comes) into a failure.

    With the autojump clock, virtual time jumps to this deadline as soon as nothing
    else can run, so a hung test fails at once instead of blocking the run.
    """

    async def bark() -> None:
        await trio.sleep(HANG)
        raise AssertionError("the test hung")

    nursery.start_soon(bark)


def start_pool(
    nursery: trio.Nursery,
    backend: Backend,
    *,
    max_loaded: int = 2,
    max_queue: int = 4,
    default_keep_alive: float = 300.0,
    wall_clock: float = 1_700_000_000.0,
) -> RunnerPool[StubRunner]:
    pool = RunnerPool(
        scheduler=Scheduler(
            max_loaded=max_loaded,
            max_queue=max_queue,
            default_keep_alive=default_keep_alive,
        ),
        load=backend.load,
        unload=backend.unload,
        wall_clock=lambda: wall_clock + trio.current_time(),
    )
    nursery.start_soon(pool.run)
    start_watchdog(nursery)
    return pool


async def hold(
    pool: RunnerPool[StubRunner],
    key: str,
    until: trio.Event,
    *,
    keep_alive: float | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Take a lease and keep it until ``until`` is set; started once granted."""
    async with pool.lease(key, "spec", keep_alive):
        task_status.started()
        await until.wait()


async def settle() -> None:
    """Let every task run until all are blocked (virtual time moves on, harmlessly)."""
    await trio.sleep(0.001)


@pytest.fixture
def backend() -> Backend:
    return Backend()


# Loading and reuse ---------------------------------------------------------------


async def test_the_first_lease_loads_and_later_ones_reuse_the_runner(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, backend: Backend
) -> None:
    pool = start_pool(nursery, backend)
    async with pool.lease("m", "spec", None) as first:
        assert first.runner.key == "m"
        assert first.load_duration == LOAD_SECONDS
    async with pool.lease("m", "spec", None) as second:
        assert second.runner is first.runner
        assert second.load_duration == 0.0
    assert backend.calls == ["load m"]


async def test_requests_waiting_for_one_load_share_it(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, backend: Backend
) -> None:
    pool = start_pool(nursery, backend)
    runners: list[StubRunner] = []

    async def use() -> None:
        async with pool.lease("m", "spec", None) as lease:
            runners.append(lease.runner)

    async with trio.open_nursery() as inner:
        inner.start_soon(use)
        inner.start_soon(use)
    assert len(runners) == 2
    assert runners[0] is runners[1]
    assert backend.calls == ["load m"]


async def test_no_room_evicts_the_idle_runner(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, backend: Backend
) -> None:
    pool = start_pool(nursery, backend, max_loaded=1)
    async with pool.lease("a", "spec", None) as a:
        pass
    async with pool.lease("b", "spec", None):
        assert a.runner.unloaded
    assert backend.calls == ["load a", "unload a", "load b"]


# keep_alive -----------------------------------------------------------------------


async def test_an_expired_keep_alive_unloads_with_no_request_arriving(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, backend: Backend
) -> None:
    pool = start_pool(nursery, backend)
    async with pool.lease("m", "spec", 60.0) as lease:
        pass
    released = trio.current_time()
    await trio.sleep(59.5)
    assert not lease.runner.unloaded
    assert [model.key for model in pool.running()] == ["m"]
    await backend.wait_for("unload m")
    assert trio.current_time() == released + 60.0
    assert backend.calls == ["load m", "unload m"]
    assert pool.running() == []


async def test_keep_alive_zero_unloads_when_the_lease_ends(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, backend: Backend
) -> None:
    pool = start_pool(nursery, backend)
    async with pool.lease("m", "spec", 0.0) as lease:
        await settle()
        assert not lease.runner.unloaded
    released = trio.current_time()
    await backend.wait_for("unload m")
    assert trio.current_time() == released
    assert lease.runner.unloaded


async def test_forever_never_expires(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, backend: Backend
) -> None:
    pool = start_pool(nursery, backend)
    async with pool.lease("m", "spec", math.inf) as lease:
        pass
    await trio.sleep(10.0**9)
    assert not lease.runner.unloaded
    (model,) = pool.running()
    assert model.expires_at_wall == math.inf


async def test_running_reports_wall_clock_expiry_and_busy(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, backend: Backend
) -> None:
    wall = 1_700_000_000.0
    pool = start_pool(nursery, backend, default_keep_alive=300.0, wall_clock=wall)
    async with pool.lease("m", "spec", None) as lease:
        (busy,) = pool.running()
        assert busy.busy
        assert busy.runner is lease.runner
        # A busy runner "expires" one keep_alive from now, as Ollama shows it.
        assert busy.expires_at_wall == wall + trio.current_time() + 300.0
    released = trio.current_time()
    await trio.sleep(100.0)
    (idle,) = pool.running()
    assert not idle.busy
    assert (idle.key, idle.spec) == ("m", "spec")
    assert idle.expires_at_wall == wall + released + 300.0


# The unload shortcut --------------------------------------------------------------


async def test_unload_of_an_idle_model_returns_once_it_is_unloaded(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, backend: Backend
) -> None:
    pool = start_pool(nursery, backend)
    async with pool.lease("m", "spec", None) as lease:
        pass
    await pool.unload("m")
    assert lease.runner.unloaded
    await pool.unload("never-loaded")
    assert backend.calls == ["load m", "unload m"]


async def test_unload_of_a_busy_model_is_deferred_to_the_end_of_its_lease(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, backend: Backend
) -> None:
    pool = start_pool(nursery, backend)
    async with pool.lease("m", "spec", None) as lease:
        await pool.unload("m")
        await settle()
        assert not lease.runner.unloaded
    await backend.wait_for("unload m")


# Retiring (the model was deleted) ----------------------------------------------------


async def test_a_retired_idle_runner_is_gone_from_running_and_unloaded(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, backend: Backend
) -> None:
    pool = start_pool(nursery, backend)
    async with pool.lease("m", "spec", None) as lease:
        pass
    pool.retire("m")
    assert pool.running() == []  # at once, before the unload has run
    await backend.wait_for("unload m")
    assert lease.runner.unloaded
    pool.retire("never-loaded")


async def test_a_retired_busy_runner_finishes_its_lease_and_is_never_reused(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, backend: Backend
) -> None:
    pool = start_pool(nursery, backend)
    runners: list[StubRunner] = []
    granted = trio.Event()

    async def later() -> None:
        async with pool.lease("m", "spec", None) as lease:
            runners.append(lease.runner)
            granted.set()

    async with pool.lease("m", "spec", None) as first:
        pool.retire("m")
        assert pool.running() == []
        nursery.start_soon(later)
        await settle()
        assert backend.calls == ["load m"]  # still in use: the request finishes
        assert not granted.is_set()  # the new request waits for a runner of its own
    await granted.wait()
    assert runners[0] is not first.runner
    assert first.runner.unloaded
    assert backend.calls == ["load m", "unload m", "load m"]
    (running,) = pool.running()
    assert running.runner is runners[0]


# The queue ----------------------------------------------------------------------------


async def test_the_request_past_max_queue_gets_queue_full(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, backend: Backend
) -> None:
    pool = start_pool(nursery, backend, max_queue=1)
    done = trio.Event()
    await nursery.start(hold, pool, "m", done)
    nursery.start_soon(hold, pool, "m", done)  # waits for the slot: queued
    await settle()
    with pytest.raises(QueueFull, match="maximum pending requests exceeded"):
        async with pool.lease("other", "spec", None):
            pass  # pragma: no cover
    done.set()


async def test_a_cancelled_waiter_leaves_the_queue(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, backend: Backend
) -> None:
    pool = start_pool(nursery, backend, max_loaded=1, max_queue=1)
    done = trio.Event()
    await nursery.start(hold, pool, "a", done)
    with trio.move_on_after(5.0) as waited:
        async with pool.lease("b", "spec", None):
            pass  # pragma: no cover
    assert waited.cancelled_caught
    # Its place in the queue is free again, and nothing was loaded for it.
    next_one = trio.Event()
    nursery.start_soon(hold, pool, "b", next_one)
    await settle()
    done.set()
    await backend.wait_for("load b")
    assert backend.calls == ["load a", "unload a", "load b"]
    next_one.set()


# Failures ---------------------------------------------------------------------------


async def test_a_load_failure_fails_every_waiter_with_its_message(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    backend: Backend,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = start_pool(nursery, backend)
    backend.failures["m"] = "not a GGUF file"
    errors: list[str] = []

    async def use() -> None:
        with pytest.raises(LoadFailed) as caught:
            async with pool.lease("m", "spec", None):
                pass  # pragma: no cover
        errors.append(caught.value.message)

    with caplog.at_level(logging.WARNING, logger="adapters.runner_pool"):
        async with trio.open_nursery() as inner:
            inner.start_soon(use)
            inner.start_soon(use)
    assert errors == ["not a GGUF file", "not a GGUF file"]
    assert backend.calls == ["load m"]
    assert "loading m failed: not a GGUF file" in caplog.text
    # The next request tries again.
    del backend.failures["m"]
    async with pool.lease("m", "spec", None) as lease:
        assert lease.runner.key == "m"


async def test_an_unload_error_is_logged_and_the_runner_forgotten(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    backend: Backend,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = start_pool(nursery, backend, max_loaded=1)
    backend.unload_error = "device lost"
    with caplog.at_level(logging.ERROR, logger="adapters.runner_pool"):
        async with pool.lease("a", "spec", 0.0):
            pass  # the unload that fails starts here; nothing is raised
        await backend.wait_for("unload a")
        await settle()
    assert "unloading a failed" in caplog.text
    assert "device lost" in caplog.text
    assert pool.running() == []
    # Its place is free: the next model loads without waiting for anything.
    async with pool.lease("b", "spec", None) as lease:
        assert lease.runner.key == "b"


# Shutdown ---------------------------------------------------------------------------


async def test_aclose_waits_for_leases_then_unloads_everything(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, backend: Backend
) -> None:
    pool = start_pool(nursery, backend, default_keep_alive=math.inf)
    done = trio.Event()
    await nursery.start(hold, pool, "busy", done)
    async with pool.lease("idle", "spec", None) as idle:
        pass
    closed = trio.Event()

    async def close() -> None:
        await pool.aclose()
        closed.set()

    nursery.start_soon(close)
    await settle()
    assert idle.runner.unloaded
    assert not closed.is_set()
    with pytest.raises(PoolClosed):
        async with pool.lease("idle", "spec", None):
            pass  # pragma: no cover
    done.set()
    await closed.wait()
    # The idle runner went first, without waiting for the busy one.
    assert backend.calls == ["load busy", "load idle", "unload idle", "unload busy"]


async def test_a_load_in_progress_at_close_is_unloaded_when_it_finishes(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, backend: Backend
) -> None:
    pool = start_pool(nursery, backend)
    backend.gates["m"] = gate = anyio.Event()
    outcome: list[BaseException] = []

    async def wait_for_load() -> None:
        try:
            async with pool.lease("m", "spec", None):
                pass  # pragma: no cover
        except LoadFailed as exc:
            outcome.append(exc)

    nursery.start_soon(wait_for_load)
    await backend.wait_for("load m")
    closing = trio.Event()

    async def close() -> None:
        await pool.aclose()
        closing.set()

    nursery.start_soon(close)
    await settle()
    # The waiter is told at once; the load itself is not abandoned half-way.
    assert [type(exc) for exc in outcome] == [PoolClosed]
    assert not closing.is_set()
    gate.set()
    await closing.wait()
    assert backend.calls == ["load m", "unload m"]


async def test_a_stopped_pool_fails_its_waiters(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, backend: Backend
) -> None:
    backend.gates["m"] = anyio.Event()
    pool: RunnerPool[StubRunner] = RunnerPool(
        scheduler=Scheduler(max_loaded=1, max_queue=1, default_keep_alive=1.0),
        load=backend.load,
        unload=backend.unload,
    )
    run_scope = trio.CancelScope()

    async def run_pool() -> None:
        with run_scope:
            await pool.run()

    async def stop_once_loading() -> None:
        await backend.wait_for("load m")
        run_scope.cancel()

    nursery.start_soon(run_pool)
    nursery.start_soon(stop_once_loading)
    start_watchdog(nursery)
    with pytest.raises(PoolClosed, match="stopped"):
        async with pool.lease("m", "spec", None):
            pass  # pragma: no cover
    with pytest.raises(PoolClosed, match="closed"):
        async with pool.lease("m", "spec", None):
            pass  # pragma: no cover


# Not only trio ----------------------------------------------------------------------


def test_the_pool_runs_under_asyncio() -> None:
    async def main() -> list[str]:
        backend = Backend(load_seconds=0.0)
        pool: RunnerPool[StubRunner] = RunnerPool(
            scheduler=Scheduler(max_loaded=1, max_queue=2, default_keep_alive=0.0),
            load=backend.load,
            unload=backend.unload,
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            with anyio.fail_after(30):  # guards against a hang; never reached
                async with pool.lease("a", "spec", None):
                    pass
                async with pool.lease("b", "spec", None):
                    pass
                await pool.aclose()
            tg.cancel_scope.cancel()
        return backend.calls

    calls = anyio.run(main, backend="asyncio")
    assert calls == ["load a", "unload a", "load b", "unload b"]
