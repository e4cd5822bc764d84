"""Token logprobs from real llama.cpp, read with the official ``ollama`` client.

The tiny model has random weights, so nothing here depends on wording: the checks
are what must hold of any distribution. With greedy sampling and no repeat penalty
the chosen token is the most likely one, so its logprob is the largest of its
alternatives; the alternatives' probabilities sum to at most 1; the same seed gives
the same numbers whether streamed or not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import httpx
import ollama
import openai
import pytest
from ollama._types import Logprob

from .conftest import LiveServer
from .ollama_setup import call

# Greedy, and no penalty: then the sampler picks the distribution's argmax.
GREEDY = {"num_predict": 12, "seed": 7, "temperature": 0.0, "repeat_penalty": 1.0}
TOP = 5


def _check_greedy_entries(entries: Sequence[Logprob]) -> None:
    for entry in entries:
        assert entry.logprob <= 0.0
        assert entry.top_logprobs is not None
        assert 1 <= len(entry.top_logprobs) <= TOP
        best = [alt.logprob for alt in entry.top_logprobs]
        assert best == sorted(best, reverse=True)
        assert entry.logprob == pytest.approx(best[0], abs=1e-6)
        assert entry.token == entry.top_logprobs[0].token
        assert sum(math.exp(value) for value in best) <= 1.0 + 1e-6


async def test_chat_logprobs_streamed_and_whole_agree(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    _, client = served
    messages = [{"role": "user", "content": "Hi there"}]
    whole = await call(
        lambda: client.chat(
            model="tiny",
            messages=messages,
            options=GREEDY,
            logprobs=True,
            top_logprobs=TOP,
        )
    )
    assert whole.logprobs is not None
    assert len(whole.logprobs) == whole.eval_count == 12  # one per token
    _check_greedy_entries(whole.logprobs)

    chunks = await call(
        lambda: list(
            client.chat(
                model="tiny",
                messages=messages,
                options=GREEDY,
                logprobs=True,
                top_logprobs=TOP,
                stream=True,
            )
        )
    )
    streamed = [entry for chunk in chunks for entry in chunk.logprobs or []]
    assert [e.token for e in streamed] == [e.token for e in whole.logprobs]
    # Equal up to the last bits: the second request reuses the first one's cached
    # prompt, and a prompt evaluated in two parts gives slightly different logits.
    assert [e.logprob for e in streamed] == pytest.approx(
        [e.logprob for e in whole.logprobs], abs=1e-4
    )
    # Per chunk: a chunk's entries are the tokens whose text it (or, for text held
    # back, the last object) brings.
    assert sum(len(c.logprobs or []) for c in chunks[:-1]) > 0


async def test_the_tokens_bytes_spell_the_answer(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    """``bytes`` (which the ollama client does not model) are each token's exact
    bytes: a token may end inside a character, so only their concatenation is
    sure to decode to the answer."""
    live, _ = served
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Hi there"}],
        "options": GREEDY,
        "logprobs": True,
        "stream": False,
    }
    async with httpx.AsyncClient() as http:
        reply = await http.post(
            f"http://{live.host}:{live.port}/api/chat", json=body, timeout=60
        )
    answer = reply.json()
    entries = answer["logprobs"]
    assert len(entries) == 12
    spelled = b"".join(bytes(entry["bytes"]) for entry in entries)
    assert spelled.decode("utf-8", "replace") == answer["message"]["content"]
    assert all("top_logprobs" not in entry for entry in entries)


async def test_generate_logprobs_without_alternatives_and_none_unasked(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    _, client = served
    plain = await call(
        lambda: client.generate(model="tiny", prompt="Hello", options=GREEDY)
    )
    assert plain.logprobs is None
    asked = await call(
        lambda: client.generate(
            model="tiny", prompt="Hello", options=GREEDY, logprobs=True
        )
    )
    assert asked.response == plain.response
    assert asked.logprobs is not None
    assert len(asked.logprobs) == 12
    assert all(entry.logprob <= 0.0 for entry in asked.logprobs)
    assert all(not entry.top_logprobs for entry in asked.logprobs)


async def test_constrained_output_reports_the_masked_distribution(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    """The constrained answer must open its object: the mask leaves ``{`` alone,
    so that token is certain (logprob 0) and has no alternative. (The tiny model
    can think, so a free thinking pass comes first; its tokens are reported too,
    one entry per generated token.)"""
    _, client = served
    schema = {"type": "object", "properties": {"a": {"type": "boolean"}}}
    answer = await call(
        lambda: client.generate(
            model="tiny",
            prompt="Hello",
            format=schema,
            options=GREEDY,
            logprobs=True,
            top_logprobs=TOP,
        )
    )
    assert (answer.response or "").startswith("{")
    assert answer.logprobs is not None
    assert len(answer.logprobs) == answer.eval_count
    opening = [
        entry
        for entry in answer.logprobs
        if entry.token == "{" and entry.logprob == 0.0
    ]
    assert opening, answer.logprobs
    assert opening[0].top_logprobs is not None
    assert [(a.token, a.logprob) for a in opening[0].top_logprobs] == [("{", 0.0)]


async def test_top_logprobs_out_of_range_is_400(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    _, client = served
    with pytest.raises(ollama.ResponseError) as refused:
        await call(
            lambda: client.generate(
                model="tiny", prompt="Hi", logprobs=True, top_logprobs=21
            )
        )
    assert refused.value.status_code == 400
    assert "top_logprobs must be between 0 and 20" in refused.value.error


async def test_openai_chat_logprobs_parse_into_the_clients_types(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    live, _ = served
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{live.port}/v1", api_key="x", max_retries=0
    )
    fields: dict[str, Any] = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Hi there"}],
        "max_tokens": 12,
        "seed": 7,
        "temperature": 0.0,
        "logprobs": True,
        "top_logprobs": TOP,
        # Ollama's own options on /v1, an extension: no repeat penalty, so the
        # greedy pick is the distribution's argmax.
        "extra_body": {"options": {"repeat_penalty": 1.0}},
    }
    try:
        whole = await call(lambda: client.chat.completions.create(**fields))
        chunks = await call(
            lambda: list(client.chat.completions.create(stream=True, **fields))
        )
        plain = await call(
            lambda: client.chat.completions.create(
                **{**fields, "logprobs": False, "top_logprobs": None}
            )
        )
    finally:
        client.close()
    choice = whole.choices[0]
    assert choice.logprobs is not None
    content = choice.logprobs.content
    assert content is not None
    assert len(content) == 12
    for entry in content:
        best = [alt.logprob for alt in entry.top_logprobs]
        assert 1 <= len(best) <= TOP
        assert entry.logprob == pytest.approx(max(best), abs=1e-6)
        assert entry.bytes is not None
        assert sum(math.exp(value) for value in best) <= 1.0 + 1e-6
    spelled = b"".join(bytes(entry.bytes or []) for entry in content)
    assert spelled.decode("utf-8", "replace") == choice.message.content

    streamed = [
        entry
        for chunk in chunks
        for c in chunk.choices
        if c.logprobs is not None and c.logprobs.content
        for entry in c.logprobs.content
    ]
    assert [e.token for e in streamed] == [e.token for e in content]
    assert plain.choices[0].logprobs is None
