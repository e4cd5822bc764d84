"""``GatewayMetrics``: every metric, defined once, with its help text and buckets."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway_core import MetricsText, RunningList
from gateway_core._scheduler import UnloadReason

__all__ = ["GatewayMetrics"]

# Request durations span a 404 (tens of microseconds) to a long generation (minutes).
_REQUEST_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
# The first token: a prompt evaluated on a warm model up to a cold load.
_FIRST_TOKEN_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
# One token: 0.1 ms for the demo model, 10 to 100 ms for a real one on a CPU.
_TOKEN_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
)  # fmt: skip
# The gateway's own work, which should stay far below a millisecond.
_OVERHEAD_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
)  # fmt: skip
_LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_SCHEMA_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 10.0)


class GatewayMetrics:
    """The metrics of one server, on their own ``CollectorRegistry``.

    ``watch(running, waiting, name_of)`` adds the gauges read at scrape time (the
    queue and the slots), from the model service.
    """

    def __init__(self) -> None:
        registry = self.registry = CollectorRegistry()
        self.request_duration = Histogram(
            "gateway_http_request_duration_seconds",
            "Time from a request's head to its last byte, by route, method, status.",
            ["route", "method", "status"],
            buckets=_REQUEST_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "gateway_http_requests_in_flight",
            "Requests being answered now.",
            registry=registry,
        )
        self.errors = Counter(
            "gateway_http_errors",
            "Error responses (4xx and 5xx), by status and API dialect.",
            ["status", "dialect"],
            registry=registry,
        )
        self.first_token = Histogram(
            "gateway_time_to_first_token_seconds",
            "Time from a request's head to its first generated token, by model.",
            ["model"],
            buckets=_FIRST_TOKEN_BUCKETS,
            registry=registry,
        )
        self.per_token = Histogram(
            "gateway_time_per_output_token_seconds",
            "Mean time between a request's generated tokens after the first.",
            ["model"],
            buckets=_TOKEN_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "gateway_prompt_tokens",
            "Prompt tokens evaluated (or embedded), by model.",
            ["model"],
            registry=registry,
        )
        self.generated_tokens = Counter(
            "gateway_generated_tokens",
            "Tokens generated, by model.",
            ["model"],
            registry=registry,
        )
        self.cached_tokens = Counter(
            "gateway_prompt_cache_tokens",
            "Prompt tokens reused from the runner's prompt cache, by model.",
            ["model"],
            registry=registry,
        )
        self.embedded_inputs = Counter(
            "gateway_embedded_inputs",
            "Inputs embedded, by model.",
            ["model"],
            registry=registry,
        )
        self.load_duration = Histogram(
            "gateway_model_load_duration_seconds",
            "Time to load a model's runner, by model.",
            ["model"],
            buckets=_LOAD_BUCKETS,
            registry=registry,
        )
        self.load_failures = Counter(
            "gateway_model_load_failures",
            "Model loads that failed, by model.",
            ["model"],
            registry=registry,
        )
        self.unloads = Counter(
            "gateway_model_unloads",
            "Runners unloaded, by model and reason: expired, evicted (room for "
            "another), released (keep_alive 0, deleted, stopping), lost (crashed).",
            ["model", "reason"],
            registry=registry,
        )
        self.schema_check = Histogram(
            "gateway_schema_check_duration_seconds",
            "Time for the constraint engine to accept or refuse a schema.",
            buckets=_SCHEMA_BUCKETS,
            registry=registry,
        )
        self.schema_refusals = Counter(
            "gateway_schema_refusals",
            "Schemas the constraint engine refused (the request got a 400).",
            registry=registry,
        )
        self.head_to_work = Histogram(
            "gateway_overhead_head_to_work_seconds",
            "The gateway's own time from a request's head to its first work "
            "(model lookup, load, tokenize...), body reading included.",
            buckets=_OVERHEAD_BUCKETS,
            registry=registry,
        )
        self.token_to_write = Histogram(
            "gateway_overhead_token_to_write_seconds",
            "The gateway's own time from a token leaving the runner to its bytes "
            "being written to the client (one sample per write).",
            buckets=_OVERHEAD_BUCKETS,
            registry=registry,
        )

    def watch(
        self,
        running: Callable[[], RunningList],
        waiting: Callable[[], int],
    ) -> None:
        """Report the queue, the slots and the upstreams from these, read at each
        scrape."""
        self.registry.register(_QueueCollector(running, waiting))
        self.registry.register(_UpstreamCollector(running))

    def loaded(self, model: str, seconds: float) -> None:
        self.load_duration.labels(model).observe(seconds)

    def load_failed(self, model: str) -> None:
        self.load_failures.labels(model).inc()

    def unloaded(self, model: str, reason: UnloadReason) -> None:
        self.unloads.labels(model, reason.value).inc()

    def exposition(self) -> MetricsText:
        """The whole registry in Prometheus' text format."""
        text = generate_latest(self.registry).decode("utf-8")
        return MetricsText(text=text, media_type=CONTENT_TYPE_LATEST)


class _QueueCollector(Collector):
    """Gauges that are a view of the scheduler's state, read when scraped rather
    than updated on every change."""

    def __init__(
        self, running: Callable[[], RunningList], waiting: Callable[[], int]
    ) -> None:
        self._running = running
        self._waiting = waiting

    def collect(self) -> Iterator[GaugeMetricFamily]:
        total = GaugeMetricFamily(
            "gateway_requests_waiting",
            "Requests waiting for a model's runner (what --max-queue bounds).",
        )
        total.add_metric([], self._waiting())
        queued = GaugeMetricFamily(
            "gateway_model_requests_waiting",
            "Requests waiting for a loaded model's free slot, by model.",
            labels=["model"],
        )
        busy = GaugeMetricFamily(
            "gateway_model_slots_busy",
            "A loaded model's slots serving a request now, by model.",
            labels=["model"],
        )
        slots = GaugeMetricFamily(
            "gateway_model_slots",
            "A loaded model's slots (requests it serves at once), by model.",
            labels=["model"],
        )
        for model in self._running().models:
            name = [model.record.name]
            queued.add_metric(name, model.waiting)
            busy.add_metric(name, model.slots_busy)
            slots.add_metric(name, model.slots_total)
        yield from (total, queued, busy, slots)


class _UpstreamCollector(Collector):
    """The upstreams of the upstreams file and of remote models, as the router
    knows them (docs/scaling.md): read when scraped."""

    def __init__(self, running: Callable[[], RunningList]) -> None:
        self._running = running

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        labels = ["pool", "upstream"]
        up = GaugeMetricFamily(
            "gateway_upstream_up",
            "1 while an upstream passes its health checks and its circuit is not "
            "open, else 0.",
            labels=labels,
        )
        in_flight = GaugeMetricFamily(
            "gateway_upstream_requests_in_flight",
            "Requests an upstream is answering now.",
            labels=labels,
        )
        requests = CounterMetricFamily(
            "gateway_upstream_requests",
            "Requests sent to an upstream.",
            labels=labels,
        )
        failovers = CounterMetricFamily(
            "gateway_upstream_failovers",
            "Requests that failed at an upstream before their answer started and "
            "went on to another one.",
            labels=labels,
        )
        for state in self._running().upstreams:
            names = [state.pool, state.upstream.name]
            up.add_metric(names, 1 if state.up and state.circuit == "closed" else 0)
            in_flight.add_metric(names, state.in_flight)
            requests.add_metric(names, state.requests)
            failovers.add_metric(names, state.failovers)
        yield from (up, in_flight, requests, failovers)
