"""The ASGI app under uvicorn against the trio server, paired.

Why: the ASGI adapter drives the same ``Exchange`` through uvicorn's event loop
(asyncio) instead of the bundled trio/h11 server. The question is what that costs:
``GET /api/version`` requests/s from eight connections (the HTTP plumbing alone) and
the decode rate of single streams on the tiny generated model (the per-token path).
The two servers run one after the other, never at once, alternating which goes first
each round; reported are each side's medians and the ASGI/trio ratios.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .embed_batch import SRC, start_server
from .http_layer import load_route
from .metrics_cost import streaming_rate
from .models import write_model
from .streaming import install

__all__ = ["run"]

_CONNECTIONS = 8


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_asgi(models: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    env = {
        **os.environ,
        "GATEWAY_MODELS": str(models),
        "GATEWAY_HOST": f"127.0.0.1:{port}",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(SRC), os.environ.get("PYTHONPATH")])
        ),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "adapters.asgi"],
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.1)
        else:
            return process, port
    process.kill()
    raise RuntimeError("the ASGI app under uvicorn did not start")


def _measure(
    models: Path, model: Path, *, asgi: bool, seconds: float
) -> tuple[float, float]:
    process, port = _start_asgi(models) if asgi else start_server(models)
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
            for asgi in order:
                store = tmp / f"models-{round_number}-{int(asgi)}"
                samples[asgi].append(_measure(store, model, asgi=asgi, seconds=seconds))
    result: dict[str, object] = {"rounds": rounds}
    medians = {}
    for asgi, label in ((False, "trio"), (True, "asgi_uvicorn")):
        rps = statistics.median(s[0] for s in samples[asgi])
        rate = statistics.median(s[1] for s in samples[asgi])
        medians[asgi] = (rps, rate)
        result[f"{label}_rps"] = round(rps)
        result[f"{label}_tokens_per_s"] = round(rate)
    result["rps_asgi_vs_trio"] = round(medians[True][0] / medians[False][0], 3)
    result["tokens_per_s_asgi_vs_trio"] = round(medians[True][1] / medians[False][1], 3)
    return result
