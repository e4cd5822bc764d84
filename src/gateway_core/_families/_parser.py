"""What every family's output parser offers the output pipeline, and the parser most
families use: thinking tags first, then marked calls in the content.

A parser turns the text of one free pass into segments (thinking, content, tool
calls), incrementally. ``finish(cut=...)`` ends the output; ``cut`` says the token
limit ended it, so a call it was writing still counts. Two more answers serve the
think-then-constrain flow (``_two_pass``): whether the thinking is over
(``done_thinking``), and what text must follow the output so far for the model's
next token to begin its answer (``answer_opening``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .._segments import Content, Segment
from .._thinking import ThinkingParser
from .._tool_calls import Toolbox
from ._marked import ToolCallParser

__all__ = ["OutputParser", "ParserSetup", "TaggedParser"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ParserSetup:
    """What a parser needs to know about one generation.

    Attributes:
        thinking: the model can think: read the family's thinking markers.
        prompt: the rendered prompt (its end says where the output starts: inside
            thinking, or inside a harmony message header).
        tools: the offered tools; None when calls are not to be read (none were
            offered, or the call is forced and constrained).
        id_seed: what call ids are derived from.
    """

    thinking: bool
    prompt: str
    tools: Toolbox | None
    id_seed: str


class OutputParser(Protocol):
    """One pass's text to segments, for one family."""

    def feed(self, text: str) -> list[Segment]:
        """The segments ``text`` completes."""
        ...

    def finish(self, *, cut: bool = False) -> list[Segment]:
        """Release what was held back; ``cut``: the token limit ended the output."""
        ...

    @property
    def done_thinking(self) -> bool:
        """The answer has begun (or there was no thinking to wait for)."""
        ...

    def answer_opening(self) -> str | None:
        """Text to write after the output so far so that the model's next token
        begins its answer: "" when it already does, None when the output never
        entered thinking and the answer should start from the prompt itself."""
        ...


class TaggedParser:
    """Thinking between tags, and calls marked in the content (``_marked``): the
    parser of every family whose markup is inline text."""

    def __init__(
        self, thinking: ThinkingParser | None, calls: ToolCallParser | None
    ) -> None:
        self._thinking = thinking
        self._calls = calls
        self._closing = ""

    @classmethod
    def of(
        cls,
        setup: ParserSetup,
        *,
        tags: tuple[str, str] | None,
        calls: ToolCallParser | None,
        call_tags: tuple[str, str] | None = None,
        opens: bool = False,
    ) -> TaggedParser:
        """``tags``: the thinking markers (read when the model thinks); ``opens``:
        the prompt ended inside thinking; ``call_tags``: a call may open inside
        thinking (read only when calls are)."""
        thinking = None
        if setup.thinking and tags is not None:
            thinking = ThinkingParser(
                opening=tags[0],
                closing=tags[1],
                inside=opens,
                call=call_tags if calls is not None else None,
            )
        parser = cls(thinking, calls)
        parser._closing = tags[1] if tags else ""
        return parser

    @property
    def done_thinking(self) -> bool:
        return self._thinking is None or self._thinking.done_thinking

    def answer_opening(self) -> str | None:
        if self._thinking is None or not self._thinking.entered:
            return None
        if self._thinking.done_thinking:
            return ""
        return self._closing + "\n\n"

    def feed(self, text: str) -> list[Segment]:
        if not text:
            return []
        parts: list[Segment] = [Content(text=text)]
        if self._thinking is not None:
            parts = list(self._thinking.feed(text))
        return self._read_calls(parts)

    def finish(self, *, cut: bool = False) -> list[Segment]:
        parts: list[Segment] = list(self._thinking.finish()) if self._thinking else []
        out = self._read_calls(parts)
        if self._calls is not None:
            out += self._calls.finish(cut=cut)
        return out

    def _read_calls(self, parts: list[Segment]) -> list[Segment]:
        if self._calls is None:
            return parts
        out: list[Segment] = []
        for part in parts:
            if isinstance(part, Content):
                out += self._calls.feed(part.text)
            else:
                out.append(part)
        return out
