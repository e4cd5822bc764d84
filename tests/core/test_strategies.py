"""gateway_core.strategies draws bodies the gateway accepts: every one is answered
with 200 by a scripted runner, in each API, streamed or not."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings

from gateway_core import Generate, InvalidModelName, ModelName, Result, WorkEffect
from gateway_core.strategies import (
    anthropic_message_requests,
    model_names,
    native_chat_requests,
    native_generate_requests,
    openai_chat_requests,
)

from .helpers import NOW, THINKING_TOOLS, model_record, run
from .test_generation import World

_FAST = settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])


class _Runner(World):
    """A model whose template offers tools (bodies may carry some), and which
    answers a constrained request with an answer its schema takes, as a
    constrained runner would."""

    def __init__(self) -> None:
        super().__init__(record=model_record("tiny", THINKING_TOOLS))

    def __call__(self, effect: WorkEffect) -> Sequence[Result]:
        if isinstance(effect, Generate) and effect.format is not None:
            self.pieces = (b'{"answer": ', b'"yes"}')
        return super().__call__(effect)


def _answered(path: str, body: dict[str, object]) -> None:
    data = json.dumps(body).encode()
    transcript = run("POST", path, data, world=_Runner(), started=NOW - 1)
    assert transcript.status == 200, (transcript.status, transcript.body[:300])


@_FAST
@given(native_chat_requests(model="tiny"))
def test_native_chat_bodies_are_answered(body: dict[str, object]) -> None:
    _answered("/api/chat", body)


@_FAST
@given(native_generate_requests(model="tiny"))
def test_native_generate_bodies_are_answered(body: dict[str, object]) -> None:
    _answered("/api/generate", body)


@_FAST
@given(openai_chat_requests(model="tiny"))
def test_openai_chat_bodies_are_answered(body: dict[str, object]) -> None:
    _answered("/v1/chat/completions", body)


@_FAST
@given(anthropic_message_requests(model="tiny"))
def test_anthropic_message_bodies_are_answered(body: dict[str, object]) -> None:
    _answered("/v1/messages", body)


@given(model_names())
def test_model_names_are_valid_names(name: str) -> None:
    try:
        ModelName.parse(name)
    except InvalidModelName as exc:  # pragma: no cover - the assertion says why
        raise AssertionError(f"{name!r}: {exc}") from None


def test_importing_the_core_does_not_load_hypothesis() -> None:
    probe = "import sys, gateway_core; print('hypothesis' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
