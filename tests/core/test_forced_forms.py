"""A forced tool call in each family's own markup (``_call_forms``, ``_forced_forms``).

Every family with markup of its own gets forms, one per tool the call may name. What
the constraint lets the model write, the family's parser must read back as exactly
that call, whatever the split of the text into tokens: the forms and the parsers are
written apart, and these tests hold them together. Then the flow: the generation is
constrained to the forms, the answer reaches each API as a call, and a call the
limit cut before the parser could name its tool is still the call the forms allow.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_core import GenerationDone
from gateway_core._call_forms import (
    CallForm,
    CallForms,
    Choice,
    Maybe,
    Text,
    Value,
    Words,
)
from gateway_core._families import FAMILIES, Family, ParserSetup, family_named
from gateway_core._segments import Content, Segment, Thinking, ToolCall
from gateway_core._tool_calls import Toolbox

from .family_templates import WEATHER_TOOL
from .helpers import CHATML, model_record
from .test_families_cut import HARMONY, Runner, events, post

TIME_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get-time",
        "parameters": {
            "type": "object",
            "properties": {
                "zone": {"type": "string"},
                "unit": {"enum": ["day", "hour"]},
                "days": {"type": "integer"},
                "exact": {"type": "boolean"},
            },
            "required": ["zone"],
        },
    },
}
TOOLS = [WEATHER_TOOL, TIME_TOOL]
ARGUMENTS: dict[str, dict[str, Any]] = {
    "get_weather": {"city": "Paris"},
    "get-time": {"zone": "Europe/\nParis", "unit": "hour", "days": 3},
}
WITH_FORMS = [family for family in FAMILIES.values() if family.forced is not None]
# Where each family's answer starts: harmony's prompt ends inside a message header.
PROMPT_END = {"harmony": "<|start|>assistant"}


def forms_of(
    family: Family, chosen: Sequence[str] = ("get_weather", "get-time")
) -> CallForms:
    forms = family.forced_forms(Toolbox.of(TOOLS), chosen)
    assert forms is not None
    return forms


def written(form: CallForm, arguments: Mapping[str, Any]) -> str:
    """What a model held to ``form`` writes for ``arguments``: an XML parameter's
    value is the one its tag names; any other JSON value is the whole arguments."""
    out: list[str] = []
    key = ""

    def write(pieces: Sequence[Any]) -> None:
        nonlocal key
        for piece in pieces:
            match piece:
                case Text(text=text):
                    named = re.fullmatch(r"<parameter=(.+)>\n", text)
                    key = named.group(1) if named else key
                    out.append(text)
                case Value():
                    value = arguments[key] if key else arguments
                    out.append(json.dumps(value, separators=(",", ":")))
                case Words(until=until):
                    out.append(str(arguments[key]) + until)
                case Choice(texts=texts):
                    assert arguments[key] in texts
                    out.append(arguments[key])
                case Maybe(pieces=inner):
                    opening = inner[0]
                    assert isinstance(opening, Text)
                    named = re.fullmatch(r"<parameter=(.+)>\n", opening.text)
                    assert named is not None
                    if named.group(1) in arguments:
                        write(inner)

    write(form)
    return "".join(out)


def parse(family: Family, chunks: Sequence[str]) -> list[Segment]:
    setup = ParserSetup(
        thinking=False,
        prompt=PROMPT_END.get(family.name, ""),
        tools=Toolbox.of(TOOLS),
        id_seed="t",
    )
    parser = family.parser(setup)
    segments = [s for chunk in chunks for s in parser.feed(chunk)]
    return segments + parser.finish()


def read_back(
    family: Family, chunks: Sequence[str]
) -> tuple[list[tuple[str, Any]], str]:
    segments = parse(family, chunks)
    calls = [(s.name, dict(s.arguments)) for s in segments if isinstance(s, ToolCall)]
    content = "".join(s.text for s in segments if isinstance(s, Content))
    assert not [s for s in segments if isinstance(s, Thinking)]
    return calls, content


@pytest.mark.parametrize("family", WITH_FORMS, ids=lambda f: f.name)
@pytest.mark.parametrize("tool", ["get_weather", "get-time"])
def test_each_form_reads_back_as_its_call_whole_and_byte_by_byte(
    family: Family, tool: str
) -> None:
    forms = forms_of(family)
    form = forms.forms[forms.names.index(tool)]
    text = written(form, ARGUMENTS[tool])
    for chunks in ([text], list(text)):
        calls, content = read_back(family, chunks)
        assert calls == [(tool, ARGUMENTS[tool])], text
        # The template's own words before the fence are not the call.
        assert content.strip() == ("Action:" if family.name == "action-json" else "")


@pytest.mark.parametrize("family", WITH_FORMS, ids=lambda f: f.name)
@given(data=st.data())
def test_a_form_reads_the_same_at_any_split_points(
    family: Family, data: st.DataObject
) -> None:
    forms = forms_of(family)
    text = written(forms.forms[1], ARGUMENTS["get-time"])
    cuts = sorted(data.draw(st.sets(st.integers(1, len(text) - 1), max_size=8)))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    calls, _ = read_back(family, chunks)
    assert calls == [("get-time", ARGUMENTS["get-time"])]


def test_the_forms_name_each_chosen_tool_as_text_and_hold_its_parameters() -> None:
    hermes = family_named("hermes")
    assert hermes is not None
    forms = forms_of(hermes, ["get-time"])
    assert forms.names == ("get-time",)
    (form,) = forms.forms
    assert forms.leads() == ('<tool_call>\n{"name":"get-time","arguments":',)
    values = [piece for piece in form if isinstance(piece, Value)]
    assert values == [Value(TIME_TOOL["function"]["parameters"])]


def test_harmony_names_a_tool_as_its_template_rendered_it() -> None:
    harmony = family_named("harmony")
    assert harmony is not None
    (lead,) = forms_of(harmony, ["get-time"]).leads()
    assert (
        lead
        == "<|channel|>commentary to=functions.get_time <|constrain|>json<|message|>"
    )


def test_qwen3_coder_writes_required_parameters_and_may_write_optional_ones() -> None:
    coder = family_named("qwen3-coder")
    assert coder is not None
    (form,) = forms_of(coder, ["get-time"]).forms
    optional = [piece for piece in form if isinstance(piece, Maybe)]
    assert [p.pieces[0] for p in optional] == [
        Text("<parameter=unit>\n"),
        Text("<parameter=days>\n"),
        Text("<parameter=exact>\n"),
    ]
    # A string is bare words, an enum of strings one of them; an integer or a
    # boolean is JSON, which coerce reads.
    assert Words(until="\n</parameter>") in form
    unit, days, exact = (p.pieces[1] for p in optional)
    assert unit == Choice(("day", "hour"))
    assert (type(days), type(exact)) == (Value, Value)
    text = written(form, {"zone": "UTC", "exact": True})
    assert read_back(coder, [text])[0] == [("get-time", {"zone": "UTC", "exact": True})]


def test_the_json_and_plain_families_keep_the_json_call() -> None:
    for name in ("json", "plain"):
        family = family_named(name)
        assert family is not None
        assert family.forced_forms(Toolbox.of(TOOLS), ["get_weather"]) is None


def test_forms_cross_to_the_runner_as_json() -> None:
    coder = family_named("qwen3-coder")
    assert coder is not None
    encoded = forms_of(coder, ["get_weather"]).to_json()
    assert encoded == [
        [
            {"text": "<tool_call>"},
            {"text": "\n<function=get_weather>\n"},
            {"text": "<parameter=city>\n"},
            {"words": "\n</parameter>"},
            {"text": "\n"},
            {"text": "</function>\n"},
            {"text": "</tool_call>"},
        ]
    ]
    assert json.loads(json.dumps(encoded)) == encoded


def test_call_forms_need_one_form_per_tool() -> None:
    with pytest.raises(ValueError, match="one form per tool"):
        CallForms(forms=(), names=())
    with pytest.raises(ValueError, match="one form per tool"):
        CallForms(forms=((Text("x"),),), names=("a", "b"))
    with pytest.raises(ValueError, match="words end at markup"):
        Words(until="\nEND")


# -- the flow -----------------------------------------------------------------------

HERMES = model_record("hermes", CHATML + "{# tools <tool_call> #}")
JSON_FAMILY = model_record("json", "{{ messages }} tools")
FORCED: dict[str, Any] = {
    "model": "hermes",
    "messages": [{"role": "user", "content": "Weather?"}],
    "tools": [WEATHER_TOOL, TIME_TOOL],
    "tool_choice": "required",
    "reasoning_effort": "none",
}
HERMES_CALL = [
    b'<tool_call>\n{"name":"get_weather",',
    b'"arguments":{"city":"Paris"}}\n</tool_call>',
]


def test_a_forced_call_is_held_to_the_family_markup_and_read_as_a_call() -> None:
    runner = Runner(HERMES, constrained=HERMES_CALL)
    answer = post("/v1/chat/completions", runner, FORCED).json()
    assert isinstance(answer, dict)
    (choice,) = answer["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert not choice["message"]["content"]
    (call,) = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    (generation,) = runner.generations
    assert generation.format is None
    assert generation.call_forms is not None
    assert generation.call_forms.names == ("get_weather", "get-time")
    assert generation.call_forms.leads()[0].startswith("<tool_call>")


def test_a_named_tool_gets_its_form_alone_and_the_call_streams() -> None:
    runner = Runner(HERMES, constrained=HERMES_CALL)
    body = {
        **FORCED,
        "stream": True,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }
    chunks = events(post("/v1/chat/completions", runner, body))
    calls = [
        c
        for chunk in chunks
        for c in chunk["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert [c["function"]["name"] for c in calls] == ["get_weather"]
    assert not [c for c in chunks if c["choices"][0]["delta"].get("content")]
    (generation,) = runner.generations
    assert generation.call_forms is not None
    assert generation.call_forms.names == ("get_weather",)


@pytest.mark.parametrize("stream", [False, True])
def test_a_form_cut_before_its_tool_is_named_is_the_call_the_forms_allow(
    stream: bool,
) -> None:
    runner = Runner(
        HERMES,
        constrained=[b"<tool_call>", b"\n", GenerationDone(reason="length")],
    )
    body = {
        "model": "hermes",
        "max_tokens": 2,
        "messages": [{"role": "user", "content": "Weather?"}],
        "tools": [
            {
                "name": "get_weather",
                "input_schema": WEATHER_TOOL["function"]["parameters"],
            }
        ],
        "tool_choice": {"type": "any"},
        "thinking": {"type": "disabled"},
        "stream": stream,
    }
    t = post("/v1/messages", runner, body)
    if stream:
        found = events(t)
        starts = [
            e["content_block"] for e in found if e["type"] == "content_block_start"
        ]
        assert [(b["type"], b["name"]) for b in starts] == [("tool_use", "get_weather")]
        stops = [
            e["delta"]["stop_reason"] for e in found if e["type"] == "message_delta"
        ]
        assert stops == ["max_tokens"]
        return
    whole = t.json()
    assert isinstance(whole, dict)
    assert whole["stop_reason"] == "max_tokens"
    (block,) = whole["content"]
    assert (block["type"], block["name"], block["input"]) == (
        "tool_use",
        "get_weather",
        {},
    )


def test_nothing_of_the_call_written_makes_no_call() -> None:
    runner = Runner(HERMES, constrained=[GenerationDone(reason="length")])
    answer = post("/v1/chat/completions", runner, {**FORCED, "max_tokens": 1}).json()
    assert isinstance(answer, dict)
    (choice,) = answer["choices"]
    assert choice["finish_reason"] == "length"
    assert not choice["message"].get("tool_calls")


def test_an_answer_the_parser_cannot_read_as_the_call_is_a_clear_error() -> None:
    # Only a constraint that let something else through could do this.
    t = post("/v1/chat/completions", Runner(HERMES, constrained=[b"no call"]), FORCED)
    assert t.status == 500
    assert b"the forced tool call could not be read" in t.body


def test_a_family_without_markup_of_its_own_gets_the_json_call() -> None:
    call = [b'{"name":"get_weather","arguments":{"city":"Paris"}}']
    runner = Runner(JSON_FAMILY, constrained=call)
    answer = post("/v1/chat/completions", runner, {**FORCED, "model": "json"}).json()
    assert isinstance(answer, dict)
    (found,) = answer["choices"][0]["message"]["tool_calls"]
    assert found["function"]["name"] == "get_weather"
    (generation,) = runner.generations
    assert generation.call_forms is None
    assert isinstance(generation.format, dict)


HARMONY_CALL = [
    b"<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>",
    b'{"city":"Paris"}',
]


@pytest.mark.parametrize(
    ("thought", "opening"),
    [
        # Thinking ended: a new message opens, not the final channel.
        ([b"<|channel|>analysis<|message|>", b"Think.", b"<|end|>", b"junk"],
         "<|start|>assistant"),
        # Stopped inside its analysis: ended for it, then the new message.
        ([b"<|channel|>analysis<|message|>", b"Think."], "<|end|><|start|>assistant"),
    ],
)  # fmt: skip
def test_harmony_thinks_then_makes_the_forced_call_in_a_commentary_message(
    thought: list[bytes], opening: str
) -> None:
    runner = Runner(HARMONY, free=thought, constrained=HARMONY_CALL)
    body = {**FORCED, "model": "oss", "reasoning_effort": "high"}
    answer = post("/v1/chat/completions", runner, body).json()
    assert isinstance(answer, dict)
    first, second = runner.generations
    kept = tuple(range(900, 900 + min(len(thought), 3)))
    assert second.prompt == (*first.prompt, *kept, *map(ord, opening))
    assert second.call_forms is not None
    (choice,) = answer["choices"]
    assert choice["message"]["reasoning_content"] == "Think."
    (call,) = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert choice["finish_reason"] == "tool_calls"


PAINT: dict[str, Any] = {
    "type": "object",
    "$defs": {
        "Color": {"enum": ["red", "green"], "type": "string"},
        "Point": {
            "type": "object",
            "properties": {"x": {"type": "integer"}},
            "required": ["x"],
        },
    },
    "properties": {
        "color": {"$ref": "#/$defs/Color"},
        "at": {"anyOf": [{"$ref": "#/$defs/Point"}, {"type": "null"}]},
    },
    "required": ["color", "at"],
}


def test_qwen3_coder_follows_the_tools_definitions_both_ways() -> None:
    """Pydantic puts enums and nested models in ``$defs``: the form picks the
    value's piece by what the reference points to and carries the definitions
    with a JSON value; the parser coerces by the same."""
    coder = family_named("qwen3-coder")
    assert coder is not None
    tools: list[Any] = [
        {"type": "function", "function": {"name": "paint", "parameters": PAINT}}
    ]
    forms = coder.forced_forms(Toolbox.of(tools), ["paint"])
    assert forms is not None
    (form,) = forms.forms
    assert Choice(("red", "green")) in form
    (point,) = [piece for piece in form if isinstance(piece, Value)]
    assert point.schema["$defs"] == PAINT["$defs"]
    arguments = {"color": "green", "at": {"x": 3}}
    setup = ParserSetup(thinking=False, prompt="", tools=Toolbox.of(tools), id_seed="t")
    parser = coder.parser(setup)
    text = written(form, arguments)
    segments = parser.feed(text) + parser.finish()
    calls = [(s.name, dict(s.arguments)) for s in segments if isinstance(s, ToolCall)]
    assert calls == [("paint", arguments)]


# -- what the review found --------------------------------------------------------

QWEN3 = model_record("qwen", "{{ messages }} <think></think> tools <tool_call>")


def test_a_call_written_while_thinking_before_a_forced_call_is_not_a_second_call() -> (
    None
):
    thinking = [
        b"<think>Let me check",
        b'<tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call>',
        b" ok</think>",
    ]
    rome = [b'<tool_call>\n{"name":"get_weather","arguments":{"city":"Rome"}}']
    runner = Runner(QWEN3, free=thinking, constrained=rome)
    body = {**FORCED, "model": "qwen", "reasoning_effort": "high"}
    for stream in (False, True):
        t = post("/v1/chat/completions", runner, {**body, "stream": stream})
        if stream:
            calls = [
                c
                for chunk in events(t)
                for c in chunk["choices"][0]["delta"].get("tool_calls", [])
            ]
        else:
            answer = t.json()
            assert isinstance(answer, dict)
            calls = answer["choices"][0]["message"]["tool_calls"]
        assert [json.loads(c["function"]["arguments"]) for c in calls] == [
            {"city": "Rome"}
        ]


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        ({"anyOf": [{"type": "string"}, {"type": "null"}]}, "Paris"),
        ({"type": ["string", "null"]}, "Paris"),
        ({"type": ["string", "integer"]}, "abc"),
        ({"enum": [1, 2]}, 1),
        ({"const": 5}, 5),
        ({"type": "boolean"}, True),
        ({}, "hi"),
    ],
)
def test_qwen3_coder_writes_a_value_as_its_parser_reads_it(
    schema: dict[str, Any], value: Any
) -> None:
    coder = family_named("qwen3-coder")
    assert coder is not None
    parameters = {"type": "object", "properties": {"v": schema}, "required": ["v"]}
    tools: list[Any] = [
        {"type": "function", "function": {"name": "f", "parameters": parameters}}
    ]
    forms = coder.forced_forms(Toolbox.of(tools), ["f"])
    assert forms is not None
    (form,) = forms.forms
    parser = coder.parser(
        ParserSetup(thinking=False, prompt="", tools=Toolbox.of(tools), id_seed="t")
    )
    segments = parser.feed(written(form, {"v": value})) + parser.finish()
    calls = [dict(s.arguments) for s in segments if isinstance(s, ToolCall)]
    assert calls == [{"v": value}]


@pytest.mark.parametrize(
    ("family", "name", "key"),
    [
        ("mistral-v11", "get weather", "city"),
        ("mistral-v11", "名前", "city"),
        ("qwen3-coder", "a>b", "city"),
        ("qwen3-coder", "f", "a>b"),
        ("qwen3-coder", "f", " city"),
        ("deepseek", "two\nlines", "city"),
    ],
)
def test_a_name_the_familys_markup_cannot_hold_gets_the_json_call(
    family: str, name: str, key: str
) -> None:
    chosen = family_named(family)
    assert chosen is not None
    parameters = {"type": "object", "properties": {key: {"type": "string"}}}
    tools: list[Any] = [
        {"type": "function", "function": {"name": name, "parameters": parameters}}
    ]
    assert chosen.forced_forms(Toolbox.of(tools), [name]) is None


def test_a_name_mistral_v11_cannot_hold_is_forced_as_the_json_call() -> None:
    record = model_record("magistral", CHATML + "{# tools [TOOL_CALLS] [ARGS] #}")
    tool: Any = {"type": "function", "function": {"name": "get weather"}}
    call = [b'{"name":"get weather","arguments":{}}']
    runner = Runner(record, constrained=call)
    body = {**FORCED, "model": "magistral", "tools": [tool]}
    answer = post("/v1/chat/completions", runner, body).json()
    assert isinstance(answer, dict)
    (found,) = answer["choices"][0]["message"]["tool_calls"]
    assert found["function"]["name"] == "get weather"
    (generation,) = runner.generations
    assert generation.call_forms is None
    assert isinstance(generation.format, dict)


def test_a_prefilled_forced_call_is_continued_by_the_constraint_and_read_whole() -> (
    None
):
    runner = Runner(
        HERMES,
        constrained=[b'{"name":"get_weather",', b'"arguments":{"city":"Oslo"}}'],
    )
    body = {
        "model": "hermes",
        "max_tokens": 50,
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "<tool_call>\n"},
        ],
        "tools": [
            {
                "name": "get_weather",
                "input_schema": WEATHER_TOOL["function"]["parameters"],
            }
        ],
        "tool_choice": {"type": "any"},
    }
    whole = post("/v1/messages", runner, body).json()
    assert isinstance(whole, dict)
    (block,) = whole["content"]
    assert (block["type"], block["name"], block["input"]) == (
        "tool_use",
        "get_weather",
        {"city": "Oslo"},
    )
    (generation,) = runner.generations
    assert generation.call_forms is not None
    assert generation.constraint_prefix == tuple(map(ord, "<tool_call>\n"))
