"""What operators need from the core: health, request ids, Retry-After, the metrics
route, the queue in /api/ps, and the default context's tiers."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import pytest

from gateway_core import (
    DEFAULT_CONTEXT_LENGTH,
    CollectMetrics,
    Exchange,
    GatewayConfig,
    ListRunning,
    LookupModel,
    MetricsText,
    ModelFound,
    RequestHead,
    Result,
    RunningList,
    RunningModel,
    WorkEffect,
    WorkFailed,
    client_request_id,
)
from gateway_core._config import CONTEXT_TIERS, context_length_for_memory
from gateway_core._json import JsonValue

from .helpers import CONFIG, drain, model_record, run

GIB = 1024**3


def test_health_is_ok_while_serving_and_503_while_stopping() -> None:
    for path in ("/health", "/healthz"):
        ok = run("GET", path)
        assert ok.status == 200
        assert ok.json() == {"status": "ok"}
    exchange = Exchange(
        RequestHead(method="GET", target="/health"),
        config=CONFIG,
        request_id="r",
        shutting_down=True,
    )
    head, *_ = drain(exchange)
    assert getattr(head, "status", None) == 503


def test_every_response_names_its_request() -> None:
    assert run("GET", "/api/version").header("x-request-id") == "req_test"
    assert run("GET", "/nope").header("x-request-id") == "req_test"


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("abc-123", "abc-123"),
        (" 4bf92f3577b34da6a3ce929d0e0e4736 ", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("trace:span/1+x=@y", "trace:span/1+x=@y"),
        ("a" * 128, "a" * 128),
        ("a" * 129, None),
        ("has space", None),
        ("-leading-dash", None),
        ('quote"', None),
        ("", None),
    ],
)
def test_a_client_request_id_is_kept_only_when_sane(
    sent: str, kept: str | None
) -> None:
    head = RequestHead(method="GET", target="/", headers=(("x-request-id", sent),))
    assert client_request_id(head) == kept
    assert client_request_id(RequestHead(method="GET", target="/")) is None


def _busy(effect: WorkEffect) -> Sequence[Result]:
    return [WorkFailed(status=503, message="server busy")]


def test_a_503_says_when_to_retry_in_every_dialect() -> None:
    for path in ("/api/tags", "/v1/models"):
        busy = run("GET", path, world=_busy)
        assert busy.status == 503
        assert busy.header("retry-after") == "2"
    assert run("GET", "/api/tags").header("retry-after") is None


def _metrics(effect: WorkEffect) -> Sequence[Result]:
    assert isinstance(effect, CollectMetrics)
    return [MetricsText(text="gateway_up 1\n", media_type="text/plain; version=0.0.4")]


def test_metrics_are_the_adapters_text_with_its_media_type() -> None:
    scraped = run("GET", "/metrics", world=_metrics)
    assert scraped.status == 200
    assert scraped.body == b"gateway_up 1\n"
    assert scraped.header("content-type") == "text/plain; version=0.0.4"
    off = run("GET", "/metrics")  # the default world fails unknown work with 500
    assert off.status == 500


def _queued(effect: WorkEffect) -> Sequence[Result]:
    assert isinstance(effect, ListRunning)
    running = RunningModel(
        record=model_record("tiny"),
        expires_at=0.0,
        context_length=8,
        slots_busy=2,
        slots_total=2,
        waiting=3,
    )
    return [RunningList(models=(running,))]


def test_ps_shows_the_requests_waiting_and_the_slots_busy() -> None:
    listed = run("GET", "/api/ps", world=_queued).json()
    assert isinstance(listed, dict)
    (model,) = listed["models"]
    assert model["waiting"] == 3
    assert model["slots"] == {"busy": 2, "total": 2}


@pytest.mark.parametrize(
    ("memory", "overhead", "context"),
    [
        (0, 0, DEFAULT_CONTEXT_LENGTH),
        (8 * GIB, 0, 4096),
        (23 * GIB - 1, 0, 4096),
        (23 * GIB, 0, 32_768),
        (47 * GIB - 1, 0, 32_768),
        (47 * GIB, 0, 262_144),
        (80 * GIB, 0, 262_144),
        (48 * GIB, 2 * GIB, 32_768),
        (24 * GIB, 2 * GIB, 4096),
    ],
)
def test_the_default_context_follows_accelerator_memory(
    memory: int, overhead: int, context: int
) -> None:
    assert context_length_for_memory(memory, overhead) == context


def test_the_tiers_are_ollamas_and_descend() -> None:
    assert CONTEXT_TIERS == ((47 * GIB, 262_144), (23 * GIB, 32_768))
    sizes = [size for size, _ in CONTEXT_TIERS]
    assert sizes == sorted(sizes, reverse=True)


def _show(effect: WorkEffect, *, parameters: dict[str, JsonValue]) -> Sequence[Result]:
    assert isinstance(effect, LookupModel)
    record = dataclasses.replace(model_record(), parameters=parameters)
    return [ModelFound(record=record)]


@pytest.mark.parametrize(
    ("parameters", "options", "used"),
    [
        ({}, None, 2048),  # the server's default (from the accelerator's memory)
        ({"num_ctx": 1024}, None, 1024),  # the model's own parameter
        ({"num_ctx": 1024}, {"num_ctx": 3000}, 3000),  # a request's, previewed
        ({"num_ctx": 65536}, None, 4096),  # never past the training context
    ],
)
def test_show_reports_the_context_a_request_would_get(
    parameters: dict[str, JsonValue], options: dict[str, JsonValue] | None, used: int
) -> None:
    body: dict[str, JsonValue] = {"model": "tiny"}
    if options is not None:
        body["options"] = options
    reply = run(
        "POST",
        "/api/show",
        json.dumps(body).encode(),
        config=GatewayConfig(default_context_length=2048),
        world=lambda effect: _show(effect, parameters=parameters),
    )
    shown = reply.json()
    assert isinstance(shown, dict)
    assert shown["context_length"] == used
