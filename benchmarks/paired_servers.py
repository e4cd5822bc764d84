"""Two variants of the server, measured in alternation: the frame of a paired A/B.

Why: the machine is shared and noisy, so a variant is only ever compared with a run
of the other made moments before or after it. Each round starts variant A, then B
(the order alternates each round, so that a machine growing busier during the run
favours neither), and measures both figures on each: ``GET /api/version``
requests/s from eight connections (the HTTP plumbing alone) and the decode rate of
single streams on the tiny generated model, whose tokens cost about 0.15 ms, so that
any per-token cost shows. Reported: each side's median over the rounds and the
ratios B/A.
"""

from __future__ import annotations

import http.client
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from .http_layer import load_route
from .models import write_model
from .streaming import decode_rate, install, stream_once

__all__ = ["ServerStart", "compare_servers", "streaming_rate"]

ServerStart = Callable[[Path], tuple[subprocess.Popen[bytes], int]]
"""Starts one variant of the server on a model store; its process and port."""

_CONNECTIONS = 8
_STREAMS_PER_ROUND = 8
_TOKENS = 400


def streaming_rate(port: int) -> float:
    """The median decode rate (tokens/s) of several single streams."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        stream_once(conn, "ndjson", "tiny", 8, seed=1)  # load and warm
        rates = []
        for seed in range(_STREAMS_PER_ROUND):
            rate = decode_rate(stream_once(conn, "ndjson", "tiny", _TOKENS, seed=seed))
            if rate is not None:
                rates.append(rate)
    finally:
        conn.close()
    if not rates:
        raise RuntimeError("no stream produced two tokens")
    return statistics.median(rates)


def _measure(
    start: ServerStart, models: Path, model: Path, seconds: float
) -> tuple[float, float]:
    process, port = start(models)
    try:
        install(port, model, "tiny")
        loaded = load_route(port, "/api/version", _CONNECTIONS, seconds)
        rps = loaded["requests_per_s"]
        assert isinstance(rps, int)
        return float(rps), streaming_rate(port)
    finally:
        process.terminate()
        process.wait(timeout=30)


def compare_servers(
    a: tuple[str, ServerStart],
    b: tuple[str, ServerStart],
    *,
    quick: bool = False,
) -> dict[str, object]:
    """Medians of both figures for the variants ``a`` and ``b`` (each a label and
    how to start it), and the ratios ``<b>_vs_<a>``."""
    rounds = 1 if quick else 4
    seconds = 0.5 if quick else 2.0
    variants = (a, b)
    samples: list[list[tuple[float, float]]] = [[], []]
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        model = write_model(tmp / "tiny.gguf", "tiny")
        for round_number in range(rounds):
            order = (0, 1) if round_number % 2 == 0 else (1, 0)
            for index in order:
                store = tmp / f"models-{round_number}-{index}"
                start = variants[index][1]
                samples[index].append(_measure(start, store, model, seconds))
    result: dict[str, object] = {"rounds": rounds}
    medians = []
    for (label, _), runs in zip(variants, samples, strict=True):
        rps = statistics.median(run[0] for run in runs)
        rate = statistics.median(run[1] for run in runs)
        medians.append((rps, rate))
        result[f"{label}_rps"] = round(rps)
        result[f"{label}_tokens_per_s"] = round(rate)
    (label_a, _), (label_b, _) = variants
    result[f"rps_{label_b}_vs_{label_a}"] = round(medians[1][0] / medians[0][0], 3)
    result[f"tokens_per_s_{label_b}_vs_{label_a}"] = round(
        medians[1][1] / medians[0][1], 3
    )
    return result
