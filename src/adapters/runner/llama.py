"""llama.cpp through its C API (``llama_cpp.llama_cpp``): load, tokenize, sample.

Only the runner process imports this. The calls used are few: load a model and make
a context, tokenize, read a token's text, build a sampler chain, decode a batch.
Why the C API rather than the ``llama_cpp.Llama`` class: ``Llama(verbose=False)``
silences llama.cpp by pointing file descriptors 1 and 2 at /dev/null while it loads,
``Llama.generate`` fixes the repeat window at load time and decodes one sequence
only; the engine needs batches of many sequences and a sampler chain per request.

llama.cpp's log lines go to this module's logger instead of stderr (its chatty info
lines at debug level); the runner process forwards them to the server.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import llama_cpp

from . import embed
from .values import LoadParams, Sampling

__all__ = [
    "CONTROL",
    "LoadFailed",
    "Model",
    "TokenTable",
    "VocabCache",
    "decode_threads",
    "load",
    "make_sampler",
    "read_piece",
    "tokenize",
]

logger = logging.getLogger("adapters.runner.llama")

# llama.cpp takes an unsigned 32-bit seed and draws a random one for this value, so
# Ollama's -1 ("random") lands on it by plain wrap-around.
_SEED_MODULUS: Final = 2**32
_UBATCH_MAX: Final = 512
_PIECE_BUFFER: Final = 64
CONTROL: Final = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
"""The token attribute of control tokens (turn markers, BOS, EOS)."""


class LoadFailed(Exception):
    """llama.cpp could not load the model or make its context."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenTable:
    """Every token of a model's vocabulary as generation sees it, by token id.

    ``pieces`` are the bytes generation yields for each token (special tokens
    rendered); ``attributes`` are llama.cpp's ``LLAMA_TOKEN_ATTR_*`` flags; ``eog``
    holds the end-of-generation tokens and ``eos`` the end-of-sequence token, if
    the vocabulary has one.
    """

    pieces: tuple[bytes, ...]
    attributes: tuple[int, ...]
    eog: frozenset[int]
    eos: int | None


class Model:
    """A loaded model and its one context. Freed by ``close()``.

    Calls that read only the vocabulary (tokenize, pieces, the token table) are
    safe from any thread; decoding belongs to one thread at a time (the engine's).
    """

    def __init__(
        self,
        params: LoadParams,
        model: llama_cpp.llama_model_p,
        ctx: llama_cpp.llama_context_p,
    ) -> None:
        self.params = params
        self.model = model
        self.ctx = ctx
        self.vocab: llama_cpp.llama_vocab_p = llama_cpp.llama_model_get_vocab(model)
        self.pieces = VocabCache(self.vocab)
        self.n_vocab: int = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train: int = llama_cpp.llama_model_n_ctx_train(model)
        self.n_batch: int = llama_cpp.llama_n_batch(ctx)
        self.n_seq_max: int = llama_cpp.llama_n_seq_max(ctx)
        bos = llama_cpp.llama_vocab_bos(self.vocab)
        eos = llama_cpp.llama_vocab_eos(self.vocab)
        self.bos: int = bos if bos >= 0 else -1
        self.eos: int = eos if eos >= 0 else -1
        self.add_bos: bool = llama_cpp.llama_vocab_get_add_bos(self.vocab)
        self.add_eos: bool = llama_cpp.llama_vocab_get_add_eos(self.vocab)
        self.embedding_length: int = llama_cpp.llama_model_n_embd_out(model)
        self.memory = llama_cpp.llama_get_memory(ctx)
        self._token_table: TokenTable | None = None
        self._table_lock = threading.Lock()

    @property
    def n_ctx(self) -> int:
        """One slot's context: what a request may fill."""
        return self.params.n_ctx

    def tokenize(self, data: bytes, *, add_bos: bool) -> list[int]:
        return tokenize(self.vocab, data, add_bos)

    def token_table(self) -> TokenTable:
        """The vocabulary's tokens, read once (a fraction of a second for 150k)."""
        with self._table_lock:
            if self._token_table is None:
                self._token_table = self._read_token_table()
            return self._token_table

    def close(self) -> None:
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)

    def _read_token_table(self) -> TokenTable:
        vocab, count = self.vocab, self.n_vocab
        return TokenTable(
            pieces=tuple(read_piece(vocab, token) for token in range(count)),
            attributes=tuple(
                llama_cpp.llama_vocab_get_attr(vocab, token) for token in range(count)
            ),
            eog=frozenset(
                t for t in range(count) if llama_cpp.llama_vocab_is_eog(vocab, t)
            ),
            eos=self.eos if self.eos >= 0 else None,
        )


class VocabCache:
    """Each token's text, and whether it ends a generation, asked of llama.cpp once.

    Why: every C call through ctypes lets go of the interpreter lock and takes it
    back; with this cache a generated token costs no C call beyond the decode and
    the sampling. Safe from any thread: a race only asks llama.cpp twice.
    """

    def __init__(self, vocab: llama_cpp.llama_vocab_p) -> None:
        self._vocab = vocab
        self._pieces: dict[int, bytes] = {}
        self._ends: dict[int, bool] = {}

    def piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = read_piece(self._vocab, token)
        return piece

    def is_eog(self, token: int) -> bool:
        ends = self._ends.get(token)
        if ends is None:
            ends = bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))
            self._ends[token] = ends
        return ends


def read_piece(vocab: llama_cpp.llama_vocab_p, token: int) -> bytes:
    """A token's text bytes (``llama_token_to_piece``), special tokens rendered."""
    size = _PIECE_BUFFER
    while True:
        buffer = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(vocab, token, buffer, size, 0, True)
        if n >= 0:
            return buffer.raw[:n]
        size = -n


def tokenize(vocab: llama_cpp.llama_vocab_p, data: bytes, add_bos: bool) -> list[int]:
    """Text to tokens, special tokens (``<|im_start|>``) parsed as such; ``add_bos``
    adds BOS/EOS only where the vocabulary asks for them (llama.cpp's
    ``add_special``)."""
    size = len(data) + 2
    while True:
        buffer = (llama_cpp.llama_token * size)()
        n = llama_cpp.llama_tokenize(
            vocab, data, len(data), buffer, size, add_bos, True
        )
        if n >= 0:
            return list(buffer[:n])
        size = -n


def load(params: LoadParams) -> Model:
    """Load the model and make its context: ``slots`` sequences of ``n_ctx`` cells
    each (a generation runner), or an embedding context."""
    _start_backend()
    if not os.path.isfile(params.model_file):
        raise LoadFailed(f"model file not found: {params.model_file}")
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
    model = llama_cpp.llama_model_load_from_file(
        os.fsencode(params.model_file), model_params
    )
    if not model:
        raise LoadFailed(f"llama.cpp cannot load {params.model_file}{_why()}")
    context_params = llama_cpp.llama_context_default_params()
    if params.embedding:
        embed.configure(context_params, model, params.n_ctx)
    else:
        # One sequence per slot, each with a stream of n_ctx cells of its own (not
        # unified): a slot's attention then never reads another slot's cells, so
        # its results do not depend on what shares the batch.
        context_params.n_ctx = params.n_ctx * params.slots
        context_params.n_seq_max = params.slots
        context_params.kv_unified = False
        context_params.n_batch = params.n_batch
        context_params.n_ubatch = min(params.n_batch, _UBATCH_MAX)
    context_params.n_threads, context_params.n_threads_batch = _threads(params)
    context_params.no_perf = True
    context_params.flash_attn_type = (
        llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        if params.flash_attention
        else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    )
    ctx = llama_cpp.llama_init_from_model(model, context_params)
    # llama.cpp rounds contexts up (to 256 cells a sequence), never down; check.
    if not ctx or llama_cpp.llama_n_ctx(ctx) < context_params.n_ctx:
        if ctx:
            llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)
        raise LoadFailed(f"llama.cpp cannot make a context of {params.n_ctx}{_why()}")
    return Model(params, model, ctx)


def make_sampler(
    sampling: Sampling, *, n_vocab: int, n_ctx: int, history: Sequence[int]
) -> llama_cpp.llama_sampler_p:
    """llama.cpp's usual chain: penalties, top-k, typical, top-p, min-p, temperature,
    then a seeded draw (or greedy). ``history`` (the prompt) fills the penalty
    window. Free it with ``llama_sampler_free``."""
    last_n = n_ctx if sampling.repeat_last_n < 0 else sampling.repeat_last_n
    penalties = (
        sampling.repeat_penalty,
        sampling.frequency_penalty,
        sampling.presence_penalty,
    )
    penalized = last_n > 0 and penalties != (1.0, 0.0, 0.0)
    links = []
    if penalized:
        links.append(
            llama_cpp.llama_sampler_init_penalties(n_vocab, last_n, *penalties)
        )
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
    for token in history[-last_n:] if penalized else ():
        llama_cpp.llama_sampler_accept(chain, token)
    return chain


def decode_threads() -> tuple[int, int]:
    """Threads for generation and for prompts, when the model's parameters set none.

    Generation is memory-bound and slows down past the physical cores (hyper-threads
    share their core's caches and units); prompt evaluation is compute-bound and
    takes every CPU this process may use.
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not cpus:
        count = os.cpu_count() or 1
        return max(1, count // 2), count
    return _physical_cores(cpus), len(cpus)


def _physical_cores(cpus: Sequence[int]) -> int:
    """How many distinct cores ``cpus`` sit on, from the kernel's topology files;
    half of them when those cannot be read (the usual two threads per core)."""
    cores: set[str] = set()
    for cpu in cpus:
        path = f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"
        try:
            with open(path) as siblings:
                cores.add(siblings.read().strip())
        except OSError:
            return max(1, len(cpus) // 2)
    return max(1, len(cores))


def _threads(params: LoadParams) -> tuple[int, int]:
    if params.n_threads > 0:
        return params.n_threads, params.n_threads
    return decode_threads()


# -- llama.cpp's log -----------------------------------------------------------------

# ggml's log levels: 1 debug, 2 info, 3 warn, 4 error, 5 continues the last line.
_LOG_LEVELS: Final = {3: logging.WARNING, 4: logging.ERROR}
_log_state = threading.local()
_started = False
_start_lock = threading.Lock()


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


def _start_backend() -> None:
    global _started
    with _start_lock:
        if not _started:
            llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            _started = True
