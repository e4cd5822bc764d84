"""Benchmark: 64 inputs in one /api/embed request against 64 separate requests.

Starts ``gateway-core serve`` in a subprocess on a fresh model store (it registers the
generated demo model as ``demo``), talks to it over a real keep-alive connection, and
prints the median of several rounds as JSON. Run with ``nox -s bench``,
``python -m benchmarks --only embed_batch`` or
``python benchmarks/embed_batch.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

INPUTS = 64
TEXT = "the quick brown fox jumps over the lazy dog and keeps on running "


SRC = Path(__file__).resolve().parents[1] / "src"


def start_server(
    models: Path, *, src: Path = SRC, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``gateway-core serve`` from the tree ``src`` on a free port; return the
    process and the port.

    The server logs every request to stderr. Once it is listening, a daemon thread
    keeps reading that pipe, so that a long benchmark cannot fill it and stall the
    server on a blocked write.
    """
    env = {**os.environ, **(env or {}), "GATEWAY_MODELS": str(models)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "adapters", "serve", "--host", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stderr is not None
    log = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        log += line
        found = re.search(rb"listening on http://[\d.]+:(\d+)", line)
        if found:
            threading.Thread(target=_drain, args=(process.stderr,), daemon=True).start()
            return process, int(found[1])
    process.kill()
    raise RuntimeError(f"the server in {src} did not start:\n{log.decode()}")


def _drain(stream: IO[bytes]) -> None:
    while stream.read(65536):
        pass


def _post(
    conn: http.client.HTTPConnection, body: dict[str, object]
) -> dict[str, object]:
    data = json.dumps(body).encode()
    conn.request(
        "POST", "/api/embed", body=data, headers={"content-type": "application/json"}
    )
    response = conn.getresponse()
    payload = response.read()
    if response.status != 200:
        raise RuntimeError(f"{response.status}: {payload.decode()}")
    answer: dict[str, object] = json.loads(payload)
    return answer


def _time(action: object, rounds: int) -> float:
    assert callable(action)
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def run(rounds: int = 5) -> dict[str, object]:
    """Measure both ways of embedding ``INPUTS`` texts; medians of ``rounds``."""
    with tempfile.TemporaryDirectory() as tmp:
        process, port = start_server(Path(tmp) / "models")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            texts = [f"{i} {TEXT}" for i in range(INPUTS)]
            _post(conn, {"model": "demo", "input": texts[:2]})  # load, warm up

            def batched() -> None:
                answer = _post(conn, {"model": "demo", "input": texts})
                assert isinstance(answer["embeddings"], list)
                assert len(answer["embeddings"]) == INPUTS

            def separate() -> None:
                for text in texts:
                    _post(conn, {"model": "demo", "input": text})

            one_request = _time(batched, rounds)
            many_requests = _time(separate, rounds)
            conn.close()
        finally:
            process.terminate()
            process.wait(timeout=30)
    return {
        "benchmark": "embed_batch",
        "inputs": INPUTS,
        "rounds": rounds,
        "one_request_s": round(one_request, 4),
        "separate_requests_s": round(many_requests, 4),
        "speedup": round(many_requests / one_request, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(run(args.rounds), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
