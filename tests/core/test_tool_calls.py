"""The tool-call parser, fed whole, one character at a time, and cut anywhere.

Every case is run the three ways and must give the same segments once adjacent
content is joined. Hypothesis then checks, over outputs built from the pieces that
matter (markers, brackets, quotes, names), that any cut gives the same segments, that
an output with no call comes back verbatim, and that outputs made of known calls and
text come back as exactly those calls and that text.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_core._errors import LocalProtocolError
from gateway_core._families import (
    FAMILIES,
    FORMATS,
    TOOL_CALL_TRANSITIONS,
    CallGrammar,
    ToolCallInput,
    ToolCallParser,
    ToolCallPhase,
    ToolFormat,
    family_for,
)
from gateway_core._json import JsonValue
from gateway_core._segments import Content, Segment, ToolCall, merge_segments
from gateway_core._tool_calls import Toolbox, call_id

TOOLS = ("get_weather", "get_time", "get")
SEED = "req-1"
HERMES, JSON_, MISTRAL = ToolFormat.HERMES, ToolFormat.JSON, ToolFormat.MISTRAL
Grammar = ToolFormat | CallGrammar
# Grammars of families that use more of the machine: Llama 3 (bare JSON and a
# marker), Mistral v11 (a name before the arguments), and ``[TOOL_CALL]`` (bare
# JSON and a marker that starts with a bracket).
LLAMA3 = FAMILIES["llama3"].calls
MISTRAL_V11 = FAMILIES["mistral-v11"].calls
PREFIX = FAMILIES["tool-call-prefix"].calls
assert LLAMA3 is not None
assert MISTRAL_V11 is not None
assert PREFIX is not None


def split_at(text: str, cuts: Iterable[int]) -> list[str]:
    points = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    pieces = [text[a:b] for a, b in itertools.pairwise(points)]
    assert "".join(pieces) == text  # nothing, trailing text included, is left out
    return pieces


def new_parser(fmt: Grammar, names: Iterable[str] = TOOLS) -> ToolCallParser:
    return ToolCallParser(fmt, tools=Toolbox.named(names), id_seed=SEED)


def parse(fmt: Grammar, pieces: Iterable[str]) -> list[Segment]:
    parser = new_parser(fmt)
    out: list[Segment] = []
    for piece in pieces:
        emitted = parser.feed(piece)
        assert all(s.text for s in emitted if isinstance(s, Content))
        out += emitted
    out += parser.finish()
    assert parser.phase is ToolCallPhase.FINISHED
    assert parser.calls == sum(isinstance(s, ToolCall) for s in out)
    return merge_segments(out)


def three_ways(fmt: Grammar, text: str) -> list[Segment]:
    whole = parse(fmt, [text])
    assert parse(fmt, list(text)) == whole
    assert parse(fmt, split_at(text, range(0, len(text), 5))) == whole
    return whole


def C(text: str) -> Content:
    return Content(text=text)


def K(index: int, name: str, **arguments: JsonValue) -> ToolCall:
    return ToolCall(
        index=index, id=call_id(SEED, index), name=name, arguments=arguments
    )


WEATHER = '{"name": "get_weather", "arguments": {"city": "Tokyo"}}'
TIME = '{"name": "get_time", "arguments": {}}'
UNKNOWN = '{"name": "rm_rf", "arguments": {}}'


def tag(body: str) -> str:
    return f"<tool_call>\n{body}\n</tool_call>"


CASES: list[tuple[Grammar, str, list[Segment]]] = [
    # (format, output, expected segments)
    (HERMES, tag(WEATHER), [K(0, "get_weather", city="Tokyo")]),
    (HERMES, f"Let me check.\n{tag(WEATHER)}\n{tag(TIME)}\n",
     [C("Let me check."), K(0, "get_weather", city="Tokyo"), K(1, "get_time")]),
    (HERMES, f"The weather: \t{tag(WEATHER)}",
     [C("The weather: \t"), K(0, "get_weather", city="Tokyo")]),
    (HERMES, f"The weather: \n \n{tag(WEATHER)}",
     [C("The weather: "), K(0, "get_weather", city="Tokyo")]),
    (HERMES, f"{tag(WEATHER)} Done, see above.",
     [K(0, "get_weather", city="Tokyo"), C("Done, see above.")]),
    (HERMES, f"{tag(WEATHER)} and {tag(TIME)}",
     [K(0, "get_weather", city="Tokyo"), C("and "), K(1, "get_time")]),
    # Arguments as a JSON string, under "parameters", absent, or OpenAI-wrapped.
    (HERMES, tag('{"name": "get", "arguments": "{\\"k\\": [1, 2]}"}'),
     [K(0, "get", k=[1, 2])]),
    (HERMES, tag('{"name": "get", "parameters": {"a": null}}'), [K(0, "get", a=None)]),
    (HERMES, tag('{"name": "get_time"}'), [K(0, "get_time")]),
    (HERMES, tag('{"type": "function", "function": {"name": "get", "arguments": {}}}'),
     [K(0, "get")]),
    # One body holding an array of calls.
    (HERMES, tag(f"[{WEATHER}, {TIME}]"),
     [K(0, "get_weather", city="Tokyo"), K(1, "get_time")]),
    # What is not a call comes back verbatim, and numbering skips it.
    (HERMES, f"{tag('{not json}')}\n{tag(TIME)}",
     [C(tag("{not json}")), K(0, "get_time")]),
    (HERMES, "x " + tag(UNKNOWN), [C("x " + tag(UNKNOWN))]),
    (HERMES, tag('{"name": "get", "arguments": [1]}'),
     [C(tag('{"name": "get", "arguments": [1]}'))]),
    (HERMES, tag('{"name": "get", "arguments": "not json"}'),
     [C(tag('{"name": "get", "arguments": "not json"}'))]),
    (HERMES, tag(f"[{WEATHER}, 3]"), [C(tag(f"[{WEATHER}, 3]"))]),
    (HERMES, tag("[]"), [C(tag("[]"))]),
    # A call whose JSON is complete is a call, closing tag or not (cut at the end).
    (HERMES, f"{tag(WEATHER)}<tool_call>{TIME}", [K(0, "get_weather", city="Tokyo"),
                                                  K(1, "get_time")]),
    (HERMES, f"<tool_call>{TIME}</tool_", [K(0, "get_time")]),
    (HERMES, '<tool_call>{"name": "get_time", "argu',
     [C('<tool_call>{"name": "get_time", "argu')]),
    (HERMES, "Hello <tool_c", [C("Hello <tool_c")]),
    (HERMES, "a <tool b <tool_callx> c\n", [C("a <tool b <tool_callx> c\n")]),
    (HERMES, "  \n", [C("  \n")]),
    (HERMES, "", []),
    # The closing tag's text inside an argument does not end the call.
    (HERMES,
     tag('{"name": "get", "arguments": {"q": "a</tool_call>b\\"</tool_call>"}}'),
     [K(0, "get", q='a</tool_call>b"</tool_call>')]),
    (HERMES, tag('{"name": "get", "arguments": {"q": "</tool_"}}') + " after",
     [K(0, "get", q="</tool_"), C("after")]),
    # Bare JSON: a call only as the first thing, or right after another call.
    (JSON_, '{"name": "get_weather", "parameters": {"city": "Paris"}}',
     [K(0, "get_weather", city="Paris")]),
    (JSON_, f" [{WEATHER}, {TIME}]", [K(0, "get_weather", city="Tokyo"),
                                       K(1, "get_time")]),
    (JSON_, f"{WEATHER}\n{TIME}\n", [K(0, "get_weather", city="Tokyo"),
                                      K(1, "get_time")]),
    (JSON_, f"{WEATHER} that is all", [K(0, "get_weather", city="Tokyo"),
                                        C("that is all")]),
    (JSON_, f"{WEATHER} {{\"answer\": 1}}", [K(0, "get_weather", city="Tokyo"),
                                             C('{"answer": 1}')]),
    (JSON_, ' {"answer": 42} trailing', [C(' {"answer": 42} trailing')]),
    (JSON_, f"Sure: {WEATHER}", [C(f"Sure: {WEATHER}")]),
    (JSON_, '{"unclosed": ', [C('{"unclosed": ')]),
    (JSON_, '{"a": [} then text', [C('{"a": [} then text')]),
    (JSON_, "[1] A citation.", [C("[1] A citation.")]),
    (JSON_, '{"name": "get", "arguments": {"q": "a}b\\"{]"}}',
     [K(0, "get", q='a}b"{]')]),
    (JSON_, "\n", [C("\n")]),
    # Mistral: [TOOL_CALLS] then a JSON value, anywhere.
    (MISTRAL, f"[TOOL_CALLS][{WEATHER}]", [K(0, "get_weather", city="Tokyo")]),
    (MISTRAL, f"Sure. [TOOL_CALLS] {TIME}[TOOL_CALLS]{WEATHER}",
     [C("Sure. "), K(0, "get_time"), K(1, "get_weather", city="Tokyo")]),
    # The closing tag some templates write after the array is markup, not text.
    (MISTRAL, f"[TOOL_CALLS] [{TIME}][/TOOL_CALLS] ok",
     [K(0, "get_time"), C("ok")]),
    (MISTRAL, "[TOOL_CALLS] not json", [C("[TOOL_CALLS] not json")]),
    (MISTRAL, "x [TOOL_CALLS]\n", [C("x [TOOL_CALLS]\n")]),
    (MISTRAL, "[TOOL_CALLS] [{\"name\": \"nope\"}] ok",
     [C("[TOOL_CALLS] [{\"name\": \"nope\"}] ok")]),
    (MISTRAL, "[TOOL_CALLS][{", [C("[TOOL_CALLS][{")]),
    (MISTRAL, "[1] [TOOL", [C("[1] [TOOL")]),
    # Llama 3: bare JSON first, or after <|python_tag|> anywhere.
    (LLAMA3, f"{WEATHER} then", [K(0, "get_weather", city="Tokyo"), C("then")]),
    (LLAMA3, f"Sure: <|python_tag|>{TIME}", [C("Sure: "), K(0, "get_time")]),
    (LLAMA3, "Sure: {1}", [C("Sure: {1}")]),
    # Mistral v11: the tool's name, then its arguments.
    (MISTRAL_V11, '[TOOL_CALLS]get_weather[ARGS]{"city": "Tokyo"}',
     [K(0, "get_weather", city="Tokyo")]),
    (MISTRAL_V11,
     "a [TOOL_CALLS]get[CALL_ID]a1b2c3d4e[ARGS]{}[TOOL_CALLS]get_time[ARGS]{}",
     [C("a "), K(0, "get"), K(1, "get_time")]),
    (MISTRAL_V11, "[TOOL_CALLS]get[ARGS]nope", [C("[TOOL_CALLS]get[ARGS]nope")]),
    (MISTRAL_V11, "[TOOL_CALLS]rm[ARGS]{}", [C("[TOOL_CALLS]rm[ARGS]{}")]),
    (MISTRAL_V11, "[TOOL_CALLS]get weather", [C("[TOOL_CALLS]get weather")]),
    (MISTRAL_V11, f"[TOOL_CALLS][{TIME}]", [K(0, "get_time")]),
    # A marker that starts with a bracket, in a grammar with bare JSON: a marker at
    # the start and after a call, a bare array otherwise.
    (PREFIX, f"[TOOL_CALL] [{WEATHER}] [TOOL_CALL] [{TIME}]",
     [K(0, "get_weather", city="Tokyo"), K(1, "get_time")]),
    (PREFIX, f"[{TIME}] [TOOL_CALL] [{WEATHER}]",
     [K(0, "get_time"), K(1, "get_weather", city="Tokyo")]),
    (PREFIX, "[TOOL_CALL] no", [C("[TOOL_CALL] no")]),
    (PREFIX, "[TOOL", [C("[TOOL")]),
]  # fmt: skip


@pytest.mark.parametrize(("fmt", "text", "expected"), CASES)
def test_cases_three_ways(fmt: Grammar, text: str, expected: list[Segment]) -> None:
    assert three_ways(fmt, text) == expected


def test_content_streams_before_a_call() -> None:
    parser = new_parser(HERMES)
    assert parser.feed("I will look") == [C("I will look")]
    assert parser.feed(" it up. <tool_") == [C(" it up.")]
    assert parser.feed("call>{") == [C(" ")]  # the space before a call is text
    assert parser.phase is ToolCallPhase.BODY
    assert parser.feed('"name": "get"}</tool_call>') == [K(0, "get")]
    assert parser.feed("\n\n") == []
    assert parser.finish() == []


def test_a_value_that_cannot_be_a_call_is_released_at_once() -> None:
    """Bare JSON is held only while it could still be a call: a closer that does not
    match, or a complete value that is not a call, releases it before the end."""
    parser = new_parser(JSON_)
    assert parser.feed('{"a": [') == []
    assert parser.feed("} and") == [C('{"a": [}'), C(" and")]
    assert parser.phase is ToolCallPhase.CONTENT
    parser = new_parser(JSON_)
    assert parser.feed('{"answer": "}"}') == [C('{"answer": "}"}')]


def test_ids() -> None:
    ids = [call_id(SEED, index) for index in range(100)]
    assert all(re.fullmatch(r"call_[a-z0-9]{8}", i) for i in ids)
    assert len(set(ids)) == 100
    assert call_id(SEED, 0) == call_id(SEED, 0)
    assert call_id("req-2", 0) != call_id(SEED, 0)
    assert call_id("\ud800", 0).startswith("call_")  # any seed, even a lone surrogate


def test_native_shape() -> None:
    call = K(1, "get_weather", city="Tokyo", days=3)
    assert call.to_native() == {
        "id": call_id(SEED, 1),
        "function": {
            "index": 1,
            "name": "get_weather",
            "arguments": {"city": "Tokyo", "days": 3},
        },
    }
    function = call.to_native()["function"]
    assert isinstance(function, dict)
    arguments = function["arguments"]
    assert isinstance(arguments, dict)
    assert list(arguments) == ["city", "days"]  # the model's order


def test_tool_call_arguments_are_a_copy() -> None:
    arguments: dict[str, JsonValue] = {"a": 1}
    call = ToolCall(index=0, id="call_x", name="f", arguments=arguments)
    arguments["a"] = 2
    assert call.arguments == {"a": 1}
    with pytest.raises(TypeError):
        call.arguments["a"] = 3  # type: ignore[index]


def test_misuse_after_finish() -> None:
    parser = new_parser(JSON_)
    parser.finish()
    with pytest.raises(LocalProtocolError):
        parser.feed("x")
    with pytest.raises(LocalProtocolError):
        parser.finish()


def test_no_tools_means_no_calls() -> None:
    parser = new_parser(HERMES, ["", ""])
    body = tag('{"name": "", "arguments": {}}')
    assert parser.feed(body) + parser.finish() == [C(body)]


def test_families_for_the_formats_of_old() -> None:
    assert family_for(None).calls is None
    assert family_for("").calls is None
    assert family_for("{{ messages }}").calls is None
    # Bare JSON as always, and a ```json fence anywhere besides.
    calls = family_for("{% if tools %}{{ tools | tojson }}{% endif %}").calls
    assert calls is not None
    assert calls.bare is FORMATS[JSON_].bare is True
    assert (calls.markers, calls.closing) == (("```json",), "```")
    assert family_for("{% if tools %}<tool_call>{% endif %}").calls is FORMATS[HERMES]
    template = "{%- if tools %}[AVAILABLE_TOOLS][TOOL_CALLS]"
    assert family_for(template).calls is FORMATS[MISTRAL]
    assert set(FORMATS) == set(ToolFormat)


def test_the_table_is_what_the_parser_does() -> None:
    """Fed one character at a time the parser makes at most one move per feed; over
    the cases it makes every move of the table and no other."""
    assert {phase for phase, _ in TOOL_CALL_TRANSITIONS} == set(ToolCallPhase) - {
        ToolCallPhase.FINISHED
    }
    for (_, event), targets in TOOL_CALL_TRANSITIONS.items():
        assert (event is ToolCallInput.END) == (targets == {ToolCallPhase.FINISHED})
    moves: set[tuple[ToolCallPhase, ToolCallPhase]] = set()
    for fmt, text, _ in CASES:
        parser = new_parser(fmt)
        for char in [*text, None]:
            before = parser.phase
            parser.feed(char) if char is not None else parser.finish()
            if parser.phase is not before:
                moves.add((before, parser.phase))
    rows = {
        (phase, target)
        for (phase, _), targets in TOOL_CALL_TRANSITIONS.items()
        for target in targets
    }
    assert moves == rows


FRAGMENTS = st.sampled_from(
    [
        "<tool_call>", "</tool_call>", "<tool", "</tool_", "[TOOL_CALLS]", "[TOOL",
        "{", "}", "[", "]", '"', "\\", ":", ",", " ", "\n", '"name"', '"arguments"',
        '"get"', '"get_time"', "get", "x", WEATHER, TIME,
    ]
)  # fmt: skip
OUTPUTS = st.lists(FRAGMENTS, max_size=16).map("".join)


@given(
    fmt=st.sampled_from(ToolFormat), text=OUTPUTS, cuts=st.lists(st.integers(0, 300))
)
def test_any_cut_gives_the_same_segments(
    fmt: ToolFormat, text: str, cuts: list[int]
) -> None:
    whole = parse(fmt, [text])
    assert parse(fmt, split_at(text, cuts)) == whole
    assert parse(fmt, list(text)) == whole
    if not any(isinstance(s, ToolCall) for s in whole):
        assert whole == ([C(text)] if text else [])  # nothing lost, nothing changed


@given(
    fmt=st.sampled_from(ToolFormat),
    text=st.text(max_size=60),
    cuts=st.lists(st.integers()),
)
def test_any_text_is_content_unless_it_holds_a_call(
    fmt: ToolFormat, text: str, cuts: list[int]
) -> None:
    segments = parse(fmt, split_at(text, cuts))
    assert segments == parse(fmt, [text])
    if not any(isinstance(s, ToolCall) for s in segments):
        assert segments == ([C(text)] if text else [])


PROSE = st.text(st.sampled_from("ab .,\n{}:'é"), min_size=1, max_size=12).filter(
    lambda s: s.strip() != "" and not s.lstrip().startswith(("{", "["))
)
ARGUMENTS = st.dictionaries(
    st.text(max_size=5),
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    max_size=3,
)
CALLS = st.tuples(st.sampled_from(TOOLS), ARGUMENTS)


def _render(fmt: ToolFormat, name: str, arguments: dict[str, JsonValue]) -> str:
    body = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    if fmt is HERMES:
        return tag(body)
    if fmt is MISTRAL:
        return f"[TOOL_CALLS][{body}]"
    return body


@given(
    fmt=st.sampled_from([HERMES, MISTRAL]),
    parts=st.lists(st.one_of(PROSE, CALLS), max_size=6),
    gaps=st.lists(st.sampled_from(["", " ", "\n", "\n\n"]), min_size=7, max_size=7),
    cuts=st.lists(st.integers(0, 1000)),
)
def test_calls_between_text_come_back_as_written(
    fmt: ToolFormat,
    parts: list[str | tuple[str, dict[str, JsonValue]]],
    gaps: list[str],
    cuts: list[int],
) -> None:
    """Text and calls in any order: the calls, numbered, and the text, with only the
    layout around a call dropped: whitespace after it, a line break before it."""
    text = ""
    expected: list[Segment] = []
    for gap, part in zip(gaps, parts, strict=False):
        if isinstance(part, str):
            expected.append(C(gap + part))
            text += gap + part
        else:
            name, arguments = part
            if gap:
                expected.append(C(gap))
            index = sum(isinstance(s, ToolCall) for s in expected)
            expected.append(ToolCall(index=index, id=call_id(SEED, index), name=name,
                                     arguments=arguments))  # fmt: skip
            text += gap + _render(fmt, name, arguments)
    text += gaps[-1]
    # Layout around a call goes; elsewhere whitespace is the model's text.
    expected = merge_segments(expected)
    tidy: list[Segment] = []
    for at, segment in enumerate(expected):
        if isinstance(segment, Content):
            body = segment.text
            if at > 0 and isinstance(expected[at - 1], ToolCall):
                body = body.lstrip()
            if at + 1 < len(expected) and isinstance(expected[at + 1], ToolCall):
                trimmed = body.rstrip()
                line = body[len(trimmed) :].find("\n")
                body = body if line < 0 else trimmed + body[len(trimmed) :][:line]
            if at + 1 == len(expected):
                body += gaps[-1]
            if body:
                tidy.append(C(body))
        else:
            tidy.append(segment)
    if not expected and gaps[-1]:
        tidy = [C(gaps[-1])]
    assert parse(fmt, split_at(text, cuts)) == merge_segments(tidy)


@given(
    calls=st.lists(CALLS, min_size=1, max_size=4), cuts=st.lists(st.integers(0, 500))
)
def test_bare_json_calls_one_after_another(
    calls: list[tuple[str, dict[str, JsonValue]]], cuts: list[int]
) -> None:
    text = "\n".join(_render(JSON_, name, arguments) for name, arguments in calls)
    expected = [
        ToolCall(index=i, id=call_id(SEED, i), name=name, arguments=arguments)
        for i, (name, arguments) in enumerate(calls)
    ]
    assert parse(JSON_, split_at(text, cuts)) == expected


def test_demo_template_round_trip() -> None:
    """What the demo template writes for an assistant turn with calls parses back."""
    demo_model = pytest.importorskip("gateway_core_adapters.demo_model")
    from gateway_core._templates import ChatTemplate

    assert family_for(demo_model.CHAT_TEMPLATE).calls is FORMATS[HERMES]
    calls: list[JsonValue] = [
        {"function": {"name": "get_weather", "arguments": {"city": "Tokyo", "n": 2}}},
        {"function": {"name": "get_time", "arguments": {}}},
    ]
    rendered = ChatTemplate.compile(demo_model.CHAT_TEMPLATE).render(
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": calls},
        ],
        add_generation_prompt=False,
    )
    turn = rendered.split("<|im_start|>assistant\n", 1)[1].split("<|im_end|>", 1)[0]
    assert three_ways(HERMES, turn) == [
        C("Checking."),
        K(0, "get_weather", city="Tokyo", n=2),
        K(1, "get_time"),
    ]
