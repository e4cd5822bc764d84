"""The HTTP layer alone: the gateway's and the peer's cheapest route under load.

Why: ``/api/version`` does no model work, so its requests/s and latency are the cost
of the server's own plumbing (sockets, h11, trio, the exchange, the access log). That
is the floor under every other endpoint. The same load on the peer,
llama-cpp-python's own server (FastAPI on uvicorn, see ``peer``), shows that floor
next to the obvious alternative's. Its cheapest route is ``/v1/models``, which does
no model work either but waits for the model's lock, as every request to it does.

The load comes from separate processes, one keep-alive connection each, so the
client's Python never competes with the server's for one interpreter lock. The client
is a lean one (a prepared request, a socket, the status line and ``content-length``
read back) rather than ``http.client``, which costs several times more CPU per
request: on a machine with few CPUs, eight ``http.client`` processes measure
themselves more than the server. Each client warms up, waits at a barrier so all
start together, then sends requests back to back for a fixed time and records every
latency. The two servers are loaded one after the other, never at once. Peak RSS is
each server's ``VmHWM`` on Linux (None elsewhere).
"""

from __future__ import annotations

import math
import multiprocessing
import re
import socket
import statistics
import tempfile
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

from .embed_batch import start_server
from .models import write_model
from .peer import start_peer, stop_peer

__all__ = ["load_route", "peak_rss_mb", "run"]

CONCURRENCY = (1, 8)
WARM_UP_REQUESTS = 50
_CONTENT_LENGTH = re.compile(r"(?im)^content-length:\s*(\d+)\s*$")


class _LeanClient:
    """Keep-alive GETs over one socket, reading back only what framing needs."""

    def __init__(self, port: int, path: str) -> None:
        self._socket = socket.create_connection(("127.0.0.1", port), timeout=30)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        self._path = path
        self._buffer = b""

    def get(self) -> None:
        """One request and its whole response; raises unless the status is 200."""
        self._socket.sendall(self._request)
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            self._receive()
        head = self._buffer[:end].decode("latin-1")
        if not head.startswith("HTTP/1.1 200"):
            raise RuntimeError(f"GET {self._path}: {head.splitlines()[0]}")
        length = _CONTENT_LENGTH.search(head)
        if length is None:
            raise RuntimeError(f"GET {self._path}: no content-length to frame by")
        size = end + 4 + int(length[1])
        while len(self._buffer) < size:
            self._receive()
        self._buffer = self._buffer[size:]

    def close(self) -> None:
        self._socket.close()

    def _receive(self) -> None:
        data = self._socket.recv(65536)
        if not data:
            raise RuntimeError(f"GET {self._path}: the server closed the connection")
        self._buffer += data


def _client(
    port: int,
    path: str,
    seconds: float,
    barrier: Barrier,
    results: Queue[list[float]],
) -> None:
    client = _LeanClient(port, path)
    for _ in range(WARM_UP_REQUESTS):
        client.get()
    barrier.wait()
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while True:
        started = time.perf_counter()
        if started >= deadline:
            break
        client.get()
        latencies.append(time.perf_counter() - started)
    client.close()
    results.put(latencies)


def load_route(
    port: int, path: str, connections: int, seconds: float
) -> dict[str, object]:
    """Drive ``connections`` clients at ``GET path`` for ``seconds``; requests/s and
    latencies."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(connections + 1)
    results: Queue[list[float]] = context.Queue()
    clients = [
        context.Process(target=_client, args=(port, path, seconds, barrier, results))
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


def _levels(port: int, path: str, seconds: float) -> list[dict[str, object]]:
    """``_load`` at each concurrency of ``CONCURRENCY``, in order."""
    return [load_route(port, path, connections, seconds) for connections in CONCURRENCY]


def _rps_ratio(gateway: dict[str, object], peer: dict[str, object]) -> float | None:
    """The gateway's requests/s over the peer's at one level (None if it had none)."""
    ours, theirs = gateway["requests_per_s"], peer["requests_per_s"]
    if isinstance(ours, int) and isinstance(theirs, int) and theirs:
        return round(ours / theirs, 3)
    return None


def run(*, quick: bool = False) -> dict[str, object]:
    """Each server's cheapest route at each concurrency, and each one's peak RSS.

    The gateway is loaded first and has exited before the peer starts, so the two
    never share the CPUs. The peer will not start without a model: it gets the
    tiny one, which it loads before it answers anything.
    """
    seconds = 0.5 if quick else 3.0
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        process, port = start_server(tmp / "models")
        try:
            version = _levels(port, "/api/version", seconds)
            server_rss = peak_rss_mb(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)
        peer, port = start_peer(write_model(tmp / "x.gguf", "tiny"), "x")
        try:
            models = _levels(port, "/v1/models", seconds)
            peer_rss = peak_rss_mb(peer.pid)
        finally:
            stop_peer(peer)
    result: dict[str, object] = {"seconds_per_level": seconds}
    for connections, gateway, theirs in zip(CONCURRENCY, version, models, strict=True):
        gateway["version_vs_peer_rps"] = _rps_ratio(gateway, theirs)
        result[f"version_c{connections}"] = gateway
        result[f"peer_models_c{connections}"] = theirs
    result["server_peak_rss_mb"] = server_rss
    result["peer_peak_rss_mb"] = peer_rss
    return result
