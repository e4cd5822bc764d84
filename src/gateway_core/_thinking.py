"""Thinking split from the answer, as the model's text streams in.

A reasoning model writes ``<think>...</think>`` and then its answer. The text arrives in
token-sized pieces that may cut a tag anywhere, so the parser holds back only what the
next piece could still turn into a tag, and everything else streams at once. The rules
are Ollama's generic tag parser (reference §3.3):

- the opening tag counts only as the first thing after leading whitespace; any other
  text first means the answer has no thinking, and every later tag is plain content;
- whitespace right after either tag is dropped, whitespace inside thinking is kept;
- when the prompt already ended with the opening tag the output starts inside
  thinking, and an explicit opening tag there is tolerated once.

One difference: at the end of the output whatever is still held back (a partial tag,
leading whitespace) is released as text of the current kind rather than lost.

Some models open a tool call before they close their thinking (Qwen3:
``Let me check<tool_call>{...}</tool_call>``). Given the family's call tags
(``call=``), such a call ends the thinking so far; its text, tags included, comes
out as content (the tool-call parser after this one makes it a call), and the
thinking resumes after its closing tag, which counts outside JSON strings only.

Phases and inputs (``THINKING_TRANSITIONS`` is the whole of it)::

    BEFORE   --OPENING--> OPENED     PRIMED   --OPENING--> OPENED
    BEFORE   --TEXT-----> CONTENT    PRIMED   --TEXT-----> THINKING
    OPENED   --TEXT-----> THINKING   THINKING --CLOSING--> CLOSED
    THINKING --CALL-----> CALL       CALL     --CALLED---> THINKING
    CLOSED   --TEXT-----> CONTENT    (every phase but FINISHED) --END--> FINISHED

``TEXT`` is the first character that is neither whitespace nor part of the tag the
phase waits for.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

from ._errors import LocalProtocolError
from ._segments import Content, Thinking
from ._tool_calls import JsonStrings

__all__ = [
    "CLOSING_TAG",
    "OPENING_TAG",
    "THINKING_TRANSITIONS",
    "ThinkingInput",
    "ThinkingParser",
    "ThinkingPhase",
    "partial_tag_length",
    "prompt_opens_thinking",
    "strip_thinking",
]

OPENING_TAG = "<think>"
CLOSING_TAG = "</think>"
"""The tags of the models the gateway knows (Qwen3, DeepSeek-R1 and the demo model)."""


class ThinkingPhase(enum.Enum):
    BEFORE = "before"
    """Nothing but whitespace yet; waiting to see whether the opening tag comes."""
    PRIMED = "primed"
    """The prompt opened thinking; an explicit opening tag may still come."""
    OPENED = "opened"
    """Just past the opening tag: whitespace is dropped."""
    THINKING = "thinking"
    CALL = "call"
    """Inside a tool call that opened during thinking: its text is content."""
    CLOSED = "closed"
    """Just past the closing tag: whitespace is dropped."""
    CONTENT = "content"
    """The rest of the output is the answer, tags and all."""
    FINISHED = "finished"


class ThinkingInput(enum.Enum):
    OPENING = "opening tag"
    CLOSING = "closing tag"
    CALL = "call opening"
    CALLED = "call closing"
    TEXT = "text"
    END = "end"


_P, _I = ThinkingPhase, ThinkingInput

THINKING_TRANSITIONS: Mapping[tuple[ThinkingPhase, ThinkingInput], ThinkingPhase] = (
    MappingProxyType(
        {
            (_P.BEFORE, _I.OPENING): _P.OPENED,
            (_P.BEFORE, _I.TEXT): _P.CONTENT,
            (_P.BEFORE, _I.END): _P.FINISHED,
            (_P.PRIMED, _I.OPENING): _P.OPENED,
            (_P.PRIMED, _I.TEXT): _P.THINKING,
            (_P.PRIMED, _I.END): _P.FINISHED,
            (_P.OPENED, _I.TEXT): _P.THINKING,
            (_P.OPENED, _I.END): _P.FINISHED,
            (_P.THINKING, _I.CLOSING): _P.CLOSED,
            (_P.THINKING, _I.CALL): _P.CALL,
            (_P.THINKING, _I.END): _P.FINISHED,
            (_P.CALL, _I.CALLED): _P.THINKING,
            (_P.CALL, _I.END): _P.FINISHED,
            (_P.CLOSED, _I.TEXT): _P.CONTENT,
            (_P.CLOSED, _I.END): _P.FINISHED,
            (_P.CONTENT, _I.END): _P.FINISHED,
        }
    )
)
"""The one phase each (phase, input) leads to; a pair not here is a misuse."""

_THINKING_SIDE = frozenset({_P.PRIMED, _P.OPENED, _P.THINKING})


def partial_tag_length(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that is a proper beginning of ``tag``:
    what must be held back because the next piece could complete the tag."""
    for length in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:length]):
            return length
    return 0


class ThinkingParser:
    """Splits one output into ``Thinking`` and ``Content`` segments, incrementally.

    ``feed`` takes each piece and returns the segments it completes (never empty
    ones); ``finish`` ends the output and releases what was held back. Any way of
    cutting the same output gives the same text of each kind, in the same order.
    """

    def __init__(
        self,
        *,
        opening: str = OPENING_TAG,
        closing: str = CLOSING_TAG,
        inside: bool = False,
        call: tuple[str, str] | None = None,
    ) -> None:
        if not opening or not closing:
            raise ValueError("thinking tags must not be empty")
        if call is not None and not all(call):
            raise ValueError("tool call tags must not be empty")
        self._opening = opening
        self._closing = closing
        self._call = call
        self._phase = ThinkingPhase.PRIMED if inside else ThinkingPhase.BEFORE
        self._held = ""
        self._done_thinking = False
        self._entered = inside
        self._scanned = 0
        self._strings = JsonStrings()

    @property
    def phase(self) -> ThinkingPhase:
        return self._phase

    @property
    def done_thinking(self) -> bool:
        """The answer has begun: the closing tag was seen, or the output did not
        start with thinking at all. An output that ends inside thinking never is."""
        return self._done_thinking

    @property
    def entered(self) -> bool:
        """The output is or was inside thinking (the prompt opened it, or the
        opening tag came)."""
        return self._entered

    def feed(self, text: str) -> list[Thinking | Content]:
        """The segments that ``text`` completes.

        Raises:
            LocalProtocolError: ``finish`` was already called.
        """
        if self._phase is ThinkingPhase.FINISHED:
            raise LocalProtocolError("thinking parser: feed after finish")
        self._held += text
        out: list[Thinking | Content] = []
        while self._step(out):
            pass
        return out

    def finish(self) -> list[Thinking | Content]:
        """End of output: release anything held back, as the kind it would have been.

        Raises:
            LocalProtocolError: ``finish`` was already called.
        """
        held, self._held = self._held, ""
        if self._phase is ThinkingPhase.BEFORE:
            self._done_thinking = True
        before = self._phase
        self._move(ThinkingInput.END)
        if not held:
            return []
        if before in _THINKING_SIDE:
            return [Thinking(text=held)]
        return [Content(text=held)]  # an unclosed call is the call parser's to judge

    def _step(self, out: list[Thinking | Content]) -> bool:
        """Make one move on the held text; False when it must wait for more."""
        held = self._held
        match self._phase:
            case ThinkingPhase.BEFORE:
                trimmed = held.lstrip()
                if trimmed.startswith(self._opening):
                    self._held = trimmed[len(self._opening) :]
                    self._entered = True
                    self._move(ThinkingInput.OPENING)
                    return True
                if self._opening.startswith(trimmed):
                    return False
                self._done_thinking = True
                self._move(ThinkingInput.TEXT)
                return True
            case ThinkingPhase.PRIMED:
                self._held = held = held.lstrip()
                if held.startswith(self._opening):
                    self._held = held[len(self._opening) :]
                    self._move(ThinkingInput.OPENING)
                    return True
                if self._opening.startswith(held):
                    return False
                self._move(ThinkingInput.TEXT)
                return True
            case ThinkingPhase.OPENED | ThinkingPhase.CLOSED:
                self._held = held = held.lstrip()
                if not held:
                    return False
                self._move(ThinkingInput.TEXT)
                return True
            case ThinkingPhase.THINKING:
                return self._thinking(out)
            case ThinkingPhase.CALL:
                return self._in_call(out)
            case ThinkingPhase.CONTENT:
                _emit(out, Content, held)
                self._held = ""
                return False
        raise LocalProtocolError(f"thinking parser: text in phase {self._phase.value}")

    def _thinking(self, out: list[Thinking | Content]) -> bool:
        held = self._held
        end = held.find(self._closing)
        opening = self._call[0] if self._call else ""
        call_at = held.find(opening) if opening else -1
        if call_at >= 0 and (end < 0 or call_at < end):
            _emit(out, Thinking, held[:call_at])
            self._held = held[call_at:]
            self._scanned = len(opening)  # the closing tag is looked for after it
            self._strings = JsonStrings()
            self._move(ThinkingInput.CALL)
            return True
        if end >= 0:
            _emit(out, Thinking, held[:end])
            self._held = held[end + len(self._closing) :]
            self._done_thinking = True
            self._move(ThinkingInput.CLOSING)
            return True
        keep = partial_tag_length(held, self._closing)
        if self._call:
            keep = max(keep, partial_tag_length(held, self._call[0]))
        _emit(out, Thinking, held[: len(held) - keep])
        self._held = held[len(held) - keep :]
        return False

    def _in_call(self, out: list[Thinking | Content]) -> bool:
        """A call inside thinking: its text, through its closing tag, is content."""
        assert self._call is not None  # only a parser given call tags gets here
        held, closing = self._held, self._call[1]
        at = self._scanned
        while at < len(held):
            if self._strings.quoted(held[at]):
                pass
            elif held.startswith(closing, at):
                end = at + len(closing)
                _emit(out, Content, held[:end])
                self._held = held[end:]
                self._move(ThinkingInput.CALLED)
                return True
            elif closing.startswith(held[at:]):
                break  # maybe the start of the closing tag
            at += 1
        self._scanned = at
        return False

    def _move(self, event: ThinkingInput) -> None:
        target = THINKING_TRANSITIONS.get((self._phase, event))
        if target is None:
            raise LocalProtocolError(
                f"thinking parser: {event.value} in phase {self._phase.value}"
            )
        self._phase = target


def _emit(
    out: list[Thinking | Content], kind: type[Thinking] | type[Content], text: str
) -> None:
    if text:
        out.append(kind(text=text))


def prompt_opens_thinking(prompt: str, opening: str = OPENING_TAG) -> bool:
    """The rendered prompt ends (before trailing whitespace) with the opening tag, so
    the model's output starts inside thinking (``ThinkingParser(inside=True)``)."""
    return bool(opening) and prompt.rstrip().endswith(opening)


def strip_thinking(
    text: str, opening: str = OPENING_TAG, closing: str = CLOSING_TAG
) -> str:
    """An earlier assistant turn's content without its thinking (history hygiene).

    The text is read exactly as the parser reads output, and only its content kept:
    a leading ``<think>...</think>`` block and the whitespace after it go, tags later
    in the answer are content and stay, and an unclosed leading block is all thinking.
    """
    parser = ThinkingParser(opening=opening, closing=closing)
    segments = [*parser.feed(text), *parser.finish()]
    return "".join(s.text for s in segments if isinstance(s, Content))
