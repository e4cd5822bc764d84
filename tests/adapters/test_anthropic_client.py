"""The official ``anthropic`` client against the live server and the demo model.

The client parses our message bodies into its own types and runs our event streams
through its own accumulator, so a field it needs or an event out of order fails
here. The demo model's text is noise; tool calls are forced with ``tool_choice``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import jsonschema
import ollama
import pytest

from .live import LiveServer
from .ollama_setup import call

HELLO: list[Any] = [{"role": "user", "content": "Say hello."}]
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"enum": ["Paris", "Oslo"]}},
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER: Any = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": WEATHER_SCHEMA,
}


@pytest.fixture
def claude(served: tuple[LiveServer, ollama.Client]) -> Iterator[anthropic.Anthropic]:
    live, _ = served
    client = anthropic.Anthropic(
        base_url=f"http://127.0.0.1:{live.port}", api_key="x", max_retries=0
    )
    yield client
    client.close()


async def test_a_message_parses_into_the_clients_types(
    claude: anthropic.Anthropic,
) -> None:
    message = await call(
        lambda: claude.messages.create(
            model="tiny",
            max_tokens=8,
            messages=HELLO,
            # This client version no longer has the sampling fields; the API does.
            stop_sequences=["\n\n\n"],
            extra_body={"temperature": 0.0, "top_k": 5},
        )
    )
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == "tiny"
    assert message.id.startswith("msg_")
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0
    assert 0 < message.usage.output_tokens <= 8
    assert message.content, "eight tokens of noise say something"
    assert {block.type for block in message.content} <= {"thinking", "text"}


async def test_a_stream_is_accepted_by_the_clients_accumulator(
    claude: anthropic.Anthropic,
) -> None:
    def stream() -> tuple[list[Any], anthropic.types.Message]:
        with claude.messages.stream(
            model="tiny",
            max_tokens=12,
            messages=HELLO,
            thinking={"type": "enabled", "budget_tokens": 1024},
        ) as events:
            return list(events), events.get_final_message()

    events, final = await call(stream)
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert "message_delta" in kinds
    assert final.stop_reason in ("end_turn", "max_tokens")
    # The accumulated message is what the deltas said, block by block.
    said: dict[int, str] = {}
    for event in events:
        if event.type == "content_block_delta":
            delta = event.delta
            piece = delta.text if delta.type == "text_delta" else delta.thinking
            said[event.index] = said.get(event.index, "") + piece
    assert final.content
    assert said == {
        index: block.text if block.type == "text" else block.thinking
        for index, block in enumerate(final.content)
        if block.type in ("text", "thinking")
    }
    assert final.usage.output_tokens <= 12
    assert final.usage.input_tokens > 0


async def test_raw_stream_events_come_in_anthropics_order(
    claude: anthropic.Anthropic,
) -> None:
    def stream() -> list[Any]:
        events = claude.messages.create(
            model="tiny",
            max_tokens=6,
            messages=HELLO,
            stream=True,
            thinking={"type": "disabled"},
        )
        return list(events)

    events = await call(stream)
    assert events[0].type == "message_start"
    assert events[-2].type == "message_delta"
    assert events[-1].type == "message_stop"
    open_index = None
    for event in events[1:-2]:
        if event.type == "content_block_start":
            assert open_index is None
            open_index = event.index
        elif event.type == "content_block_delta":
            assert event.index == open_index
            assert event.delta.type == "text_delta"  # thinking is off
        else:
            assert event.type == "content_block_stop"
            assert event.index == open_index
            open_index = None
    assert open_index is None


@pytest.mark.parametrize("stream", [False, True])
async def test_a_forced_tool_call_is_a_tool_use_block(
    claude: anthropic.Anthropic, stream: bool
) -> None:
    def ask() -> anthropic.types.Message:
        fields: Any = {
            "model": "tiny",
            "max_tokens": 200,
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [WEATHER],
            "tool_choice": {"type": "tool", "name": "get_weather"},
            "thinking": {"type": "disabled"},
        }
        if not stream:
            message: anthropic.types.Message = claude.messages.create(**fields)
            return message
        with claude.messages.stream(**fields) as events:
            return events.get_final_message()

    message = await call(ask)
    assert message.stop_reason == "tool_use"
    calls = [block for block in message.content if block.type == "tool_use"]
    assert len(calls) == 1
    assert calls[0].name == "get_weather"
    assert calls[0].id.startswith("toolu_")
    jsonschema.validate(calls[0].input, WEATHER_SCHEMA)


async def test_a_tool_result_continues_the_conversation(
    claude: anthropic.Anthropic,
) -> None:
    messages: Any = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "22°C"}
            ],
        },
    ]
    message = await call(
        lambda: claude.messages.create(
            model="tiny",
            max_tokens=4,
            system=[{"type": "text", "text": "You report the weather."}],
            messages=messages,
            tools=[WEATHER],
        )
    )
    assert message.stop_reason in ("end_turn", "max_tokens", "tool_use")


async def test_count_tokens_counts_with_the_models_tokenizer(
    claude: anthropic.Anthropic,
) -> None:
    short = await call(
        lambda: claude.messages.count_tokens(model="tiny", messages=HELLO)
    )
    longer = await call(
        lambda: claude.messages.count_tokens(
            model="tiny", messages=HELLO, system="You are terse.", tools=[WEATHER]
        )
    )
    assert short.input_tokens > 0
    assert longer.input_tokens > short.input_tokens
    # The count is the prompt the model reads when the same request is answered.
    answered = await call(
        lambda: claude.messages.create(
            model="tiny", max_tokens=1, messages=HELLO, thinking={"type": "disabled"}
        )
    )
    counted = await call(
        lambda: claude.messages.count_tokens(
            model="tiny", messages=HELLO, thinking={"type": "disabled"}
        )
    )
    assert answered.usage.input_tokens == counted.input_tokens


async def test_an_unknown_model_is_the_clients_not_found_error(
    claude: anthropic.Anthropic,
) -> None:
    with pytest.raises(anthropic.NotFoundError) as raised:
        await call(
            lambda: claude.messages.create(model="nobody", max_tokens=5, messages=HELLO)
        )
    assert raised.value.status_code == 404
    assert "model 'nobody' not found" in str(raised.value)
    with pytest.raises(anthropic.NotFoundError):
        await call(lambda: claude.messages.count_tokens(model="nobody", messages=HELLO))


async def test_a_bad_request_is_the_clients_bad_request_error(
    claude: anthropic.Anthropic,
) -> None:
    with pytest.raises(anthropic.BadRequestError) as raised:
        await call(
            lambda: claude.messages.create(model="tiny", max_tokens=0, messages=HELLO)
        )
    assert "max_tokens is required and must be positive" in str(raised.value)
    with pytest.raises(anthropic.BadRequestError) as raised:
        await call(
            lambda: claude.messages.create(
                model="tiny",
                max_tokens=5,
                messages=HELLO,
                tools=[
                    {"name": "f", "input_schema": {"type": "object", "required": 1}}
                ],
            )
        )
    assert 'invalid input_schema for tool "f"' in str(raised.value)
