"""Pydantic models through the three official clients, as their users write it:
``ollama`` with ``format=Model.model_json_schema()``, ``openai`` with
``chat.completions.parse(response_format=Model)`` (and its streaming form), and
``anthropic`` with a forced tool whose ``input_schema`` is the model's schema.

The demo model's random weights make whatever it would say arbitrary: every answer
must still parse back into the model, across seeds, streaming and not, thinking on
and off. An answer may be cut by the token limit (a random model can nest a
recursive model forever); it must then say so (``length``, ``max_tokens``) and
not pretend to be whole. The quick test runs a few seeds; the slow one many.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable
from typing import Any

import anthropic
import ollama
import openai
import pytest
from pydantic import BaseModel

from .live import LiveServer
from .ollama_setup import call
from .pydantic_models import MODELS

OPTIONS = {"num_predict": 2048}


def via_ollama(
    client: ollama.Client,
    model: type[BaseModel],
    *,
    seed: int,
    stream: bool,
    think: bool,
) -> BaseModel | None:
    messages = [{"role": "user", "content": f"Describe a {model.__name__}."}]
    schema = model.model_json_schema()
    options = {**OPTIONS, "seed": seed}
    if stream:
        chunks = list(
            client.chat(model="tiny", messages=messages, format=schema, think=think,
                        options=options, stream=True)
        )  # fmt: skip
        reason = chunks[-1].done_reason
        content = "".join(c.message.content or "" for c in chunks)
    else:
        reply = client.chat(
            model="tiny", messages=messages, format=schema, think=think, options=options
        )
        reason = reply.done_reason
        content = reply.message.content or ""
    if reason == "length":
        return None
    assert reason == "stop"
    return model.model_validate_json(content)


def via_openai(
    client: openai.OpenAI,
    model: type[BaseModel],
    *,
    seed: int,
    stream: bool,
    think: bool,
) -> BaseModel | None:
    messages: Any = [{"role": "user", "content": f"Describe a {model.__name__}."}]
    extra = {"reasoning_effort": "low" if think else "none"}
    try:
        if stream:
            with client.chat.completions.stream(
                model="tiny", messages=messages, response_format=model, seed=seed,
                max_tokens=2048, extra_body=extra,
            ) as events:  # fmt: skip
                final = events.get_final_completion()
        else:
            final = client.chat.completions.parse(
                model="tiny", messages=messages, response_format=model, seed=seed,
                max_tokens=2048, extra_body=extra,
            )  # fmt: skip
    except openai.LengthFinishReasonError:
        return None  # the client's own way to say "cut by max_tokens"
    (choice,) = final.choices
    assert choice.finish_reason == "stop"
    parsed = choice.message.parsed
    assert isinstance(parsed, model)
    return parsed


def via_anthropic(
    client: anthropic.Anthropic,
    model: type[BaseModel],
    *,
    seed: int,
    stream: bool,
    think: bool,
) -> BaseModel | None:
    tool: Any = {
        "name": "record",
        "description": f"Record a {model.__name__}.",
        "input_schema": model.model_json_schema(),
    }
    messages: Any = [{"role": "user", "content": f"Describe a {model.__name__}."}]
    request: dict[str, Any] = {
        "model": "tiny",
        "max_tokens": 2048,
        "messages": messages,
        "tools": [tool],
        "tool_choice": {"type": "tool", "name": "record"},
        # Anthropic's API has no seed, and refuses thinking with a forced tool.
        "extra_body": {"temperature": 1.0},
    }
    del seed, think
    if stream:
        with client.messages.stream(**request) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**request)
    if message.stop_reason == "max_tokens":
        # The limit cut the forced call: it still comes back as the tool_use block
        # with what was written of its input (no call is ever lost), not validated.
        (cut,) = [block for block in message.content if block.type == "tool_use"]
        assert cut.name == "record"
        assert isinstance(cut.input, dict)
        return None
    assert message.stop_reason == "tool_use", message
    (use,) = [block for block in message.content if block.type == "tool_use"]
    assert use.name == "record"
    return model.model_validate(use.input)


CLIENTS: dict[str, Callable[..., BaseModel | None]] = {
    "ollama": via_ollama,
    "openai": via_openai,
    "anthropic": via_anthropic,
}


def make_client(name: str, live: LiveServer) -> Any:
    base = f"http://{live.host}:{live.port}"
    if name == "ollama":
        return ollama.Client(host=base)
    if name == "openai":
        return openai.OpenAI(base_url=f"{base}/v1", api_key="x")
    return anthropic.Anthropic(base_url=base, api_key="x")


def _cases(seeds: range) -> list[tuple[str, type[BaseModel], int, bool, bool]]:
    return [
        (client, model, seed, stream, think)
        for client, model, seed in itertools.product(CLIENTS, MODELS, seeds)
        for stream, think in [(seed % 2 == 0, seed % 3 != 1)]
    ]


async def _run_all(
    live: LiveServer, cases: list[tuple[str, type[BaseModel], int, bool, bool]]
) -> None:
    clients = {name: make_client(name, live) for name in CLIENTS}
    try:
        await _ask_all(clients, cases)
    finally:
        for client in clients.values():
            client.close()


async def _ask_all(
    clients: dict[str, Any], cases: list[tuple[str, type[BaseModel], int, bool, bool]]
) -> None:
    cut = 0
    for name, model, seed, stream, think in cases:
        answer = await call(
            functools.partial(
                CLIENTS[name], clients[name], model, seed=seed, stream=stream,
                think=think,
            )
        )  # fmt: skip
        if answer is None:
            cut += 1
            continue
        # What parsed is the model itself, and it survives a round trip.
        assert isinstance(answer, model)
        assert model.model_validate_json(json.dumps(answer.model_dump(mode="json")))
    # Most answers are whole: a cut answer is the exception, never the rule.
    assert cut <= len(cases) // 5, f"{cut} of {len(cases)} answers cut short"


async def test_pydantic_models_parse_through_every_client(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    live, _ = served
    await _run_all(live, _cases(range(4)))


@pytest.mark.slow
async def test_pydantic_models_parse_through_every_client_across_seeds(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    live, _ = served
    await _run_all(live, _cases(range(4, 40)))
