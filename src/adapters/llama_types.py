"""The runner's values and errors: what goes in (load parameters, sampling), what
comes out (token pieces, the token table), and what can go wrong.

Kept apart from ``llama_runner`` so that the constraint and embedding modules, and
the model service, can name them without the runner's machinery; ``llama_runner``
re-exports every one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ConstraintFailed",
    "ContextOverflow",
    "LoadParams",
    "PromptTooLong",
    "RunnerError",
    "Sampling",
    "TokenPiece",
    "TokenTable",
]


class RunnerError(Exception):
    """llama.cpp failed: a file it cannot load, a failed decode, a closed runner."""


class ConstraintFailed(RunnerError):
    """Constrained generation cannot go on: no token is allowed, or the sampler
    picked one the constraint forbids, or the constraint itself failed.

    Raised out of the pull instead of letting generation continue unconstrained.
    """


class PromptTooLong(RunnerError):
    """The prompt has more tokens than the context holds; truncate it first."""


class ContextOverflow(RunnerError):
    """An input to embed has more tokens than the context holds; nothing was run."""

    def __init__(self, index: int, n_tokens: int, n_ctx: int) -> None:
        super().__init__(index, n_tokens, n_ctx)
        self.index = index
        self.n_tokens = n_tokens
        self.n_ctx = n_ctx

    def __str__(self) -> str:
        return (
            f"input {self.index} has {self.n_tokens} tokens,"
            f" the context holds {self.n_ctx}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadParams:
    """What a model is loaded with; a change means a reload (hashable on purpose).

    ``n_threads`` 0 picks half the usable CPUs for generation, all of them for the
    prompt; ``use_mmap`` None leaves llama.cpp's choice; ``n_gpu_layers`` -1 offloads
    every layer that fits. ``embedding`` makes a runner for ``embed`` instead of
    ``generate``; there ``n_batch`` caps the tokens of several inputs packed into
    one decode, while a single input may fill the whole context.
    ``flash_attention`` is off unless asked for, as in Ollama (its
    ``OLLAMA_FLASH_ATTENTION``) and llama-cpp-python's ``Llama``; llama.cpp's own
    default ("auto") turns it on for CPUs, where it made the demo model generate
    about a third slower on this project's machines.
    """

    model_file: str
    n_ctx: int
    n_batch: int = 512
    n_threads: int = 0
    use_mmap: bool | None = None
    n_gpu_layers: int = -1
    main_gpu: int = 0
    embedding: bool = False
    flash_attention: bool = False

    def __post_init__(self) -> None:
        for name, value, low in (
            ("n_ctx", self.n_ctx, 1),
            ("n_batch", self.n_batch, 1),
            ("n_threads", self.n_threads, 0),
            ("n_gpu_layers", self.n_gpu_layers, -1),
            ("main_gpu", self.main_gpu, 0),
        ):
            if value < low:
                raise ValueError(f"{name} must be at least {low}, not {value}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Sampling:
    """Per-request sampling options, Ollama's defaults (§1.3).

    ``temperature`` <= 0 samples greedily; ``top_k`` <= 0, ``top_p`` >= 1,
    ``min_p`` <= 0 and ``typical_p`` >= 1 switch their filter off; ``repeat_last_n``
    0 switches the penalties off and -1 means the whole context. The penalty window
    covers the prompt's tail as well as the output, as llama.cpp's server does.
    """

    seed: int = -1
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_last_n: int = 64
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    def __post_init__(self) -> None:
        if self.repeat_last_n < -1:
            raise ValueError(f"repeat_last_n must be >= -1, not {self.repeat_last_n}")
        if not self.repeat_penalty > 0:  # llama.cpp divides logits by it
            raise ValueError(f"repeat_penalty must be > 0, not {self.repeat_penalty}")


@dataclass(frozen=True, slots=True)
class TokenPiece:
    """One generated token and its raw text bytes (maybe part of a UTF-8 character).

    ``duration`` is the seconds of llama.cpp work it took: decoding the token before
    it and sampling this one.
    """

    token: int
    data: bytes
    duration: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenTable:
    """Every token of a model's vocabulary as generation sees it, by token id.

    ``pieces`` are the bytes ``generate`` yields for each token (special tokens
    rendered); ``attributes`` are llama.cpp's ``LLAMA_TOKEN_ATTR_*`` flags;
    ``eog`` holds the end-of-generation tokens and ``eos`` the end-of-sequence
    token, if the vocabulary has one.
    """

    pieces: tuple[bytes, ...]
    attributes: tuple[int, ...]
    eog: frozenset[int]
    eos: int | None
