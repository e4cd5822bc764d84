"""The official ``openai`` Python client against the real server and llama.cpp.

The same setup as the ``ollama`` client's tests: a live server on a loopback port,
the tiny generated model installed as ``tiny`` (random weights: structure is
checked, never wording), and the synchronous client run in worker threads, streams
consumed there too.
"""

from __future__ import annotations

import base64
import functools
import json
import struct
from collections.abc import AsyncIterator, Sequence
from typing import Any

import jsonschema
import ollama
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from .live import LiveServer
from .ollama_setup import call

HI: list[Any] = [{"role": "user", "content": "Say hi."}]
WEATHER: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"enum": ["Tokyo", "Paris"]}},
                "required": ["city"],
            },
        },
    }
]
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "ok": {"type": "boolean"},
    },
    "required": ["name", "ok"],
    "additionalProperties": False,
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


def reasoning(message: Any) -> str | None:
    """The thinking the server sent: not a field of the SDK's models, so it is in
    their extras."""
    extra = message.model_extra or {}
    found = extra.get("reasoning_content")
    assert found == extra.get("reasoning")
    return found


def streamed_text(chunks: Sequence[ChatCompletionChunk]) -> tuple[str, str]:
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    thinking = "".join(reasoning(c.choices[0].delta) or "" for c in chunks if c.choices)
    return content, thinking


async def test_chat_streamed_and_whole_say_the_same(client: openai.OpenAI) -> None:
    def ask(**more: Any) -> Any:
        return client.chat.completions.create(
            model="tiny", messages=HI, max_completion_tokens=24, seed=7,
            temperature=0, **more,
        )  # fmt: skip

    whole: ChatCompletion = await call(ask)
    assert whole.object == "chat.completion"
    assert whole.id.startswith("chatcmpl-")
    assert whole.model == "tiny"
    (choice,) = whole.choices
    assert choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    assert whole.usage is not None
    assert whole.usage.completion_tokens == 24 or choice.finish_reason == "stop"
    assert whole.usage.total_tokens == (
        whole.usage.prompt_tokens + whole.usage.completion_tokens
    )
    assert whole.usage.prompt_tokens > 0

    chunks: list[ChatCompletionChunk] = await call(
        lambda: list(ask(stream=True, stream_options={"include_usage": True}))
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:] if c.choices)
    assert {c.id for c in chunks} == {chunks[0].id}
    *_, finish, usage = chunks
    assert finish.choices[0].finish_reason == choice.finish_reason
    assert usage.choices == []
    assert usage.usage is not None
    # The same counts, except that the second request found its prompt cached.
    assert usage.usage.prompt_tokens == whole.usage.prompt_tokens
    assert usage.usage.completion_tokens == whole.usage.completion_tokens
    details = usage.usage.prompt_tokens_details
    assert details is not None
    assert details.cached_tokens == whole.usage.prompt_tokens - 1
    assert all(c.usage is None for c in chunks[:-1])
    # Greedy sampling with one seed: the stream is the whole answer, cut up.
    assert streamed_text(chunks) == (
        choice.message.content or "",
        reasoning(choice.message) or "",
    )


async def test_reasoning_effort_none_turns_thinking_off(
    client: openai.OpenAI,
) -> None:
    answer = await call(
        lambda: client.chat.completions.create(
            model="tiny", messages=HI, max_completion_tokens=8, seed=3,
            reasoning_effort="none",
        )
    )  # fmt: skip
    assert reasoning(answer.choices[0].message) is None


async def test_a_required_tool_call_comes_back_with_an_id_and_json_arguments(
    client: openai.OpenAI,
) -> None:
    def ask(**more: Any) -> Any:
        return client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Weather?"}],
            tools=WEATHER, tool_choice="required", reasoning_effort="none", seed=1,
            max_completion_tokens=256, **more,
        )  # fmt: skip

    whole: ChatCompletion = await call(ask)
    (choice,) = whole.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    (found,) = choice.message.tool_calls
    assert found.type == "function"
    assert found.id.startswith("call_")
    assert found.function.name == "get_weather"
    assert json.loads(found.function.arguments)["city"] in ("Tokyo", "Paris")

    chunks: list[ChatCompletionChunk] = await call(lambda: list(ask(stream=True)))
    deltas = [
        call
        for chunk in chunks
        for call in chunk.choices[0].delta.tool_calls or ()
        if chunk.choices
    ]
    (streamed,) = deltas
    assert streamed.index == 0
    assert streamed.id is not None
    assert streamed.id.startswith("call_")
    assert streamed.function is not None
    assert streamed.function.name == "get_weather"
    assert json.loads(streamed.function.arguments or "")["city"] in ("Tokyo", "Paris")
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    # The call and its result go back in the history, and the model answers.
    history: list[Any] = [
        {"role": "user", "content": "Weather?"},
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": found.id, "content": "sunny"},
    ]
    follow_up = await call(
        lambda: client.chat.completions.create(
            model="tiny", messages=history, tools=WEATHER, max_completion_tokens=4
        )
    )
    assert follow_up.choices[0].finish_reason in ("stop", "length", "tool_calls")


@pytest.mark.parametrize("effort", ["none", "low"])
async def test_a_json_schema_answer_validates(
    client: openai.OpenAI, effort: Any
) -> None:
    response_format: Any = {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": SCHEMA, "strict": True},
    }

    def ask(seed: int) -> ChatCompletion:
        return client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "A thing as JSON."}],
            response_format=response_format, reasoning_effort=effort,
            seed=seed, max_completion_tokens=2048,
        )  # fmt: skip

    for seed in range(3):
        answer = await call(functools.partial(ask, seed))
        content = answer.choices[0].message.content or ""
        jsonschema.validate(json.loads(content), SCHEMA)


async def test_a_text_completion_streamed_and_whole(client: openai.OpenAI) -> None:
    def ask(**more: Any) -> Any:
        return client.completions.create(
            model="tiny", prompt="Once upon", max_tokens=8, seed=5, temperature=0,
            **more,
        )  # fmt: skip

    whole = await call(ask)
    assert whole.object == "text_completion"
    assert whole.usage is not None
    assert whole.usage.completion_tokens <= 8
    chunks = await call(lambda: list(ask(stream=True)))
    text = "".join(c.choices[0].text for c in chunks)
    assert text == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


async def test_embeddings_as_floats_and_base64_are_equal(
    client: openai.OpenAI,
) -> None:
    inputs = ["one", "two words"]
    floats = await call(
        lambda: client.embeddings.create(
            model="tiny", input=inputs, encoding_format="float"
        )
    )
    assert [d.index for d in floats.data] == [0, 1]
    assert all(len(d.embedding) == 64 for d in floats.data)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens > 0
    packed = await call(
        lambda: client.embeddings.create(
            model="tiny", input=inputs, encoding_format="base64"
        )
    )
    for plain, encoded in zip(floats.data, packed.data, strict=True):
        raw = base64.b64decode(encoded.embedding)  # type: ignore[arg-type]
        assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(
            plain.embedding, abs=1e-7
        )
    # Asked for nothing, the SDK itself asks for base64 and decodes it.
    default = await call(lambda: client.embeddings.create(model="tiny", input=inputs))
    for plain, decoded in zip(floats.data, default.data, strict=True):
        assert decoded.embedding == pytest.approx(plain.embedding, abs=1e-7)
    cut = await call(
        lambda: client.embeddings.create(model="tiny", input="one", dimensions=8)
    )
    assert len(cut.data[0].embedding) == 8


async def test_models_are_listed_and_retrieved(client: openai.OpenAI) -> None:
    listed = await call(lambda: list(client.models.list()))
    assert [m.id for m in listed] == ["tiny:latest"]
    assert listed[0].owned_by == "library"
    one = await call(lambda: client.models.retrieve("tiny"))
    assert (one.id, one.object, one.created) == ("tiny", "model", listed[0].created)


async def test_an_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    for ask in (
        lambda: client.models.retrieve("nope"),
        lambda: client.chat.completions.create(model="nope", messages=HI),
        lambda: client.chat.completions.create(model="nope", messages=HI, stream=True),
        lambda: client.embeddings.create(model="nope", input="x"),
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            await call(ask)
        assert caught.value.status_code == 404


async def test_a_bad_request_is_a_bad_request_error_naming_the_field(
    client: openai.OpenAI,
) -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("n", {"n": 2}),
        ("logit_bias", {"logit_bias": {"1": 5}}),
        ("top_k", {"extra_body": {"top_k": 5}}),
        ("tool_choice", {"tool_choice": "required"}),
        ("messages", {"messages": []}),
    ]
    for param, fields in cases:
        request: dict[str, Any] = {"model": "tiny", "messages": HI, **fields}
        with pytest.raises(openai.BadRequestError) as caught:
            await call(functools.partial(client.chat.completions.create, **request))
        assert caught.value.param == param
        assert caught.value.type == "invalid_request_error"
