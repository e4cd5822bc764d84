"""Structured output, thinking and tool calls through the official ``ollama`` client,
the live server and llama.cpp with the demo model.

Random weights make the model answer nonsense, which is the point: whatever it would
say, the constraint must make the answer valid against the schema, with thinking on
and off, streaming and not, on chat and on generate. The quick tests run a few seeds
each; the slow one runs 100 per combination.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx
import jsonschema
import ollama
import pytest

from .live import LiveServer
from .ollama_setup import call

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "ok": {"type": "boolean"},
        "size": {"enum": ["small", "large"]},
    },
    "required": ["name", "ok", "size"],
    "additionalProperties": False,
}
COMBINATIONS = list(
    itertools.product(("chat", "generate"), (True, False), (True, False))
)


async def answer(
    client: ollama.Client, endpoint: str, *, think: bool, stream: bool, seed: int
) -> tuple[str, str]:
    """The (content, thinking) of one structured request."""
    options = {"seed": seed, "num_predict": 2048}
    if endpoint == "chat":
        messages = [{"role": "user", "content": "Describe a thing as JSON."}]
        if stream:
            chunks = await call(
                lambda: list(
                    client.chat(
                        model="tiny", messages=messages, format=SCHEMA, think=think,
                        options=options, stream=True,
                    )
                )
            )  # fmt: skip
            return (
                "".join(c.message.content or "" for c in chunks),
                "".join(c.message.thinking or "" for c in chunks),
            )
        reply = await call(
            lambda: client.chat(
                model="tiny", messages=messages, format=SCHEMA, think=think,
                options=options,
            )
        )  # fmt: skip
        return reply.message.content or "", reply.message.thinking or ""
    if stream:
        pieces = await call(
            lambda: list(
                client.generate(
                    model="tiny", prompt="A thing as JSON:", format=SCHEMA,
                    think=think, options=options, stream=True,
                )
            )
        )  # fmt: skip
        return (
            "".join(p.response or "" for p in pieces),
            "".join(p.thinking or "" for p in pieces),
        )
    whole = await call(
        lambda: client.generate(
            model="tiny", prompt="A thing as JSON:", format=SCHEMA, think=think,
            options=options,
        )
    )  # fmt: skip
    return whole.response or "", whole.thinking or ""


async def check_runs(client: ollama.Client, seeds: range) -> None:
    for (endpoint, think, stream), seed in itertools.product(COMBINATIONS, seeds):
        content, thinking = await answer(
            client, endpoint, think=think, stream=stream, seed=seed
        )
        where = f"{endpoint} think={think} stream={stream} seed={seed}"
        errors = list(
            jsonschema.Draft202012Validator(SCHEMA).iter_errors(json.loads(content))
        )
        assert not errors, f"{where}: {errors[0].message}"
        if not think:
            assert thinking == "", where


async def test_structured_answers_validate_a_few_seeds_per_combination(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    _, client = served
    await check_runs(client, range(3))


@pytest.mark.slow
async def test_structured_answers_validate_in_100_of_100_seeded_runs(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    _, client = served
    await check_runs(client, range(100))


async def test_json_format_gives_a_json_object(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    _, client = served
    reply = await call(
        lambda: client.generate(
            model="tiny", prompt="x", format="json", think=False,
            options={"seed": 3, "num_predict": 512},
        )
    )  # fmt: skip
    assert isinstance(json.loads(reply.response or ""), dict)


async def test_an_unenforceable_schema_is_refused_not_ignored(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    _, client = served
    schema = {"type": "object", "not": {"required": ["a"]}}
    with pytest.raises(ollama.ResponseError) as caught:
        await call(
            lambda: client.generate(
                model="tiny", prompt="x", format=schema, think=False
            )
        )
    assert caught.value.status_code == 400


async def test_streaming_chat_with_tools_sends_tool_calls_with_ids(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    """The demo model never calls tools on its own, so tool_choice forces one."""
    live, _ = served
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"enum": ["Tokyo", "Paris"]}},
                    "required": ["city"],
                },
            },
        }
    ]
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Weather?"}],
        "tools": tools,
        "tool_choice": "required",
        "think": False,
        "options": {"seed": 1, "num_predict": 256},
    }
    url = f"http://127.0.0.1:{live.port}/api/chat"

    def stream() -> list[dict[str, Any]]:
        with httpx.stream("POST", url, json=body, timeout=60) as response:
            return [json.loads(line) for line in response.iter_lines() if line]

    lines = await call(stream)
    calls = [c for line in lines for c in line["message"].get("tool_calls", [])]
    (found,) = calls
    assert found["id"].startswith("call_")
    assert found["function"]["name"] == "get_weather"
    assert found["function"]["arguments"]["city"] in ("Tokyo", "Paris")
    assert lines[-1]["done"] is True
    whole = await call(
        lambda: httpx.post(url, json={**body, "stream": False}, timeout=60).json()
    )
    assert whole["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
