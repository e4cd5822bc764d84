"""The kit's machinery: a target server, checks, and their outcomes.

A check is a function of a ``Target`` that returns normally (it passed), raises
``Failed`` (or any exception: a server that answers garbage fails loudly, it does
not crash the kit), or raises ``Skipped`` (it does not apply: no model to try it
with, or a change to the store that ``--read-only`` forbids).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import httpx

from gateway_core import NdjsonDecoder, SseDecoder, SseEvent

__all__ = [
    "CHECKS",
    "Check",
    "Failed",
    "Outcome",
    "Result",
    "Skipped",
    "Target",
    "check",
    "expect",
    "run_checks",
]


class Failed(AssertionError):
    """The server's answer breaks the protocol; the message says how."""


class Skipped(Exception):
    """The check does not apply to this server (the message says why)."""


def expect(condition: object, message: str) -> None:
    """Fail with ``message`` unless ``condition`` holds."""
    if not condition:
        raise Failed(message)


class Outcome(Enum):
    PASSED = "pass"
    FAILED = "FAIL"
    SKIPPED = "skip"


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    outcome: Outcome
    detail: str = ""
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    run: Callable[[Target], None]
    area: str
    """What it covers: ``basics``, ``errors``, ``streams``, ``models``, ``work``."""


CHECKS: list[Check] = []


def check(area: str) -> Callable[[Callable[[Target], None]], Callable[[Target], None]]:
    """Register a check under ``area``; its name is the function's, and its
    docstring's first line says what it checks."""

    def register(function: Callable[[Target], None]) -> Callable[[Target], None]:
        CHECKS.append(Check(function.__name__, function, area))
        return function

    return register


@dataclass
class Target:
    """The server under test.

    Args:
        url: its base URL, as the ollama client takes it (a prefix is fine:
            ``http://host/llm``).
        model: the model the generation checks use; None takes the first one
            ``/api/tags`` lists.
        write: whether checks may change the store (copy a model and delete the
            copy).
        timeout: seconds one request may take (a first request loads the model).
    """

    url: str
    model: str | None = None
    write: bool = True
    timeout: float = 120.0
    client: httpx.Client = field(init=False)
    _model: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.client = httpx.Client(
            base_url=self.url.rstrip("/"),
            timeout=self.timeout,
            headers={"user-agent": "gateway-core-conformance"},
        )

    def close(self) -> None:
        self.client.close()

    def the_model(self) -> str:
        """The model to generate with: given, or the first installed one.

        Raises:
            Failed: the model list cannot be had.
            Skipped: the server has no model.
        """
        if self.model is not None:
            return self.model
        if self._model is None:
            reply = self.client.get("/api/tags")
            expect(reply.status_code == 200, f"GET /api/tags: {reply.status_code}")
            models = json_object(reply).get("models")
            expect(isinstance(models, list), "GET /api/tags: no models list")
            assert isinstance(models, list)
            if not models:
                raise Skipped("the server has no model installed (use --model)")
            self._model = str(models[0]["name"])
        return self._model

    def post(self, path: str, body: object, **headers: str) -> httpx.Response:
        return self.client.post(path, json=body, headers=headers)

    @contextmanager
    def stream(self, path: str, body: object) -> Iterator[httpx.Response]:
        with self.client.stream("POST", path, json=body) as reply:
            yield reply

    def ndjson(self, path: str, body: object) -> list[Any]:
        """POST, expect a 200 NDJSON stream, return its values (the core's own
        incremental decoder reads it, as any client must be able to)."""
        decoder = NdjsonDecoder()
        values: list[Any] = []
        with self.stream(path, body) as reply:
            expect_status(reply, 200, path)
            media = reply.headers.get("content-type", "")
            expect(media.startswith("application/x-ndjson"), f"{path}: {media!r}")
            for chunk in reply.iter_raw():
                values.extend(decoder.feed(chunk))
        values.extend(decoder.close())
        return values

    def sse(self, path: str, body: object, **headers: str) -> list[SseEvent]:
        """POST, expect a 200 event stream, return its events."""
        decoder = SseDecoder()
        events: list[SseEvent] = []
        with self.client.stream("POST", path, json=body, headers=headers) as reply:
            expect_status(reply, 200, path)
            media = reply.headers.get("content-type", "")
            expect(media.startswith("text/event-stream"), f"{path}: {media!r}")
            for chunk in reply.iter_raw():
                events.extend(decoder.feed(chunk))
        events.extend(decoder.close())
        return events


def expect_status(reply: httpx.Response, status: int, what: str) -> None:
    if reply.status_code != status:
        if not reply.is_stream_consumed:
            reply.read()
        got = f"status {reply.status_code}, expected {status}"
        raise Failed(f"{what}: {got}: {reply.text[:200]!r}")


def json_object(reply: httpx.Response) -> dict[str, Any]:
    """The reply's body as a JSON object, or a failure naming the request."""
    what = f"{reply.request.method} {reply.request.url.path}"
    try:
        value = json.loads(reply.content)
    except ValueError:
        raise Failed(f"{what}: body is not JSON: {reply.text[:200]!r}") from None
    expect(isinstance(value, dict), f"{what}: body is not a JSON object")
    assert isinstance(value, dict)
    return value


def run_checks(
    target: Target,
    checks: list[Check] | None = None,
    *,
    report: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Run ``checks`` (all by default) against ``target``, in order; ``report``
    is told of each result as it comes."""
    results = []
    for item in CHECKS if checks is None else checks:
        started = time.perf_counter()
        try:
            item.run(target)
        except Skipped as exc:
            result = Result(item.name, Outcome.SKIPPED, str(exc))
        except Failed as exc:
            result = Result(item.name, Outcome.FAILED, str(exc))
        except Exception as exc:  # a server answering garbage must not stop the run
            result = Result(item.name, Outcome.FAILED, f"{type(exc).__name__}: {exc}")
        else:
            result = Result(item.name, Outcome.PASSED)
        result = Result(
            result.name, result.outcome, result.detail, time.perf_counter() - started
        )
        results.append(result)
        if report is not None:
            report(result)
    return results
