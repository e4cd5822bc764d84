"""The runner's values: what a model is loaded with, how one generation samples and
is constrained, and what the runner tells about a loaded model.

They cross the process boundary (``protocol`` encodes them field by field, in
declaration order), so each holds only numbers, strings, bytes, booleans, tuples and
other values of this module, and checks itself in ``__post_init__``: an invalid value
cannot exist on either side of the pipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

__all__ = [
    "DoneReason",
    "GenerationConstraint",
    "LoadParams",
    "ModelInfo",
    "Sampling",
    "TokenLogprobs",
    "TokenPiece",
    "ToolCallTrigger",
]

DoneReason = Literal["stop", "length"]

TokenLogprobs: TypeAlias = tuple[float, tuple[tuple[bytes, float], ...]]
"""A token's logprob, and its top alternatives as (bytes, logprob), most likely
first: plain tuples, as they cross the runner protocol."""

_UINT32_MAX: Final = 2**32 - 1


def _check_range(name: str, value: int, low: int, high: int = _UINT32_MAX) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, not {value}")


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadParams:
    """What a model is loaded with; a change means a reload (hashable on purpose).

    ``n_ctx`` is the context of *one* request; a generation runner holds ``slots``
    of them (``n_ctx * slots`` KV cells, one sequence per slot). An embedding runner
    has one slot. ``n_threads`` 0 picks the physical cores for generation and every
    CPU for prompts; ``use_mmap`` None leaves llama.cpp's choice; ``n_gpu_layers``
    -1 offloads every layer that fits. ``flash_attention`` is off unless asked for,
    as in Ollama; llama.cpp's own default ("auto") turns it on for CPUs, where it
    made the demo model generate about a third slower on this project's machines.
    ``lookahead``-style flow control is per generation, not here.
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
    slots: int = 1

    def __post_init__(self) -> None:
        # The ranges llama.cpp takes without truncating or aborting; the core
        # refuses a request outside them first, with a message naming the option.
        _check_range("n_ctx", self.n_ctx, 1)
        _check_range("n_batch", self.n_batch, 1)
        _check_range("n_threads", self.n_threads, 0, 1024)
        _check_range("n_gpu_layers", self.n_gpu_layers, -1, 2**31 - 1)
        _check_range("main_gpu", self.main_gpu, 0, 2**31 - 1)
        _check_range("slots", self.slots, 1, 256)
        if self.embedding and self.slots != 1:
            raise ValueError("an embedding runner has one slot")


@dataclass(frozen=True, slots=True, kw_only=True)
class Sampling:
    """Per-request sampling options, Ollama's defaults (ollama-api.md §1.3).

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


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallTrigger:
    """Tool calls written in the text, constrained once they open.

    The output is free until ``marker`` appears; from there to ``closing`` it must
    be one call (``call_schema``: ``{"name", "arguments"}`` of an offered tool) or a
    JSON array of calls. An empty ``closing`` means the body ends where its JSON
    value ends. An empty ``marker`` means a call is a bare JSON value at the very
    start of the output (the output is free text otherwise).
    """

    marker: str
    closing: str
    call_schema: str
    """The schema of one call, as JSON text (a value of this module holds no dict)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationConstraint:
    """What one generation's output must be: a JSON document (``json_schema``: the
    schema as JSON text, or ``"json"`` for any object), free text whose tool calls
    are constrained (``tool_calls``), or one forced tool call in the model family's
    markup (``call_forms``: the core's ``CallForms.to_json()`` as JSON text).
    Exactly one of the three."""

    json_schema: str | None = None
    tool_calls: ToolCallTrigger | None = None
    call_forms: str | None = None

    def __post_init__(self) -> None:
        given = (self.json_schema, self.tool_calls, self.call_forms)
        if sum(value is not None for value in given) != 1:
            raise ValueError(
                "a constraint is one of a JSON schema, tool calls or call forms"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelInfo:
    """What the runner reports once its model is loaded.

    ``n_ctx`` is one slot's context (what a request may fill); ``slots`` how many
    requests may generate at once. ``bos`` and ``eos`` are -1 when the vocabulary
    has none; ``add_bos``/``add_eos`` are its wishes for special tokens around a
    text; ``embedding_length`` is the length of the vectors an embedding runner
    returns.
    """

    n_vocab: int
    n_ctx: int
    n_ctx_train: int
    n_batch: int
    slots: int
    bos: int
    eos: int
    add_bos: bool
    add_eos: bool
    embedding_length: int
    load_seconds: float


@dataclass(frozen=True, slots=True)
class TokenPiece:
    """One generated token and its raw text bytes (maybe part of a UTF-8 character).

    ``duration`` is the seconds of llama.cpp work it took: its share of the decode
    step that made its logits, and sampling it.
    """

    token: int
    data: bytes
    duration: float = 0.0
    logprob: TokenLogprobs | None = None
    """Its logprob and the top alternatives (bytes, logprob), when asked for."""
