"""The cost of ``--metrics``: the same server with metrics off and on, paired.

Why: metrics are counted on the request path (a tally per token, histograms per
request and per write), and the target is that turning them on keeps at least 0.98
of the streaming tokens/s and of the requests/s. The server is started with metrics
off, then on, then off... (the order alternates each round, so that a machine
growing busier during the run does not favour either side), and each round measures
both figures: ``GET /api/version`` requests/s from eight connections, and the decode
rate of single streams on the tiny generated model, whose tokens cost about 0.15 ms,
so that any per-token cost shows. Reported: the median of each side over the rounds
and their ratio.
"""

from __future__ import annotations

import http.client
import statistics
import tempfile
from pathlib import Path

from .embed_batch import start_server
from .http_layer import load_route
from .models import write_model
from .streaming import decode_rate, install, stream_once

__all__ = ["run", "streaming_rate"]

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
    models: Path, model: Path, *, metrics: bool, seconds: float
) -> tuple[float, float]:
    process, port = start_server(
        models, env={"GATEWAY_METRICS": "1" if metrics else "0"}
    )
    try:
        install(port, model, "tiny")
        loaded = load_route(port, "/api/version", _CONNECTIONS, seconds)
        rps = loaded["requests_per_s"]
        assert isinstance(rps, int)
        return float(rps), streaming_rate(port)
    finally:
        process.terminate()
        process.wait(timeout=30)


def run(*, quick: bool = False) -> dict[str, object]:
    rounds = 1 if quick else 4
    seconds = 0.5 if quick else 2.0
    samples: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        model = write_model(tmp / "tiny.gguf", "tiny")
        for round_number in range(rounds):
            order = (False, True) if round_number % 2 == 0 else (True, False)
            for metrics in order:
                store = tmp / f"models-{round_number}-{int(metrics)}"
                samples[metrics].append(
                    _measure(store, model, metrics=metrics, seconds=seconds)
                )
    result: dict[str, object] = {"rounds": rounds}
    for metrics, label in ((False, "off"), (True, "on")):
        result[f"{label}_rps"] = round(
            statistics.median(s[0] for s in samples[metrics])
        )
        result[f"{label}_tokens_per_s"] = round(
            statistics.median(s[1] for s in samples[metrics])
        )
    result["rps_on_vs_off"] = round(
        statistics.median(s[0] for s in samples[True])
        / statistics.median(s[0] for s in samples[False]),
        3,
    )
    result["tokens_per_s_on_vs_off"] = round(
        statistics.median(s[1] for s in samples[True])
        / statistics.median(s[1] for s in samples[False]),
        3,
    )
    return result
