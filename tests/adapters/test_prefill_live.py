"""Prefill with real llama.cpp and the official clients: a trailing assistant
message is continued (the model's answer starts where it stops), through the
structured-output constraint too, and a prefill the format forbids is a 400."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import jsonschema
import ollama
import pytest

from .conftest import LiveServer
from .ollama_setup import QUICK, call

SCHEMA = {
    "type": "object",
    "properties": {"tree": {"type": "string", "maxLength": 8}},
    "required": ["tree"],
    "additionalProperties": False,
}


async def test_a_structured_answer_continues_its_prefill(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    _, client = served
    # Compact JSON, as the constraint writes it (no space after the colon).
    begun = '{"tree":"'
    messages = [
        {"role": "user", "content": "Name a tree."},
        {"role": "assistant", "content": begun},
    ]
    answer = await call(
        lambda: client.chat(
            model="tiny",
            messages=messages,
            format=SCHEMA,
            think=False,
            options={**QUICK, "num_predict": 40},
        )
    )
    assert answer.done_reason == "stop"
    # The reply is the continuation; with the prefill it is the schema's JSON.
    continuation = answer.message.content or ""
    whole = json.loads(begun + continuation)
    jsonschema.validate(whole, SCHEMA)
    assert not continuation.startswith(begun)


async def test_a_prefill_the_format_forbids_is_a_400(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    _, client = served
    messages = [
        {"role": "user", "content": "Name a tree."},
        {"role": "assistant", "content": "[1,"},
    ]
    with pytest.raises(ollama.ResponseError) as refused:
        await call(
            lambda: client.chat(
                model="tiny", messages=messages, format=SCHEMA, think=False
            )
        )
    assert refused.value.status_code == 400
    assert "prefilled answer does not fit the format" in refused.value.error


async def test_anthropic_prefill_returns_only_the_continuation(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    live, client = served
    begun = "Whill"
    fields: dict[str, Any] = {
        "model": "tiny",
        "max_tokens": 8,
        "extra_body": {"temperature": 0.0},
        "messages": [
            {"role": "user", "content": "Name a tree."},
            {"role": "assistant", "content": begun},
        ],
    }
    api = anthropic.Anthropic(
        base_url=f"http://127.0.0.1:{live.port}", api_key="x", max_retries=0
    )
    try:
        message = await call(lambda: api.messages.create(**fields))
    finally:
        api.close()
    # The same answer as the native chat gives for the same prefill (greedy).
    native = await call(
        lambda: client.chat(
            model="tiny",
            messages=fields["messages"],
            think=False,
            options={"num_predict": 8, "temperature": 0.0},
        )
    )
    texts = [block.text for block in message.content if block.type == "text"]
    assert "".join(texts) == native.message.content
    assert message.usage.output_tokens == native.eval_count
