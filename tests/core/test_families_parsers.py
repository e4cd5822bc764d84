"""Each family's parser on answers written in the family's published format.

Every case runs three ways (whole, one character at a time, in pieces of three) and
must give the same segments once adjacent text of a kind is joined. Hypothesis then
cuts outputs built from each family's markup anywhere: the segments never depend on
the cut, the parser never raises, and calls written in the family's syntax with any
arguments come back as exactly those calls.
"""

# DeepSeek's tokens are spelled with fullwidth bars on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_core._families import (
    FAMILIES,
    HARMONY_TRANSITIONS,
    HarmonyParser,
    ParserSetup,
)
from gateway_core._families._deepseek import (
    CALL_BEGIN,
    CALL_END,
    CALLS_BEGIN,
    CALLS_END,
    SEPARATOR,
)
from gateway_core._families._harmony import HarmonyPhase
from gateway_core._json import JsonValue
from gateway_core._segments import Content, Segment, Thinking, ToolCall, merge_segments
from gateway_core._tool_calls import Toolbox, call_id

SEED = "req-f"
TOOLS: list[dict[str, JsonValue]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": "integer"},
                },
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "set_flags",
            "parameters": {
                "type": "object",
                "properties": {
                    "on": {"type": "boolean"},
                    "ratio": {"type": "number"},
                    "tags": {"type": "array"},
                    "extra": {"type": "object"},
                    "note": {"type": ["string", "null"]},
                    "either": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                },
            },
        },
    },
    {"type": "function", "function": {"name": "get-time"}},
]
TOOLBOX = Toolbox.of(TOOLS)
HARMONY_PROMPT = "<|start|>user<|message|>Hi<|end|><|start|>assistant"
QWEN_PROMPT = "<|im_start|>assistant\n<think>\n"
R1_PROMPT = "<｜User｜>Hi<｜Assistant｜><think>\n"


def split_at(text: str, cuts: Iterable[int]) -> list[str]:
    points = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    return [text[a:b] for a, b in itertools.pairwise(points)]


def parse(
    family: str,
    pieces: Iterable[str],
    *,
    prompt: str = "",
    cut: bool = False,
    thinking: bool = True,
) -> list[Segment]:
    setup = ParserSetup(thinking=thinking, prompt=prompt, tools=TOOLBOX, id_seed=SEED)
    parser = FAMILIES[family].parser(setup)
    out: list[Segment] = []
    for piece in pieces:
        emitted = parser.feed(piece)
        assert all(s.text for s in emitted if not isinstance(s, ToolCall))
        out += emitted
    out += parser.finish(cut=cut)
    return merge_segments(out)


def three_ways(family: str, text: str, **options: object) -> list[Segment]:
    whole = parse(family, [text], **options)  # type: ignore[arg-type]
    assert parse(family, list(text), **options) == whole  # type: ignore[arg-type]
    assert parse(family, split_at(text, range(0, len(text), 3)), **options) == whole  # type: ignore[arg-type]
    return whole


def T(text: str) -> Thinking:
    return Thinking(text=text)


def C(text: str) -> Content:
    return Content(text=text)


def K(index: int, name: str, **arguments: JsonValue) -> ToolCall:
    return ToolCall(
        index=index, id=call_id(SEED, index), name=name, arguments=arguments
    )


H_CALL = (
    "<|start|>assistant<|channel|>commentary to=functions.get_weather "
    '<|constrain|>json<|message|>{"city":"Paris"}'
)
QC_CALL = (
    "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
    "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>"
)
R1_CALL = (
    f"{CALL_BEGIN}function{SEPARATOR}get_weather\n```json\n"
    f'{{"city": "Paris"}}\n```{CALL_END}'
)
V31_CALL = f'{CALL_BEGIN}get_weather{SEPARATOR}{{"city": "Oslo"}}{CALL_END}'

CASES: list[tuple[str, str, str, list[Segment]]] = [
    # (family, prompt, output, expected)
    # -- harmony: analysis is thinking, final is content, a recipient is a call
    ("harmony", HARMONY_PROMPT,
     "<|channel|>analysis<|message|>Need the weather.<|end|>" + H_CALL + "<|call|>",
     [T("Need the weather."), K(0, "get_weather", city="Paris")]),
    # The runner stops at <|call|> (an end-of-generation token): the JSON is whole.
    ("harmony", HARMONY_PROMPT, "<|channel|>analysis<|message|>x<|end|>" + H_CALL,
     [T("x"), K(0, "get_weather", city="Paris")]),
    ("harmony", HARMONY_PROMPT,
     "<|channel|>analysis<|message|>hmm<|end|><|start|>assistant<|channel|>final"
     "<|message|>Hello, world!<|return|>",
     [T("hmm"), C("Hello, world!")]),
    ("harmony", HARMONY_PROMPT, "<|channel|>final<|message|>Hi", [C("Hi")]),
    # The recipient before the channel, and a tool renamed to a harmony identifier.
    ("harmony", HARMONY_PROMPT,
     "<|channel|>analysis<|message|>x<|end|><|start|>assistant to=functions.get_time"
     "<|channel|>commentary json<|message|>{}<|call|>",
     [T("x"), K(0, "get-time")]),
    # A preamble (commentary, no recipient) is content.
    ("harmony", HARMONY_PROMPT,
     "<|channel|>commentary<|message|>Checking.<|end|>" + H_CALL,
     [C("Checking."), K(0, "get_weather", city="Paris")]),
    # An unknown tool, or arguments that are not an object: content, verbatim.
    ("harmony", HARMONY_PROMPT,
     "<|channel|>commentary to=functions.rm <|constrain|>json<|message|>{}<|call|>",
     [C("<|channel|>commentary to=functions.rm <|constrain|>json<|message|>{}"
        "<|call|>")]),
    ("harmony", HARMONY_PROMPT,
     "<|channel|>commentary to=functions.get_weather<|message|>[1]<|call|>",
     [C("<|channel|>commentary to=functions.get_weather<|message|>[1]<|call|>")]),
    # Prose where a header should be is the answer.
    ("harmony", HARMONY_PROMPT, "Hello there, friend.", [C("Hello there, friend.")]),
    ("harmony", HARMONY_PROMPT, "Hello", [C("Hello")]),
    # The prompt already opened the final message (a prefill).
    ("harmony", HARMONY_PROMPT + "<|channel|>final<|message|>", "Hi<|return|>",
     [C("Hi")]),
    # -- qwen3: a call may open inside the thinking
    ("qwen3", QWEN_PROMPT,
     'Let me think<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}'
     "\n</tool_call>",
     [T("Let me think"), K(0, "get_weather", city="Rome")]),
    ("qwen3", QWEN_PROMPT,
     'Hmm<tool_call>{"name": "get_weather", "arguments": {"city": "</tool_call>"}}'
     "</tool_call>more</think>\n\nDone.",
     [T("Hmm"), K(0, "get_weather", city="</tool_call>"), T("more"), C("Done.")]),
    ("qwen3", "",
     '<think>Hmm</think>\n\nSure. <tool_call>{"name": "get_weather", "arguments": {}}'
     "</tool_call>",
     [T("Hmm"), C("Sure. "), K(0, "get_weather")]),
    # -- qwen3-coder: XML, each value coerced by the tool's schema
    ("qwen3-coder", "", "Checking.\n" + QC_CALL,
     [C("Checking."), K(0, "get_weather", city="Paris", days=3)]),
    ("qwen3-coder", "",
     "<tool_call><function=set_flags><parameter=on>True</parameter>"
     "<parameter=ratio>0.5</parameter><parameter=tags>[1, \"a\"]</parameter>"
     '<parameter=extra>{"k": null}</parameter><parameter=note>null</parameter>'
     "<parameter=either>12</parameter><parameter=other>7</parameter>"
     "</function></tool_call>",
     [K(0, "set_flags", on=True, ratio=0.5, tags=[1, "a"], extra={"k": None},
        note=None, either=12, other="7")]),
    # A value no allowed type reads stays the text the model wrote.
    ("qwen3-coder", "",
     "<tool_call><function=set_flags><parameter=on>maybe</parameter>"
     "<parameter=ratio>lots</parameter></function></tool_call>",
     [K(0, "set_flags", on="maybe", ratio="lots")]),
    # A value left open ends at the next parameter (as the reference reads it).
    ("qwen3-coder", "",
     "<tool_call><function=get_weather><parameter=city>\nSão Paulo\n"
     "<parameter=days>2</parameter></function></tool_call>",
     [K(0, "get_weather", city="São Paulo", days=2)]),
    ("qwen3-coder", "",
     "<tool_call><function=rm><parameter=x>1</parameter></function></tool_call>",
     [C("<tool_call><function=rm><parameter=x>1</parameter></function>"
        "</tool_call>")]),
    ("qwen3-coder", "", 'A "quote <tool_call>oops</tool_call> b',
     [C('A "quote <tool_call>oops</tool_call> b')]),
    # -- deepseek: R1's fenced blocks and V3.1's inline JSON
    ("deepseek", R1_PROMPT,
     f"Let me see.</think>\n\n{CALLS_BEGIN}{R1_CALL}\n{V31_CALL}{CALLS_END}",
     [T("Let me see."), K(0, "get_weather", city="Paris"),
      K(1, "get_weather", city="Oslo")]),
    ("deepseek", "", f"Sure{CALLS_BEGIN}{V31_CALL}",
     [C("Sure"), K(0, "get_weather", city="Oslo")]),
    ("deepseek", "", f"{CALLS_BEGIN}{CALL_BEGIN}rm{SEPARATOR}{{}}{CALL_END}{CALLS_END}",
     [C(f"{CALLS_BEGIN}{CALL_BEGIN}rm{SEPARATOR}{{}}{CALL_END}{CALLS_END}")]),
    # -- mistral v11 (Magistral thinks between [THINK] tags)
    ("mistral-v11", "",
     '[THINK]Weather first.[/THINK]Sure [TOOL_CALLS]get_weather[ARGS]{"city": "Nice"}',
     [T("Weather first."), C("Sure "), K(0, "get_weather", city="Nice")]),
    # -- mistral: the array form; its closing tag is markup
    ("mistral", "",
     '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Lyon"}}]'
     "[/TOOL_CALLS]",
     [K(0, "get_weather", city="Lyon")]),
    # -- llama3: <|python_tag|> or bare JSON with "parameters"
    ("llama3", "",
     '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Bonn"}}',
     [K(0, "get_weather", city="Bonn")]),
    ("llama3", "", '{"name": "get-time", "parameters": {}}', [K(0, "get-time")]),
    ("llama3", "", "The answer is {x}.", [C("The answer is {x}.")]),
    # -- json: a bare call first, or a call in a ```json fence anywhere
    ("json", "",
     'Sure.\n```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```',
     [C("Sure."), K(0, "get_weather", city="Paris")]),
    # A fence that holds no call of an offered tool is the answer, verbatim.
    ("json", "", 'Here:\n```json\n{"a": 1}\n```\nok',
     [C('Here:\n```json\n{"a": 1}\n```\nok')]),
    # -- prefix formats a template teaches
    ("functools", "",
     'functools[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
     '{"name": "get-time", "arguments": {}}]',
     [K(0, "get_weather", city="Paris"), K(1, "get-time")]),
    ("action-json", "",
     'Thought: x\nAction: ```json\n{"name": "get_weather", "arguments": '
     '{"city": "Paris"}}\n```',
     [C("Thought: x\nAction: "), K(0, "get_weather", city="Paris")]),
    ("tool-call-prefix", "",
     'ok [TOOL_CALL] [{"name": "get_weather", "arguments": {"city": "Paris"}}]',
     [C("ok "), K(0, "get_weather", city="Paris")]),
]  # fmt: skip


@pytest.mark.parametrize(("family", "prompt", "text", "expected"), CASES)
def test_published_formats_three_ways(
    family: str, prompt: str, text: str, expected: list[Segment]
) -> None:
    assert three_ways(family, text, prompt=prompt) == expected


def test_harmony_streams_thinking_and_content_before_the_end_tags() -> None:
    setup = ParserSetup(
        thinking=True, prompt=HARMONY_PROMPT, tools=TOOLBOX, id_seed=SEED
    )
    parser = FAMILIES["harmony"].parser(setup)
    assert parser.feed("<|channel|>analysis<|message|>Let me") == [T("Let me")]
    assert parser.feed(" think<|e") == [T(" think")]
    thinking_over = [parser.done_thinking]
    assert parser.feed("nd|><|start|>assistant<|channel|>final<|message|>Hi") == [
        C("Hi")
    ]
    thinking_over.append(parser.done_thinking)
    assert thinking_over == [False, True]
    assert parser.finish() == []


# -- any cut ------------------------------------------------------------------------

FRAGMENTS = {
    "harmony": [
        "<|start|>", "assistant", "<|channel|>", "analysis", "final", "commentary",
        " to=functions.get_weather", " to=functions.rm", " <|constrain|>json",
        "<|message|>", "<|end|>", "<|call|>", "<|return|>", '{"city":"X"}', "{",
        "hi", " ", "\n", "<|", ",",
    ],
    "qwen3": [
        "<think>", "</think>", "<tool_call>", "</tool_call>", "<tool",
        '{"name": "get_weather", "arguments": {}}', '"', "{", "}", "x", " ", "\n",
    ],
    "qwen3-coder": [
        "<tool_call>", "</tool_call>", "<function=get_weather>", "<function=rm>",
        "</function>", "<parameter=days>", "<parameter=city>", "</parameter>", "3",
        "x", "\n", " ", "<", '"',
    ],
    "deepseek": [
        CALLS_BEGIN, CALLS_END, CALL_BEGIN, CALL_END, SEPARATOR, "function",
        "get_weather", "\n```json\n", '{"city": "A"}', "\n```", "</think>", "x",
        " ", "\n",
    ],
    "mistral-v11": [
        "[TOOL_CALLS]", "get_weather", "[ARGS]", "[CALL_ID]", "abc123", "{}",
        '{"city": "B"}', "[THINK]", "[/THINK]", "[", "]", "x", " ", "\n",
    ],
    "llama3": [
        "<|python_tag|>", '{"name": "get_weather", "parameters": {}}', "{", "}",
        "[", "]", '"', "x", " ", "\n",
    ],
}  # fmt: skip
FRAGMENTS["hermes"] = FRAGMENTS["qwen3"]
FRAGMENTS["plain"] = FRAGMENTS["llama3"]
_CALL_JSON = '{"name": "get_weather", "arguments": {"city": "C"}}'
FRAGMENTS["json"] = FRAGMENTS["action-json"] = [
    *FRAGMENTS["llama3"],
    "```json",
    "```",
    "\n",
    _CALL_JSON,
    "Action: ",
]
FRAGMENTS["functools"] = ["functools", "[", _CALL_JSON, "]", ",", "x", " ", "{"]
FRAGMENTS["tool-call-prefix"] = ["[TOOL_CALL]", " [", _CALL_JSON, "]", "x", " "]
FRAGMENTS["mistral"] = [*FRAGMENTS["mistral-v11"], "[/TOOL_CALLS]", "[{", "}]"]
assert set(FRAGMENTS) == set(FAMILIES)
PROMPTS = {
    "harmony": HARMONY_PROMPT,
    "qwen3": QWEN_PROMPT,
    "deepseek": R1_PROMPT,
}


@pytest.mark.parametrize("family", list(FRAGMENTS))
@given(data=st.data())
def test_any_cut_gives_the_same_segments(family: str, data: st.DataObject) -> None:
    pieces = data.draw(st.lists(st.sampled_from(FRAGMENTS[family]), max_size=14))
    text = "".join(pieces)
    cuts = data.draw(st.lists(st.integers(0, 400)))
    cut = data.draw(st.booleans())
    prompt = PROMPTS.get(family, "")
    whole = parse(family, [text], prompt=prompt, cut=cut)
    assert parse(family, split_at(text, cuts), prompt=prompt, cut=cut) == whole
    assert parse(family, list(text), prompt=prompt, cut=cut) == whole
    if family != "harmony":
        # Without thinking, an output that holds no call comes back verbatim.
        plain = parse(family, split_at(text, cuts), cut=cut, thinking=False)
        if not any(isinstance(s, ToolCall) for s in plain):
            assert plain == ([C(text)] if text else [])


@pytest.mark.parametrize("family", list(FRAGMENTS))
@given(text=st.text(max_size=40), cuts=st.lists(st.integers()))
def test_text_without_markup_is_content(
    family: str, text: str, cuts: list[int]
) -> None:
    markup = ("<|", "<tool", "<think", "[TOOL", "[THINK", "<｜", "{", "[")
    if any(mark in text for mark in markup) or not text.strip():
        return
    assert parse(family, split_at(text, cuts), thinking=False) == [C(text)]


# -- calls with any arguments come back as written ---------------------------------

ARGUMENTS = st.dictionaries(
    st.sampled_from(["city", "note", "x y", "é"]),
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=12),
    max_size=3,
)


def written(family: str, arguments: dict[str, JsonValue]) -> str:
    body = json.dumps(arguments, ensure_ascii=False)
    match family:
        case "harmony":
            return (
                "<|channel|>commentary to=functions.get_weather <|constrain|>json"
                f"<|message|>{body}<|call|>"
            )
        case "deepseek":
            return (
                f"{CALLS_BEGIN}{CALL_BEGIN}function{SEPARATOR}get_weather\n```json\n"
                f"{body}\n```{CALL_END}{CALLS_END}"
            )
        case "mistral-v11":
            return f"[TOOL_CALLS]get_weather[ARGS]{body}"
        case "llama3":
            call = {"name": "get_weather", "parameters": arguments}
            return "<|python_tag|>" + json.dumps(call, ensure_ascii=False)
    call = {"name": "get_weather", "arguments": arguments}
    return f"<tool_call>\n{json.dumps(call, ensure_ascii=False)}\n</tool_call>"


@pytest.mark.parametrize(
    "family", ["harmony", "qwen3", "deepseek", "mistral-v11", "llama3", "hermes"]
)
@given(arguments=ARGUMENTS, cuts=st.lists(st.integers(0, 300)))
def test_json_calls_with_any_arguments_come_back(
    family: str, arguments: dict[str, JsonValue], cuts: list[int]
) -> None:
    text = written(family, arguments)
    prompt = HARMONY_PROMPT if family == "harmony" else ""
    expected = [K(0, "get_weather", **arguments)]
    assert (
        parse(family, split_at(text, cuts), prompt=prompt, thinking=False) == expected
    )


@given(
    values=st.dictionaries(
        st.sampled_from(["city", "days", "note"]),
        st.text(st.characters(blacklist_characters="<"), min_size=1, max_size=12),
        min_size=1,
        max_size=3,
    ),
    cuts=st.lists(st.integers(0, 300)),
)
def test_qwen3_coder_string_values_come_back_as_written(
    values: dict[str, str], cuts: list[int]
) -> None:
    """Text values of string parameters (``note`` is ``string`` or ``null``) are the
    model's text between the tags, minus the one newline on each side."""
    values = {k: v for k, v in values.items() if k != "days" and v.lower() != "null"}
    body = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in values.items())
    text = f"<tool_call>\n<function=get_weather>\n{body}</function>\n</tool_call>"
    assert parse("qwen3-coder", split_at(text, cuts)) == [K(0, "get_weather", **values)]


def test_the_harmony_table_is_what_the_parser_does() -> None:
    """Fed one character at a time, over the harmony cases and a cut, the parser
    makes every move of its table and no other."""
    sources = {phase for phase, _ in HARMONY_TRANSITIONS}
    assert sources == set(HarmonyPhase) - {HarmonyPhase.FINISHED}
    moves: set[tuple[HarmonyPhase, HarmonyPhase]] = set()
    texts = [(prompt, text) for name, prompt, text, _ in CASES if name == "harmony"]
    texts.append((HARMONY_PROMPT, "<|channel|>final<|message|>Hi<|end|> stray"))
    texts.append((HARMONY_PROMPT, "<|channel|>analysis<|message|>a<|end|>"))
    for prompt, text in texts:
        setup = ParserSetup(thinking=True, prompt=prompt, tools=TOOLBOX, id_seed=SEED)
        parser = HarmonyParser(setup)
        for char in [*text, None]:
            before = parser.phase
            parser.feed(char) if char is not None else parser.finish()
            if parser.phase is not before:
                moves.add((before, parser.phase))
    assert moves == {
        (phase, target) for (phase, _), target in HARMONY_TRANSITIONS.items()
    }
