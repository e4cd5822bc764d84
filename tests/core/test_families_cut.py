"""No call is ever lost: a call whose JSON is complete when the output ends is a call,
closed or not, and a call the token limit cut is a call with the arguments so far,
in every dialect, streamed and whole; and harmony's thinking ends its own way in the
think-then-constrain flow."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_core import (
    AcquireRunner,
    CheckSchema,
    Generate,
    GenerationDone,
    LookupModel,
    ModelFound,
    Piece,
    PromptEvaluated,
    Result,
    RunnerReady,
    SchemaSupported,
    Tokenize,
    TokenizerInfo,
    Tokens,
    WorkEffect,
)
from gateway_core._families._harmony import FINAL_HEADER
from gateway_core._models import ModelRecord
from gateway_core._segments import ToolCall
from gateway_core._tool_calls import Toolbox, cut_call, read_json_cut, salvage_json

from .helpers import THINKING_TOOLS, Transcript, model_record, run

HARMONY_TEMPLATE = (
    "{% for m in messages %}<|start|>{{ m.role }}<|message|>{{ m.content }}<|end|>"
    "{% endfor %}<|start|>assistant{# <|channel|> tools #}"
)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
Script = Sequence[bytes | Result]


class Runner:
    """A scripted runner for one model: ``free`` pieces answer a pass without a
    constraint, ``constrained`` ones a pass with a format or a forced call's
    forms."""

    def __init__(
        self, record: ModelRecord, free: Script = (), constrained: Script = ()
    ) -> None:
        self.record = record
        self.scripts = {False: free, True: constrained}
        self.generations: list[Generate] = []

    def __call__(self, effect: WorkEffect) -> Sequence[Result]:
        match effect:
            case LookupModel():
                return [ModelFound(record=self.record)]
            case AcquireRunner():
                info = TokenizerInfo(context_length=4096, add_bos=False, add_eos=False)
                return [RunnerReady(load_duration=0.0, tokenizer=info)]
            case CheckSchema():
                return [SchemaSupported()]
            case Tokenize(text=text):
                return [Tokens(ids=tuple(map(ord, text)))]
            case Generate(format=fmt, call_forms=forms):
                self.generations.append(effect)
                script = self.scripts[fmt is not None or forms is not None]
                results: list[Result] = [PromptEvaluated(count=5, duration=0.0)]
                for i, item in enumerate(script):
                    if isinstance(item, bytes):
                        results.append(Piece(token=900 + i, data=item, duration=0.0))
                    else:
                        results.append(item)
                if not script or isinstance(script[-1], bytes):
                    results.append(GenerationDone(reason="stop"))
                return results
        raise AssertionError(effect)


QWEN = model_record("qwen", THINKING_TOOLS)
FORCED_CUT = [b'<tool_call>{"name": "get_weather", ', b'"arguments": {"ci']
"""A forced call that the limit (max_tokens 2) cuts inside its arguments."""


def post(path: str, runner: Runner, body: Mapping[str, object]) -> Transcript:
    return run("POST", path, json.dumps(body).encode(), world=runner)


def events(t: Transcript) -> list[Any]:
    found = []
    for line in t.body.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            found.append(json.loads(line[6:]))
    return found


# -- reading what the limit cut ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"city": "Pa', {"city": "Pa"}),
        ('{"city": "Paris", "da', {"city": "Paris"}),
        ('{"city": "Paris", "days": 1', {"city": "Paris", "days": 1}),
        ('{"ci', {}),
        ('{"a": [1, {"b": tr', {"a": [1, {}]}),
        ('{"q": "x\\', {"q": "x"}),
        ('{"q": "\\u00e', {"q": ""}),
        ('"half a str', "half a str"),
        ("", None),
        ("nope", None),
        ('{"a": 1}}', None),
    ],
)
def test_salvage_json(text: str, value: object) -> None:
    assert salvage_json(text) == value


def test_a_cut_json_body_keeps_its_whole_calls() -> None:
    tools = Toolbox.named(["a", "b"])
    found = read_json_cut(
        "", '[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"x": 1', tools
    )
    assert found is not None
    assert [(f.name, dict(f.arguments), f.partial) for f in found] == [
        ("a", {}, None),
        ("b", {"x": 1}, '{"x": 1'),
    ]
    # A cut element whose name never came is dropped; an unknown tool is no call.
    assert (
        read_json_cut("", '[{"name": "a", "arguments": {}}, {"na', tools) == found[:1]
    )
    assert read_json_cut("", '{"name": "rm", "arguments": {', tools) is None
    # Arguments that were whole, the call's own brace cut.
    whole = read_json_cut("", '{"name": "a", "arguments": {"x": [1]}', tools)
    assert whole is not None
    assert whole[0].partial == '{"x": [1]}'


def test_a_cut_forced_call_names_the_tool_it_began_to_name() -> None:
    names = ["get_weather", "get_time"]
    assert cut_call("", names) is None
    started = cut_call('{"na', names)
    assert started is not None
    assert (started.name, started.partial) == ("get_weather", "")
    time = cut_call('{"name": "get_t', names)
    assert time is not None
    assert time.name == "get_time"
    assert cut_call('{"name": "rm', names) is None
    found = cut_call('{"name": "get_time", "arguments": {"tz": "U', names)
    assert found is not None
    assert (found.name, dict(found.arguments), found.partial) == (
        "get_time",
        {"tz": "U"},
        '{"tz": "U',
    )


# -- a forced call cut by max_tokens, in every dialect ------------------------------


def test_openai_gets_the_cut_call_and_finish_reason_length() -> None:
    body = {
        "model": "qwen",
        "messages": [{"role": "user", "content": "Weather?"}],
        "tools": [WEATHER],
        "tool_choice": "required",
        "max_tokens": 2,
        "reasoning_effort": "none",
    }
    whole = post("/v1/chat/completions", Runner(QWEN, constrained=FORCED_CUT), body)
    choice = whole.json()["choices"][0]  # type: ignore[index]
    assert choice["finish_reason"] == "length"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"ci'}
    assert call["id"].startswith("call_")

    streamed = post(
        "/v1/chat/completions",
        Runner(QWEN, constrained=FORCED_CUT),
        {**body, "stream": True},
    )
    chunks = events(streamed)
    calls = [
        c
        for chunk in chunks
        for c in chunk["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert [c["function"] for c in calls] == [
        {"name": "get_weather", "arguments": '{"ci'}
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_anthropic_gets_a_tool_use_block_and_max_tokens() -> None:
    body = {
        "model": "qwen",
        "max_tokens": 2,
        "messages": [{"role": "user", "content": "Weather?"}],
        "tools": [
            {
                "name": "get_weather",
                "input_schema": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                },
            }
        ],
        "tool_choice": {"type": "any"},
        "thinking": {"type": "disabled"},
    }
    cut = [b'<tool_call>{"name": "get_weather", ', b'"arguments": {"city": "Pa']
    whole = post("/v1/messages", Runner(QWEN, constrained=cut), body).json()
    assert isinstance(whole, dict)
    assert whole["stop_reason"] == "max_tokens"
    (block,) = whole["content"]
    assert (block["type"], block["name"], block["input"]) == (
        "tool_use",
        "get_weather",
        {"city": "Pa"},
    )

    streamed = post(
        "/v1/messages", Runner(QWEN, constrained=cut), {**body, "stream": True}
    )
    found = events(streamed)
    deltas = [e["delta"] for e in found if e["type"] == "content_block_delta"]
    assert deltas == [{"type": "input_json_delta", "partial_json": '{"city": "Pa'}]
    stops = [e["delta"]["stop_reason"] for e in found if e["type"] == "message_delta"]
    assert stops == ["max_tokens"]


def test_the_native_api_gets_the_call_and_done_reason_length() -> None:
    body = {
        "model": "qwen",
        "messages": [{"role": "user", "content": "Weather?"}],
        "tools": [WEATHER],
        "tool_choice": "required",
        "think": False,
        "stream": False,
        "options": {"num_predict": 2},
    }
    # /api/chat has no tool_choice; the canonical request does, through the compat
    # layers. Here a free call is cut instead.
    del body["tool_choice"]
    free = [b'Sure <tool_call>{"name": "get_weather", ', b'"arguments": {"city": "Pa']
    t = post("/api/chat", Runner(QWEN, free=free), body)
    answer = t.json()
    assert isinstance(answer, dict)
    assert answer["done_reason"] == "length"
    message = answer["message"]
    assert message["content"] == "Sure "
    assert [c["function"] for c in message["tool_calls"]] == [
        {"index": 0, "name": "get_weather", "arguments": {"city": "Pa"}}
    ]


def test_a_free_call_cut_by_the_limit_is_a_call_on_openai_too() -> None:
    free = [b'<tool_call>{"name": "get_weather", "arguments": {"city": "Pa']
    body = {
        "model": "qwen",
        "messages": [{"role": "user", "content": "Weather?"}],
        "tools": [WEATHER],
        "max_tokens": 1,
        "reasoning_effort": "none",
    }
    choice = post("/v1/chat/completions", Runner(QWEN, free=free), body).json()
    choice = choice["choices"][0]  # type: ignore[index]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["tool_calls"][0]["function"]["arguments"] == (
        '{"city": "Pa'
    )


def test_an_unclosed_call_the_model_ended_is_a_call_and_stop_is_tool_calls() -> None:
    free = [b'<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}']
    body = {
        "model": "qwen",
        "messages": [{"role": "user", "content": "Weather?"}],
        "tools": [WEATHER],
        "reasoning_effort": "none",
    }
    choice = post("/v1/chat/completions", Runner(QWEN, free=free), body).json()
    choice = choice["choices"][0]  # type: ignore[index]
    assert choice["finish_reason"] == "tool_calls"
    assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {
        "city": "Paris"
    }


def test_the_segment_writes_its_own_cut_text() -> None:
    call = ToolCall(index=0, id="call_x", name="f", arguments={}, partial='{"a')
    assert call.arguments_text() == '{"a'
    assert (
        ToolCall(index=0, id="call_x", name="f", arguments={"a": 1}).arguments_text()
        == '{"a":1}'
    )


# -- harmony through the generation flow --------------------------------------------

HARMONY = model_record("oss", HARMONY_TEMPLATE)
SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}}


def test_harmony_answers_natively_with_thinking_and_a_call() -> None:
    free = [
        b"<|channel|>analysis<|message|>Need weather.<|end|>",
        b"<|start|>assistant<|channel|>commentary to=functions.get_weather",
        b' <|constrain|>json<|message|>{"city":"Paris"}',
    ]
    body = {
        "model": "oss",
        "messages": [{"role": "user", "content": "Weather?"}],
        "tools": [WEATHER],
        "stream": False,
    }
    t = post("/api/chat", Runner(HARMONY, free=free), body)
    message = t.json()["message"]  # type: ignore[index]
    assert message["thinking"] == "Need weather."
    assert message["content"] == ""
    assert [c["function"] for c in message["tool_calls"]] == [
        {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}
    ]


def test_harmony_two_pass_opens_the_final_channel_for_the_answer() -> None:
    runner = Runner(
        HARMONY,
        free=[b"<|channel|>analysis<|message|>", b"Think.", b"<|end|>", b"junk"],
        constrained=[b'{"ok": true}'],
    )
    body = {
        "model": "oss",
        "messages": [{"role": "user", "content": "Hi"}],
        "format": SCHEMA,
        "stream": False,
    }
    t = post("/api/chat", runner, body)
    first, second = runner.generations
    header = tuple(map(ord, FINAL_HEADER))
    assert second.prompt == (*first.prompt, 900, 901, 902, *header)
    message = t.json()["message"]  # type: ignore[index]
    assert (message["thinking"], message["content"]) == ("Think.", '{"ok": true}')


def test_harmony_stopped_inside_its_analysis_gets_it_closed() -> None:
    runner = Runner(
        HARMONY,
        free=[b"<|channel|>analysis<|message|>", b"Hmm"],
        constrained=[b'{"ok": false}'],
    )
    body = {
        "model": "oss",
        "messages": [{"role": "user", "content": "Hi"}],
        "format": SCHEMA,
        "stream": False,
    }
    post("/api/chat", runner, body)
    first, second = runner.generations
    closing = tuple(map(ord, "<|end|>" + FINAL_HEADER))
    assert second.prompt == (*first.prompt, 900, 901, *closing)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    value=st.dictionaries(st.text(max_size=4), JSON_VALUES, max_size=4),
    at=st.integers(0),
)
def test_any_prefix_of_an_object_salvages_to_an_object(
    value: dict[str, Any], at: int
) -> None:
    text = json.dumps(value, ensure_ascii=at % 2 == 0)
    prefix = text[: at % (len(text) + 1)]
    found = salvage_json(prefix)
    assert found is None if not prefix else isinstance(found, dict)
    if prefix == text:
        assert found == value
