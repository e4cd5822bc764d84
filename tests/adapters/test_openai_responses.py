"""OpenAI's Responses API with the official ``openai`` client and the OpenAI Agents
SDK, against the real server and real llama.cpp (the tiny random-weight model:
structure is checked, never wording)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import ollama
import openai
import pytest

from .live import LiveServer
from .ollama_setup import call

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 10}},
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"enum": ["Oslo", "Lima"]}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
JSON_FORMAT: Any = {
    "format": {"type": "json_schema", "name": "place", "schema": SCHEMA, "strict": True}
}


@pytest.fixture
async def client(
    served: tuple[LiveServer, ollama.Client],
) -> AsyncIterator[openai.OpenAI]:
    live, _ = served
    opened = openai.OpenAI(
        base_url=f"http://127.0.0.1:{live.port}/v1", api_key="x", max_retries=0
    )
    yield opened
    opened.close()


async def test_create_answers_a_response_with_usage(client: openai.OpenAI) -> None:
    response = await call(
        lambda: client.responses.create(
            model="tiny", input="Say hi.", max_output_tokens=6, temperature=0.0
        )
    )
    assert response.id.startswith("resp_")
    assert response.status == "incomplete"  # the random model never stops in 6
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text  # the SDK joins the message's text parts
    assert response.usage is not None
    assert response.usage.output_tokens == 6


async def test_a_streamed_json_schema_answer_completes_and_validates(
    client: openai.OpenAI,
) -> None:
    def stream() -> tuple[list[str], Any]:
        with client.responses.stream(
            model="tiny",
            input="Name a city.",
            text=JSON_FORMAT,
            reasoning={"effort": "none"},
            max_output_tokens=60,
        ) as events:
            kinds: list[str] = [event.type for event in events]
            return kinds, events.get_final_response()

    kinds, final = await call(stream)
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    assert final.status == "completed"
    jsonschema.validate(json.loads(final.output_text), SCHEMA)


async def test_a_function_call_and_its_output_round_trip(
    client: openai.OpenAI,
) -> None:
    first = await call(
        lambda: client.responses.create(
            model="tiny",
            input="Weather in Oslo?",
            tools=[WEATHER],
            tool_choice="required",
            reasoning={"effort": "none"},
        )
    )
    (item,) = first.output
    assert item.type == "function_call"
    assert item.name == "get_weather"
    assert json.loads(item.arguments)["city"] in ("Oslo", "Lima")
    output: Any = {
        "type": "function_call_output",
        "call_id": item.call_id,
        "output": "9 degrees",
    }
    second = await call(
        lambda: client.responses.create(
            model="tiny",
            input=[output],
            previous_response_id=first.id,
            tools=[WEATHER],
            reasoning={"effort": "none"},
            max_output_tokens=4,
        )
    )
    assert second.previous_response_id == first.id
    assert second.output[0].type == "message"
    # More prompt than the first turn: the call and its output came along.
    assert first.usage is not None
    assert second.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens


async def test_retrieve_and_delete(client: openai.OpenAI) -> None:
    created = await call(
        lambda: client.responses.create(model="tiny", input="x", max_output_tokens=2)
    )
    got = await call(lambda: client.responses.retrieve(created.id))
    assert got.id == created.id
    assert got.output_text == created.output_text
    await call(lambda: client.responses.delete(created.id))
    with pytest.raises(openai.NotFoundError):
        await call(lambda: client.responses.retrieve(created.id))
    with pytest.raises(openai.NotFoundError):
        await call(
            lambda: client.responses.create(
                model="tiny", input="x", previous_response_id=created.id
            )
        )


async def test_the_agents_sdk_runs_an_agent_with_a_tool(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    """The Agents SDK's default model speaks the Responses API. The random model
    is made to call the tool (tool_choice required), and the agent stops on the
    tool's result, which is then its final output."""
    from agents import (
        Agent,
        ModelSettings,
        OpenAIResponsesModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    live, _ = served
    set_tracing_disabled(True)  # no traces sent anywhere
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    async def main() -> Any:
        client = openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{live.port}/v1", api_key="x", max_retries=0
        )
        agent = Agent(
            name="weather",
            instructions="Answer with the tool.",
            model=OpenAIResponsesModel(model="tiny", openai_client=client),
            model_settings=ModelSettings(tool_choice="required"),
            tools=[get_weather],
            tool_use_behavior="stop_on_first_tool",
        )
        try:
            return await Runner.run(agent, "Weather in Oslo?")
        finally:
            await client.close()

    result = await call(lambda: asyncio.run(main()))
    assert len(calls) == 1
    assert result.final_output == f"sunny in {calls[0]}"
