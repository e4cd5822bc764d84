"""Constraints in the runner: the vocabulary llguidance sees, the tool-call grammar,
the compiler's cache, and masked sampling in the engine with the demo model.

Random weights make the model write noise, which is the point: whatever it would
write, what the constraint covers must come out valid.
"""

from __future__ import annotations

import json
import queue
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import llguidance
import pytest

from gateway_core_adapters.demo_model import (
    BOS_TOKEN,
    EOS_TOKEN,
    IM_START_TOKEN,
    THINK_START_TOKEN,
    TOOL_CALL_START_TOKEN,
)
from gateway_core_adapters.runner import llama
from gateway_core_adapters.runner.constraint import (
    Compiler,
    ConstraintFailed,
    ConstraintState,
    UnsupportedConstraint,
    build_vocabulary,
)
from gateway_core_adapters.runner.constraint.tool_grammar import tool_call_grammar
from gateway_core_adapters.runner.engine import Engine, Job
from gateway_core_adapters.runner.protocol import Ended, Failed, Message, Pieces
from gateway_core_adapters.runner.values import (
    GenerationConstraint,
    LoadParams,
    Sampling,
    ToolCallTrigger,
)

from .conftest import CHAT

WEATHER = {
    "type": "object",
    "properties": {
        "name": {"const": "get_weather"},
        "arguments": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 8},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "arguments"],
    "additionalProperties": False,
}
HERMES = ToolCallTrigger(
    marker="<tool_call>", closing="</tool_call>", call_schema=json.dumps(WEATHER)
)
CALLS = {"anyOf": [WEATHER, {"type": "array", "items": WEATHER, "minItems": 1}]}


@pytest.fixture(scope="module")
def model(model_file: Path) -> Iterator[llama.Model]:
    loaded = llama.load(LoadParams(model_file=str(model_file), n_ctx=1024, slots=4))
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def compiler(model: llama.Model) -> Compiler:
    table = model.token_table()

    def special(text: str) -> int | None:
        tokens = model.tokenize(text.encode(), add_bos=False)
        if len(tokens) == 1 and table.attributes[tokens[0]] & llama.CONTROL:
            return tokens[0]
        return None

    def plain(data: bytes) -> list[int]:
        return model.tokenize(data, add_bos=False)

    return Compiler(
        lambda: build_vocabulary(table, bos=model.bos, tokenize=plain),
        special_token=special,
    )


def token_of(model: llama.Model, text: str) -> int:
    (token,) = model.tokenize(text.encode(), add_bos=False)
    return token


# -- the vocabulary ------------------------------------------------------------------


def test_control_tokens_are_special_and_user_defined_ones_are_text(
    model: llama.Model, compiler: Compiler
) -> None:
    vocabulary = compiler.vocabulary()
    tokenizer = vocabulary.tokenizer
    for control in (BOS_TOKEN, IM_START_TOKEN, EOS_TOKEN):
        assert tokenizer.is_special_token(token_of(model, control))
    for text in (THINK_START_TOKEN, TOOL_CALL_START_TOKEN):
        token = token_of(model, text)
        assert not tokenizer.is_special_token(token)
        assert tokenizer.decode_bytes([token]) == text.encode()
    # The model's end of turn is llguidance's end of sequence.
    assert token_of(model, EOS_TOKEN) in vocabulary.ends
    assert vocabulary.size == model.n_vocab


# -- the grammar ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "trigger",
    [
        HERMES,
        ToolCallTrigger(marker="[TOOL_CALLS]", closing="", call_schema="{}"),
        ToolCallTrigger(marker="", closing="", call_schema=json.dumps(WEATHER)),
        ToolCallTrigger(
            marker="functools[", closing="]", call_schema=json.dumps(WEATHER)
        ),
        ToolCallTrigger(
            marker="Action: ```json", closing="```", call_schema=json.dumps(WEATHER)
        ),
    ],
    ids=["hermes", "mistral", "bare json", "functools", "action json"],
)
def test_tool_call_grammars_are_valid(trigger: ToolCallTrigger) -> None:
    grammar = llguidance.LLMatcher.grammar_from_lark(tool_call_grammar(trigger))
    assert llguidance.LLMatcher.validate_grammar(grammar) == ""


def test_a_control_token_marker_is_named_by_id() -> None:
    trigger = ToolCallTrigger(marker="[TOOL_CALLS]", closing="", call_schema="{}")
    grammar = tool_call_grammar(trigger, special={"[TOOL_CALLS]": 42}.get)
    assert "<[42]>" in grammar
    assert "[lazy]" not in grammar


def test_definitions_of_the_call_move_to_the_root() -> None:
    call = {
        "$defs": {"d": {"type": "integer"}},
        "properties": {"n": {"$ref": "#/$defs/d"}},
    }
    trigger = ToolCallTrigger(
        marker="<x>", closing="</x>", call_schema=json.dumps(call)
    )
    lark = tool_call_grammar(trigger)
    body = json.loads(lark.split("body: %json ", 1)[1])
    assert body["$defs"] == {"d": {"type": "integer"}}
    assert "$defs" not in body["anyOf"][0]


def walk(
    compiler: Compiler, constraint: GenerationConstraint, steps: list[bytes]
) -> ConstraintState:
    """Feed ``steps`` (each the bytes of one token of the demo vocabulary)."""
    state = compiler.compile(constraint).start()
    tokenizer = compiler.vocabulary().tokenizer
    for data in steps:
        state.mask()
        (token,) = tokenizer.tokenize_bytes(data, parse_special=False)
        state.accept(token)
    return state


def test_text_is_free_until_the_marker_then_the_call_is_forced(
    compiler: Compiler,
) -> None:
    constraint = GenerationConstraint(tool_calls=HERMES)
    state = walk(compiler, constraint, [b"h", b"i", b" "])
    assert state.accepting
    state = walk(compiler, constraint, [b"h", b"i", b"<tool_call>", b"\n", b"{"])
    assert not state.accepting
    with pytest.raises(ConstraintFailed):
        # Inside the call, a key other than "name" cannot come first.
        walk(compiler, constraint, [b"<tool_call>", b"{", b'"', b"x"])


def test_a_marker_that_opens_an_array_takes_calls_then_its_bracket(
    compiler: Compiler,
) -> None:
    """``functools[``: inside the bracket the template's marker opened, calls
    separated by commas, then ``]``; not an array of arrays."""
    trigger = ToolCallTrigger(
        marker="functools[", closing="]", call_schema=json.dumps(WEATHER)
    )
    constraint = GenerationConstraint(tool_calls=trigger)
    call = '{"name":"get_weather","arguments":{"city":"Oslo","days":2}}'
    opened = [bytes([c]) for c in b"Use functools["]
    assert not walk(compiler, constraint, opened).accepting
    with pytest.raises(ConstraintFailed):
        walk(compiler, constraint, [*opened, b"["])
    whole = [bytes([c]) for c in f"{call},{call}] done".encode()]
    assert walk(compiler, constraint, [*opened, *whole]).accepting
    # Prose about the module is not a call.
    assert walk(
        compiler, constraint, [bytes([c]) for c in b"functools.partial"]
    ).accepting


def test_free_arguments_hold_only_numbers_a_double_holds(compiler: Compiler) -> None:
    """A tool whose parameters leave values free (``{"type": "object"}``) still
    gets numbers within the bound answers have: 1e400 would make the parser refuse
    the call."""
    free = {"name": {"const": "clock"}, "arguments": {"type": "object"}}
    schema = {"type": "object", "properties": free, "required": ["name", "arguments"]}
    trigger = ToolCallTrigger(
        marker="<tool_call>", closing="</tool_call>", call_schema=json.dumps(schema)
    )
    constraint = GenerationConstraint(tool_calls=trigger)
    start = [
        b"<tool_call>",
        *(bytes([c]) for c in b'{"name":"clock","arguments":{"a":'),
    ]
    digits = [b"9"] * 18
    walk(compiler, constraint, [*start, *digits])  # 18 digits: below 1e18
    with pytest.raises(ConstraintFailed):
        walk(compiler, constraint, [*start, *digits, b"9"])
    with pytest.raises(ConstraintFailed):
        walk(compiler, constraint, [*start, b"1", b"e", b"4", b"0", b"0"])


def test_the_compiler_caches_per_constraint(compiler: Compiler) -> None:
    constraint = GenerationConstraint(
        tool_calls=ToolCallTrigger(
            marker="<tool_call>",
            closing="</tool_call>",
            call_schema='{"type":"object"}',
        )
    )
    before = compiler.compile_count
    first = compiler.compile(constraint)
    assert compiler.compile(constraint) is first
    assert compiler.cached(constraint) is first
    assert compiler.compile_count == before + 1


def test_a_grammar_llguidance_refuses_is_unsupported(compiler: Compiler) -> None:
    bad = GenerationConstraint(
        tool_calls=ToolCallTrigger(
            marker="<tool_call>", closing="</tool_call>", call_schema='{"type": 7}'
        )
    )
    with pytest.raises(UnsupportedConstraint, match="cannot be compiled"):
        compiler.compile(bad)


# -- masked sampling in the engine ---------------------------------------------------


def run_engine(
    model: llama.Model, jobs: list[Job]
) -> dict[int, tuple[bytes, Ended | Failed]]:
    inbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
    engine = Engine(model, send=inbox.put)
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    for job in jobs:
        engine.submit(job)
    text: dict[int, bytes] = {job.id: b"" for job in jobs}
    ends: dict[int, Ended | Failed] = {}
    try:
        while len(ends) < len(jobs):
            message = inbox.get(timeout=60)
            if isinstance(message, Pieces):
                text[message.id] += b"".join(message.data)
            elif isinstance(message, Ended | Failed):
                ends[message.id] = message
    finally:
        engine.stop()
        thread.join(30)
    return {key: (text[key], ends[key]) for key in text}


_OPEN = re.escape("<tool_call>")
_CLOSE = re.escape("</tool_call>")


@pytest.mark.parametrize(
    "seeds", [range(8), pytest.param(range(8, 72), marks=pytest.mark.slow)]
)
def test_every_call_a_model_opens_is_valid(
    model: llama.Model, compiler: Compiler, seeds: range
) -> None:
    """Random weights write ``<tool_call>`` only by chance; the prompt ends with it
    opened, so every answer is in a call from its first token, and whatever the
    model writes after the call, another call it opens is checked the same way."""
    prompt = model.tokenize((CHAT + "<tool_call>").encode(), add_bos=False)
    compiled = compiler.compile(GenerationConstraint(tool_calls=HERMES))
    jobs = [
        Job(
            id=seed + 1,
            prompt=prompt,
            sampling=Sampling(seed=seed, temperature=1.5),
            # The prompt opened the call: the output continues after the marker.
            constraint=_after_marker(compiled.start(), compiler),
            credit=10_000,
        )
        for seed in seeds
    ]
    results = run_engine(model, jobs)
    for text, end in results.values():
        assert isinstance(end, Ended), end
        if end.reason != "stop":
            continue  # cut by the context: no complete call to check
        decoded = "<tool_call>" + text.decode("utf-8")
        bodies = re.findall(f"{_OPEN}(.*?){_CLOSE}", decoded, flags=re.DOTALL)
        assert bodies, decoded
        for body in bodies:
            jsonschema.validate(json.loads(body), CALLS)


def _after_marker(state: ConstraintState, compiler: Compiler) -> ConstraintState:
    (token,) = compiler.vocabulary().tokenizer.tokenize_bytes(b"<tool_call>")
    state.mask()
    state.accept(token)
    return state


def test_a_failing_matcher_fails_the_request_not_the_engine(
    model: llama.Model, compiler: Compiler
) -> None:
    class Broken(ConstraintState):
        def mask(self):  # type: ignore[no-untyped-def]
            raise ValueError("boom")

    compiled = compiler.compile(GenerationConstraint(tool_calls=HERMES))
    healthy = compiled.start()
    broken = Broken.__new__(Broken)
    prompt = model.tokenize(CHAT.encode(), add_bos=False)
    results = run_engine(
        model,
        [
            Job(
                id=1,
                prompt=prompt,
                sampling=Sampling(seed=1),
                constraint=broken,
                credit=50,
            ),
            Job(
                id=2,
                prompt=prompt,
                sampling=Sampling(seed=1),
                constraint=healthy,
                credit=50,
            ),
        ],
    )
    failed = results[1][1]
    assert isinstance(failed, Failed)
    assert failed.kind == "constraint"
    assert "boom" in failed.message
    assert isinstance(results[2][1], Ended)
