"""Embeddings through the official ``ollama`` client, the live server and llama.cpp.

Random weights make the vectors meaningless; what is checked is their shape, their
norm, truncation against a 64-token context, and that the client parses every
answer in its own models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import gguf as gguf_package
import ollama
import pytest
import trio

from gateway_core_adapters.demo_model import write_demo_model

from .live import LiveServer
from .ollama_setup import call, install

# About 1,000 tokens of the demo model's byte-level vocabulary.
LONG = "embedding inputs must just work, however long they are. " * 18


async def embed_one(client: ollama.Client, text: str) -> ollama.EmbedResponse:
    return await call(lambda: client.embed(model="tiny", input=text))


def norm(vector: Sequence[float]) -> float:
    return math.sqrt(math.fsum(x * x for x in vector))


@pytest.fixture
async def small(served: tuple[LiveServer, ollama.Client]) -> ollama.Client:
    """``tiny`` is installed; ``small`` is the same file with ``num_ctx`` 64."""
    _, client = served
    await call(
        lambda: client.create(model="small", from_="tiny", parameters={"num_ctx": 64})
    )
    return client


async def test_a_long_input_is_truncated_to_the_context(small: ollama.Client) -> None:
    client = small
    answer = await call(lambda: client.embed(model="small", input=LONG))
    (vector,) = answer.embeddings
    assert abs(norm(vector) - 1) < 1e-5
    assert answer.prompt_eval_count is not None
    assert 0 < answer.prompt_eval_count <= 64
    tokens = await call(lambda: client.embed(model="small", input=LONG[:40]))
    assert tokens.prompt_eval_count is not None
    assert tokens.prompt_eval_count < answer.prompt_eval_count  # really was long


async def test_with_truncate_off_a_long_input_is_a_400(small: ollama.Client) -> None:
    client = small
    with pytest.raises(ollama.ResponseError) as caught:
        await call(lambda: client.embed(model="small", input=LONG, truncate=False))
    assert caught.value.status_code == 400
    assert caught.value.error == "the input length exceeds the context length"


async def test_vectors_have_unit_norm_and_dimensions_cut_them(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    _, client = served
    inputs = ["one", "two words", "three words here", ""]
    answer = await call(lambda: client.embed(model="tiny", input=inputs[:3]))
    assert len(answer.embeddings) == 3
    for vector in answer.embeddings:
        assert len(vector) == 64  # the demo model's embedding width
        assert abs(norm(vector) - 1) < 1e-5
    cut = await call(lambda: client.embed(model="tiny", input="one", dimensions=8))
    (short,) = cut.embeddings
    assert len(short) == 8
    assert abs(norm(short) - 1) < 1e-5
    # The first 8 values of the full vector, renormalized.
    full = answer.embeddings[0][:8]
    assert short == pytest.approx([x / norm(full) for x in full], abs=1e-6)


async def test_a_batch_gives_the_same_vectors_as_one_at_a_time(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    _, client = served
    texts = [f"input number {i}" for i in range(6)]
    batch = await call(lambda: client.embed(model="tiny", input=texts))
    for text, vector in zip(texts, batch.embeddings, strict=True):
        alone = await embed_one(client, text)
        # Equal up to llama.cpp's flash-attention rounding, which depends on how
        # many tokens share a decode call (about 5e-5 here); different inputs'
        # vectors differ by far more than that.
        assert alone.embeddings[0] == pytest.approx(vector, abs=2e-4)


async def test_the_legacy_endpoint_returns_the_raw_vector(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    _, client = served
    legacy = await call(lambda: client.embeddings(model="tiny", prompt="one"))
    modern = await call(lambda: client.embed(model="tiny", input="one"))
    raw = list(legacy.embedding)
    assert len(raw) == 64
    assert [x / norm(raw) for x in raw] == pytest.approx(modern.embeddings[0], abs=1e-6)


async def test_an_embedding_only_model_refuses_to_chat(
    served: tuple[LiveServer, ollama.Client], tmp_path: Path
) -> None:
    _, client = served
    path = tmp_path / "embedder.gguf"
    write_demo_model(path, pooling=gguf_package.PoolingType.MEAN)
    await install(client, "embedder", path)
    shown = await call(lambda: client.show("embedder"))
    assert shown.capabilities == ["embedding"]
    for function, verb in [
        (lambda: client.chat(model="embedder", messages=[]), "chat"),
        (lambda: client.generate(model="embedder", prompt="x"), "generate"),
    ]:
        with pytest.raises(ollama.ResponseError) as caught:
            await call(function)
        assert caught.value.status_code == 400
        assert caught.value.error == f'"embedder" does not support {verb}'
    answer = await call(lambda: client.embed(model="embedder", input="x"))
    assert len(answer.embeddings[0]) == 64


async def test_embedding_errors_in_ollamas_words(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    _, client = served
    with pytest.raises(ollama.ResponseError) as missing:
        await call(lambda: client.embed(model="nope", input="x"))
    assert missing.value.status_code == 404
    assert missing.value.error == 'model "nope" not found, try pulling it first'
    with pytest.raises(ollama.ResponseError) as too_wide:
        await call(lambda: client.embed(model="tiny", input="x", dimensions=65))
    assert too_wide.value.status_code == 400


async def test_concurrent_embeds_and_chats_share_the_model_file(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    live, client = served
    vectors: list[int] = []
    chats: list[tuple[int, str | None]] = []

    async def embed() -> None:
        answer = await call(lambda: client.embed(model="tiny", input=["a", "b"]))
        vectors.append(len(answer.embeddings))

    async def chat() -> None:
        answer = await call(
            lambda: client.chat(
                model="tiny",
                messages=[{"role": "user", "content": "hi"}],
                options={"num_predict": 4},
            )
        )
        chats.append((answer.eval_count or 0, answer.done_reason))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(embed)
        nursery.start_soon(chat)
    assert vectors == [2]
    ((count, reason),) = chats
    # A random model may end early with its end-of-generation token.
    assert (count == 4) if reason == "length" else (1 <= count <= 4), chats
    # One model, shown once, though it has a runner for each purpose.
    running = (await call(lambda: client.ps())).models
    assert [m.model for m in running] == ["tiny:latest"]
    models = live.server.models
    assert models is not None
    assert len(models.pool.running()) == 2
