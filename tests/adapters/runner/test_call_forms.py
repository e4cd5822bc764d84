"""A forced call's forms as llguidance grammars, and what a model held to them writes.

Every family's forms must compile; a marker that is a control token is named by its
id; and with the demo model's random weights, every answer the engine makes under
the forms must read back, through the family's own parser, as a call of an offered
tool with arguments valid against its schema.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import llguidance
import pytest

from gateway_core._families import FAMILIES, Family, ParserSetup, family_named
from gateway_core._segments import ToolCall
from gateway_core._tool_calls import Toolbox
from gateway_core_adapters.runner import llama
from gateway_core_adapters.runner.constraint import (
    Compiler,
    ConstraintFailed,
    UnsupportedConstraint,
)
from gateway_core_adapters.runner.constraint.call_forms import call_forms_grammar
from gateway_core_adapters.runner.engine import Job
from gateway_core_adapters.runner.protocol import Ended
from gateway_core_adapters.runner.values import GenerationConstraint, Sampling

from .conftest import CHAT
from .test_constraint import compiler, model, run_engine, walk

__all__ = ["compiler", "model"]  # the fixtures this module borrows

PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"enum": ["Paris", "Oslo"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "days"],
    "additionalProperties": False,
}
CLOCK: dict[str, Any] = {
    "type": "object",
    "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}},
    "required": ["zone"],
    "additionalProperties": False,
}
TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {"name": "get_weather", "parameters": PARAMETERS}},
    {"type": "function", "function": {"name": "clock", "parameters": CLOCK}},
]
SCHEMAS = {"get_weather": PARAMETERS, "clock": CLOCK}
WITH_FORMS = [family for family in FAMILIES.values() if family.forced is not None]


def forms_json(family: Family, chosen: tuple[str, ...] = ("get_weather",)) -> str:
    forms = family.forced_forms(Toolbox.of(TOOLS), chosen)
    assert forms is not None
    return json.dumps(forms.to_json())


def no_control_tokens(text: str) -> int | None:
    return None


@pytest.mark.parametrize("family", WITH_FORMS, ids=lambda f: f.name)
def test_every_familys_forms_are_a_valid_grammar(family: Family) -> None:
    lark = call_forms_grammar(
        json.loads(forms_json(family, ("get_weather", "clock"))),
        special=no_control_tokens,
        bound=lambda schema: schema,
    )
    grammar = llguidance.LLMatcher.grammar_from_lark(lark)
    assert llguidance.LLMatcher.validate_grammar(grammar) == ""


def test_a_marker_that_is_a_control_token_is_named_by_id() -> None:
    harmony = family_named("harmony")
    assert harmony is not None
    ids = {"<|channel|>": 7, "<|constrain|>": 8, "<|message|>": 9}
    lark = call_forms_grammar(
        json.loads(forms_json(harmony)), special=ids.get, bound=lambda s: s
    )
    start = lark.splitlines()[1]
    assert start.startswith("start: <[7]> ")
    assert '"commentary to=functions.get_weather "' in start
    assert "<[8]>" in start
    assert "<[9]>" in start


@pytest.mark.parametrize(
    "forms",
    ["[]", '[[{"text": "x", "json": {}}]]', '[[{"maybe": 3}]]', '[[{"choice": []}]]'],
)
def test_forms_the_core_would_never_send_are_refused(
    compiler: Compiler, forms: str
) -> None:
    with pytest.raises(UnsupportedConstraint, match="call forms are invalid"):
        compiler.compile(GenerationConstraint(call_forms=forms))


def test_the_forms_hold_the_model_to_the_markup(compiler: Compiler) -> None:
    hermes = family_named("hermes")
    assert hermes is not None
    constraint = GenerationConstraint(call_forms=forms_json(hermes))
    opening = [b"<tool_call>", *(bytes([c]) for c in b'\n{"name":"get_weather"')]
    assert not walk(compiler, constraint, opening).accepting
    with pytest.raises(ConstraintFailed):
        walk(compiler, constraint, [b"H", b"i"])  # no text before the call
    with pytest.raises(ConstraintFailed):
        walk(compiler, constraint, [b"<tool_call>", b"\n", b"{", b'"', b"x"])


@pytest.mark.parametrize("name", ["hermes", "qwen3-coder", "llama3", "json-fenced"])
def test_every_answer_under_the_forms_is_the_call(
    model: llama.Model, compiler: Compiler, name: str
) -> None:
    """Random weights, eight seeds: each answer the engine ends by itself reads
    back through the family's parser as one call of an offered tool, with arguments
    the tool's schema accepts (an integer parameter of Qwen3-Coder's XML included,
    through ``coerce``)."""
    family = family_named("action-json" if name == "json-fenced" else name)
    assert family is not None
    compiled = compiler.compile(
        GenerationConstraint(call_forms=forms_json(family, ("get_weather", "clock")))
    )
    prompt = model.tokenize(CHAT.encode(), add_bos=False)
    jobs = [
        Job(
            id=seed + 1,
            prompt=prompt,
            sampling=Sampling(seed=seed, temperature=1.5),
            constraint=compiled.start(),
            credit=10_000,
        )
        for seed in range(8)
    ]
    finished = 0
    for text, end in run_engine(model, jobs).values():
        assert isinstance(end, Ended), end
        if end.reason != "stop":
            continue  # cut by the context: the cut-call tests cover those
        finished += 1
        setup = ParserSetup(
            thinking=False, prompt="", tools=Toolbox.of(TOOLS), id_seed="s"
        )
        parser = family.parser(setup)
        segments = parser.feed(text.decode("utf-8")) + parser.finish()
        calls = [s for s in segments if isinstance(s, ToolCall)]
        assert len(calls) == 1, text
        (call,) = calls
        jsonschema.validate(dict(call.arguments), SCHEMAS[call.name])
    assert finished >= 4  # most end on their own: the forms are short


def valid(lark: str) -> str:
    grammar = llguidance.LLMatcher.grammar_from_lark(lark)
    return str(llguidance.LLMatcher.validate_grammar(grammar))


def test_an_empty_choice_is_the_choice_of_writing_nothing() -> None:
    forms = [[{"text": "<p>"}, {"choice": ["", "a"]}, {"text": "</p>"}]]
    lark = call_forms_grammar(forms, special=no_control_tokens, bound=lambda s: s)
    assert '("a")?' in lark
    assert valid(lark) == ""


def test_text_lark_would_refuse_raw_is_escaped() -> None:
    hermes = family_named("hermes")
    assert hermes is not None
    tools: list[Any] = [{"type": "function", "function": {"name": "del\x7f\u2028"}}]
    forms = hermes.forced_forms(Toolbox.of(tools), ["del\x7f\u2028"])
    assert forms is not None
    lark = call_forms_grammar(
        forms.to_json(), special=no_control_tokens, bound=lambda s: s
    )
    assert "\x7f" not in lark
    assert valid(lark) == ""


def test_words_with_their_end_may_run_over_lines_and_end_there(
    compiler: Compiler,
) -> None:
    """Qwen3-Coder's bare string: lines of text without ``<``, then the markup
    that ends it, a line break belonging to either."""
    forms = [[{"text": "<p>\n"}, {"words": "\n</p>"}, {"text": "\n"}]]
    constraint = GenerationConstraint(call_forms=json.dumps(forms))
    steps = [bytes([c]) for c in b"<p>\nab\n\ncd\n</p>\n"]
    assert walk(compiler, constraint, steps).accepting
    with pytest.raises(ConstraintFailed):
        walk(compiler, constraint, [bytes([c]) for c in b"<p>\na<"])
