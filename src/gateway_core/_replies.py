"""Whole answers: what a handler or a flow returns when the answer is known at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from ._json import JsonValue

__all__ = ["EmptyReply", "ErrorReply", "JsonReply", "Reply", "TextReply"]


@dataclass(frozen=True, slots=True, kw_only=True)
class JsonReply:
    value: JsonValue
    status: int = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class TextReply:
    text: str
    status: int = 200
    media_type: str | None = None
    """``content-type``; plain UTF-8 text when None."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EmptyReply:
    """A success with no body (``/api/copy``, ``/api/delete``), as Ollama answers."""

    status: int = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorReply:
    status: int
    message: str
    param: str | None = None


Reply: TypeAlias = JsonReply | TextReply | EmptyReply | ErrorReply
