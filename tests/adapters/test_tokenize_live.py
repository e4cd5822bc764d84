"""Tokenize and detokenize with the real llama.cpp vocabulary of the tiny model."""

from __future__ import annotations

from typing import Any

import httpx
import ollama

from .conftest import LiveServer
from .ollama_setup import call


async def _post(live: LiveServer, path: str, body: dict[str, Any]) -> Any:
    async with httpx.AsyncClient() as http:
        reply = await http.post(
            f"http://{live.host}:{live.port}{path}", json=body, timeout=60
        )
    assert reply.status_code == 200, reply.text
    return reply.json()


async def test_tokenize_then_detokenize_round_trips(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    live, _ = served
    text = "Hello there, tokens: 12345 and café."
    tokenized = await _post(
        live,
        "/api/tokenize",
        {"model": "tiny", "content": text, "add_special": False, "with_pieces": True},
    )
    ids = tokenized["tokens"]
    assert ids
    # A piece is text, or the bytes of a token that holds part of a character.
    spelled = b"".join(
        piece.encode() if isinstance(piece, str) else bytes(piece)
        for piece in tokenized["pieces"]
    )
    assert spelled.decode() == text
    back = await _post(live, "/api/detokenize", {"model": "tiny", "tokens": ids})
    assert back["content"] == text
    served_ids = await _post(
        live, "/tokenize", {"model": "tiny", "content": text, "add_special": False}
    )
    assert served_ids == {"tokens": ids}


async def test_token_counts_equal_prompt_eval_count(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    live, client = served
    prompt = "Count these tokens exactly, once, for the evaluation."
    counted = await _post(live, "/api/tokenize", {"model": "tiny", "content": prompt})
    answer = await call(
        lambda: client.generate(
            model="tiny", prompt=prompt, raw=True, options={"num_predict": 1}
        )
    )
    # raw: the prompt as given, with the model's BOS (add_special's default).
    assert answer.prompt_eval_count == len(counted["tokens"])
