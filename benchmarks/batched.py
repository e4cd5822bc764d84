"""The raw batched limit: N sequences decoded together with llama.cpp's C API.

Why: a server that batches its streams can at best reach what one process does
when it calls ``llama_decode`` with the next token of every sequence at once and
samples each sequence with a chain of its own; that is this loop, with nothing
around it (no threads, no protocol, no HTTP). It is the denominator of the runner
engine's targets at 4 and 16 streams.

Written here against ``llama_cpp.llama_cpp`` directly, and on purpose not with the
runner's own code, so that it measures llama.cpp rather than the engine. The
context is made as the runner makes it (``n_ctx`` cells per sequence, one stream
per sequence, flash attention off, the same thread counts), so the two do the same
arithmetic. Prompts are evaluated together in one batch first; the clock for the
decode rate starts after that, at the first generated token.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import llama_cpp

__all__ = ["BatchedRun", "RawBatched"]

_UBATCH = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchedRun:
    """One run of ``streams`` sequences of up to ``tokens`` tokens each."""

    streams: int
    tokens: int  # generated, over every sequence
    prefill_s: float
    decode_s: float  # from the first generated token of all to the last
    steps: int

    @property
    def tokens_per_s(self) -> float:
        return (self.tokens - self.streams) / self.decode_s if self.decode_s else 0.0

    @property
    def step_ms(self) -> float:
        """One decode call with every sequence in it, sampling included."""
        return 1000 * self.decode_s / self.steps if self.steps else 0.0


class RawBatched:
    """A model loaded for ``slots`` sequences of ``n_ctx`` cells each."""

    def __init__(
        self, model: Path, *, n_ctx: int, slots: int, threads: tuple[int, int]
    ) -> None:
        llama_cpp.llama_backend_init()
        self.slots = slots
        model_params = llama_cpp.llama_model_default_params()
        self._model = llama_cpp.llama_model_load_from_file(
            os.fsencode(model), model_params
        )
        if not self._model:
            raise RuntimeError(f"llama.cpp cannot load {model}")
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx * slots
        params.n_seq_max = slots
        params.kv_unified = False
        params.n_batch = max(_UBATCH, n_ctx)
        params.n_ubatch = _UBATCH
        params.n_threads, params.n_threads_batch = threads
        params.no_perf = True
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self._ctx = llama_cpp.llama_init_from_model(self._model, params)
        if not self._ctx:
            raise RuntimeError("llama.cpp cannot make the context")
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(params.n_batch, 0, 1)
        self._n_batch = params.n_batch

    def tokenize(self, text: str) -> list[int]:
        data = text.encode()
        buffer = (llama_cpp.llama_token * (len(data) + 8))()
        n = llama_cpp.llama_tokenize(
            self._vocab, data, len(data), buffer, len(buffer), True, True
        )
        if n < 0:
            raise RuntimeError("prompt too long for the buffer")
        return list(buffer[:n])

    def run(
        self,
        prompt: Sequence[int],
        *,
        streams: int,
        tokens: int,
        sampling: dict[str, float],
        seeds: Sequence[int],
    ) -> BatchedRun:
        """``streams`` sequences of the same prompt, each with its own seeded chain,
        until each has ``tokens`` tokens or an end-of-generation token."""
        if streams > self.slots or streams * len(prompt) > self._n_batch:
            raise ValueError("more than the context was made for")
        llama_cpp.llama_memory_clear(self._memory, True)
        chains = [self._chain(sampling, seed) for seed in seeds[:streams]]
        try:
            return self._run(prompt, chains, tokens)
        finally:
            for chain in chains:
                llama_cpp.llama_sampler_free(chain)

    def close(self) -> None:
        llama_cpp.llama_batch_free(self._batch)
        llama_cpp.llama_free(self._ctx)
        llama_cpp.llama_model_free(self._model)

    def _run(
        self, prompt: Sequence[int], chains: list[llama_cpp.llama_sampler_p], limit: int
    ) -> BatchedRun:
        started = time.perf_counter()
        entries = [
            (seq, pos, token, pos == len(prompt) - 1)
            for seq in range(len(chains))
            for pos, token in enumerate(prompt)
        ]
        self._decode(entries)
        # Logits are read by the token's index in the batch: the prompt's last token
        # of sequence ``seq``.
        live = {
            seq: llama_cpp.llama_sampler_sample(
                chain, self._ctx, (seq + 1) * len(prompt) - 1
            )
            for seq, chain in enumerate(chains)
        }
        prefilled = time.perf_counter()
        made = len(live)
        position = len(prompt)
        steps = 0
        counts = dict.fromkeys(live, 1)
        while live:
            live = {
                seq: token
                for seq, token in live.items()
                if counts[seq] < limit
                and not llama_cpp.llama_vocab_is_eog(self._vocab, token)
            }
            if not live:
                break
            order = sorted(live)
            self._decode([(seq, position, live[seq], True) for seq in order])
            steps += 1
            for index, seq in enumerate(order):
                live[seq] = llama_cpp.llama_sampler_sample(
                    chains[seq], self._ctx, index
                )
                counts[seq] += 1
                made += 1
            position += 1
        finished = time.perf_counter()
        return BatchedRun(
            streams=len(chains),
            tokens=made,
            prefill_s=prefilled - started,
            decode_s=finished - prefilled,
            steps=steps,
        )

    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> None:
        batch = self._batch
        for i, (seq, pos, token, wants_logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = wants_logits
        batch.n_tokens = len(entries)
        if llama_cpp.llama_decode(self._ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")

    def _chain(
        self, sampling: dict[str, float], seed: int
    ) -> llama_cpp.llama_sampler_p:
        chain: llama_cpp.llama_sampler_p = llama_cpp.llama_sampler_chain_init(
            llama_cpp.llama_sampler_chain_default_params()
        )
        for link in (
            llama_cpp.llama_sampler_init_top_k(int(sampling["top_k"])),
            llama_cpp.llama_sampler_init_top_p(sampling["top_p"], 1),
            llama_cpp.llama_sampler_init_min_p(sampling["min_p"], 1),
            llama_cpp.llama_sampler_init_temp(sampling["temperature"]),
            llama_cpp.llama_sampler_init_dist(seed % 2**32),
        ):
            llama_cpp.llama_sampler_chain_add(chain, link)
        return chain
