"""``ExchangeTally``: what one request did, counted as the driver reports it.

It feeds the access log (the model, the tokens) and, when metrics are on, the
metrics. The driver calls ``work_started``, ``result`` and ``wrote`` from its loop,
so each is a few attribute updates; a token costs one type check and a few
assignments. Histograms and counters are touched once per request, in ``finish``,
and once per body write (the token-to-write overhead). The model is the one the
request acquired a runner for: installed models only, so a client cannot grow the
metrics' label set with made-up names.
"""

from __future__ import annotations

import time

from gateway_core import (
    AcquireRunner,
    CheckSchema,
    Embed,
    Embedded,
    Piece,
    PromptEvaluated,
    Result,
    SchemaSupported,
    WorkEffect,
    WorkFailed,
)

from .registry import GatewayMetrics

__all__ = ["ExchangeTally"]


class ExchangeTally:
    """One request's counts; ``started`` is ``time.perf_counter()`` at its head."""

    __slots__ = (
        "_checking_since",
        "_first_piece",
        "_last_piece",
        "_metrics",
        "_started",
        "_unwritten",
        "_worked",
        "cached_tokens",
        "embedded",
        "generated_tokens",
        "model",
        "prompt_tokens",
    )

    def __init__(self, metrics: GatewayMetrics | None, started: float) -> None:
        self._metrics = metrics
        self._started = started
        self._worked = False
        self._checking_since: float | None = None
        self._first_piece = self._last_piece = 0.0
        self._unwritten: float | None = None
        self.model: str | None = None
        self.prompt_tokens = self.cached_tokens = self.generated_tokens = 0
        self.embedded = 0
        if metrics is not None:
            metrics.in_flight.inc()

    def work_started(self, effect: WorkEffect) -> None:
        if not self._worked:
            self._worked = True
            if self._metrics is not None:
                waited = time.perf_counter() - self._started
                self._metrics.head_to_work.observe(waited)
        match effect:
            case AcquireRunner(model=record):
                self.model = record.name
            case CheckSchema():
                self._checking_since = time.perf_counter()
            case Embed(texts=texts):
                self.embedded += len(texts)
            case _:
                pass

    def result(self, result: Result) -> None:
        if type(result) is Piece:  # the hot path: one per token
            now = time.perf_counter()
            if not self.generated_tokens:
                self._first_piece = now
            self.generated_tokens += 1
            self._last_piece = now
            if self._unwritten is None:
                self._unwritten = now
            return
        if self._checking_since is not None:
            self._schema_checked(result)
        match result:
            case PromptEvaluated(count=count, cached=cached):
                self.prompt_tokens += count
                self.cached_tokens += cached
            case Embedded(token_counts=counts):
                self.prompt_tokens += sum(counts)
            case _:
                pass

    def _schema_checked(self, result: Result) -> None:
        assert self._checking_since is not None
        elapsed = time.perf_counter() - self._checking_since
        self._checking_since = None
        metrics = self._metrics
        if metrics is None:
            return
        if isinstance(result, SchemaSupported):
            metrics.schema_check.observe(elapsed)
        elif isinstance(result, WorkFailed) and result.status == 400:
            metrics.schema_check.observe(elapsed)
            metrics.schema_refusals.inc()

    def wrote(self, size: int) -> None:
        if self._unwritten is not None:
            if self._metrics is not None:
                waited = time.perf_counter() - self._unwritten
                self._metrics.token_to_write.observe(waited)
            self._unwritten = None

    def finish(
        self, *, route: str, method: str, status: int | None, dialect: str
    ) -> None:
        """The request is over: ``status`` as sent (None if none was)."""
        metrics = self._metrics
        if metrics is None:
            return
        metrics.in_flight.dec()
        shown = "-" if status is None else str(status)
        elapsed = time.perf_counter() - self._started
        metrics.request_duration.labels(route, method, shown).observe(elapsed)
        if status is not None and status >= 400:
            metrics.errors.labels(shown, dialect).inc()
        if self.model is not None:
            self._per_model(metrics, self.model)

    def _per_model(self, metrics: GatewayMetrics, model: str) -> None:
        if self.prompt_tokens:
            metrics.prompt_tokens.labels(model).inc(self.prompt_tokens)
        if self.cached_tokens:
            metrics.cached_tokens.labels(model).inc(self.cached_tokens)
        if self.embedded:
            metrics.embedded_inputs.labels(model).inc(self.embedded)
        if self.generated_tokens:
            metrics.generated_tokens.labels(model).inc(self.generated_tokens)
            first = self._first_piece - self._started
            metrics.first_token.labels(model).observe(first)
        if self.generated_tokens > 1:
            span = self._last_piece - self._first_piece
            metrics.per_token.labels(model).observe(span / (self.generated_tokens - 1))
