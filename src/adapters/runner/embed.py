"""The llama.cpp side of embeddings: the context they need, packing, pooled vectors.

The runner's embedding service (``service``) owns the rules and the errors; this module
holds the C-level mechanics, which run in its worker thread:

- ``configure`` makes a context for embeddings: pooled output, the whole context in
  one micro-batch (llama.cpp pools a sequence only when all its tokens are in the
  same micro-batch) and room for many sequences per ``llama_decode``.
- ``pack`` splits inputs, in order, into groups of one decode each.
- ``decode_sequences`` decodes one group, input *i* as sequence *i*, on a cleared
  context memory; ``pooled_vectors`` reads one vector per sequence back.

Pooling: what the GGUF declares (``<arch>.pooling_type``: mean, CLS or last token),
else mean. A decoder model declares nothing, and llama.cpp's own default for it is
no pooling, one vector per token; mean pooling gives the one vector per input that
an embedding endpoint returns. A declared "none" or "rank" (a reranker's head) is
overridden to mean for the same reason.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Final

import llama_cpp

__all__ = [
    "EMBED_SEQ_MAX",
    "allocated_cells",
    "configure",
    "declared_pooling",
    "decode_sequences",
    "pack",
    "pooled_vectors",
]

EMBED_SEQ_MAX: Final = 64
"""Sequences per decode at most (llama.cpp allows up to its own maximum, 256 now)."""

_POOLED: Final = frozenset(
    {
        llama_cpp.LLAMA_POOLING_TYPE_MEAN,
        llama_cpp.LLAMA_POOLING_TYPE_CLS,
        llama_cpp.LLAMA_POOLING_TYPE_LAST,
    }
)
_META_BUFFER: Final = 256
_CELL_GRANULE: Final = 256


def configure(
    context_params: llama_cpp.llama_context_params,
    model: llama_cpp.llama_model_p,
    n_ctx: int,
) -> None:
    """Set up ``context_params`` for embedding inputs of up to ``n_ctx`` tokens.

    The KV cache is unified: one pool of ``n_ctx`` cells shared by the sequences of
    a decode. Without it this llama.cpp gives every one of the ``n_seq_max``
    sequences a whole context of its own, 64 times the memory, for a cache that
    embeddings only use as scratch. Flash attention stays at llama.cpp's choice, as
    for generation: without it attention needs memory for ``n_ctx`` squared scores
    per head (1 GB at 4096 tokens and 16 heads). The price, measured on the CPU: a
    decode of more than about 64 tokens takes another, coarser flash-attention
    kernel, so an input embedded alone and in a big group can differ by about 3e-4
    per component (5e-5 once normalized); without flash attention, or within one
    kernel, they agree to 1e-7.
    """
    context_params.embeddings = True
    declared = declared_pooling(model)
    context_params.pooling_type = (
        declared if declared in _POOLED else llama_cpp.LLAMA_POOLING_TYPE_MEAN
    )
    cells = allocated_cells(n_ctx)
    context_params.n_ctx = cells
    context_params.n_batch = cells
    context_params.n_ubatch = cells
    context_params.n_seq_max = min(
        EMBED_SEQ_MAX, llama_cpp.llama_max_parallel_sequences()
    )
    context_params.kv_unified = True


def allocated_cells(n_ctx: int) -> int:
    """The cells an embedding context is made with for inputs of ``n_ctx`` tokens:
    ``n_ctx`` rounded up to a multiple of 256, llama.cpp's own granularity.

    Why: llama.cpp aborts the process (``GGML_ASSERT``) on an embedding context
    whose batch is smaller than its sequence count (``n_ctx`` below 64 here) or not
    a multiple of its padding (255). Inputs are still held to ``n_ctx`` tokens: the
    cells past it are never used.
    """
    return max(1, -(-n_ctx // _CELL_GRANULE)) * _CELL_GRANULE


def declared_pooling(model: llama_cpp.llama_model_p) -> int | None:
    """The pooling type the GGUF declares (llama.cpp's enum value), if any."""
    architecture = _metadata(model, "general.architecture")
    if architecture is None:
        return None
    value = _metadata(model, f"{architecture}.pooling_type")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def pack(lengths: Sequence[int], max_tokens: int, max_sequences: int) -> list[slice]:
    """Consecutive groups of inputs, each to be one decode; every input in one group.

    A group has at most ``max_sequences`` members and its lengths sum to at most
    ``max_tokens``, except that an input longer than that is a group of its own;
    an input joins the current group unless that would break a limit.
    """
    groups: list[slice] = []
    start = total = 0
    for index, length in enumerate(lengths):
        full = total + length > max_tokens or index - start == max_sequences
        if index > start and full:
            groups.append(slice(start, index))
            start, total = index, 0
        total += length
    if start < len(lengths):
        groups.append(slice(start, len(lengths)))
    return groups


def decode_sequences(
    ctx: llama_cpp.llama_context_p, inputs: Sequence[Sequence[int]]
) -> int:
    """Clear the context's memory, then decode input *i* as sequence *i*, at
    positions from 0, every token an output; return llama_decode's status.

    The inputs must fit the context's batch size and sequence limit (``pack``).
    """
    n_tokens = sum(map(len, inputs))
    batch = llama_cpp.llama_batch_init(n_tokens, 0, 1)
    try:
        # The fields once, not per token: each access makes a new pointer object.
        token_ids, positions, seq_counts = batch.token, batch.pos, batch.n_seq_id
        seq_ids, outputs = batch.seq_id, batch.logits
        slot = 0
        for sequence, tokens in enumerate(inputs):
            for position, token in enumerate(tokens):
                token_ids[slot] = token
                positions[slot] = position
                seq_counts[slot] = 1
                seq_ids[slot][0] = sequence
                # Pooling reads every token's output; llama.cpp would switch them
                # all on anyway, with a warning per decode.
                outputs[slot] = 1
                slot += 1
        batch.n_tokens = n_tokens
        memory = llama_cpp.llama_get_memory(ctx)
        if memory:  # encoder-only models (BERT) have none
            llama_cpp.llama_memory_clear(memory, True)
        status: int = llama_cpp.llama_decode(ctx, batch)
        return status
    finally:
        llama_cpp.llama_batch_free(batch)


def pooled_vectors(
    ctx: llama_cpp.llama_context_p, count: int, width: int
) -> list[list[float]] | None:
    """The pooled vectors of sequences 0 to ``count - 1`` after a decode; None if
    llama.cpp has none (a context without pooling)."""
    vectors = []
    for sequence in range(count):
        pointer = llama_cpp.llama_get_embeddings_seq(ctx, sequence)
        if not pointer:
            return None
        vectors.append(pointer[:width])
    return vectors


def _metadata(model: llama_cpp.llama_model_p, key: str) -> str | None:
    buffer = ctypes.create_string_buffer(_META_BUFFER)
    n = llama_cpp.llama_model_meta_val_str(model, key.encode(), buffer, _META_BUFFER)
    if n < 0:
        return None
    if n >= _META_BUFFER:  # cut short: no value this module reads is that long
        return None
    return buffer.value.decode(errors="replace")
