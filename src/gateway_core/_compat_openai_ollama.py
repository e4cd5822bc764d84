"""Ollama's own fields on the OpenAI API, and logprobs in OpenAI's terms.

Tools written for Ollama often talk to it through ``/v1`` and still send its fields:
``keep_alive`` (how long the model stays loaded), ``options`` (every native option,
``num_ctx`` above all) and ``think``. Ollama's ``/v1`` refuses them; here they are
documented extensions. OpenAI's own fields win: ``options`` goes under what the
OpenAI fields set (``max_tokens``, ``temperature`` ...), and ``think`` counts only
when neither ``reasoning_effort`` nor ``reasoning`` is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ._completion_request import parse_think, requested_logprobs
from ._durations import keep_alive_seconds
from ._flow import FlowError
from ._json import JsonValue

__all__ = [
    "OLLAMA_FIELDS",
    "OllamaFields",
    "chat_logprobs",
    "merged_options",
    "ollama_fields",
]

OLLAMA_FIELDS = frozenset({"keep_alive", "options", "think"})
"""The native fields ``/v1/chat/completions`` accepts (``/v1/completions``: all
but ``think``, which has no place in a text completion)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OllamaFields:
    keep_alive: float | None
    think: bool | str | None
    options: Mapping[str, JsonValue]


def ollama_fields(body: Mapping[str, JsonValue]) -> OllamaFields:
    """The native fields of an OpenAI request (each absent when not sent)."""
    options = body.get("options")
    if options is not None and not isinstance(options, dict):
        raise FlowError(400, "options must be an object", param="options")
    return OllamaFields(
        keep_alive=keep_alive_seconds(body.get("keep_alive")),
        think=parse_think(body.get("think")),
        options=options or {},
    )


def merged_options(
    native: Mapping[str, JsonValue], openai: Mapping[str, JsonValue]
) -> dict[str, JsonValue] | None:
    """``options`` under the OpenAI fields' options: on a clash, OpenAI's wins."""
    merged = {**native, **openai}
    return merged or None


def chat_logprobs(body: Mapping[str, JsonValue]) -> int | None:
    """OpenAI chat's ``logprobs`` (bool) and ``top_logprobs`` (0 to 20): the
    alternatives per token, or None. Unlike the native API, OpenAI refuses
    ``top_logprobs`` without ``logprobs: true``, and so does this route."""
    top = body.get("top_logprobs")
    if top is not None and body.get("logprobs") is not True:
        raise FlowError(
            400,
            "logprobs must be set to true if top_logprobs is used",
            param="top_logprobs",
        )
    return requested_logprobs(body, flag="logprobs")
