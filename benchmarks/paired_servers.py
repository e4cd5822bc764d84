"""Two variants of the server, measured in alternation: the frame of a paired A/B.

Why: the machine is shared and noisy (the tiny model's decode rate drifts between
5,000 and 9,000 tokens/s from one minute to the next), so a variant is only ever
compared with a run of the other made moments before or after it. Both servers
run at once, idle but for the one being measured, and the measurements alternate:
a short burst of ``GET /api/version`` from eight connections on one, then on the
other (the HTTP plumbing alone); a single stream on one, then one with the same
seed on the other (the per-token path, on the tiny generated model whose tokens
cost about 0.15 ms, so that any per-token cost shows). The order within each pair
alternates too. Reported: each side's median, and the median of the per-pair
ratios B/A. Rates still swing with the machine; so the server process's own CPU
time (from ``/proc``) per request and per streamed token is reported as well, and
its ratio B/A: the cost of a variant in CPU, which other work on the machine
disturbs much less than it disturbs a rate.
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
from .profile import cpu_seconds
from .streaming import decode_rate, install, stream_once

__all__ = ["ServerStart", "compare_servers"]

ServerStart = Callable[[Path], tuple[subprocess.Popen[bytes], int]]
"""Starts one variant of the server on a model store; its process and port."""

_CONNECTIONS = 8
_TOKENS = 400


def compare_servers(
    a: tuple[str, ServerStart],
    b: tuple[str, ServerStart],
    *,
    quick: bool = False,
) -> dict[str, object]:
    """Both figures for the variants ``a`` and ``b`` (each a label and how to
    start it): each side's medians and the median per-pair ratios
    ``<b>_vs_<a>``."""
    bursts, streams = (2, 4) if quick else (12, 40)
    seconds = 0.3 if quick else 0.5
    (label_a, start_a), (label_b, start_b) = a, b
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        model = write_model(tmp / "tiny.gguf", "tiny")
        process_a, port_a = start_a(tmp / "models-a")
        try:
            process_b, port_b = start_b(tmp / "models-b")
            try:
                servers = ((process_a.pid, port_a), (process_b.pid, port_b))
                for _, port in servers:
                    install(port, model, "tiny")
                cpu = _CpuTally(servers)
                rps = _alternate(
                    bursts, servers, lambda server: _burst(server, seconds, cpu)
                )
                cpu_per_request = cpu.per_unit()
                cpu = _CpuTally(servers)
                rates = _streams(streams, servers, cpu)
                cpu_per_token = cpu.per_unit()
            finally:
                _stop(process_b)
        finally:
            _stop(process_a)
    result: dict[str, object] = {"bursts": bursts, "streams": len(rates)}
    for figure, pairs in (("rps", rps), ("tokens_per_s", rates)):
        result[f"{label_a}_{figure}"] = round(statistics.median(p[0] for p in pairs))
        result[f"{label_b}_{figure}"] = round(statistics.median(p[1] for p in pairs))
        result[f"{figure}_{label_b}_vs_{label_a}"] = round(
            statistics.median(p[1] / p[0] for p in pairs), 3
        )
    for figure, (cost_a, cost_b) in (
        ("server_cpu_us_per_request", cpu_per_request),
        ("server_cpu_us_per_token", cpu_per_token),
    ):
        result[f"{label_a}_{figure}"] = round(cost_a * 1e6, 1)
        result[f"{label_b}_{figure}"] = round(cost_b * 1e6, 1)
        result[f"{figure}_{label_b}_vs_{label_a}"] = round(cost_b / cost_a, 3)
    return result


Server = tuple[int, int]
"""A running server's process id and port."""


class _CpuTally:
    """The server processes' CPU seconds over one phase of the measurement, and
    the units (requests, tokens) each side served in it.

    Read once around the whole phase, not around each stream: the kernel counts
    CPU time in ticks of 10 ms, as long as a stream takes; over a phase the tick
    is a percent or two. The side not being measured idles meanwhile, at no cost
    worth counting (a timer now and then).
    """

    def __init__(self, servers: tuple[Server, Server]) -> None:
        self.pids = [pid for pid, _ in servers]
        self.before = [cpu_seconds(pid) for pid in self.pids]
        self.units = [0, 0]

    def add(self, side: int, units: int) -> None:
        self.units[side] += units

    def per_unit(self) -> tuple[float, float]:
        """CPU seconds per unit on each side, since the tally began."""
        if not all(self.units):
            raise RuntimeError("a side measured nothing")
        spent = [
            cpu_seconds(pid) - b for pid, b in zip(self.pids, self.before, strict=True)
        ]
        a, b = (cost / units for cost, units in zip(spent, self.units, strict=True))
        return a, b


def _alternate(
    count: int,
    servers: tuple[Server, Server],
    measure: Callable[[tuple[int, Server]], float],
) -> list[tuple[float, float]]:
    """``count`` pairs (a, b) of ``measure`` on (side, server), the order
    alternating each pair."""
    pairs = []
    for index in range(count):
        order = (0, 1) if index % 2 == 0 else (1, 0)
        found = [0.0, 0.0]
        for side in order:
            found[side] = measure((side, servers[side]))
        pairs.append((found[0], found[1]))
    return pairs


def _burst(at: tuple[int, Server], seconds: float, cpu: _CpuTally) -> float:
    side, (_, port) = at
    loaded = load_route(port, "/api/version", _CONNECTIONS, seconds)
    requests = loaded["requests"]
    assert isinstance(requests, int)
    cpu.add(side, requests)
    rps = loaded["requests_per_s"]
    assert isinstance(rps, int)
    return float(rps)


def _streams(
    count: int, servers: tuple[Server, Server], cpu: _CpuTally
) -> list[tuple[float, float]]:
    """Decode rates of ``count`` pairs of single streams, one seed per pair; a pair
    where either stream made fewer than two tokens is left out."""
    conns = [
        http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for _, port in servers
    ]
    try:
        for conn in conns:
            stream_once(conn, "ndjson", "tiny", 8, seed=1)  # load and warm
        pairs = []
        for seed in range(count):
            order = (0, 1) if seed % 2 == 0 else (1, 0)
            rates: list[float | None] = [None, None]
            for side in order:
                stream = stream_once(conns[side], "ndjson", "tiny", _TOKENS, seed=seed)
                cpu.add(side, stream.tokens)
                rates[side] = decode_rate(stream)
            first, second = rates
            if first is not None and second is not None:
                pairs.append((first, second))
    finally:
        for conn in conns:
            conn.close()
    if not pairs:
        raise RuntimeError("no pair of streams produced two tokens each")
    return pairs


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=30)
