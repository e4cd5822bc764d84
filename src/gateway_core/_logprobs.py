"""Token log-probabilities: what the runner reports per token, in each API's shape.

The runner computes them from the logits the sampler chose from: the model's own
distribution, after the structured-output constraint's mask when one applies (a
disallowed token has no probability), and before the sampling options reshape it
(repeat penalties, temperature, top-k, top-p, min-p). So with greedy sampling and no
penalty the chosen token's logprob is the largest of its alternatives, and the
numbers describe the model, not the sampler's settings. Ollama reports the same
distribution.

A token's text is its bytes; a token that ends in the middle of a UTF-8 character
shows the replacement character in ``token`` and its exact bytes in ``bytes``, as
OpenAI does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ._json import JsonValue

__all__ = [
    "MAX_TOP_LOGPROBS",
    "Alternative",
    "TokenLogprob",
    "native_logprobs",
    "openai_logprobs",
]

MAX_TOP_LOGPROBS = 20
"""The most alternatives a request may ask for, per token (Ollama's and OpenAI's)."""


@dataclass(frozen=True, slots=True)
class Alternative:
    """One of the most likely tokens at a position: its bytes and logprob."""

    data: bytes
    logprob: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenLogprob:
    """The generated token's logprob, and the ``top`` alternatives at its position
    (most likely first; as many as the request asked for)."""

    data: bytes
    logprob: float
    top: tuple[Alternative, ...] = ()

    def __post_init__(self) -> None:
        if math.isnan(self.logprob) or self.logprob > 0:
            raise ValueError(f"a logprob is at most 0, not {self.logprob}")


_FLOOR = -9999.0
"""What an impossible token's logprob (minus infinity, which JSON cannot spell)
is shown as: OpenAI's own floor."""


def _entry(data: bytes, logprob: float) -> dict[str, JsonValue]:
    return {
        "token": data.decode("utf-8", "replace"),
        "logprob": max(logprob, _FLOOR),
        "bytes": list(data),
    }


def native_logprobs(entries: Sequence[TokenLogprob]) -> list[JsonValue]:
    """Ollama's ``logprobs`` array (``top_logprobs`` omitted when none were asked)."""
    shown: list[JsonValue] = []
    for entry in entries:
        value = _entry(entry.data, entry.logprob)
        if entry.top:
            value["top_logprobs"] = [_entry(t.data, t.logprob) for t in entry.top]
        shown.append(value)
    return shown


def openai_logprobs(entries: Sequence[TokenLogprob]) -> dict[str, JsonValue]:
    """OpenAI chat's ``choices[].logprobs``: ``{"content": [...]}``, each entry with
    its ``top_logprobs`` list (empty when none were asked)."""
    content: list[JsonValue] = []
    for entry in entries:
        value = _entry(entry.data, entry.logprob)
        value["top_logprobs"] = [_entry(t.data, t.logprob) for t in entry.top]
        content.append(value)
    return {"content": content, "refusal": None}
