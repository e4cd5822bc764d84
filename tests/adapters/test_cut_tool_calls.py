"""A required tool call cut by the token limit, through the official clients.

With ``tool_choice`` required and ``max_tokens: 5`` the tiny model cannot finish its
call: the client must still get one (OpenAI: a tool call with ``finish_reason:
"length"``; Anthropic: a ``tool_use`` block with ``stop_reason: "max_tokens"``),
never an empty message, which agent frameworks reject. Streamed and whole, parsed
by each client into its own types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import ollama
import openai
import pytest

from .live import LiveServer
from .ollama_setup import call

ASK: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}


@pytest.fixture
async def gpt(
    served: tuple[LiveServer, ollama.Client],
) -> AsyncIterator[openai.OpenAI]:
    live, _ = served
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{live.port}/v1", api_key="x", max_retries=0
    )
    yield client
    client.close()


@pytest.fixture
def claude(served: tuple[LiveServer, ollama.Client]) -> Iterator[anthropic.Anthropic]:
    live, _ = served
    client = anthropic.Anthropic(
        base_url=f"http://127.0.0.1:{live.port}", api_key="x", max_retries=0
    )
    yield client
    client.close()


async def test_openai_gets_a_cut_call_with_finish_reason_length(
    gpt: openai.OpenAI,
) -> None:
    fields: Any = {
        "model": "tiny",
        "messages": ASK,
        "tools": [
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": PARAMETERS},
            }
        ],
        "tool_choice": "required",
        "max_tokens": 5,
        "reasoning_effort": "none",
        "seed": 1,
    }
    whole = await call(lambda: gpt.chat.completions.create(**fields))
    (choice,) = whole.choices
    assert choice.finish_reason == "length"
    assert choice.message.tool_calls is not None
    (found,) = choice.message.tool_calls
    assert found.type == "function"
    assert found.function.name == "get_weather"
    assert found.id.startswith("call_")

    chunks = await call(
        lambda: list(gpt.chat.completions.create(**fields, stream=True))
    )
    deltas = [
        delta
        for chunk in chunks
        if chunk.choices
        for delta in chunk.choices[0].delta.tool_calls or ()
    ]
    assert [d.function.name for d in deltas if d.function] == ["get_weather"]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length"


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_gets_a_tool_use_block_with_max_tokens(
    claude: anthropic.Anthropic, stream: bool
) -> None:
    fields: Any = {
        "model": "tiny",
        "max_tokens": 5,
        "messages": ASK,
        "tools": [{"name": "get_weather", "input_schema": PARAMETERS}],
        "tool_choice": {"type": "any"},
        "thinking": {"type": "disabled"},
    }

    def ask() -> anthropic.types.Message:
        if not stream:
            message: anthropic.types.Message = claude.messages.create(**fields)
            return message
        with claude.messages.stream(**fields) as events:
            return events.get_final_message()

    message = await call(ask)
    assert message.stop_reason == "max_tokens"
    calls = [block for block in message.content if block.type == "tool_use"]
    assert [block.name for block in calls] == ["get_weather"]
    assert calls[0].id.startswith("toolu_")
    assert isinstance(calls[0].input, dict)
