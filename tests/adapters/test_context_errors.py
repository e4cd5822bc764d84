"""An over-long prompt, with the official clients: OpenAI's routes refuse it with
``context_length_exceeded`` before any stream starts; the native chat keeps
Ollama's history truncation and says how many messages it dropped."""

from __future__ import annotations

from typing import Any

import httpx
import ollama
import openai
import pytest

from .conftest import LiveServer
from .ollama_setup import call

SMALL = 256  # tokens of context: the runner's smallest sensible size
HISTORY: list[Any] = [
    *({"role": "user", "content": f"old message number {i} " * 20} for i in range(6)),
    {"role": "user", "content": "last"},
]


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_chat_refuses_a_prompt_too_long(
    served: tuple[LiveServer, ollama.Client], stream: bool
) -> None:
    live, _ = served
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{live.port}/v1", api_key="x", max_retries=0
    )
    try:
        with pytest.raises(openai.BadRequestError) as refused:
            await call(
                lambda: client.chat.completions.create(
                    model="tiny",
                    messages=HISTORY,
                    stream=stream,
                    extra_body={"num_ctx": SMALL},
                )
            )
    finally:
        client.close()
    assert refused.value.code == "context_length_exceeded"
    assert f"the context of {SMALL}" in refused.value.message


async def test_native_chat_truncates_and_reports_the_dropped_messages(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    live, _ = served
    body = {
        "model": "tiny",
        "messages": HISTORY,
        "stream": False,
        "options": {"num_ctx": SMALL, "num_predict": 4},
    }
    async with httpx.AsyncClient() as http:
        reply = await http.post(
            f"http://{live.host}:{live.port}/api/chat", json=body, timeout=60
        )
        refused = await http.post(
            f"http://{live.host}:{live.port}/api/chat",
            json={**body, "truncate": False},
            timeout=60,
        )
    assert reply.status_code == 200
    dropped = reply.json()["truncated_messages"]
    assert 1 <= dropped <= len(HISTORY) - 1
    assert refused.status_code == 400
    assert refused.json()["error"].startswith(
        "the input length exceeds the context length"
    )
