"""One canonical answer, written in all three dialects, compared byte for byte.

The scripted model thinks, answers, then calls a tool. Whatever API asked, the passes
produce the same thinking, content and tool call; each dialect's renderer writes them
in its own wire format. These are the exact bytes each client receives.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway_core import (
    AcquireRunner,
    CheckSchema,
    Generate,
    GenerationDone,
    LookupModel,
    ModelFound,
    Piece,
    PromptEvaluated,
    Result,
    RunnerReady,
    SchemaSupported,
    Tokenize,
    TokenizerInfo,
    Tokens,
    WorkEffect,
)

from .helpers import NOW, THINKING_TOOLS, model_record, run

RECORD = model_record("tiny", THINKING_TOOLS)
PIECES = (
    b"<think>",
    b"plan",
    b"</think>",
    b"Hi",
    b" there",
    b'<tool_call>{"name": "get_weather", "arguments": {"city": "Tokyo"}}</tool_call>',
)
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


def model(effect: WorkEffect) -> Sequence[Result]:
    match effect:
        case LookupModel():
            return [ModelFound(record=RECORD)]
        case AcquireRunner():
            info = TokenizerInfo(context_length=4096, add_bos=False, add_eos=False)
            return [RunnerReady(load_duration=0.0, tokenizer=info)]
        case CheckSchema():
            return [SchemaSupported()]
        case Tokenize():
            return [Tokens(ids=tuple(range(7)))]
        case Generate():
            pieces: list[Result] = [
                Piece(token=100 + i, data=data, duration=0.0)
                for i, data in enumerate(PIECES)
            ]
            return [
                PromptEvaluated(count=7, duration=0.0),
                *pieces,
                GenerationDone(reason="stop"),
            ]
    raise AssertionError(effect)


QUESTION = [{"role": "user", "content": "Weather?"}]
REQUESTS: dict[str, dict[str, object]] = {
    "/api/chat": {
        "model": "tiny",
        "messages": QUESTION,
        "tools": [
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": SCHEMA},
            }
        ],
    },
    "/v1/chat/completions": {
        "model": "tiny",
        "messages": QUESTION,
        "tools": [
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": SCHEMA},
            }
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
    },
    "/v1/messages": {
        "model": "tiny",
        "max_tokens": 100,
        "messages": QUESTION,
        "tools": [{"name": "get_weather", "input_schema": SCHEMA}],
        "stream": True,
    },
}

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize(
    ("path", "media_type", "golden"),
    [
        ("/api/chat", "application/x-ndjson", "chat.ndjson"),
        ("/v1/chat/completions", "text/event-stream", "chat.openai.sse"),
        ("/v1/messages", "text/event-stream", "chat.anthropic.sse"),
    ],
)
def test_one_answer_in_each_dialect(path: str, media_type: str, golden: str) -> None:
    body = json.dumps(REQUESTS[path]).encode()
    t = run("POST", path, body, world=model, started=NOW - 1)
    assert t.status == 200
    assert t.header("content-type") == media_type
    assert t.body == (GOLDEN / golden).read_bytes()
