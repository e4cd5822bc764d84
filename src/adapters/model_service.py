"""Performs the core's work effects: the model store on disk, and models in runners.

``ModelService`` is shared by every exchange: the store, the runner pool (whose policy
is the core's ``Scheduler``) and what is known about each loaded model. Each loaded
model is a runner process (``adapters.runner``), started and stopped by the pool, its
tasks living in the service's task group (``run``). Each exchange gets its own
``ModelWork`` (``model_work``), the ``WorkPerformer`` the driver talks to. Models
served elsewhere go through the service's ``Upstreams`` (``adapters.upstream``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc
import anyio.to_thread

from gateway_core import (
    ModelRecord,
    ResponseStore,
    RunningList,
    RunningModel,
    UpstreamTable,
)
from gateway_core._scheduler import Scheduler, UnloadReason

from .metrics import GatewayMetrics
from .model_store import ModelStore
from .model_work import ModelWork, runner_key
from .registry import Registry
from .runner.client import RunnerProcess
from .runner.values import (
    LoadParams,
)
from .runner_pool import RunnerPool
from .upstream import Upstreams

__all__ = ["ModelService", "ModelWork", "RunnerOptions"]


@dataclass(frozen=True, slots=True)
class _Loaded:
    """What /api/ps shows of a runner: the model it was loaded for."""

    record: ModelRecord
    context_length: int


async def _unload(runner: RunnerProcess) -> None:
    await runner.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class RunnerOptions:
    """How the service starts runner processes.

    ``load_timeout``: seconds a model load may take before it is an error (the
    process is killed). ``compile_timeout``: seconds a structured-output constraint
    may take to compile before its request gets a 400. ``log_level``: the least
    severe of the runners' log records that reach the server's log.
    """

    load_timeout: float = 300.0
    compile_timeout: float = 10.0
    log_level: int = logging.INFO


class ModelService:
    """The store and the runners, for all exchanges of one server."""

    def __init__(
        self,
        store: ModelStore,
        *,
        scheduler: Scheduler,
        runners: RunnerOptions | None = None,
        upstreams: UpstreamTable | None = None,
        remotes: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.upstreams = Upstreams(upstreams or UpstreamTable(), remotes=remotes)
        """The upstream pools and remote models' hosts: HTTP calls, routing, health."""
        self.runner_options = runners or RunnerOptions()
        self.pool: RunnerPool[RunnerProcess] = RunnerPool(
            scheduler=scheduler, load=self._load, unload=_unload
        )
        self._loaded: dict[str, _Loaded] = {}
        self._names: dict[str, str] = {}  # pool key -> the model name that used it
        self._tasks: anyio.abc.TaskGroup | None = None
        self.registry = Registry(store)
        """Pulls and pushes: the registry client and the blob transfers."""
        self.responses = ResponseStore()
        """Stored responses of ``/v1/responses`` (``previous_response_id``): in
        memory, bounded by count and bytes, gone when the server stops."""
        self.metrics: GatewayMetrics | None = None
        """What ``GET /metrics`` shows; None answers it with 404."""

    def observe(self, metrics: GatewayMetrics) -> None:
        """Count loads and unloads, and show the queue and slots, in ``metrics``."""
        self.metrics = metrics
        metrics.watch(self.running, self.pool.waiting)
        self.pool.events = _PoolMetrics(metrics, self.name_of)

    def name_of(self, key: str) -> str:
        """The model name a pool key was last used under (for logs and metrics)."""
        return self._names.get(key, key)

    @classmethod
    def open(
        cls,
        models: Path,
        *,
        keep_alive: float,
        max_loaded_models: int,
        max_queue: int,
        runners: RunnerOptions | None = None,
        upstreams: UpstreamTable | None = None,
        remotes: Sequence[str] = (),
    ) -> ModelService:
        scheduler = Scheduler(
            max_loaded=max_loaded_models,
            max_queue=max_queue,
            default_keep_alive=keep_alive,
        )
        return cls(
            ModelStore(models),
            scheduler=scheduler,
            runners=runners,
            upstreams=upstreams,
            remotes=remotes,
        )

    async def run(self) -> None:
        """Keep the pool's timers and loads, and the runners' tasks, going; cancel
        to stop (after ``aclose``)."""
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            tasks.start_soon(self.upstreams.watch)
            try:
                await self.pool.run()
            finally:
                self._tasks = None

    async def _load(self, key: str, spec: Hashable) -> RunnerProcess:
        assert isinstance(spec, LoadParams)  # the only spec ModelWork passes
        if self._tasks is None:
            raise RuntimeError("ModelService.run() is not running")
        options = self.runner_options
        return await RunnerProcess.start(
            spec,
            task_group=self._tasks,
            load_timeout=options.load_timeout,
            compile_timeout=options.compile_timeout,
            log_level=options.log_level,
            on_exit=self._runner_died,
        )

    def _runner_died(self, runner: RunnerProcess) -> None:
        """A runner ended without being asked: its requests have failed already;
        the pool forgets it, and the next request loads the model again."""
        self.pool.lost(runner)

    async def aclose(self) -> None:
        """Unload every model (shutdown)."""
        await self.pool.aclose()
        await self.registry.aclose()
        await self.upstreams.aclose()

    def transfer_tasks(self) -> anyio.abc.TaskGroup:
        """Where blob transfers run: they outlive one ``next_result`` call."""
        if self._tasks is None:
            raise RuntimeError("the model service is not running")
        return self._tasks

    def work(self) -> ModelWork:
        """A performer for one exchange."""
        return ModelWork(self)

    def running(self) -> RunningList:
        # A model loaded both to generate and to embed is one model to a client:
        # shown once, with the later of its two expiry times.
        by_name: dict[str, RunningModel] = {}
        for entry in self.pool.running():
            loaded = self._loaded.get(entry.key)
            if loaded is None:
                continue
            model = RunningModel(
                record=loaded.record,
                expires_at=entry.expires_at_wall,
                context_length=loaded.context_length,
                slots_busy=entry.busy,
                slots_total=entry.slots,
                waiting=entry.waiting,
            )
            seen = by_name.get(loaded.record.name)
            if seen is None or seen.expires_at < model.expires_at:
                by_name[loaded.record.name] = model
        return RunningList(
            models=tuple(by_name.values()),
            # Copies: the router's own states change as requests come and go.
            upstreams=tuple(
                dataclasses.replace(state) for state in self.upstreams.router.states()
            ),
        )

    def name_model(self, key: str, name: str) -> None:
        self._names[key] = name

    def remember(self, key: str, record: ModelRecord, context_length: int) -> None:
        self._loaded[key] = _Loaded(record, context_length)

    def retire(self, model_digest: str) -> None:
        """A model was deleted: retire the runners of its file, for both purposes.

        /api/ps stops showing them at once; a request still using one finishes, and
        the runner then unloads. A runner is keyed by file, not name, and was loaded
        with the deleted model's settings, so another model sharing the file (a
        copy) loads afresh on its next request too: a reload is cheaper than a
        runner that outlives its model, or one reused by a model created again
        under the same name.
        """
        for embedding in (False, True):
            key = runner_key(model_digest, embedding=embedding)
            self.pool.retire(key)
            self._loaded.pop(key, None)


class _PoolMetrics:
    """The pool's events, counted under model names."""

    def __init__(self, metrics: GatewayMetrics, name_of: Callable[[str], str]) -> None:
        self._metrics = metrics
        self._name_of = name_of

    def loaded(self, key: str, seconds: float) -> None:
        self._metrics.loaded(self._name_of(key), seconds)

    def load_failed(self, key: str) -> None:
        self._metrics.load_failed(self._name_of(key))

    def unloaded(self, key: str, reason: UnloadReason) -> None:
        self._metrics.unloaded(self._name_of(key), reason)
