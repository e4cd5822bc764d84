"""The HTTP layer alone: ``GET /api/version`` against a real ``gateway-core serve``.

Why: ``/api/version`` does no model work, so its requests/s and latency are the cost
of the server's own plumbing (sockets, h11, trio, the exchange, the access log). That
is the floor under every other endpoint.

The load comes from separate processes, one keep-alive ``http.client`` connection
each, so the client's Python never competes with the server's for one interpreter
lock. Each client warms up, waits at a barrier so all start together, then sends
requests back to back for a fixed time and records every latency. Peak RSS is the
server's ``VmHWM`` on Linux (None elsewhere).
"""

from __future__ import annotations

import http.client
import math
import multiprocessing
import statistics
import tempfile
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

from .embed_batch import start_server

__all__ = ["peak_rss_mb", "run"]

CONCURRENCY = (1, 8)
WARM_UP_REQUESTS = 50


def _client(
    port: int, seconds: float, barrier: Barrier, results: Queue[list[float]]
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(WARM_UP_REQUESTS):
        _get(conn)
    barrier.wait()
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while True:
        started = time.perf_counter()
        if started >= deadline:
            break
        _get(conn)
        latencies.append(time.perf_counter() - started)
    conn.close()
    results.put(latencies)


def _get(conn: http.client.HTTPConnection) -> None:
    conn.request("GET", "/api/version")
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"GET /api/version answered {response.status}")


def _load(port: int, connections: int, seconds: float) -> dict[str, object]:
    """Drive ``connections`` clients for ``seconds``; requests/s and latencies."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(connections + 1)
    results: Queue[list[float]] = context.Queue()
    clients = [
        context.Process(target=_client, args=(port, seconds, barrier, results))
        for _ in range(connections)
    ]
    for client in clients:
        client.start()
    barrier.wait(timeout=120)
    latencies = sorted(x for _ in clients for x in results.get(timeout=seconds + 60))
    for client in clients:
        client.join(timeout=30)
        if client.exitcode != 0:
            raise RuntimeError(f"a load client failed with exit code {client.exitcode}")
    return {
        "connections": connections,
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / seconds),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 3),
    }


def _percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty list."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def peak_rss_mb(pid: int) -> float | None:
    """The peak resident memory of process ``pid`` in MB (Linux), or None."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)  # the value is in kB
    return None


def run(*, quick: bool = False) -> dict[str, object]:
    """Load ``GET /api/version`` at each concurrency; also the server's peak RSS."""
    seconds = 0.5 if quick else 3.0
    result: dict[str, object] = {"seconds_per_level": seconds}
    with tempfile.TemporaryDirectory() as tmp:
        process, port = start_server(Path(tmp) / "models")
        try:
            for connections in CONCURRENCY:
                result[f"version_c{connections}"] = _load(port, connections, seconds)
            result["server_peak_rss_mb"] = peak_rss_mb(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return result
