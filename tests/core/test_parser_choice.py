"""The ``parser`` a model is created with: which family reads its output, whatever
its template looks like (Ollama's PARSER)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from gateway_core import (
    AcquireRunner,
    CheckSchema,
    CreateModel,
    Generate,
    GenerationDone,
    LookupModel,
    ModelCreated,
    ModelFound,
    ModelName,
    Piece,
    PromptEvaluated,
    Result,
    RunnerReady,
    SchemaSupported,
    Tokenize,
    TokenizerInfo,
    Tokens,
    WorkEffect,
    parse_modelfile,
)
from gateway_core._families import FAMILIES, family_for

from .helpers import CHATML, model_record, run

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
            },
        },
    }
]
# A ChatML template that mentions tools: on its own it reads as the json family.
TEMPLATE = CHATML + "{# tools #}"
MISTRAL_CALL = b'[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Oslo"}}]'


def world(parser: str) -> Any:
    record = dataclasses.replace(model_record("m", TEMPLATE), parser=parser)

    def answer(effect: WorkEffect) -> Sequence[Result]:
        match effect:
            case LookupModel():
                return [ModelFound(record=record)]
            case AcquireRunner():
                info = TokenizerInfo(context_length=4096, add_bos=False, add_eos=False)
                return [RunnerReady(load_duration=0.0, tokenizer=info)]
            case Tokenize(text=text):
                return [Tokens(ids=tuple(map(ord, text)))]
            case Generate():
                return [
                    PromptEvaluated(count=3, duration=0.0),
                    Piece(token=1, data=MISTRAL_CALL, duration=0.0),
                    GenerationDone(reason="stop"),
                ]
            case CreateModel():
                return [ModelCreated(statuses=())]
            case CheckSchema():  # the lazy constraint on the calls' JSON
                return [SchemaSupported()]
        raise AssertionError(effect)

    return answer


def chat(parser: str) -> Any:
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}],
            "tools": TOOLS, "stream": False}  # fmt: skip
    return run(
        "POST", "/api/chat", json.dumps(body).encode(), world=world(parser)
    ).json()


def test_the_parser_decides_how_the_output_is_read() -> None:
    chosen = chat("mistral")["message"]
    assert chosen["content"] == ""
    assert chosen["tool_calls"][0]["function"]["name"] == "get_weather"
    # Without it, the template's family (json) reads the same text as content.
    guessed = chat("")["message"]
    assert "tool_calls" not in guessed
    assert guessed["content"] == MISTRAL_CALL.decode()


def test_an_unknown_parser_name_from_elsewhere_falls_back_to_recognition() -> None:
    assert family_for(TEMPLATE, parser="qwen3-vl-instruct").name == "json"
    assert family_for(TEMPLATE, parser="harmony") is FAMILIES["harmony"]


def test_create_takes_a_known_parser_and_refuses_another() -> None:
    body = {"model": "new", "from": "m", "parser": "qwen3-coder", "stream": False}
    t = run("POST", "/api/create", json.dumps(body).encode(), world=world(""))
    assert t.status == 200
    (effect,) = t.work
    assert isinstance(effect, CreateModel)
    assert (effect.parser, effect.base) == ("qwen3-coder", ModelName.parse("m"))
    bad = run(
        "POST",
        "/api/create",
        json.dumps({**body, "parser": "nope"}).encode(),
        world=world(""),
    )
    assert bad.status == 400
    assert "unknown parser 'nope'" in bad.json()["error"]  # type: ignore[index]


def test_show_and_the_modelfile_say_the_parser() -> None:
    t = run("POST", "/api/show", b'{"model": "m"}', world=world("mistral"))
    shown: Any = t.json()
    assert shown["parser"] == "mistral"
    assert "\nPARSER mistral\n" in shown["modelfile"]
    assert parse_modelfile("FROM m\nPARSER mistral\n").create_request("x") == {
        "model": "x",
        "from": "m",
        "parser": "mistral",
    }
