"""Microbenchmarks of the pure core: framing, parsing, translation, a whole exchange.

Why: every streamed token goes through a frame writer, and every request through a
translation and an ``Exchange``. Timing them without any I/O shows how much of the
gateway's per-token and per-request cost is the core's own, so an HTTP-level figure
can be split into "core" and "everything else". The streamed-generation figures run
whole ``/api/generate`` and ``/v1/chat/completions`` streams through an ``Exchange``
with a runner's results scripted: tokens/s there is the most the core alone allows.

Each figure is the median of several repetitions of a ``time.perf_counter`` loop
that runs long enough (calibrated) for the timer's resolution not to matter.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from gateway_core import (
    SSE_DONE,
    AcquireRunner,
    Exchange,
    GatewayConfig,
    Generate,
    GenerationDone,
    LookupModel,
    ModelFound,
    ModelRecord,
    NdjsonDecoder,
    Piece,
    PromptEvaluated,
    RequestHead,
    Result,
    RunnerReady,
    SseDecoder,
    Tokenize,
    TokenizerInfo,
    Tokens,
    Wait,
    WorkEffect,
    encode_ndjson,
    encode_sse,
)
from gateway_core._compat_openai_request import chat_call
from gateway_core._completion_request import chat_request
from gateway_core._json import JsonValue, dumps

__all__ = ["run"]

# What one streamed token of /api/chat looks like on the wire.
NDJSON_CHUNK: dict[str, JsonValue] = {
    "model": "llama3.2:latest",
    "created_at": "2025-01-01T12:00:00.123456789Z",
    "message": {"role": "assistant", "content": " token"},
    "done": False,
}

# And one of /v1/chat/completions.
OPENAI_CHUNK: dict[str, JsonValue] = {
    "id": "chatcmpl-123",
    "object": "chat.completion.chunk",
    "created": 1735732800,
    "model": "llama3.2:latest",
    "system_fingerprint": "fp_ollama",
    "choices": [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": " token"},
            "finish_reason": None,
        }
    ],
}

_MESSAGES: list[JsonValue] = [
    {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy? Explain in one sentence."},
]

OPENAI_BODY: dict[str, JsonValue] = {
    "model": "llama3.2",
    "messages": _MESSAGES,
    "temperature": 0.7,
    "top_p": 0.9,
    "max_tokens": 256,
    "stream": True,
    "stream_options": {"include_usage": True},
}

NATIVE_BODY: dict[str, JsonValue] = {
    "model": "llama3.2",
    "messages": _MESSAGES,
    "options": {"temperature": 0.7, "top_p": 0.9, "num_ctx": 4096},
    "stream": True,
    "keep_alive": "5m",
}

VERSION_HEAD = RequestHead(
    method="GET",
    target="/api/version",
    headers=(
        ("host", "127.0.0.1:11434"),
        ("user-agent", "ollama-python/0.4"),
        ("accept", "application/json"),
    ),
)

# A stream of this many tokens is what the decoders read, in pieces of this size:
# a socket read hands over whatever arrived, which rarely ends on a frame boundary.
STREAM_TOKENS = 2000
PIECE_BYTES = 4096


def _rate(action: Callable[[], object], *, seconds: float, repeats: int) -> float:
    """Calls of ``action`` per second: the median of ``repeats`` timed loops."""
    count = 1
    while True:  # Calibrate: grow the loop until one run takes ``seconds``.
        elapsed = _loop(action, count)
        if elapsed >= seconds:
            break
        count = max(count * 2, int(count * seconds / max(elapsed, 1e-9)))
    return statistics.median(count / _loop(action, count) for _ in range(repeats))


def _loop(action: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        action()
    return time.perf_counter() - started


def _pieces(stream: bytes) -> list[bytes]:
    return [stream[i : i + PIECE_BYTES] for i in range(0, len(stream), PIECE_BYTES)]


def _ndjson_stream() -> bytes:
    return b"".join(encode_ndjson(NDJSON_CHUNK) for _ in range(STREAM_TOKENS))


def _sse_stream() -> bytes:
    frame = encode_sse(dumps(OPENAI_CHUNK).decode("utf-8"))
    return frame * STREAM_TOKENS + SSE_DONE


def _decode_ndjson(pieces: list[bytes]) -> None:
    decoder = NdjsonDecoder()
    for piece in pieces:
        decoder.feed(piece)
    decoder.close()


def _decode_sse(pieces: list[bytes]) -> None:
    decoder = SseDecoder()
    for piece in pieces:
        decoder.feed(piece)
    decoder.close()


def _version_exchange() -> None:
    exchange = Exchange(VERSION_HEAD, config=GatewayConfig(), request_id="bench")
    while exchange.next_effect() is not Wait.FINISHED:
        pass


# A streamed generation through the whole core, as the server drives it: the model
# as the store describes it, and the results a runner gives, token after token.
_RECORD = ModelRecord(
    name="bench:latest",
    digest="ab" * 32,
    size=1,
    modified_at=0.0,
    model_file="/bench.gguf",
    model_digest="sha256:" + "cd" * 32,
    template=(
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
        "{% endfor %}<|im_start|>assistant\n"
    ),
    context_length=4096,
)
_TOKEN = Piece(token=42, data=b" token", duration=0.0001)


def _answer(effect: WorkEffect) -> Result:
    match effect:
        case LookupModel():
            return ModelFound(record=_RECORD)
        case AcquireRunner():
            info = TokenizerInfo(context_length=4096, add_bos=False, add_eos=False)
            return RunnerReady(load_duration=0.0, tokenizer=info)
        case Tokenize():
            return Tokens(ids=tuple(range(32)))
        case Generate():
            return PromptEvaluated(count=32, duration=0.001)
    raise AssertionError(f"the benchmark answers no {effect!r}")


def _streamed_generation(target: str, body: dict[str, JsonValue]) -> None:
    """One streaming request of ``STREAM_TOKENS`` tokens through an ``Exchange``."""
    data = dumps(body)
    head = RequestHead(
        method="POST",
        target=target,
        headers=(("content-length", str(len(data))),),
    )
    exchange = Exchange(head, config=GatewayConfig(), request_id="bench", now=0.0)
    fed = False
    tokens = 0
    while (effect := exchange.next_effect()) is not Wait.FINISHED:
        if effect is Wait.NEED_BODY:
            if fed:
                exchange.end_body()
            else:
                exchange.receive_body(data)
                fed = True
        elif effect is Wait.NEED_RESULT:
            tokens += 1
            done = tokens > STREAM_TOKENS
            result = GenerationDone(reason="stop") if done else _TOKEN
            exchange.receive_result(result, now=tokens * 1e-4)
        elif isinstance(effect, LookupModel | AcquireRunner | Tokenize | Generate):
            exchange.receive_result(_answer(effect), now=0.0)


_GENERATE_BODY: dict[str, JsonValue] = {
    "model": "bench",
    "prompt": "Tell me a story.",
    "options": {"num_predict": STREAM_TOKENS + 1},
}
_OPENAI_STREAM_BODY: dict[str, JsonValue] = {
    "model": "bench",
    "messages": [{"role": "user", "content": "Tell me a story."}],
    "stream": True,
    "max_tokens": STREAM_TOKENS + 1,
}


def run(*, quick: bool = False) -> dict[str, object]:
    """Every core figure, as a flat mapping of name to number."""
    seconds, repeats = (0.02, 3) if quick else (0.2, 7)

    def rate(action: Callable[[], object]) -> float:
        return _rate(action, seconds=seconds, repeats=repeats)

    ndjson = _ndjson_stream()
    sse = _sse_stream()
    ndjson_pieces, sse_pieces = _pieces(ndjson), _pieces(sse)
    megabyte = 1024 * 1024
    return {
        "repeats": repeats,
        "ndjson_frames_per_s": round(rate(lambda: encode_ndjson(NDJSON_CHUNK))),
        "sse_frames_per_s": round(
            rate(lambda: encode_sse(dumps(OPENAI_CHUNK).decode("utf-8")))
        ),
        "ndjson_decode_mb_per_s": round(
            rate(lambda: _decode_ndjson(ndjson_pieces)) * len(ndjson) / megabyte, 2
        ),
        "sse_decode_mb_per_s": round(
            rate(lambda: _decode_sse(sse_pieces)) * len(sse) / megabyte, 2
        ),
        "openai_chat_translations_per_s": round(rate(lambda: chat_call(OPENAI_BODY))),
        "native_chat_translations_per_s": round(
            rate(lambda: chat_request(NATIVE_BODY))
        ),
        "version_exchanges_per_s": round(rate(_version_exchange)),
        # Whole streamed generations, per token: the core's share of each token's cost.
        "generate_tokens_per_s": round(
            rate(lambda: _streamed_generation("/api/generate", _GENERATE_BODY))
            * STREAM_TOKENS
        ),
        "openai_stream_tokens_per_s": round(
            rate(
                lambda: _streamed_generation(
                    "/v1/chat/completions", _OPENAI_STREAM_BODY
                )
            )
            * STREAM_TOKENS
        ),
    }
