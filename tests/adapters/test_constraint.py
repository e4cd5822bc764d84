"""Structured output: outlines constraints compiled for, and enforced by, the runner.

Against real llama.cpp and the demo model. Its weights are random, so left to
itself it writes noise (the control test shows that none of the seeds below
gives JSON); whatever it writes under a constraint must still validate.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import jsonschema
import numpy as np
import numpy.typing as npt
import pytest
import trio

from adapters import constraint
from adapters.constraint import (
    Constraint,
    ConstraintFailed,
    ConstraintState,
    UnsupportedSchema,
    compile_constraint,
)
from adapters.demo_model import (
    EOS_TOKEN,
    IM_START_TOKEN,
    THINK_START_TOKEN,
    write_demo_model,
)
from adapters.llama_runner import Generation, LlamaRunner, LoadParams, Sampling
from gateway_core._json import JsonValue

CHAT = f"{IM_START_TOKEN}user\nanswer in JSON{EOS_TOKEN}\n{IM_START_TOKEN}assistant\n"
# 100 seeds take several seconds (each token is a thread hop); 10 run always.
SEEDS = pytest.mark.parametrize(
    "seeds",
    [
        pytest.param(range(10), id="10"),
        pytest.param(range(100), id="100", marks=pytest.mark.slow),
    ],
)
PERSON: dict[str, JsonValue] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 5},
        "age": {"type": "integer"},
        "ok": {"type": "boolean"},
        "colour": {"enum": ["red", "green", None]},
        "scores": {"type": "array", "items": {"type": "number"}, "maxItems": 2},
    },
    "required": ["name", "age", "ok"],
}
# Every value bounded, so that even greedy sampling, which may loop for ever on
# an integer's digits, reaches the end.
BOUNDED: dict[str, JsonValue] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "ok": {"type": "boolean"},
        "colour": {"enum": ["red", "green", None]},
        "tags": {"type": "array", "items": {"const": "x"}, "maxItems": 3},
    },
    "required": ["name", "ok"],
}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.gguf"
    write_demo_model(path)
    return path


@pytest.fixture
async def runner(model_file: Path) -> AsyncIterator[LlamaRunner]:
    runner = await LlamaRunner.load(LoadParams(model_file=str(model_file), n_ctx=256))
    yield runner
    await runner.close()


@pytest.fixture
async def prompt(runner: LlamaRunner) -> list[int]:
    return await runner.tokenize(CHAT, add_bos=True)


async def run(generation: Generation) -> bytes:
    async with generation:
        return b"".join([piece.data async for piece in generation])


def token(char: str) -> int:
    """The demo vocabulary's single-byte token for an ASCII character."""
    return ord(char)


@SEEDS
async def test_schema_output_validates_on_every_seed(
    runner: LlamaRunner, prompt: list[int], seeds: range
) -> None:
    person = compile_constraint(runner, PERSON)
    for seed in seeds:
        generation = runner.generate(prompt, Sampling(seed=seed), person)
        text = await run(generation)
        assert generation.done_reason == "stop", (seed, text)
        jsonschema.validate(json.loads(text), PERSON)


@SEEDS
async def test_the_same_seeds_unconstrained_give_no_json(
    runner: LlamaRunner, prompt: list[int], seeds: range
) -> None:
    """The control: the masks, not the model, make the output above valid."""
    valid = 0
    for seed in seeds:
        text = await run(runner.generate(prompt, Sampling(seed=seed)))
        try:
            jsonschema.validate(json.loads(text), PERSON)
        except (ValueError, jsonschema.ValidationError):
            continue
        valid += 1
    assert valid == 0


@pytest.mark.parametrize(
    "sampling",
    [
        Sampling(temperature=0.0),
        Sampling(seed=1, top_k=1),
        Sampling(seed=2, top_k=0, top_p=1.0, typical_p=0.5, temperature=1.5),
        Sampling(seed=3, min_p=0.5),
        Sampling(seed=4, repeat_last_n=-1, repeat_penalty=1.5, presence_penalty=2.0),
    ],
    ids=["greedy", "top_k", "typical", "min_p", "penalties"],
)
async def test_every_sampler_chain_respects_the_constraint(
    runner: LlamaRunner, prompt: list[int], sampling: Sampling
) -> None:
    bounded = compile_constraint(runner, BOUNDED)
    generation = runner.generate(prompt, sampling, bounded)
    jsonschema.validate(json.loads(await run(generation)), BOUNDED)
    assert generation.done_reason == "stop"


async def test_json_gives_a_json_object(runner: LlamaRunner, prompt: list[int]) -> None:
    any_object = compile_constraint(runner, "json")
    stopped = 0
    for seed in range(20):
        generation = runner.generate(prompt, Sampling(seed=seed), any_object)
        text = await run(generation)
        # Random weights may fill the context inside a long string; what ends,
        # ends as an object.
        if generation.done_reason == "stop":
            stopped += 1
            assert isinstance(json.loads(text), dict), text
        else:
            assert generation.done_reason == "length"
            assert text.startswith(b"{")
    assert stopped >= 15


@pytest.mark.parametrize(
    "schema",
    [
        {"anyOf": [{"type": "boolean"}, {"type": "null"}]},
        {"type": "array", "prefixItems": [{"const": 1}, {"enum": ["a", "b"]}]},
        {"type": ["integer", "null"]},
        {"type": "string", "pattern": "^[a-f0-9]{2,4}-x$"},
        {"type": "string", "format": "date"},
        {
            "$defs": {"flag": {"type": "boolean"}},
            "type": "object",
            "properties": {
                "a": {"$ref": "#/$defs/flag"},
                "b": {"$ref": "#/$defs/flag"},
            },
            "required": ["a"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"inner": {"type": "object", "maxProperties": 1}},
            "required": ["inner"],
            "title": "annotations are harmless",
            "x-vendor": "so are unknown keywords",
        },
        # Bounded in depth: at outlines' default each of these compiles for
        # seconds even on the demo model's 265 tokens.
        {
            "type": "object",
            "properties": {"any": {"type": "object"}, "list": {"type": "array"}},
            "required": ["any", "list"],
        },
    ],
    ids=[
        "anyOf",
        "prefixItems",
        "types",
        "pattern",
        "format",
        "ref",
        "nested",
        "free-form",
    ],
)
async def test_supported_features_validate(
    runner: LlamaRunner, prompt: list[int], schema: dict[str, JsonValue]
) -> None:
    compiled = compile_constraint(runner, schema)
    stopped = 0
    for seed in range(5):
        generation = runner.generate(prompt, Sampling(seed=seed), compiled)
        text = await run(generation)
        if generation.done_reason == "stop":
            jsonschema.validate(json.loads(text), schema)
            stopped += 1
    assert stopped


@pytest.mark.parametrize(
    ("schema", "keyword"),
    [
        ({"type": "integer", "minimum": 3}, "minimum"),
        ({"type": "number", "multipleOf": 2}, "multipleOf"),
        ({"type": "array", "uniqueItems": True}, "uniqueItems"),
        ({"type": "array", "contains": {"type": "null"}}, "contains"),
        ({"type": "object", "required": ["a"]}, "required"),
        ({"type": "object", "patternProperties": {"^a": {}}}, "patternProperties"),
        (
            {"type": "object", "properties": {"a": {}}, "required": ["b"]},
            "required",
        ),
        (
            {"type": "object", "properties": {"a": {}}, "minProperties": 1},
            "minProperties",
        ),
        ({"allOf": [{"type": "string"}, {"maxLength": 2}]}, "allOf"),
        ({"oneOf": [{"type": "number"}, {"type": "integer"}]}, "oneOf"),
        ({"anyOf": [{"type": "string"}], "type": "string"}, "type"),
        ({"not": {"type": "string"}}, "not"),
        ({"type": "string", "if": {"maxLength": 1}, "then": {}}, "if"),
        ({"type": "string", "minLength": 1, "pattern": "^a+$"}, "pattern"),
        ({"type": "string", "pattern": "^a.b$"}, "pattern"),
        ({"type": "string", "pattern": "[^a]"}, "pattern"),
        ({"type": "string", "pattern": "\\s"}, "pattern"),
        ({"type": "string", "pattern": "[ -~]"}, "pattern"),
        ({"type": "string", "pattern": "[a[^b]]"}, "pattern"),
        ({"type": "string", "pattern": "^ab"}, "pattern"),
        ({"type": "string", "pattern": "^a$|^b$"}, "pattern"),
        ({"type": "string", "pattern": "(?i)a"}, "pattern"),
        ({"type": "string", "pattern": '"'}, "pattern"),
        ({"type": "string", "maxLength": 2.0}, "maxLength"),
        ({"enum": ["a", 1], "type": "string"}, "type"),
        (
            {
                "$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}},
                "$ref": "#/$defs/n",
            },
            "$ref",
        ),
        ({"$ref": "https://example.com/schema.json"}, "$ref"),
        ({"$ref": "#/$defs/none"}, "$ref"),
        ({"type": "nothing"}, "invalid JSON schema"),
    ],
)
async def test_unenforceable_schemas_are_refused(
    runner: LlamaRunner, schema: dict[str, JsonValue], keyword: str
) -> None:
    with pytest.raises(UnsupportedSchema, match=keyword.replace("$", r"\$")):
        compile_constraint(runner, schema)


async def test_format_must_be_json_or_an_object(runner: LlamaRunner) -> None:
    bad: JsonValue
    for bad in ("xml", 123, [], None):
        with pytest.raises(TypeError, match="JSON schema object"):
            compile_constraint(runner, bad)


async def test_compiled_once_per_model_file(
    runner: LlamaRunner, model_file: Path, tmp_path: Path
) -> None:
    constraint.clear_cache()
    first = compile_constraint(runner, PERSON)
    assert compile_constraint(runner, PERSON) is first
    assert first.compile_seconds > 0
    assert constraint.compile_count == 1

    # Another runner of the same file shares it; another model gets its own.
    same = await LlamaRunner.load(LoadParams(model_file=str(model_file), n_ctx=64))
    other_file = tmp_path / "other.gguf"
    write_demo_model(other_file, context_length=64)
    other = await LlamaRunner.load(LoadParams(model_file=str(other_file), n_ctx=64))
    try:
        assert compile_constraint(same, PERSON) is first
        assert constraint.compile_count == 1
        elsewhere = compile_constraint(other, PERSON)
        assert elsewhere is not first
        assert constraint.compile_count == 2
        with pytest.raises(ValueError, match="compiled for"):
            other.generate([1, 2, 3], Sampling(), first)
    finally:
        await same.close()
        await other.close()

    # Threads asking for the same new format at once share one compilation
    # ("json" takes long enough, a fifth of a second, for them to overlap).
    results: list[Constraint] = []

    async def compile_in_thread() -> None:
        compiled = await trio.to_thread.run_sync(compile_constraint, runner, "json")
        results.append(compiled)

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(compile_in_thread)
    assert len(results) == 4
    assert all(result is results[0] for result in results)
    assert constraint.compile_count == 3

    # Key order is kept: outlines writes properties in the declared order.
    properties = PERSON["properties"]
    assert isinstance(properties, dict)
    reordered = {**PERSON, "properties": dict(reversed(properties.items()))}
    assert compile_constraint(runner, reordered) is not first
    assert constraint.compile_count == 4


async def test_end_of_generation_only_where_the_output_may_end(
    runner: LlamaRunner,
) -> None:
    word = compile_constraint(runner, {"enum": ["ab", "abc"]})
    table = runner.token_table()
    state = word.start()
    assert list(state.allowed_tokens()) == [token('"')]
    for char in '"ab':
        assert not state.is_final()
        state.advance(token(char))
    assert list(state.allowed_tokens()) == [token('"'), token("c")]
    state.advance(token('"'))
    # "ab" is complete and nothing may follow: only the end tokens are left.
    assert state.is_final()
    assert state.is_complete()
    assert set(state.allowed_tokens()) == table.eog
    with pytest.raises(ConstraintFailed, match="not allowed"):
        state.advance(token("c"))


async def test_control_tokens_are_never_allowed(runner: LlamaRunner) -> None:
    text = compile_constraint(runner, {"type": "string"})
    state = text.start()
    state.advance(token('"'))
    allowed = set(state.allowed_tokens())
    (im_start,) = await runner.tokenize(IM_START_TOKEN, add_bos=False)
    (think,) = await runner.tokenize(THINK_START_TOKEN, add_bos=False)
    assert im_start not in allowed
    assert not allowed & runner.token_table().eog
    # A user-defined token is text, as the model writes it.
    assert think in allowed
    assert token("a") in allowed
    assert token('"') in allowed
    assert token("\n") not in allowed  # a raw control character breaks JSON


async def test_a_complete_output_stops_without_an_end_token(
    runner: LlamaRunner, prompt: list[int]
) -> None:
    word = compile_constraint(runner, {"const": "ab"})
    before = runner.tokens_generated
    generation = runner.generate(prompt, Sampling(seed=1), word)
    assert await run(generation) == b'"ab"'
    assert generation.done_reason == "stop"
    assert generation.eval_count == 4
    assert runner.tokens_generated - before == 4
    # As after any "stop", the cache holds the prompt and every token yielded.
    follow_up = [*prompt, *(token(c) for c in '"ab"'), token("x")]
    turn = runner.generate(follow_up, Sampling(temperature=0.0))
    await run_one(turn)
    assert turn.prompt_reused_count == len(follow_up) - 1


async def run_one(generation: Generation) -> None:
    async with generation:
        await generation.__anext__()


class _Failing(ConstraintState):
    """A constraint state that breaks after ``good`` tokens, as a bug would."""

    def __init__(self, inner: ConstraintState, good: int, error: Exception) -> None:
        self._inner = inner
        self._left = good
        self._error = error

    def allowed_tokens(self) -> npt.NDArray[np.int32]:
        if self._left == 0:
            raise self._error
        return self._inner.allowed_tokens()

    def is_final(self) -> bool:
        return self._inner.is_final()

    def is_complete(self) -> bool:
        return self._inner.is_complete()

    def advance(self, token: int) -> None:
        self._left -= 1
        self._inner.advance(token)


class _Breaking(Constraint):
    """A compiled constraint whose states break (the runner only calls
    ``fits`` and ``start``)."""

    def __init__(self, inner: Constraint, good: int, error: Exception) -> None:
        self.__dict__.update(inner.__dict__)
        self._inner = inner
        self._good = good
        self._error = error

    def start(self) -> ConstraintState:
        return _Failing(self._inner.start(), self._good, self._error)


@pytest.mark.parametrize(
    "error",
    [RuntimeError("bug"), ConstraintFailed("dead end")],
    ids=["any error", "constraint failed"],
)
async def test_a_failing_constraint_fails_the_generation(
    runner: LlamaRunner, prompt: list[int], error: Exception
) -> None:
    """Nothing swallows the failure: the pull raises, the output stops there."""
    person = compile_constraint(runner, PERSON)
    generation = runner.generate(prompt, Sampling(seed=1), _Breaking(person, 3, error))
    pieces: list[bytes] = []

    async def consume() -> None:
        async with generation:
            async for piece in generation:
                pieces.append(piece.data)

    with pytest.raises(ConstraintFailed) as raised:
        await consume()
    assert raised.value is error or raised.value.__cause__ is error
    assert len(pieces) == 3
    assert generation.done_reason is None
    # The runner is free again.
    await run_one(runner.generate(prompt, Sampling(temperature=0.0)))


async def test_no_allowed_token_fails(runner: LlamaRunner, prompt: list[int]) -> None:
    class Empty(ConstraintState):
        def __init__(self) -> None:
            pass

        def allowed_tokens(self) -> npt.NDArray[np.int32]:
            return np.array([], dtype=np.int32)

        def is_final(self) -> bool:
            return False

        def is_complete(self) -> bool:
            return False

    class Nothing(_Breaking):
        def start(self) -> ConstraintState:
            return Empty()

    person = compile_constraint(runner, PERSON)
    generation = runner.generate(prompt, Sampling(), Nothing(person, 0, ValueError()))
    with pytest.raises(ConstraintFailed, match="allows no token"):
        await run(generation)
