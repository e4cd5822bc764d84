"""The pieces a model's answer is cut into: thinking, content and tool calls.

The output parsers (``_thinking``, ``_tool_calls``) turn raw generated text into these
values, and the dialects turn them into wire shapes. Text segments are never empty;
two adjacent text segments of the same kind mean the same as one with both texts, so
a caller may join them (``merge_segments``) and how the output was chunked never shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeAlias

from ._json import JsonValue, dumps

__all__ = ["Content", "Segment", "Thinking", "ToolCall", "merge_segments"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Thinking:
    """Reasoning text, shown apart from the answer (``message.thinking``)."""

    text: str

    def __post_init__(self) -> None:
        if not self.text:
            raise ValueError("a thinking segment must not be empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class Content:
    """Answer text (``message.content`` / ``response``)."""

    text: str

    def __post_init__(self) -> None:
        if not self.text:
            raise ValueError("a content segment must not be empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    """One call of a request's tool, with arguments already decoded.

    ``index`` counts the calls of one answer from 0; ``id`` is unique within the
    answer (``call_`` and eight lowercase letters or digits, Ollama's shape). The
    arguments are copied into a read-only mapping, so a value cannot change after
    it was parsed; key order is the model's.

    ``partial`` is set when the token limit cut the call short: the arguments text
    as far as the model wrote it (what OpenAI sends as ``arguments`` then), while
    ``arguments`` holds what of it could be read. A cut call is still a call, so a
    client that asked for one gets it, with the finish reason saying it is cut.
    """

    index: int
    id: str
    name: str
    arguments: Mapping[str, JsonValue]
    partial: str | None = None

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ValueError(
                f"a tool call index must not be negative, not {self.index}"
            )
        if not self.id:
            raise ValueError("a tool call needs an id")
        if not self.name:
            raise ValueError("a tool call needs a function name")
        object.__setattr__(self, "arguments", MappingProxyType(dict(self.arguments)))

    def arguments_text(self) -> str:
        """The arguments as a JSON text: the model's own cut text for a cut call."""
        if self.partial is not None:
            return self.partial
        return dumps(dict(self.arguments)).decode("utf-8")

    def to_native(self) -> dict[str, JsonValue]:
        """The call as Ollama's ``message.tool_calls[]`` element (§4.3)."""
        return {
            "id": self.id,
            "function": {
                "index": self.index,
                "name": self.name,
                "arguments": dict(self.arguments),
            },
        }


Segment: TypeAlias = Thinking | Content | ToolCall


def merge_segments(segments: Iterable[Segment]) -> list[Segment]:
    """Join adjacent text segments of the same kind; tool calls stay apart.

    Two outputs that differ only in where they were cut merge to equal lists.
    """
    merged: list[Segment] = []
    run: list[str] = []
    kind: type[Thinking] | type[Content] | None = None
    for segment in [*segments, None]:
        if kind is not None and type(segment) is not kind:
            merged.append(kind(text="".join(run)))
            run, kind = [], None
        if isinstance(segment, Thinking | Content):
            kind = type(segment)
            run.append(segment.text)
        elif segment is not None:
            merged.append(segment)
    return merged
