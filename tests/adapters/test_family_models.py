"""A random-weight GGUF per model family, served end to end.

Each model carries its family's special tokens and a chat template in its format
(``tests/core/family_templates.py``); llama.cpp loads it like the family's real
models, and the gateway must recognise the family from it, list the family's
capabilities, and chat with tools through all three APIs without an error: the
words are noise, but whatever the model writes (markup half-written, a call to
nothing) comes back as a well-formed answer the official clients accept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import gguf
import ollama
import openai
import pytest
import trio

from gateway_core_adapters.demo_model import Vocabulary, write_demo_model

from ..core.family_templates import CAPABILITIES, FAMILY_TOKENS, TEMPLATES, WEATHER_TOOL
from .live import LiveServer
from .ollama_setup import call, install, ollama_server

HI: Any = [{"role": "user", "content": "Weather in Paris?"}]
TOOL: Any = WEATHER_TOOL  # the clients' own typed dicts accept it as it is
OPTIONS = {"num_predict": 48, "seed": 3, "temperature": 1.0}


def family_vocabulary(family: str) -> Vocabulary:
    tokens = FAMILY_TOKENS[family]
    return Vocabulary(
        special=tuple(
            (
                token,
                gguf.TokenType.CONTROL if control else gguf.TokenType.USER_DEFINED,
            )
            for token, control in tokens
        ),
        bos=tokens[0][0],
        eos=tokens[1][0],
        chat_template=TEMPLATES[family],
    )


@pytest.fixture
async def families(
    nursery: trio.Nursery, clients: list[ollama.Client], tmp_path: Path
) -> tuple[LiveServer, ollama.Client]:
    live, client = await ollama_server(nursery, clients, tmp_path / "models")
    for family in TEMPLATES:
        path = tmp_path / f"{family}.gguf"
        write_demo_model(path, vocabulary=family_vocabulary(family), name=family)
        await install(client, family, path)
    return live, client


@pytest.mark.parametrize("family", sorted(TEMPLATES))
async def test_a_family_model_is_shown_and_chats_through_every_api(
    families: tuple[LiveServer, ollama.Client], family: str
) -> None:
    live, client = families
    shown = await call(lambda: client.show(family))
    assert set(shown.capabilities or ()) == {"completion", *CAPABILITIES[family]}
    assert shown.template == TEMPLATES[family]

    whole = await call(
        lambda: client.chat(
            model=family, messages=HI, tools=[WEATHER_TOOL], options=OPTIONS
        )
    )
    assert whole.done_reason in ("stop", "length")
    for tool_call in whole.message.tool_calls or ():
        assert tool_call.function.name == "get_weather"
    chunks = await call(
        lambda: list(
            client.chat(
                model=family,
                messages=HI,
                tools=[WEATHER_TOOL],
                options=OPTIONS,
                stream=True,
            )
        )
    )
    assert chunks[-1].done

    base = f"http://127.0.0.1:{live.port}"
    with openai.OpenAI(base_url=f"{base}/v1", api_key="-", max_retries=0) as chat:
        completion = await call(
            lambda: chat.chat.completions.create(
                model=family, messages=HI, tools=[TOOL], max_tokens=48, seed=3
            )
        )
    (choice,) = completion.choices
    assert choice.finish_reason in ("stop", "length", "tool_calls")
    with anthropic.Anthropic(base_url=base, api_key="-", max_retries=0) as claude:
        message = await call(
            lambda: claude.messages.create(
                model=family,
                max_tokens=48,
                messages=HI,
                tools=[
                    {
                        "name": "get_weather",
                        "input_schema": WEATHER_TOOL["function"]["parameters"],
                    }
                ],
            )
        )
    assert message.stop_reason in ("end_turn", "max_tokens", "tool_use")


CITY: Any = {
    "type": "object",
    "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}},
    "required": ["city"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("family", sorted(TEMPLATES))
async def test_a_forced_call_in_the_familys_own_markup_reaches_every_client(
    families: tuple[LiveServer, ollama.Client], family: str
) -> None:
    """``tool_choice`` required: the runner holds the model to the call's forms in
    its family's markup (harmony's control tokens named by id), the family's parser
    reads it back, and each official client gets a call it parses into its types:
    the tool, arguments its schema accepts, and the reason that says a call came."""
    live, _ = families
    base = f"http://127.0.0.1:{live.port}"
    tool: Any = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": CITY},
    }
    with openai.OpenAI(base_url=f"{base}/v1", api_key="-", max_retries=0) as chat:
        completion = await call(
            lambda: chat.chat.completions.create(
                model=family,
                messages=HI,
                tools=[tool],
                tool_choice="required",
                max_tokens=200,
                seed=3,
                reasoning_effort="none",
            )
        )
    (choice,) = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    (found,) = choice.message.tool_calls
    assert found.type == "function"
    assert found.function.name == "get_weather"
    assert json.loads(found.function.arguments)["city"] in ("Paris", "Oslo")

    def streamed() -> anthropic.types.Message:
        with (
            anthropic.Anthropic(base_url=base, api_key="-", max_retries=0) as claude,
            claude.messages.stream(
                model=family,
                max_tokens=200,
                messages=HI,
                tools=[{"name": "get_weather", "input_schema": CITY}],
                tool_choice={"type": "tool", "name": "get_weather"},
                thinking={"type": "disabled"},
            ) as events,
        ):
            return events.get_final_message()

    message = await call(streamed)
    assert message.stop_reason == "tool_use"
    (block,) = [b for b in message.content if b.type == "tool_use"]
    assert block.name == "get_weather"
    assert isinstance(block.input, dict)
    assert block.input["city"] in ("Paris", "Oslo")
