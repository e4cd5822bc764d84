"""Embeddings in the runner process: whole inputs, pooled, packed into shared decodes.

An embedding runner's model has a context made for pooling (``embed.configure``);
it never generates. ``embed_inputs`` is the one operation: consecutive inputs share
one ``llama_decode``, as distinct sequences, while their tokens fit
``min(n_ctx, n_batch)`` and their number the context's sequences (packing is not
free: attention in one decode costs the square of its tokens, whichever sequence
they belong to); an input longer than that has a decode of its own. Nothing is
truncated: an input longer than the context is reported, before any work, and the
core decides what to cut.
"""

from __future__ import annotations

import time

from . import embed
from .llama import Model
from .protocol import Embed, Failed, Vectors

__all__ = ["embed_inputs"]


def embed_inputs(model: Model, request: Embed) -> Vectors | Failed:
    """Pooled, unnormalized vectors for every input of ``request``, in order."""
    inputs = request.inputs
    for index, tokens in enumerate(inputs):
        if not tokens:
            return Failed(
                id=request.id,
                kind="bad_request",
                message=f"input {index} is empty: it needs at least one token",
            )
        if not all(0 <= token < model.n_vocab for token in tokens):
            return Failed(
                id=request.id,
                kind="bad_request",
                message=f"token ids must be in 0..{model.n_vocab - 1}",
            )
        if len(tokens) > model.n_ctx:
            return Failed(
                id=request.id,
                kind="context_overflow",
                message=f"input {index} has {len(tokens)} tokens,"
                f" the context holds {model.n_ctx}",
                index=index,
                count=len(tokens),
            )
    started = time.perf_counter()
    budget = min(model.n_ctx, model.params.n_batch)
    vectors: list[tuple[float, ...]] = []
    for group in embed.pack([len(t) for t in inputs], budget, model.n_seq_max):
        members = inputs[group]
        status = embed.decode_sequences(model.ctx, members)
        if status != 0:
            return Failed(
                id=request.id,
                kind="runner",
                message=f"llama_decode failed with status {status}",
            )
        pooled = embed.pooled_vectors(model.ctx, len(members), model.embedding_length)
        if pooled is None:
            return Failed(id=request.id, kind="runner", message="no pooled embedding")
        vectors += (tuple(vector) for vector in pooled)
    return Vectors(
        id=request.id,
        vectors=tuple(vectors),
        duration=time.perf_counter() - started,
    )
