"""llama.cpp behind anyio worker threads: load a GGUF file, tokenize, generate, embed.

Model work runs in worker threads, so the event loop, trio or asyncio, never blocks
on it: ``anyio.to_thread.run_sync`` for loading, tokenizing and embedding, and a
thread of its own for each generation (``llama_generation``), which may run up to its
``lookahead`` tokens ahead of its consumer. Only texts of at most 1 KiB are tokenized
on the calling thread, where that is quicker than the hop. A consumer that stops
pulling, or is cancelled, stops generation within one token
(``LlamaRunner.tokens_generated`` lets tests check this): a C call cannot be
interrupted, so the token in progress is finished, and no other is started.

The runner drives llama.cpp's C API (``llama_cpp.llama_cpp``) rather than the
``llama_cpp.Llama`` class. ``Llama(verbose=False)`` silences llama.cpp by pointing the
process's file descriptors 1 and 2 at /dev/null while it loads; done from a worker
thread, that hides the whole server's stderr, and two loads at once can leave it
pointing there for good. ``Llama.generate`` also fixes the repeat window at load
time, evaluates through numpy copies and has no hook for timing the prompt. The C
calls used here are few: load, one sampler chain per generation, one decode per
token. llama.cpp's own log lines go to the ``adapters.llama_runner`` logger instead
of stderr (its chatty info lines at debug level).

Ollama options (ollama-api.md §1.3) and where they go:

- load time, in ``LoadParams``: ``num_ctx`` -> ``n_ctx``, ``num_batch`` -> ``n_batch``,
  ``num_thread`` -> ``n_threads`` (generation and prompt threads alike, as Ollama),
  ``use_mmap``, ``num_gpu`` -> ``n_gpu_layers``, ``main_gpu``.
- sampling, in ``Sampling``: ``seed``, ``temperature``, ``top_k``, ``top_p``,
  ``min_p``, ``typical_p``, ``repeat_last_n``, ``repeat_penalty``,
  ``presence_penalty``, ``frequency_penalty``.
- not here: ``num_predict`` and ``stop`` are the caller's (it stops pulling, which
  stops generation within a token); ``num_keep`` only matters for context shift,
  which is not implemented (a full context ends the output with "length");
  ``draft_num_predict`` needs a draft model, which the gateway does not load.

Structured output: ``generate`` takes an optional ``Constraint``
(``adapters.constraint``: outlines' token automaton for a JSON schema). Each step
then samples only among the tokens the constraint allows: their logits are
gathered into llama.cpp's candidate array and the sampler chain runs on that, in
plain Python between two C calls. Nothing is left to a llama-cpp-python
logits-processor callback, where a Python exception is swallowed by ctypes and
generation goes on unconstrained: here any failure of the constraint, or a
sampled token it does not allow, raises ``ConstraintFailed`` out of the pull.
Leaving tokens out of the candidates, rather than writing -inf into the logits,
leaves llama.cpp's logits buffer untouched and gives every sampler of the chain
finite values only.

A runner is made for generation or, with ``LoadParams.embedding``, for embeddings
(``LlamaRunner.embed``), never both: an embedding context pools its output and
takes whole inputs in one micro-batch, which generation has no use for. The
llama.cpp mechanics of embedding live in ``llama_embed``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Final, TypeVar

import anyio
import anyio.to_thread
import llama_cpp
import numpy as np
import numpy.typing as npt

from . import llama_embed
from .llama_generation import DoneReason, Generation, VocabCache, read_piece
from .llama_types import (
    ConstraintFailed,
    ContextOverflow,
    LoadParams,
    PromptTooLong,
    RunnerError,
    Sampling,
    TokenPiece,
    TokenTable,
)

if TYPE_CHECKING:
    from .constraint import Constraint

__all__ = [
    "ConstraintFailed",
    "ContextOverflow",
    "DoneReason",
    "Generation",
    "LlamaRunner",
    "LoadParams",
    "PromptTooLong",
    "RunnerError",
    "Sampling",
    "TokenPiece",
    "TokenTable",
]

logger = logging.getLogger(__name__)

# llama.cpp takes an unsigned 32-bit seed and draws a random one for this value, so
# Ollama's -1 ("random") lands on it by plain wrap-around.
_SEED_MODULUS: Final = 2**32
_UBATCH_MAX: Final = 512
# Texts up to this size are tokenized without a thread hop. Measured on the demo
# model: 150 bytes take about 30 µs to tokenize and 400 µs with the hop; 1 KiB stays
# well under the hop's cost with any vocabulary.
INLINE_TOKENIZE_BYTES: Final = 1024
_T = TypeVar("_T")
# llama_token_data as numpy sees it, for building candidate arrays in bulk.
_TOKEN_DATA: Final = np.dtype(
    [("id", np.int32), ("logit", np.float32), ("p", np.float32)]
)


class LlamaRunner:
    """One loaded model with one context; one generation or embedding at a time.

    Create with ``await LlamaRunner.load(params)``; end with ``await close()``.
    The runner remembers which tokens its KV cache holds, so a prompt that starts
    like the previous prompt plus output (a chat's next turn) decodes only the rest.
    ``add_bos`` and ``add_eos`` are the vocabulary's wishes for special tokens
    around a text, which callers that tokenize for ``embed`` account for.
    """

    def __init__(
        self,
        params: LoadParams,
        model: llama_cpp.llama_model_p,
        ctx: llama_cpp.llama_context_p,
    ) -> None:
        self.params = params
        self._model = model
        self._ctx = ctx
        self._vocab: llama_cpp.llama_vocab_p = llama_cpp.llama_model_get_vocab(model)
        self._lock = anyio.Lock()
        self._active: Generation | None = None
        self._closed = False
        self._cached: list[int] = []
        self._vocab_cache = VocabCache(self._vocab)
        self._token_table: TokenTable | None = None
        self.n_vocab: int = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self.n_ctx_train: int = llama_cpp.llama_model_n_ctx_train(self._model)
        self.n_batch: int = llama_cpp.llama_n_batch(self._ctx)
        bos = llama_cpp.llama_vocab_bos(self._vocab)
        eos = llama_cpp.llama_vocab_eos(self._vocab)
        self.bos_token: int | None = bos if bos >= 0 else None
        self.eos_token: int | None = eos if eos >= 0 else None
        self.add_bos: bool = llama_cpp.llama_vocab_get_add_bos(self._vocab)
        self.add_eos: bool = llama_cpp.llama_vocab_get_add_eos(self._vocab)
        self.embedding_length: int = llama_cpp.llama_model_n_embd_out(self._model)
        """Length of the vectors ``embed`` returns (the model's n_embd)."""
        self.n_seq_max: int = llama_cpp.llama_n_seq_max(self._ctx)
        self.pooling_type: int = llama_cpp.llama_pooling_type(self._ctx)
        """llama.cpp's ``LLAMA_POOLING_TYPE_*`` that ``embed`` uses."""
        self.tokens_generated = 0
        """Tokens sampled by every generation so far, end-of-generation ones too."""
        self.tokens_embedded = 0
        """Tokens of every input embedded so far."""
        self.embed_calls = 0
        """``llama_decode`` calls made by ``embed``, one per group of inputs."""

    @classmethod
    async def load(cls, params: LoadParams) -> LlamaRunner:
        """Load the model and make its context in a worker thread."""
        model, ctx = await anyio.to_thread.run_sync(_load, params)
        return cls(params, model, ctx)

    @property
    def model_file(self) -> str:
        return self.params.model_file

    @property
    def n_ctx(self) -> int:
        """Context size in tokens: prompt plus output never exceed it."""
        return self.params.n_ctx

    def is_eog(self, token: int) -> bool:
        """Whether ``token`` ends a generation (EOS, end of turn, ...)."""
        self._check_open()
        return self._vocab_cache.is_eog(token)

    async def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        """Text to tokens, special tokens (``<|im_start|>``) parsed as such.

        ``add_bos`` adds the BOS (and EOS) tokens only where the model's vocabulary
        asks for them, as llama.cpp's ``add_special`` does. A text of at most
        ``INLINE_TOKENIZE_BYTES`` is tokenized on the calling thread: that takes
        less time than the hop to a worker thread and back.
        """
        data = text.encode()
        if len(data) <= INLINE_TOKENIZE_BYTES:
            self._check_open()
            return _tokenize(self._vocab, data, add_bos)
        return await self._call(partial(_tokenize, self._vocab, data, add_bos))

    async def detokenize(self, tokens: Sequence[int]) -> bytes:
        """Tokens to raw bytes, special tokens rendered: the pieces concatenated."""
        tokens = self._checked_tokens(tokens)
        piece = self._vocab_cache.piece
        return await self._call(lambda: b"".join(map(piece, tokens)))

    def token_table(self) -> TokenTable:
        """The vocabulary's tokens, read once per runner.

        Blocking (a fraction of a second for 150k tokens): call it from a worker
        thread. It only reads the vocabulary, with a buffer of its own, so it may
        run beside a generation's pull, but not after ``close()``, which frees
        the model: hold the runner (a pool lease) meanwhile.
        """
        self._check_open()
        if self._token_table is None:
            self._token_table = self._read_token_table()
        return self._token_table

    def generate(
        self,
        prompt: Sequence[int],
        sampling: Sampling,
        constraint: Constraint | None = None,
        *,
        lookahead: int = 0,
    ) -> Generation:
        """Start generating after ``prompt``; nothing runs until the first pull.

        Use as ``async with runner.generate(...) as gen: async for piece in gen``.
        The generation's thread makes at most ``lookahead`` tokens beyond those
        asked for (see ``llama_generation``).
        With a ``constraint`` every token is one it allows, an end-of-generation
        token only where the constraint may end, and the generation stops by
        itself ("stop") once the constraint is complete and nothing may follow.
        Raises RuntimeError while another generation holds the context,
        PromptTooLong when the prompt does not fit, ValueError for an empty prompt,
        a token outside the vocabulary or a constraint compiled for another
        model; RuntimeError on an embedding runner.
        """
        self._check_open()
        if self.params.embedding:
            raise RuntimeError("this runner was loaded for embeddings, not generation")
        if self._active is not None:
            raise RuntimeError("the runner is already generating (one at a time)")
        tokens = self._checked_tokens(prompt)
        if not tokens:
            raise ValueError("the prompt must have at least one token")
        if len(tokens) > self.n_ctx:
            raise PromptTooLong(
                f"the prompt has {len(tokens)} tokens, the context holds {self.n_ctx}"
            )
        if constraint is not None and not constraint.fits(self):
            raise ValueError(
                f"the constraint was compiled for {constraint.model_file},"
                f" not {self.model_file}"
            )
        state = constraint.start() if constraint is not None else None
        self._active = Generation(self, tokens, sampling, state, lookahead=lookahead)
        return self._active

    async def embed(self, inputs: Sequence[Sequence[int]]) -> list[list[float]]:
        """One pooled vector per input, in input order; raw, not normalized.

        Inputs are token ids exactly as embedded: BOS and EOS are the caller's.
        Consecutive inputs share one ``llama_decode``, as distinct sequences, while
        their tokens fit ``min(n_ctx, params.n_batch)`` and their number
        ``n_seq_max`` (packing is not free: attention in one decode costs the square
        of its tokens, whichever sequence they belong to); an input longer than that
        has a decode of its own. Each decode is one thread hop, so a cancellation
        lands within one decode. Nothing is truncated: an input longer than the
        context raises ContextOverflow before any work. Raises ValueError for an
        empty input or a token outside the vocabulary, RuntimeError on a runner
        loaded for generation.
        """
        self._check_open()
        if not self.params.embedding:
            raise RuntimeError("this runner was loaded for generation, not embeddings")
        checked = [self._checked_tokens(tokens) for tokens in inputs]
        for index, tokens in enumerate(checked):
            if not tokens:
                raise ValueError(f"input {index} is empty: it needs at least one token")
            if len(tokens) > self.n_ctx:
                raise ContextOverflow(index, len(tokens), self.n_ctx)
        lengths = [len(tokens) for tokens in checked]
        budget = min(self.n_ctx, self.params.n_batch)
        vectors: list[list[float]] = []
        for group in llama_embed.pack(lengths, budget, self.n_seq_max):
            vectors += await self._call(partial(self._embed_group, checked[group]))
        return vectors

    async def close(self) -> None:
        """End any generation and free the model; later calls raise RunnerError."""
        with anyio.CancelScope(shield=True):
            async with self._lock:
                if self._closed:
                    return
                self._closed = True
                if self._active is not None:
                    await self._active.abort()
                await anyio.to_thread.run_sync(self._free)

    def _check_open(self) -> None:
        if self._closed:
            raise RunnerError(f"the runner for {self.model_file} is closed")

    def _checked_tokens(self, tokens: Sequence[int]) -> list[int]:
        result = list(tokens)
        if not all(0 <= token < self.n_vocab for token in result):
            raise ValueError(f"token ids must be in 0..{self.n_vocab - 1}")
        return result

    async def _call(self, function: Callable[[], _T]) -> _T:
        async with self._lock:
            self._check_open()
            return await anyio.to_thread.run_sync(function)

    def _free(self) -> None:
        llama_cpp.llama_free(self._ctx)
        llama_cpp.llama_model_free(self._model)

    # The methods below run in a worker thread: a generation's own, or one of anyio's
    # under the lock. While a generation is active the context is its thread's alone:
    # the calls that may run beside it (tokenize, detokenize) read the vocabulary.

    def _read_token_table(self) -> TokenTable:
        eog = [
            t
            for t in range(self.n_vocab)
            if llama_cpp.llama_vocab_is_eog(self._vocab, t)
        ]
        return TokenTable(
            pieces=tuple(read_piece(self._vocab, t) for t in range(self.n_vocab)),
            attributes=tuple(
                llama_cpp.llama_vocab_get_attr(self._vocab, token)
                for token in range(self.n_vocab)
            ),
            eog=frozenset(eog),
            eos=self.eos_token,
        )

    def _sample_allowed(
        self, sampler: llama_cpp.llama_sampler_p, allowed: npt.NDArray[np.int32]
    ) -> int:
        """What ``llama_sampler_sample`` does, with only ``allowed`` as candidates."""
        pointer = llama_cpp.llama_get_logits_ith(self._ctx, -1)
        if not pointer:
            raise RunnerError("llama.cpp has no logits to sample from")
        logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
        data = np.empty(len(allowed), dtype=_TOKEN_DATA)
        data["id"] = allowed
        data["logit"] = logits[allowed]
        data["p"] = 0.0
        candidates = llama_cpp.llama_token_data_array(
            data=data.ctypes.data_as(llama_cpp.llama_token_data_p),
            size=len(data),
            selected=-1,
            sorted=False,
        )
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
        if not 0 <= candidates.selected < candidates.size:
            raise ConstraintFailed("the sampler chain selected no allowed token")
        # A sampler may point ``data`` at an array of its own: read through it.
        token = int(candidates.data[candidates.selected].id)
        llama_cpp.llama_sampler_accept(sampler, token)
        return token

    def _evaluate_prompt(self, prompt: list[int]) -> int:
        """Decode what the KV cache lacks of ``prompt``; return the tokens reused.

        The last prompt token is always decoded, even when cached, because sampling
        needs its logits and llama.cpp keeps only the latest decode's.
        """
        reused = 0
        for cached, wanted in zip(self._cached, prompt[:-1], strict=False):
            if cached != wanted:
                break
            reused += 1
        memory = llama_cpp.llama_get_memory(self._ctx)
        if not llama_cpp.llama_memory_seq_rm(memory, 0, reused, -1):
            llama_cpp.llama_memory_clear(memory, True)
            reused = 0
        del self._cached[reused:]
        for start in range(reused, len(prompt), self.n_batch):
            self._decode(prompt[start : start + self.n_batch])
        return reused

    def _decode(self, tokens: list[int]) -> None:
        array = (llama_cpp.llama_token * len(tokens))(*tokens)
        self._decode_batch(self._batch(array), tokens)

    @staticmethod
    def _batch(tokens: ctypes.Array[llama_cpp.llama_token]) -> llama_cpp.llama_batch:
        """``llama_batch_get_one(tokens)``, made without a C call (see VocabCache)."""
        return llama_cpp.llama_batch(n_tokens=len(tokens), token=tokens)

    def _decode_batch(self, batch: llama_cpp.llama_batch, tokens: list[int]) -> None:
        """Decode ``batch``, whose tokens are ``tokens``."""
        status = llama_cpp.llama_decode(self._ctx, batch)
        if status != 0:
            # A failed decode may leave part of the batch in the cache: start afresh.
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self._ctx), True)
            self._cached.clear()
            raise RunnerError(f"llama_decode failed with status {status}")
        self._cached.extend(tokens)

    def _embed_group(self, inputs: list[list[int]]) -> list[list[float]]:
        """Decode ``inputs`` in one call and read their vectors back."""
        status = llama_embed.decode_sequences(self._ctx, inputs)
        self.embed_calls += 1
        if status != 0:
            raise RunnerError(f"llama_decode failed with status {status}")
        width = self.embedding_length
        vectors = llama_embed.pooled_vectors(self._ctx, len(inputs), width)
        if vectors is None:
            raise RunnerError("llama.cpp pooled no embedding")
        self.tokens_embedded += sum(map(len, inputs))
        return vectors

    def _make_sampler(
        self, sampling: Sampling, prompt: list[int]
    ) -> llama_cpp.llama_sampler_p:
        """llama.cpp's usual chain: penalties, top-k, typical, top-p, min-p, temp."""
        last_n = self.n_ctx if sampling.repeat_last_n < 0 else sampling.repeat_last_n
        penalties = (
            sampling.repeat_penalty,
            sampling.frequency_penalty,
            sampling.presence_penalty,
        )
        penalized = last_n > 0 and penalties != (1.0, 0.0, 0.0)
        links = []
        if penalized:
            init = llama_cpp.llama_sampler_init_penalties
            links.append(init(self.n_vocab, last_n, *penalties))
        if sampling.temperature <= 0:
            links.append(llama_cpp.llama_sampler_init_greedy())
        else:
            links += [
                llama_cpp.llama_sampler_init_top_k(sampling.top_k),
                llama_cpp.llama_sampler_init_typical(sampling.typical_p, 1),
                llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1),
                llama_cpp.llama_sampler_init_min_p(sampling.min_p, 1),
                llama_cpp.llama_sampler_init_temp(sampling.temperature),
                llama_cpp.llama_sampler_init_dist(sampling.seed % _SEED_MODULUS),
            ]
        params = llama_cpp.llama_sampler_chain_default_params()
        chain: llama_cpp.llama_sampler_p = llama_cpp.llama_sampler_chain_init(params)
        for link in links:
            llama_cpp.llama_sampler_chain_add(chain, link)
        for token in prompt[-last_n:] if penalized else ():
            llama_cpp.llama_sampler_accept(chain, token)
        return chain


def _load(
    params: LoadParams,
) -> tuple[llama_cpp.llama_model_p, llama_cpp.llama_context_p]:
    """Load the model and make a context for it; runs in a worker thread."""
    global _started
    if not _started:  # process-wide; a racing second call does no harm
        llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        _started = True
    if not os.path.isfile(params.model_file):
        raise RunnerError(f"model file not found: {params.model_file}")
    _log_state.error = ""
    model_params = llama_cpp.llama_model_default_params()
    model_params.n_gpu_layers = params.n_gpu_layers
    model_params.main_gpu = params.main_gpu
    if params.use_mmap is not None:
        model_params.load_mode = (
            llama_cpp.LLAMA_LOAD_MODE_MMAP
            if params.use_mmap
            else llama_cpp.LLAMA_LOAD_MODE_NONE
        )
    path = os.fsencode(params.model_file)
    model = llama_cpp.llama_model_load_from_file(path, model_params)
    if not model:
        raise RunnerError(f"llama.cpp cannot load {params.model_file}{_why()}")
    context_params = llama_cpp.llama_context_default_params()
    context_params.n_ctx = params.n_ctx
    if params.embedding:
        llama_embed.configure(context_params, model, params.n_ctx)
    else:
        context_params.n_batch = params.n_batch
        context_params.n_ubatch = min(params.n_batch, _UBATCH_MAX)
        context_params.n_seq_max = 1
    context_params.n_threads, context_params.n_threads_batch = _threads(params)
    context_params.no_perf = True
    context_params.flash_attn_type = (
        llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        if params.flash_attention
        else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    )
    ctx = llama_cpp.llama_init_from_model(model, context_params)
    # llama.cpp rounds small contexts up (to 256 cells), never down; check anyway.
    if not ctx or llama_cpp.llama_n_ctx(ctx) < params.n_ctx:
        if ctx:
            llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)
        raise RunnerError(f"llama.cpp cannot make a context of {params.n_ctx}{_why()}")
    return model, ctx


def _tokenize(vocab: llama_cpp.llama_vocab_p, data: bytes, add_bos: bool) -> list[int]:
    size = len(data) + 2
    while True:
        buffer = (llama_cpp.llama_token * size)()
        n = llama_cpp.llama_tokenize(
            vocab, data, len(data), buffer, size, add_bos, True
        )
        if n >= 0:
            return list(buffer[:n])
        size = -n


def _threads(params: LoadParams) -> tuple[int, int]:
    """Threads for generation and for prompts.

    Generation is memory-bound and slows down past the physical cores (about half
    the logical CPUs; oversubscribed, the demo model drops from 6000 to 300
    tokens/s); prompt evaluation is compute-bound and takes every CPU.
    """
    if params.n_threads > 0:
        return params.n_threads, params.n_threads
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // 2), cpus


# ggml's log levels: 1 debug, 2 info, 3 warn, 4 error, 5 continues the last line.
_LOG_LEVELS: Final = {3: logging.WARNING, 4: logging.ERROR}
_log_state = threading.local()
_started = False


def _log_line(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """Pass a llama.cpp log line to logging; keep a load's first error for _why()."""
    if level == 5:
        level = getattr(_log_state, "level", 1)
    _log_state.level = level
    line = text.decode(errors="replace").rstrip("\n")
    if line:
        logger.log(_LOG_LEVELS.get(level, logging.DEBUG), "llama.cpp: %s", line)
        if level == 4 and not getattr(_log_state, "error", "x"):
            _log_state.error = line


def _why() -> str:
    error: str = getattr(_log_state, "error", "")
    return f": {error}" if error else ""


_log_callback: Final = llama_cpp.llama_log_callback(_log_line)
