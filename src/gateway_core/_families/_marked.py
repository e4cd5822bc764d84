"""Calls marked in the text: the one machine most families' tool calls share.

A marker opens a call, a body follows, and the body ends at a closing tag or where
its JSON value closes. A ``CallGrammar`` names the markers and the end, and how a
body becomes calls (the family's ``read``):

- ``<tool_call>{json}</tool_call>`` (Hermes, Qwen): the closing tag counts outside
  JSON strings only (an argument may hold its text);
- ``[TOOL_CALLS]`` then a JSON value (Mistral), or ``[TOOL_CALLS]name[ARGS]{...}``
  (Mistral v11: a *head*, the tool's name, comes before the value); a
  ``[/TOOL_CALLS]`` after the value is markup too (a *trailer*);
- a bare JSON value as the first thing in the output, or right after a call
  (Llama 3.x), and after ``<|python_tag|>``;
- bodies that are not JSON (Qwen3-Coder's XML, DeepSeek's blocks) are read by the
  family's own ``read`` function, and their closing tag is found without regard
  to JSON strings.

Unlike the reference (§4.2), nothing the model wrote is lost and nothing it wrote is
an error: a block that does not parse as calls or names an unknown tool comes back
as content, verbatim. Content before a call streams at once; only what could still
become a marker, and the whitespace before it, is held back. The text before a call
keeps its trailing spaces; a line break right before the marker, and whitespace
right after a call, are the template's layout and are dropped.

At the end of the output (``finish``) a body whose calls are complete is calls, its
closing tag or not; when the token limit cut it (``finish(cut=True)``) a call whose
tool is known comes back with the arguments written so far (``ToolCall.partial``).

Phases and inputs (``TOOL_CALL_TRANSITIONS`` is the whole of it)::

    START      --BRACKET--> BODY        (bare JSON: the output starts with { or [)
    START      --TEXT-----> TEXT        (the grammar has markers)
    START      --TEXT-----> CONTENT     (bare JSON only: the rest is content)
    START      --MARKER---> BODY | OPENED  (bare JSON, and a marker that starts
                                        with a bracket: ``[TOOL_CALL]``)
    TEXT       --MARKER---> BODY        (a closing tag ends the body)
    TEXT       --MARKER---> OPENED      (a JSON value, or a head, must follow)
    OPENED     --BRACKET--> BODY
    OPENED     --NAME-----> BODY        (name[ARGS]: the arguments value follows)
    OPENED     --TEXT-----> TEXT        (not a call: the marker is content)
    BODY       --CLOSE----> AFTER_CALL  (the body parsed as calls)
    BODY       --CLOSE----> TEXT        (it did not: content, look for the next marker)
    BODY       --CLOSE----> CONTENT     (it did not, bare JSON: the rest is content)
    AFTER_CALL --BRACKET--> BODY        (bare JSON: another call)
    AFTER_CALL --TEXT-----> TEXT | CONTENT
    AFTER_CALL --MARKER---> BODY | OPENED  (as from START)
    (every phase but FINISHED) --END--> FINISHED
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from .._errors import LocalProtocolError
from .._segments import Content, ToolCall
from .._thinking import partial_tag_length
from .._tool_calls import Found, JsonExtent, JsonStrings, Toolbox, call_id
from ._grammar import FORMATS, CallGrammar, ToolFormat

__all__ = [
    "HEAD_NAME",
    "TOOL_CALL_TRANSITIONS",
    "ToolCallInput",
    "ToolCallParser",
    "ToolCallPhase",
]

_BRACKETS = {"{": "}", "[": "]"}


class ToolCallPhase(enum.Enum):
    START = "start"
    """Bare JSON only: nothing but whitespace yet."""
    TEXT = "text"
    """Content, watched for the grammar's markers."""
    OPENED = "opened"
    """Past a marker that must be followed by a JSON value or a head."""
    BODY = "body"
    """Inside a call's body, waiting for it to close."""
    AFTER_CALL = "after call"
    """Just past a call: whitespace (and a trailer) is dropped."""
    CONTENT = "content"
    """The rest of the output is content."""
    FINISHED = "finished"


class ToolCallInput(enum.Enum):
    MARKER = "marker"
    BRACKET = "bracket"
    NAME = "name"
    TEXT = "text"
    CLOSE = "close"
    END = "end"


_P, _I = ToolCallPhase, ToolCallInput

TOOL_CALL_TRANSITIONS: Mapping[
    tuple[ToolCallPhase, ToolCallInput], frozenset[ToolCallPhase]
] = MappingProxyType(
    {
        (_P.START, _I.BRACKET): frozenset({_P.BODY}),
        (_P.START, _I.TEXT): frozenset({_P.TEXT, _P.CONTENT}),
        (_P.START, _I.MARKER): frozenset({_P.BODY, _P.OPENED}),
        (_P.START, _I.END): frozenset({_P.FINISHED}),
        (_P.TEXT, _I.MARKER): frozenset({_P.BODY, _P.OPENED}),
        (_P.TEXT, _I.END): frozenset({_P.FINISHED}),
        (_P.OPENED, _I.BRACKET): frozenset({_P.BODY}),
        (_P.OPENED, _I.NAME): frozenset({_P.BODY}),
        (_P.OPENED, _I.TEXT): frozenset({_P.TEXT}),
        (_P.OPENED, _I.END): frozenset({_P.FINISHED}),
        (_P.BODY, _I.CLOSE): frozenset({_P.AFTER_CALL, _P.TEXT, _P.CONTENT}),
        (_P.BODY, _I.END): frozenset({_P.FINISHED}),
        (_P.AFTER_CALL, _I.BRACKET): frozenset({_P.BODY}),
        (_P.AFTER_CALL, _I.TEXT): frozenset({_P.TEXT, _P.CONTENT}),
        (_P.AFTER_CALL, _I.MARKER): frozenset({_P.BODY, _P.OPENED}),
        (_P.AFTER_CALL, _I.END): frozenset({_P.FINISHED}),
        (_P.CONTENT, _I.END): frozenset({_P.FINISHED}),
    }
)
"""Where each (phase, input) may lead; which target is taken depends on the grammar
(a marker with or without a closing tag, bare JSON) and on whether a body parses."""

# A head is a tool name and maybe an id: bounded, so text that merely looks like
# one is released instead of being held to the end.
_HEAD_NAME_MAX, _HEAD_ID_MAX = 128, 64
HEAD_NAME = re.compile(rf"[A-Za-z0-9_.\-]{{1,{_HEAD_NAME_MAX}}}")
"""A tool name a head (``name[ARGS]``) may hold."""
_HEAD_ID = re.compile(rf"[A-Za-z0-9]{{0,{_HEAD_ID_MAX}}}")


class ToolCallParser:
    """Splits one output into ``Content`` and ``ToolCall`` segments, incrementally.

    ``feed`` takes each piece and returns the segments it completes; ``finish`` ends
    the output and releases what was held back. Calls are numbered from 0 in the
    order they appear; any way of cutting the same output gives the same segments
    (once adjacent content is joined).
    """

    def __init__(
        self,
        grammar: CallGrammar | ToolFormat,
        *,
        tools: Toolbox,
        id_seed: str,
    ) -> None:
        self._rule = FORMATS[grammar] if isinstance(grammar, ToolFormat) else grammar
        self._tools = tools
        self._seed = id_seed
        self._phase = ToolCallPhase.START if self._rule.bare else _P.TEXT
        self._held = ""
        """Text not yet given out; what it is depends on the phase."""
        self._gap = ""
        """Layout before the current block: dropped if it is a call."""
        self._block = ""
        """The current block's text before its body (marker, head, whitespace)."""
        self._head = ""
        self._tagged = False
        """The current body was opened by a marker and ends at the closing tag
        (a bare value ends where it closes, even in a grammar with a tag)."""
        self._scanned = 0
        self._strings = JsonStrings()
        """Where the closing-tag scan is: inside a JSON string or not."""
        self._extent = JsonExtent()
        self._calls = 0

    @property
    def phase(self) -> ToolCallPhase:
        return self._phase

    @property
    def calls(self) -> int:
        """How many calls were found so far (the next call's index)."""
        return self._calls

    def feed(self, text: str) -> list[Content | ToolCall]:
        """The segments that ``text`` completes.

        Raises:
            LocalProtocolError: ``finish`` was already called.
        """
        if self._phase is ToolCallPhase.FINISHED:
            raise LocalProtocolError("tool call parser: feed after finish")
        self._held += text
        out: list[Content | ToolCall] = []
        while self._step(out):
            pass
        return out

    def finish(self, *, cut: bool = False) -> list[Content | ToolCall]:
        """End of output: a body of complete calls is calls, closed or not; with
        ``cut`` (the token limit ended it) a started call is a call too. The rest
        of what was held back is content.

        Raises:
            LocalProtocolError: ``finish`` was already called.
        """
        out: list[Content | ToolCall] = []
        rest = self._held
        calls = self._unclosed(cut) if self._phase is ToolCallPhase.BODY else None
        if calls is not None:
            out += calls
            rest = ""
        elif self._phase in (ToolCallPhase.OPENED, ToolCallPhase.BODY):
            rest = self._gap + self._block + rest
        elif self._phase is ToolCallPhase.AFTER_CALL:
            rest = rest.lstrip()  # whitespace after a call is formatting
        self._held = self._gap = self._block = ""
        self._move(ToolCallInput.END, ToolCallPhase.FINISHED)
        _content(out, rest)
        return out

    def _unclosed(self, cut: bool) -> list[ToolCall] | None:
        body = self._held
        if self._tagged:
            body = body[: len(body) - partial_tag_length(body, self._rule.closing)]
        found = self._rule.read(self._head, body, self._tools)
        if found is None and cut:
            found = self._rule.read_cut(self._head, body, self._tools)
        return None if found is None else self._numbered(found)

    def _step(self, out: list[Content | ToolCall]) -> bool:
        """Make one move on the held text; False when it must wait for more."""
        match self._phase:
            case ToolCallPhase.START | ToolCallPhase.AFTER_CALL:
                return self._between()
            case ToolCallPhase.TEXT:
                return self._text(out)
            case ToolCallPhase.OPENED:
                return self._opened(out)
            case ToolCallPhase.BODY:
                return self._body(out)
            case ToolCallPhase.CONTENT:
                _content(out, self._held)
                self._held = ""
                return False
        raise LocalProtocolError(f"tool call parser: text in phase {self._phase.value}")

    def _between(self) -> bool:
        """Bare JSON's start, or just past any call: whitespace, then what?"""
        trimmed = self._held.lstrip()
        after_call = self._phase is ToolCallPhase.AFTER_CALL
        if after_call and self._rule.trailer:
            if trimmed.startswith(self._rule.trailer):
                self._held = trimmed[len(self._rule.trailer) :]
                return True
            if trimmed and self._rule.trailer.startswith(trimmed):
                return False  # maybe the trailer: wait for the rest
        if not trimmed:
            if after_call:
                self._held = ""
            return False
        if not after_call:
            self._gap = self._held[: len(self._held) - len(trimmed)]
        # A marker that starts with a bracket (``[TOOL_CALL]``) is a marker, not a
        # bare array: wait until the text says which.
        bracketed = [m for m in self._rule.markers if m[0] == trimmed[0]]
        if any(len(trimmed) < len(m) and m.startswith(trimmed) for m in bracketed):
            return False
        marked = [m for m in bracketed if trimmed.startswith(m)]
        if marked:
            if after_call:
                self._gap = ""  # whitespace after a call is layout
            self._block, self._head = marked[0], ""
            self._open_marked(trimmed[len(marked[0]) :])
            return True
        if trimmed[0] in _BRACKETS and self._rule.bare:
            self._open_body(trimmed, ToolCallInput.BRACKET)
            return True
        if after_call:
            self._held = trimmed
        self._gap = ""
        target = _P.TEXT if self._rule.markers else _P.CONTENT
        self._move(ToolCallInput.TEXT, target)
        return True

    def _text(self, out: list[Content | ToolCall]) -> bool:
        held = self._held
        at, marker = _first_marker(held, self._rule.markers)
        if at < 0:
            # Held back: what may become a marker, and the whitespace before it,
            # whose line break would be layout if a marker came next.
            keep = max(partial_tag_length(held, m) for m in self._rule.markers)
            ready = held[: len(held) - keep].rstrip()
            _content(out, ready)
            self._held = held[len(ready) :]
            return False
        text = _without_layout(held[:at])
        _content(out, text)
        # The layout goes with the call; if the block is no call, it comes back.
        self._gap, self._block, self._head = held[len(text) : at], marker, ""
        self._open_marked(held[at + len(marker) :])
        return True

    def _open_marked(self, rest: str) -> None:
        """A marker was read; ``rest`` is the text after it."""
        if self._rule.closing:
            self._open_body(rest, ToolCallInput.MARKER)
        else:
            self._held = rest
            self._move(ToolCallInput.MARKER, ToolCallPhase.OPENED)

    def _opened(self, out: list[Content | ToolCall]) -> bool:
        """Past a marker: a bracket opens the body; with a head, a name may come
        first. Anything else means the marker was text."""
        trimmed = self._held.lstrip()
        if not trimmed:
            return False
        space = self._held[: len(self._held) - len(trimmed)]
        if trimmed[0] in _BRACKETS:
            self._block += space
            self._open_body(trimmed, ToolCallInput.BRACKET)
            return True
        if self._rule.head:
            name, length = self._read_head(trimmed)
            if length < 0:
                return False  # still could be a head: wait for more
            if length:
                self._block += space + trimmed[:length]
                self._head = name
                self._open_body(trimmed[length:], ToolCallInput.NAME)
                return True
        _content(out, self._gap + self._block)
        self._gap = self._block = ""
        self._move(ToolCallInput.TEXT, ToolCallPhase.TEXT)
        return True

    def _read_head(self, text: str) -> tuple[str, int]:
        """``name[ARGS]`` (or ``name[CALL_ID]id[ARGS]``) at the start of ``text``:
        the name and the head's length; length -1 while more text could still
        make it a head, 0 when it is not one."""
        wait, no = ("", -1), ("", 0)
        named = HEAD_NAME.match(text)
        if named is None:
            return no
        at = named.end()
        if at == len(text):
            return wait if at < _HEAD_NAME_MAX else no
        rest = text[at:]
        head_id = self._rule.head_id
        if head_id and rest.startswith(head_id):
            ident = _HEAD_ID.match(rest, len(head_id))
            assert ident is not None  # the pattern matches the empty string
            if ident.end() == len(rest):
                return wait if ident.end() - len(head_id) < _HEAD_ID_MAX else no
            at += ident.end()
            rest = text[at:]
        elif head_id and head_id.startswith(rest):
            return wait
        if rest.startswith(self._rule.head):
            return named.group(), at + len(self._rule.head)
        if self._rule.head.startswith(rest):
            return wait
        return no

    def _open_body(self, held: str, event: ToolCallInput) -> None:
        self._held = held
        self._tagged = event is ToolCallInput.MARKER
        self._scanned = 0
        self._strings = JsonStrings()
        self._extent = JsonExtent()
        self._move(event, ToolCallPhase.BODY)

    def _body(self, out: list[Content | ToolCall]) -> bool:
        held, closing = self._held, self._rule.closing
        if self._tagged:
            at = self._closing_at(held, closing)
            if at < 0:
                return False
            body, end = held[:at], at + len(closing)
        else:
            start = len(held) - len(held.lstrip())
            if start == len(held):
                return False
            if held[start] not in _BRACKETS:
                end = start  # after a head, no value: not a call
            else:
                end = self._extent.end(held, max(self._scanned, start))
                if end < 0:
                    self._scanned = len(held)
                    return False
            body = held[:end]
        self._held = held[end:]
        found = self._rule.read(self._head, body, self._tools) if body else None
        if found is None:
            _content(out, self._gap + self._block + held[:end])
            target = _P.TEXT if self._rule.markers else _P.CONTENT
        else:
            out.extend(self._numbered(found))
            target = _P.AFTER_CALL
        self._gap = self._block = self._head = ""
        self._move(ToolCallInput.CLOSE, target)
        return True

    def _closing_at(self, held: str, closing: str) -> int:
        """Where the closing tag starts in ``held`` (outside any JSON string, for
        JSON bodies: a string may hold the tag's text), or -1 when it is not there
        yet. Scans each character once across feeds."""
        at = self._scanned
        while at < len(held):
            if self._rule.json_closing and self._strings.quoted(held[at]):
                pass
            elif held.startswith(closing, at):
                self._scanned = at
                return at
            elif closing.startswith(held[at:]):
                break  # maybe the start of the tag: wait for the rest
            at += 1
        self._scanned = at
        return -1

    def _numbered(self, found: Sequence[Found]) -> list[ToolCall]:
        calls: list[ToolCall] = []
        for call in found:
            index = self._calls
            self._calls += 1
            calls.append(
                ToolCall(
                    index=index,
                    id=call_id(self._seed, index),
                    name=call.name,
                    arguments=call.arguments,
                    partial=call.partial,
                )
            )
        return calls

    def _move(self, event: ToolCallInput, target: ToolCallPhase) -> None:
        allowed = TOOL_CALL_TRANSITIONS.get((self._phase, event), frozenset())
        if target not in allowed:
            raise LocalProtocolError(
                f"tool call parser: {event.value} in phase {self._phase.value}"
            )
        self._phase = target


def _first_marker(text: str, markers: Sequence[str]) -> tuple[int, str]:
    """The earliest marker in ``text`` and where it starts; (-1, "") if none."""
    best, found = -1, ""
    for marker in markers:
        at = text.find(marker)
        if at >= 0 and (best < 0 or at < best):
            best, found = at, marker
    return best, found


def _without_layout(text: str) -> str:
    """The text before a call as the model meant it: a space before the marker is
    its text (``Sure. [TOOL_CALLS]``) and stays; a line break there, and what
    follows it, is the layout templates put between text and calls, and goes."""
    body = text.rstrip()
    space = text[len(body) :]
    line = space.find("\n")
    return text if line < 0 else body + space[:line]


def _content(out: list[Content | ToolCall], text: str) -> None:
    if text:
        out.append(Content(text=text))
