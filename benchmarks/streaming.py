"""Streaming generation: the gateway over HTTP against raw in-process llama-cpp-python.

Why: a user who could call ``llama_cpp.Llama`` directly picks the gateway only if
streaming through it costs next to nothing. The limit is a ``Llama.generate`` token
loop in this process with the gateway's sampling (temperature 0.8, top_k 40, top_p
0.9, min_p 0) and thread counts (half the CPUs for generation, all for the prompt).
The gateway is a real ``gateway-core serve`` subprocess, with the same GGUF file
uploaded through ``POST /api/blobs`` and registered with ``POST /api/create``, and
is read over ``/api/generate`` (NDJSON) and ``/v1/chat/completions`` (SSE).

How the figures are made:
- Time to first token (TTFT) runs from sending the request (raw: calling
  ``generate``) to the first chunk carrying text; it includes prompt evaluation.
- ``tokens_per_s`` is the decode rate after the first token: (tokens - 1) over the
  time from first to last token, so it is comparable between raw and HTTP.
- The gateway cannot ignore end-of-generation, so a stream may end before
  ``num_predict``; tokens are counted from ``eval_count`` / ``usage``, never
  assumed. The raw loop does not stop on EOG and only counts how often it came.
- At concurrency 4 and 16, threads each run streams back to back after a barrier;
  aggregate tokens/s is all tokens over the level's wall time. A stream that ends
  without its final ``done`` object or ``[DONE]`` counts as truncated.
The machine's other load shows in every figure: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from .embed_batch import start_server
from .http_layer import peak_rss_mb
from .models import write_model

__all__ = ["run"]

PROMPT = "Tell me a long story about a fox who learns to benchmark language models."
SAMPLING = {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0}
NUM_CTX = 2048
CONCURRENCY = (1, 4, 16)


@dataclass(frozen=True, slots=True, kw_only=True)
class Stream:
    """One measured stream: times are seconds from its request."""

    ttft: float | None
    decode: float | None
    total: float
    tokens: int
    complete: bool
    error: str | None = None


def _threads() -> tuple[int, int]:
    """The gateway runner's default threads, so the limit runs the same way."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // 2), cpus


def _chatml(prompt: str) -> str:
    return f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"


def _rate(stream: Stream) -> float | None:
    if stream.decode is None or stream.decode <= 0 or stream.tokens < 2:
        return None
    return (stream.tokens - 1) / stream.decode


def raw_limit(model: Path, *, tokens: int, rounds: int) -> dict[str, object]:
    """The limit: ``Llama.generate`` in this process, ``tokens`` tokens per round."""
    import llama_cpp

    n_threads, n_threads_batch = _threads()
    llm = llama_cpp.Llama(
        str(model),
        n_ctx=NUM_CTX,
        n_threads=n_threads,
        n_threads_batch=n_threads_batch,
        seed=1,
        verbose=False,
    )
    try:
        prompt = llm.tokenize(_chatml(PROMPT).encode(), add_bos=False, special=True)
        eog = 0
        streams: list[Stream] = []
        for round_ in range(rounds + 1):  # the first round warms up
            llm.set_seed(round_ + 1)
            started = time.perf_counter()
            first = last = started
            count = 0
            for token in llm.generate(
                prompt,
                top_k=SAMPLING["top_k"],  # type: ignore[arg-type]
                top_p=SAMPLING["top_p"],
                min_p=SAMPLING["min_p"],
                temp=SAMPLING["temperature"],
                repeat_penalty=1.0,
                reset=True,
            ):
                last = time.perf_counter()
                if count == 0:
                    first = last
                count += 1
                eog += llm.token_eos() == token or llama_cpp.llama_vocab_is_eog(
                    llm._model.vocab, token
                )
                if count >= tokens:
                    break
            if round_:
                streams.append(
                    Stream(
                        ttft=first - started,
                        decode=last - first,
                        total=last - started,
                        tokens=count,
                        complete=True,
                    )
                )
    finally:
        llm.close()
    summary = _summarize(streams, wall=None)
    summary["prompt_tokens"] = len(prompt)
    summary["eog_sampled"] = eog
    summary["threads"] = [n_threads, n_threads_batch]
    return summary


def _post_json(port: int, path: str, body: bytes, content_type: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        conn.request("POST", path, body=body, headers={"content-type": content_type})
        response = conn.getresponse()
        payload = response.read()
        if response.status >= 300:
            raise RuntimeError(f"POST {path}: {response.status} {payload[:300]!r}")
        return payload
    finally:
        conn.close()


def install(port: int, model: Path, name: str) -> None:
    """Upload ``model`` as a blob and register it as ``name``."""
    data = model.read_bytes()
    digest = "sha256:" + sha256(data).hexdigest()
    _post_json(port, f"/api/blobs/{digest}", data, "application/octet-stream")
    body = {"model": name, "files": {model.name: digest}, "stream": False}
    _post_json(port, "/api/create", json.dumps(body).encode(), "application/json")


def _request(api: str, model: str, tokens: int, seed: int) -> tuple[str, bytes]:
    if api == "ndjson":
        options = {**SAMPLING, "seed": seed, "num_predict": tokens, "num_ctx": NUM_CTX}
        body: dict[str, object] = {
            "model": model,
            "prompt": PROMPT,
            "stream": True,
            "options": options,
        }
        return "/api/generate", json.dumps(body).encode()
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": tokens,
        "temperature": SAMPLING["temperature"],
        "top_p": SAMPLING["top_p"],
        "seed": seed,
    }
    return "/v1/chat/completions", json.dumps(body).encode()


def stream_once(
    conn: http.client.HTTPConnection, api: str, model: str, tokens: int, seed: int
) -> Stream:
    """Send one streaming request on ``conn`` and time its chunks."""
    path, body = _request(api, model, tokens, seed)
    started = time.perf_counter()
    first: float | None = None
    last = started
    count = 0
    complete = False
    try:
        conn.request(
            "POST", path, body=body, headers={"content-type": "application/json"}
        )
        response = conn.getresponse()
        if response.status != 200:
            reason = response.read()[:200].decode(errors="replace")
            return Stream(
                ttft=None,
                decode=None,
                total=time.perf_counter() - started,
                tokens=0,
                complete=False,
                error=f"{response.status} {reason}",
            )
        text: object = None
        while line := response.readline():
            line = line.strip()
            if not line:
                continue
            now = time.perf_counter()
            if api == "sse":
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    complete = True
                    continue
                chunk = json.loads(data)
                if "error" in chunk:
                    return _broken(started, first, last, count, str(chunk["error"]))
                usage = chunk.get("usage")
                if usage:
                    count = int(usage["completion_tokens"])
                choices = chunk.get("choices") or []
                delta = choices[0].get("delta", {}) if choices else {}
                text = delta.get("content") or delta.get("reasoning_content")
            else:
                chunk = json.loads(line)
                if "error" in chunk:
                    return _broken(started, first, last, count, str(chunk["error"]))
                if chunk.get("done"):
                    complete = True
                    count = int(chunk.get("eval_count", 0))
                text = chunk.get("response") or chunk.get("thinking")
            if text:
                last = now
                if first is None:
                    first = now
        # SSE: usage comes before [DONE]; a stream without usage never counts tokens.
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return _broken(started, first, last, count, f"{type(exc).__name__}: {exc}")
    return Stream(
        ttft=None if first is None else first - started,
        decode=None if first is None else last - first,
        total=time.perf_counter() - started,
        tokens=count,
        complete=complete,
    )


def _broken(
    started: float, first: float | None, last: float, count: int, error: str
) -> Stream:
    return Stream(
        ttft=None if first is None else first - started,
        decode=None if first is None else last - first,
        total=time.perf_counter() - started,
        tokens=count,
        complete=False,
        error=error,
    )


def _percentile(ordered: list[float], fraction: float) -> float:
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _summarize(streams: list[Stream], *, wall: float | None) -> dict[str, object]:
    ttfts = sorted(s.ttft for s in streams if s.ttft is not None)
    rates = [r for s in streams if (r := _rate(s)) is not None]
    tokens = sum(s.tokens for s in streams)
    summary: dict[str, object] = {
        "streams": len(streams),
        "tokens": tokens,
        "tokens_per_s": round(statistics.median(rates), 1) if rates else None,
        "ttft_p50_ms": round(statistics.median(ttfts) * 1000, 3) if ttfts else None,
        "ttft_p99_ms": round(_percentile(ttfts, 0.99) * 1000, 3) if ttfts else None,
    }
    if wall is not None:
        summary["aggregate_tokens_per_s"] = round(tokens / wall, 1)
        summary["errors"] = sum(s.error is not None for s in streams)
        summary["truncated"] = sum(not s.complete for s in streams)
        summary["short_streams"] = sum(s.complete and s.tokens < 2 for s in streams)
        errors = sorted({s.error for s in streams if s.error})
        if errors:
            summary["error_samples"] = errors[:3]
    return summary


def _level(
    port: int, api: str, model: str, tokens: int, concurrency: int, per_client: int
) -> dict[str, object]:
    """``concurrency`` threads, each streaming ``per_client`` times back to back."""
    barrier = threading.Barrier(concurrency + 1)
    results: list[list[Stream]] = [[] for _ in range(concurrency)]

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        try:
            barrier.wait()
            for round_ in range(per_client):
                seed = 1 + index * per_client + round_
                results[index].append(stream_once(conn, api, model, tokens, seed))
        finally:
            conn.close()

    workers = [
        threading.Thread(target=client, args=(i,), daemon=True)
        for i in range(concurrency)
    ]
    for worker in workers:
        worker.start()
    barrier.wait(timeout=120)
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - started
    streams = [s for batch in results for s in batch]
    summary = _summarize(streams, wall=wall)
    summary["wall_s"] = round(wall, 3)
    return summary


def _ratios(gateway: dict[str, object], raw: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    g_rate, r_rate = gateway.get("tokens_per_s"), raw.get("tokens_per_s")
    if isinstance(g_rate, float) and isinstance(r_rate, float) and r_rate:
        out["tokens_per_s_vs_raw"] = round(g_rate / r_rate, 3)
    g_ttft, r_ttft = gateway.get("ttft_p50_ms"), raw.get("ttft_p50_ms")
    if isinstance(g_ttft, float) and isinstance(r_ttft, float):
        out["ttft_minus_raw_ms"] = round(g_ttft - r_ttft, 3)
    return out


def bench_model(
    size: str, tmp: Path, *, tokens: int, rounds: int, per_client: int
) -> dict[str, object]:
    """Raw limit, then the gateway on both APIs at every concurrency, for one model."""
    model = write_model(tmp / f"bench-{size}.gguf", size)
    result: dict[str, object] = {
        "model_mb": round(model.stat().st_size / 1e6, 2),
        "num_predict": tokens,
    }
    raw = raw_limit(model, tokens=tokens, rounds=rounds)
    result["raw"] = raw
    process, port = start_server(tmp / f"store-{size}")
    try:
        name = f"bench-{size}"
        install(port, model, name)
        warm = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        stream_once(warm, "ndjson", name, 8, 0)  # load the model
        warm.close()
        for api in ("ndjson", "sse"):
            for concurrency in CONCURRENCY:
                repeat = rounds if concurrency == 1 else per_client
                level = _level(port, api, name, tokens, concurrency, repeat)
                if concurrency == 1:
                    level.update(_ratios(level, raw))
                else:
                    agg, r_rate = level["aggregate_tokens_per_s"], raw["tokens_per_s"]
                    if isinstance(agg, float) and isinstance(r_rate, float) and r_rate:
                        level["aggregate_vs_raw"] = round(agg / r_rate, 3)
                result[f"{api}_c{concurrency}"] = level
                print(f"  {size} {api} c{concurrency} done", file=sys.stderr)
        result["server_peak_rss_mb"] = peak_rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
    return result


def run(
    *, quick: bool = False, sizes: tuple[str, ...] | None = None
) -> dict[str, object]:
    """Both models (only the tiny one under ``quick``); figures and ratios to raw."""
    chosen = sizes or (("tiny",) if quick else ("tiny", "medium"))
    result: dict[str, object] = {"concurrency": list(CONCURRENCY), "sampling": SAMPLING}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for size in chosen:
            print(f"  streaming: {size} model", file=sys.stderr)
            tokens = 32 if quick else (256 if size == "tiny" else 128)
            result[size] = bench_model(
                size,
                tmp,
                tokens=tokens,
                rounds=2 if quick else 5,
                per_client=1 if quick else 2,
            )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size", choices=("tiny", "medium"), action="append")
    args = parser.parse_args()
    sizes = tuple(args.size) if args.size else None
    print(json.dumps(run(quick=args.quick, sizes=sizes), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
