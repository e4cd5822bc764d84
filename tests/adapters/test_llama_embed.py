"""Embeddings from the llama.cpp runner, against real llama.cpp and the demo model.

The demo model has random weights, so its vectors mean nothing: these tests check
structure (lengths, order, packing, isolation of the inputs of one decode, pooling
arithmetic, errors), never similarity.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio
import gguf
import llama_cpp
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from adapters.demo_model import EMBEDDING_LENGTH, VOCAB_SIZE, write_demo_model
from adapters.llama_embed import EMBED_SEQ_MAX, pack
from adapters.llama_runner import (
    ContextOverflow,
    LlamaRunner,
    LoadParams,
    RunnerError,
    Sampling,
)

N_CTX = 64


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.gguf"
    write_demo_model(path, context_length=N_CTX)
    return path


@pytest.fixture
async def runner(model_file: Path) -> AsyncIterator[LlamaRunner]:
    runner = await load(model_file)
    yield runner
    await runner.close()


async def load(model_file: Path, n_ctx: int = N_CTX) -> LlamaRunner:
    params = LoadParams(model_file=str(model_file), n_ctx=n_ctx, embedding=True)
    return await LlamaRunner.load(params)


def tokens(seed: int, n: int) -> list[int]:
    """``n`` token ids, different for every seed, none of them special."""
    return [(seed * 37 + i * 11) % 200 + 20 for i in range(n)]


def distance(a: Sequence[float], b: Sequence[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


async def test_one_raw_vector_per_input(runner: LlamaRunner) -> None:
    assert runner.embedding_length == EMBEDDING_LENGTH
    assert runner.pooling_type == llama_cpp.LLAMA_POOLING_TYPE_MEAN
    assert runner.n_batch == N_CTX
    assert runner.n_seq_max == EMBED_SEQ_MAX
    inputs = [tokens(1, 5), tokens(2, 1), tokens(3, N_CTX)]
    vectors = await runner.embed(inputs)
    assert len(vectors) == 3
    assert all(len(vector) == EMBEDDING_LENGTH for vector in vectors)
    assert all(math.isfinite(x) for vector in vectors for x in vector)
    # Not normalized: that is the caller's job.
    norms = [math.hypot(*vector) for vector in vectors]
    assert all(abs(norm - 1) > 0.01 for norm in norms)
    assert runner.tokens_embedded == 5 + 1 + N_CTX
    assert await runner.embed([]) == []
    assert runner.embed_calls == 2


async def test_batching_does_not_mix_sequences(runner: LlamaRunner) -> None:
    x = tokens(0, 6)
    first = await runner.embed([tokens(1, 3), x, tokens(2, 9)])
    # Other neighbours of the same lengths: the same cells, the same kernels,
    # so any influence of the neighbours would show.
    second = await runner.embed([tokens(3, 3), x, tokens(4, 9)])
    assert distance(first[1], second[1]) < 1e-5
    # And the same as embedded alone.
    (alone,) = await runner.embed([x])
    assert distance(first[1], alone) < 1e-5
    for input_, vector in zip([tokens(1, 3), tokens(2, 9)], first[::2], strict=True):
        assert distance((await runner.embed([input_]))[0], vector) < 1e-5
    # The vectors of different inputs are far apart: the bounds above mean something.
    assert distance(first[0], first[2]) > 0.05
    assert distance(first[1], second[0]) > 0.05


async def test_large_batches_keep_order_and_isolation(model_file: Path) -> None:
    runner = await load(model_file, n_ctx=256)
    try:
        inputs = [tokens(seed, 1 + seed % 3) for seed in range(EMBED_SEQ_MAX)]
        batched = await runner.embed(inputs)
        assert runner.embed_calls == 1
        alone = [(await runner.embed([input_]))[0] for input_ in inputs]
        # A decode of more than about 64 tokens makes llama.cpp pick a coarser
        # flash-attention kernel (llama_embed.configure), so the vectors agree to
        # about 5e-4 rather than 1e-7; a neighbour's influence would be far larger.
        for vector, single in zip(batched, alone, strict=True):
            assert distance(vector, single) < 2e-3
        assert min(distance(alone[0], other) for other in alone[1:]) > 0.05
    finally:
        await runner.close()


async def test_inputs_are_packed_into_few_decodes(model_file: Path) -> None:
    runner = await load(model_file, n_ctx=256)
    try:
        short = [tokens(seed, 3) for seed in range(EMBED_SEQ_MAX + 1)]
        await runner.embed(short[:EMBED_SEQ_MAX])
        assert runner.embed_calls == 1
        await runner.embed(short)  # one more than the sequence limit
        assert runner.embed_calls == 1 + 2
    finally:
        await runner.close()


async def test_n_batch_bounds_the_packing(model_file: Path) -> None:
    params = LoadParams(
        model_file=str(model_file), n_ctx=N_CTX, n_batch=16, embedding=True
    )
    runner = await LlamaRunner.load(params)
    try:
        assert runner.n_batch == N_CTX  # llama.cpp's, so a whole input fits
        # 4 + 4 + 4 + 4 tokens, then one that fits the context but not n_batch,
        # then 4 + 4.
        inputs = [*(tokens(seed, 4) for seed in range(4)), tokens(9, N_CTX)]
        inputs += [tokens(seed, 4) for seed in range(2)]
        vectors = await runner.embed(inputs)
        assert runner.embed_calls == 3
        assert distance(vectors[-1], vectors[1]) < 1e-5  # the same input
    finally:
        await runner.close()


async def test_the_context_bounds_each_decode(runner: LlamaRunner) -> None:
    inputs = [tokens(seed, 3) for seed in range(EMBED_SEQ_MAX)]
    vectors = await runner.embed(inputs)
    # 21 inputs of 3 tokens fill a 64-token context: 4 decodes, not 64.
    assert runner.embed_calls == 4
    assert runner.tokens_embedded == 3 * EMBED_SEQ_MAX
    assert len(vectors) == EMBED_SEQ_MAX
    # Inputs of the same decode and of different decodes come back in order.
    for index in (0, 20, 21, 63):
        assert distance((await runner.embed([inputs[index]]))[0], vectors[index]) < 1e-3


async def test_longer_than_the_context_is_refused_before_any_work(
    runner: LlamaRunner,
) -> None:
    inputs = [tokens(1, 3), tokens(2, N_CTX), tokens(3, N_CTX + 1), tokens(4, 999)]
    with pytest.raises(ContextOverflow) as caught:
        await runner.embed(inputs)
    error = caught.value
    assert isinstance(error, RunnerError)
    assert (error.index, error.n_tokens, error.n_ctx) == (2, N_CTX + 1, N_CTX)
    assert str(error) == f"input 2 has {N_CTX + 1} tokens, the context holds {N_CTX}"
    assert runner.embed_calls == 0
    assert len(await runner.embed(inputs[:2])) == 2


async def test_input_checks(runner: LlamaRunner) -> None:
    with pytest.raises(ValueError, match="input 1 is empty"):
        await runner.embed([[1], []])
    with pytest.raises(ValueError, match="token ids"):
        await runner.embed([[1], [VOCAB_SIZE]])
    assert runner.embed_calls == 0


async def test_embeddings_are_deterministic(
    runner: LlamaRunner, model_file: Path
) -> None:
    inputs = [tokens(seed, 2 + seed) for seed in range(8)]
    first = await runner.embed(inputs)
    assert await runner.embed(inputs) == first
    other = await load(model_file)
    try:
        assert await other.embed(inputs) == first
    finally:
        await other.close()


async def test_mean_pooling_unless_the_gguf_declares_one(runner: LlamaRunner) -> None:
    # Causal attention: a token's state does not depend on the tokens after it,
    # so the mean over a, b, c is (state(a) + state(b) + state(c)) / 3 with each
    # state recoverable from the means of the prefixes.
    a, ab, abc = await runner.embed([tokens(5, 1), tokens(5, 2), tokens(5, 3)])
    state_c = [3 * z - 2 * y for y, z in zip(ab, abc, strict=True)]
    state_b = [2 * y - x for x, y in zip(a, ab, strict=True)]
    assert distance(state_b, state_c) > 0.05
    last = await last_token_runner(runner.model_file)
    try:
        assert last.pooling_type == llama_cpp.LLAMA_POOLING_TYPE_LAST
        last_a, last_abc = await last.embed([tokens(5, 1), tokens(5, 3)])
        assert distance(last_a, a) < 1e-4
        assert distance(last_abc, state_c) < 1e-4
    finally:
        await last.close()


async def last_token_runner(model_file: str) -> LlamaRunner:
    """The demo model, its GGUF declaring last-token pooling."""
    path = Path(model_file).with_name("last.gguf")
    with_metadata(
        Path(model_file),
        path,
        "llama.pooling_type",
        llama_cpp.LLAMA_POOLING_TYPE_LAST,
    )
    return await load(path)


def with_metadata(source: Path, target: Path, key: str, value: int) -> None:
    """Copy a GGUF file with one more uint32 metadata value."""
    reader = gguf.GGUFReader(source)
    architecture = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    assert architecture is not None
    writer = gguf.GGUFWriter(target, str(architecture.contents()))
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith(
            "GGUF."
        ):
            continue
        kind = field.types[0]
        sub_type = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub_type)
    writer.add_uint32(key, value)
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


async def test_each_runner_does_one_thing(
    runner: LlamaRunner, model_file: Path
) -> None:
    with pytest.raises(RuntimeError, match="loaded for embeddings"):
        runner.generate([1, 2, 3], Sampling())
    # Tokenizing is for both kinds.
    assert await runner.tokenize("hi", add_bos=False)
    generator = await LlamaRunner.load(LoadParams(model_file=str(model_file), n_ctx=64))
    try:
        assert generator.n_seq_max == 1
        assert generator.embedding_length == EMBEDDING_LENGTH
        with pytest.raises(RuntimeError, match="loaded for generation"):
            await generator.embed([[1, 2, 3]])
    finally:
        await generator.close()


async def test_vocabulary_flags(runner: LlamaRunner) -> None:
    # The demo model's vocabulary adds neither: its chat template writes them.
    assert (runner.add_bos, runner.add_eos) == (False, False)


async def test_concurrent_embeds_take_turns(runner: LlamaRunner) -> None:
    batches = [[tokens(seed + 10 * k, 4) for seed in range(30)] for k in range(3)]
    expected = [await runner.embed(batch) for batch in batches]
    results: dict[int, list[list[float]]] = {}

    async def embed(k: int) -> None:
        results[k] = await runner.embed(batches[k])

    async with trio.open_nursery() as nursery:
        for k in range(3):
            nursery.start_soon(embed, k)
    assert [results[k] for k in range(3)] == expected


async def test_closed_runner_refuses(model_file: Path) -> None:
    runner = await load(model_file)
    await runner.close()
    with pytest.raises(RunnerError, match="closed"):
        await runner.embed([[1]])


def test_works_under_asyncio(model_file: Path) -> None:
    async def main() -> list[list[float]]:
        runner = await load(model_file)
        try:
            return await runner.embed([tokens(1, 4), tokens(2, 4)])
        finally:
            await runner.close()

    vectors = anyio.run(main, backend="asyncio")
    assert [len(vector) for vector in vectors] == [EMBEDDING_LENGTH] * 2


@given(
    lengths=st.lists(st.integers(1, 48), max_size=40),
    max_tokens=st.integers(16, 40),
    max_sequences=st.integers(1, 8),
)
def test_pack_fills_groups_in_order(
    lengths: list[int], max_tokens: int, max_sequences: int
) -> None:
    groups = pack(lengths, max_tokens, max_sequences)
    assert [i for group in groups for i in range(len(lengths))[group]] == list(
        range(len(lengths))
    )
    for group in groups:
        members = lengths[group]
        assert members
        assert sum(members) <= max_tokens or len(members) == 1
        assert len(members) <= max_sequences
        if group.stop < len(lengths):  # greedy: the next input did not fit
            full = len(members) == max_sequences
            assert full or sum(members) + lengths[group.stop] > max_tokens
