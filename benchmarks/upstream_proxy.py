"""The proxy's own cost: the same streams straight from an upstream and through a
front gateway that routes to it (docs/scaling.md).

Why: an upstream pool must not slow the answers it carries. Targets: at most 2 ms
added to the first token, at least 0.97 of the tokens/s. The upstream is a
``gateway-core serve`` process with the tiny generated model; the front is
another, whose upstreams file sends ``tiny`` there. Streams alternate between the
two paths, one seed per pair (the machine is shared and noisy: pairs, medians,
ratios).
"""

from __future__ import annotations

import http.client
import statistics
import tempfile
from pathlib import Path

from .embed_batch import start_server
from .models import write_model
from .streaming import Stream, decode_rate, install, stream_once

__all__ = ["run"]

_TOKENS = 64


def run(*, quick: bool = False) -> dict[str, object]:
    pairs = 4 if quick else 40
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        model = write_model(tmp / "tiny.gguf", "tiny")
        upstream, up_port = start_server(tmp / "up")
        try:
            install(up_port, model, "tiny")
            upstreams = tmp / "upstreams.toml"
            upstreams.write_text(
                '[[pool]]\nname = "bench"\nmodels = ["tiny*"]\n'
                '[[pool.upstream]]\nname = "up"\nkind = "gateway"\n'
                f'url = "http://127.0.0.1:{up_port}"\n'
            )
            front, front_port = start_server(
                tmp / "front", env={"GATEWAY_UPSTREAMS": str(upstreams)}
            )
            try:
                return _paired(up_port, front_port, pairs)
            finally:
                front.terminate()
                front.wait(timeout=30)
        finally:
            upstream.terminate()
            upstream.wait(timeout=30)


def _paired(direct: int, proxied: int, count: int) -> dict[str, object]:
    conns = [
        http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for port in (direct, proxied)
    ]
    ttft: list[tuple[float, float]] = []
    rates: list[tuple[float, float]] = []
    try:
        for conn in conns:
            stream_once(conn, "ndjson", "tiny", 8, seed=1)  # load and warm
        for seed in range(count):
            order = (0, 1) if seed % 2 == 0 else (1, 0)
            streams: dict[int, Stream] = {}
            for side in order:
                streams[side] = stream_once(
                    conns[side], "ndjson", "tiny", _TOKENS, seed
                )
            first, second = streams[0], streams[1]
            if first.ttft is not None and second.ttft is not None:
                ttft.append((first.ttft, second.ttft))
            rate_a, rate_b = decode_rate(first), decode_rate(second)
            if rate_a is not None and rate_b is not None:
                rates.append((rate_a, rate_b))
    finally:
        for conn in conns:
            conn.close()
    if not ttft or not rates:
        raise RuntimeError("no pair of streams produced two tokens each")
    return {
        "pairs": len(rates),
        "direct_ttft_ms": round(statistics.median(a for a, _ in ttft) * 1e3, 2),
        "proxied_ttft_ms": round(statistics.median(b for _, b in ttft) * 1e3, 2),
        "added_ttft_ms": round(statistics.median(b - a for a, b in ttft) * 1e3, 2),
        "direct_tokens_per_s": round(statistics.median(a for a, _ in rates)),
        "proxied_tokens_per_s": round(statistics.median(b for _, b in rates)),
        "tokens_per_s_proxied_vs_direct": round(
            statistics.median(b / a for a, b in rates), 3
        ),
    }
