"""Streaming: the gateway over HTTP against raw llama-cpp-python and its server.

Why: a user who could call ``llama_cpp.Llama`` directly picks the gateway only if
streaming through it costs next to nothing, and a user who wants a server picks it
only if it is not worse than the one llama-cpp-python ships. The limit is a
``Llama.generate`` token loop in this process with the gateway's sampling
(temperature 0.8, top_k 40, top_p 0.9, min_p 0, no repeat penalty) and thread counts
(half the CPUs for generation, all for the prompt). The gateway is a real
``gateway-core serve`` subprocess, with the same GGUF file uploaded through
``POST /api/blobs`` and registered with ``POST /api/create``, and is read over
``/api/generate`` (NDJSON) and ``/v1/chat/completions`` (SSE). The peer,
``llama_cpp.server`` (see ``peer``), serves the same file with the same threads and
is read over its own ``/v1/chat/completions`` with the same request and sampling; it
runs only after the gateway has exited. One difference remains: the OpenAI API has
no ``repeat_penalty``, so the gateway's SSE route keeps Ollama's default (1.1 over
the last 64 tokens), a little more sampling work per token than the others do.

How the figures are made:
- Time to first token (TTFT) runs from sending the request (raw: calling
  ``generate``) to the first chunk carrying text (raw: the first token that
  completes some UTF-8 text); it includes prompt evaluation.
- ``tokens_per_s`` is the decode rate after the first token: (tokens - 1) over the
  time from first to last token, so it is comparable between raw and HTTP.
- Neither server can ignore end-of-generation, so a stream may end before
  ``num_predict``; the gateway's tokens are counted from ``eval_count`` / ``usage``,
  never assumed. The peer ignores ``stream_options`` and sends no usage, but one
  chunk per token, so its tokens are its content chunks (a few tokens held back
  for a possible stop string come in one chunk: a slight undercount). The raw loop
  stops at EOG too.
- One stream at a time (concurrency 1) is paired with raw: each server stream runs
  right after a raw stream with the same seed, and its ratios to raw are the
  medians over the pairs, so the machine's drift over minutes cancels out. The raw
  figures are those of every paired raw stream.
- At concurrency 4 and 16, threads each run streams back to back after a barrier;
  aggregate tokens/s is all tokens over the level's wall time. A stream that ends
  without its final ``done`` object, or without a ``finish_reason`` and then
  ``[DONE]``, counts as truncated: the peer ends a stream it interrupts because
  another request is waiting with a bare ``[DONE]``.
- Ratios: every level against raw; the gateway's levels also against the peer's at
  the same concurrency (decode rate and TTFT for one stream, aggregate for several).
The machine's other load shows in every figure: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import codecs
import http.client
import json
import math
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

from .embed_batch import start_server
from .http_layer import peak_rss_mb
from .models import write_model
from .peer import NUM_CTX, SEED, runner_threads, start_peer, stop_peer

__all__ = ["decode_rate", "install", "run", "stream_once"]

PROMPT = "Tell me a long story about a fox who learns to benchmark language models."
SAMPLING = {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0}
CONCURRENCY = (1, 4, 16)
# Where each API's levels land in the results: the peer's under its own name.
LABELS = {"ndjson": "ndjson", "sse": "sse", "peer_sse": "peer"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Stream:
    """One measured stream: times are seconds from its request."""

    ttft: float | None
    decode: float | None
    total: float
    tokens: int
    complete: bool
    error: str | None = None


def _chatml(prompt: str) -> str:
    return f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"


def decode_rate(stream: Stream) -> float | None:
    if stream.decode is None or stream.decode <= 0 or stream.tokens < 2:
        return None
    return (stream.tokens - 1) / stream.decode


class RawLoop:
    """The limit: ``Llama.generate`` in this process, one stream at a time.

    Like the servers, a stream ends at an end-of-generation token, which is not
    counted, or after ``tokens``. Its first token is the first one that completes
    some text, as for a server: a token holding half of a UTF-8 character shows
    nothing yet (the random models make many). Seeds are the servers' seeds, so the
    same seed asks the same work of every target.
    """

    def __init__(self, model: Path) -> None:
        import llama_cpp

        self._llama_cpp = llama_cpp
        self.threads = runner_threads()
        self._llm = llama_cpp.Llama(
            str(model),
            n_ctx=NUM_CTX,
            n_threads=self.threads[0],
            n_threads_batch=self.threads[1],
            seed=SEED,
            verbose=False,
        )
        chat = _chatml(PROMPT).encode()
        self.prompt = self._llm.tokenize(chat, add_bos=False, special=True)
        self.stream(0, 8)  # warm up

    def stream(self, seed: int, tokens: int) -> Stream:
        llm, vocab = self._llm, self._llm._model.vocab
        llm.set_seed(seed)
        text = codecs.getincrementaldecoder("utf-8")("replace")
        started = time.perf_counter()
        first: float | None = None
        last = started
        count = 0
        for token in llm.generate(
            self.prompt,
            top_k=SAMPLING["top_k"],  # type: ignore[arg-type]
            top_p=SAMPLING["top_p"],
            min_p=SAMPLING["min_p"],
            temp=SAMPLING["temperature"],
            repeat_penalty=1.0,
            reset=True,
        ):
            if self._llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            shown = text.decode(llm.detokenize([token], special=True))
            last = time.perf_counter()
            if first is None and shown:
                first = last
            count += 1
            if count >= tokens:
                break
        return Stream(
            ttft=None if first is None else first - started,
            decode=None if first is None else last - first,
            total=last - started,
            tokens=count,
            complete=True,
        )

    def close(self) -> None:
        self._llm.close()


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
        options = {
            **SAMPLING,
            "repeat_penalty": 1.0,  # as raw and the peer; Ollama's default is 1.1
            "seed": seed,
            "num_predict": tokens,
            "num_ctx": NUM_CTX,
        }
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
    if api == "sse":
        body["num_ctx"] = NUM_CTX  # the gateway's extension; the peer's is fixed
    if api == "peer_sse":
        # llama_cpp.server's extensions to the OpenAI body. Its own defaults (min_p
        # 0.05, repeat_penalty 1.1) differ from the gateway's; the gateway's apply.
        body |= {
            "top_k": SAMPLING["top_k"],
            "min_p": SAMPLING["min_p"],
            "repeat_penalty": 1.0,
        }
    return "/v1/chat/completions", json.dumps(body).encode()


@dataclass(slots=True, kw_only=True)
class _Reading:
    """What one stream's lines have said so far, fed one line at a time.

    It never sees a socket, so how a stream is read, and when it counts as
    truncated, can be checked without a server.
    """

    api: str
    started: float
    first: float | None = None
    last: float | None = None
    counted: int | None = None  # the server's own count: eval_count or usage
    chunks: int = 0  # OpenAI chunks whose delta has content, even empty
    finished: bool = False  # a finish_reason, or NDJSON's done object
    done: bool = False  # [DONE], or NDJSON's done object
    error: str | None = None

    def feed(self, line: bytes, now: float) -> bool:
        """Take one stripped line that came at ``now``; False once it was an error."""
        if not line:
            return True
        if self.api == "ndjson":
            chunk = json.loads(line)
        elif not line.startswith(b"data:"):
            return True
        elif (data := line[5:].strip()) == b"[DONE]":
            self.done = True
            return True
        else:
            chunk = json.loads(data)
        if "error" in chunk:
            self.error = str(chunk["error"])
            return False
        text = self._ndjson(chunk) if self.api == "ndjson" else self._openai(chunk)
        if text:
            self.last = now
            if self.first is None:
                self.first = now
        return True

    def _ndjson(self, chunk: dict[str, Any]) -> object:
        if chunk.get("done"):
            self.finished = self.done = True
            self.counted = int(chunk.get("eval_count", 0))
        return chunk.get("response") or chunk.get("thinking")

    def _openai(self, chunk: dict[str, Any]) -> object:
        if usage := chunk.get("usage"):  # before [DONE], if the server sends it at all
            self.counted = int(usage["completion_tokens"])
        choices = chunk.get("choices") or [{}]
        choice = choices[0]
        self.finished |= bool(choice.get("finish_reason"))
        delta = choice.get("delta") or {}
        self.chunks += "content" in delta
        return delta.get("content") or delta.get("reasoning_content")

    def stream(self, ended: float) -> Stream:
        """The stream as measured, had it ended at ``ended``.

        The peer never sends usage, but one chunk per token: its tokens are its
        chunks. The gateway always sends its count; a stream without one has none.
        An OpenAI stream is complete only with a finish_reason and then [DONE]: the
        peer ends a stream it interrupts with [DONE] alone.
        """
        tokens = self.counted
        if tokens is None:
            tokens = self.chunks if self.api == "peer_sse" else 0
        first, last = self.first, self.last
        return Stream(
            ttft=None if first is None else first - self.started,
            decode=None if first is None or last is None else last - first,
            total=ended - self.started,
            tokens=tokens,
            complete=self.error is None and self.finished and self.done,
            error=self.error,
        )


def stream_once(
    conn: http.client.HTTPConnection, api: str, model: str, tokens: int, seed: int
) -> Stream:
    """Send one streaming request on ``conn`` and time its chunks."""
    path, body = _request(api, model, tokens, seed)
    reading = _Reading(api=api, started=time.perf_counter())
    try:
        conn.request(
            "POST", path, body=body, headers={"content-type": "application/json"}
        )
        response = conn.getresponse()
        if response.status != 200:
            reason = response.read()[:200].decode(errors="replace")
            reading.error = f"{response.status} {reason}"
        else:
            for line in iter(response.readline, b""):
                if not reading.feed(line.strip(), time.perf_counter()):
                    break
    except (OSError, http.client.HTTPException, ValueError) as exc:
        reading.error = f"{type(exc).__name__}: {exc}"
    return reading.stream(time.perf_counter())


def _percentile(ordered: list[float], fraction: float) -> float:
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _summarize(streams: list[Stream], *, wall: float | None) -> dict[str, object]:
    ttfts = sorted(s.ttft for s in streams if s.ttft is not None)
    rates = [r for s in streams if (r := decode_rate(s)) is not None]
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
    port: int,
    api: str,
    model: str,
    tokens: int,
    concurrency: int,
    per_client: int,
    *,
    reconnect: bool = False,
) -> dict[str, object]:
    """``concurrency`` threads, each streaming ``per_client`` times back to back,
    on one keep-alive connection, or on a new one each time (``reconnect``: for
    llama-server, which closes a connection after a stream)."""
    barrier = threading.Barrier(concurrency + 1)
    results: list[list[Stream]] = [[] for _ in range(concurrency)]

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        try:
            barrier.wait()
            for round_ in range(per_client):
                seed = 1 + index * per_client + round_
                if reconnect and round_:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
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


def _paired(
    port: int, api: str, plan: _Plan, raw: RawLoop
) -> tuple[dict[str, object], list[Stream]]:
    """One stream at a time, each right after a raw stream with the same seed.

    Why paired: on shared CPUs the machine's speed drifts by tens of percent over a
    few minutes, more than the differences measured. A ratio of two streams run a
    second apart is not disturbed by that; the medians of those ratios are the
    level's ratios to raw.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    served: list[Stream] = []
    limits: list[Stream] = []
    try:
        for round_ in range(plan.rounds):
            seed = 1 + round_
            limits.append(raw.stream(seed, plan.tokens))
            served.append(stream_once(conn, api, plan.model, plan.tokens, seed))
    finally:
        conn.close()
    # The level's wall time is its own streams', not the raw ones between them.
    level = _summarize(served, wall=sum(stream.total for stream in served))
    rates = [
        a / b
        for one, limit in zip(served, limits, strict=True)
        if (a := decode_rate(one)) is not None and (b := decode_rate(limit)) is not None
    ]
    gaps = [
        one.ttft - limit.ttft
        for one, limit in zip(served, limits, strict=True)
        if one.ttft is not None and limit.ttft is not None
    ]
    if rates:
        level["tokens_per_s_vs_raw"] = round(statistics.median(rates), 3)
    if gaps:
        level["ttft_minus_raw_ms"] = round(statistics.median(gaps) * 1000, 3)
    return level, limits


def _ratio(numerator: object, denominator: object) -> float | None:
    """``numerator / denominator`` to three places; None unless both were measured."""
    if isinstance(numerator, float) and isinstance(denominator, float) and denominator:
        return round(numerator / denominator, 3)
    return None


def _one_stream_vs_peer(
    level: dict[str, object], peer: dict[str, object]
) -> dict[str, object]:
    """One stream against the peer's, through their paired figures: each was run
    next to raw, so the ratio of their ratios to raw does not drift with the
    machine, while their own medians, minutes apart, would."""
    out: dict[str, object] = {}
    rate = _ratio(level.get("tokens_per_s_vs_raw"), peer.get("tokens_per_s_vs_raw"))
    if rate is not None:
        out["tokens_per_s_vs_peer"] = rate
    ttft, peer_ttft = level.get("ttft_minus_raw_ms"), peer.get("ttft_minus_raw_ms")
    if isinstance(ttft, float) and isinstance(peer_ttft, float):
        out["ttft_minus_peer_ms"] = round(ttft - peer_ttft, 3)
    return out


def _aggregate_ratio(
    level: dict[str, object], base_rate: object, name: str
) -> dict[str, object]:
    """Several streams: the level's aggregate tokens/s over ``base_rate``."""
    ratio = _ratio(level.get("aggregate_tokens_per_s"), base_rate)
    return {} if ratio is None else {f"aggregate_vs_{name}": ratio}


def _compare_with_peer(levels: dict[str, dict[str, object]]) -> None:
    """Add to each gateway level its ratio to the peer's level of the same concurrency.

    Both serve over HTTP, so several streams compare aggregate to aggregate; raw
    only ever runs one stream, so against raw it is the aggregate over its rate.
    """
    for api in ("ndjson", "sse"):
        for concurrency in CONCURRENCY:
            level = levels[f"{api}_c{concurrency}"]
            peer = levels[f"peer_c{concurrency}"]
            if concurrency == 1:
                level.update(_one_stream_vs_peer(level, peer))
            else:
                rate = peer.get("aggregate_tokens_per_s")
                level.update(_aggregate_ratio(level, rate, "peer"))


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plan:
    """How long to measure one model on each target."""

    size: str
    model: str
    tokens: int
    rounds: int
    per_client: int


def _warm(port: int, api: str, plan: _Plan) -> None:
    """One short stream, so that neither loading the model nor whatever an API does
    only on its first request is measured.

    A target that cannot stream once is not worth measuring: that is an error.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        stream = stream_once(conn, api, plan.model, 8, 0)
    finally:
        conn.close()
    if stream.error is not None:
        raise RuntimeError(f"{plan.size} {api}: warming up failed: {stream.error}")


def _levels(
    port: int, api: str, plan: _Plan, raw: RawLoop, limits: list[Stream]
) -> dict[str, dict[str, object]]:
    """Every concurrency on one API, once warmed; one stream is paired with raw
    (``_paired``), whose streams are added to ``limits``."""
    _warm(port, api, plan)
    label = LABELS[api]
    levels: dict[str, dict[str, object]] = {}
    for concurrency in CONCURRENCY:
        if concurrency == 1:
            level, paired = _paired(port, api, plan, raw)
            limits += paired
        else:
            repeat = plan.per_client
            level = _level(port, api, plan.model, plan.tokens, concurrency, repeat)
        levels[f"{label}_c{concurrency}"] = level
        print(f"  {plan.size} {label} c{concurrency} done", file=sys.stderr)
    return levels


def _compare_with_raw(
    levels: dict[str, dict[str, object]], raw: dict[str, object]
) -> None:
    """Add to each level of several streams its aggregate over the raw rate (one
    stream's ratios come from ``_paired``)."""
    for name, level in levels.items():
        if not name.endswith("_c1"):
            level.update(_aggregate_ratio(level, raw.get("tokens_per_s"), "raw"))


def bench_model(
    size: str, tmp: Path, *, tokens: int, rounds: int, per_client: int
) -> dict[str, object]:
    """The gateway on both APIs, then the peer, each single stream paired with raw.

    The peer starts only once the gateway has exited, so that the two servers never
    share the CPUs; raw runs in this process, between the servers' streams.
    """
    model = write_model(tmp / f"bench-{size}.gguf", size)
    plan = _Plan(
        size=size,
        model=f"bench-{size}",
        tokens=tokens,
        rounds=rounds,
        per_client=per_client,
    )
    result: dict[str, object] = {
        "model_mb": round(model.stat().st_size / 1e6, 2),
        "num_predict": tokens,
    }
    raw = RawLoop(model)
    limits: list[Stream] = []
    levels: dict[str, dict[str, object]] = {}
    try:
        process, port = start_server(tmp / f"store-{size}")
        try:
            install(port, model, plan.model)
            for api in ("ndjson", "sse"):
                levels |= _levels(port, api, plan, raw, limits)
            server_rss = peak_rss_mb(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)
        process, port = start_peer(model, plan.model)
        try:
            levels |= _levels(port, "peer_sse", plan, raw, limits)
            peer_rss = peak_rss_mb(process.pid)
        finally:
            stop_peer(process)
    finally:
        raw.close()
    summary = _summarize(limits, wall=None)
    summary["prompt_tokens"] = len(raw.prompt)
    summary["threads"] = list(raw.threads)
    result["raw"] = summary
    _compare_with_raw(levels, summary)
    _compare_with_peer(levels)
    result |= levels
    result["server_peak_rss_mb"] = server_rss
    result["peer_peak_rss_mb"] = peer_rss
    return result


def run(
    *, quick: bool = False, sizes: tuple[str, ...] | None = None
) -> dict[str, object]:
    """Both models (only the tiny one under ``quick``); ratios to raw and the peer."""
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
                rounds=2 if quick else 20,
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
