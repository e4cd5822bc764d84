"""Tool calls found in a model's answer, as the text streams in.

Models write tool calls in a few textual formats, and the chat template tells which
one a model was taught (``tool_format``). ``FORMATS`` is the table of those formats;
one machine reads them all:

- ``HERMES`` (Qwen, Hermes): ``<tool_call>{json}</tool_call>``, anywhere in the answer;
  the closing tag counts outside JSON strings only (an argument may hold its text);
- ``MISTRAL``: ``[TOOL_CALLS]`` followed by a JSON array or object, anywhere;
- ``JSON`` (Llama 3.x): the answer *is* a JSON object or array, so a call counts only
  as the first thing in the output (or right after another call).

A call is ``{"name": ..., "arguments": {...}}`` (``parameters`` is accepted for
``arguments``, a JSON-encoded string of an object too, and the OpenAI wrapping
``{"function": {...}}``); a body may also be an array of such calls. The name must be
one of the request's tools.

Unlike the reference (§4.2), nothing the model wrote is lost and nothing it wrote is
an error: a block that does not parse as calls, names an unknown tool or never closes
comes back as content, verbatim. Content before a call streams at once; only what
could still become a marker is held back, and trailing whitespace: whitespace next to
a call (between two calls, or between a call and text) is formatting and is dropped.

Phases and inputs (``TOOL_CALL_TRANSITIONS`` is the whole of it)::

    START      --BRACKET--> BODY        (bare JSON: the output starts with { or [)
    START      --TEXT-----> CONTENT
    TEXT       --MARKER---> BODY        (HERMES: the body runs to the closing tag)
    TEXT       --MARKER---> OPENED      (MISTRAL: a JSON value must follow)
    OPENED     --BRACKET--> BODY
    OPENED     --TEXT-----> TEXT        (not a call: the marker is content)
    BODY       --CLOSE----> AFTER_CALL  (the body parsed as calls)
    BODY       --CLOSE----> TEXT        (it did not: content, look for the next marker)
    BODY       --CLOSE----> CONTENT     (it did not, bare JSON: the rest is content)
    AFTER_CALL --BRACKET--> BODY        (bare JSON: another call)
    AFTER_CALL --TEXT-----> TEXT | CONTENT
    (every phase but FINISHED) --END--> FINISHED
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from ._errors import LocalProtocolError
from ._json import JsonValue, encode_utf8, loads_strict
from ._segments import Content, ToolCall
from ._thinking import partial_tag_length

__all__ = [
    "FORMATS",
    "TOOL_CALL_TRANSITIONS",
    "FormatRule",
    "ToolCallInput",
    "ToolCallParser",
    "ToolCallPhase",
    "ToolFormat",
    "call_id",
    "tool_format",
]


class ToolFormat(enum.Enum):
    HERMES = "hermes"
    JSON = "json"
    MISTRAL = "mistral"


@dataclass(frozen=True, slots=True, kw_only=True)
class FormatRule:
    """How one format marks a call.

    ``marker`` opens a call anywhere in the answer; empty means a call is a bare
    JSON value at the start. ``closing`` ends the body; empty means the body is one
    JSON value and ends where it closes. ``detect`` is the template text that picks
    the format (empty: picked when the template mentions tools but no marker).
    """

    marker: str
    closing: str
    detect: str


FORMATS: Mapping[ToolFormat, FormatRule] = MappingProxyType(
    {
        ToolFormat.HERMES: FormatRule(
            marker="<tool_call>", closing="</tool_call>", detect="<tool_call>"
        ),
        ToolFormat.MISTRAL: FormatRule(
            marker="[TOOL_CALLS]", closing="", detect="[TOOL_CALLS]"
        ),
        ToolFormat.JSON: FormatRule(marker="", closing="", detect=""),
    }
)
"""The formats, in the order ``tool_format`` tries their ``detect`` text."""


def tool_format(template: str | None) -> ToolFormat | None:
    """The format a model writes calls in, judged from its chat template.

    ``None`` when there is no template or it never mentions tools (the same
    heuristic as the ``tools`` capability): such a model cannot be offered tools.
    """
    if not template:
        return None
    for fmt, rule in FORMATS.items():
        if rule.detect and rule.detect in template:
            return fmt
    if "tools" in template or "tool_call" in template:
        return ToolFormat.JSON
    return None


_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def call_id(seed: str, index: int) -> str:
    """``call_`` and 8 characters of ``[a-z0-9]``, a function of seed and index.

    The core has no randomness; the caller's seed (say, the request id) makes ids
    differ between answers, the index within one.
    """
    digest = hashlib.sha256(encode_utf8(f"{seed}:{index}")).digest()
    number = int.from_bytes(digest[:8], "big")
    chars: list[str] = []
    for _ in range(8):
        number, digit = divmod(number, len(_ALPHABET))
        chars.append(_ALPHABET[digit])
    return "call_" + "".join(chars)


class ToolCallPhase(enum.Enum):
    START = "start"
    """Bare JSON only: nothing but whitespace yet."""
    TEXT = "text"
    """Content, watched for the format's marker."""
    OPENED = "opened"
    """Past a marker that must be followed by a JSON value."""
    BODY = "body"
    """Inside a call's body, waiting for it to close."""
    AFTER_CALL = "after call"
    """Just past a call: whitespace is dropped."""
    CONTENT = "content"
    """The rest of the output is content."""
    FINISHED = "finished"


class ToolCallInput(enum.Enum):
    MARKER = "marker"
    BRACKET = "bracket"
    TEXT = "text"
    CLOSE = "close"
    END = "end"


_P, _I = ToolCallPhase, ToolCallInput

TOOL_CALL_TRANSITIONS: Mapping[
    tuple[ToolCallPhase, ToolCallInput], frozenset[ToolCallPhase]
] = MappingProxyType(
    {
        (_P.START, _I.BRACKET): frozenset({_P.BODY}),
        (_P.START, _I.TEXT): frozenset({_P.CONTENT}),
        (_P.START, _I.END): frozenset({_P.FINISHED}),
        (_P.TEXT, _I.MARKER): frozenset({_P.BODY, _P.OPENED}),
        (_P.TEXT, _I.END): frozenset({_P.FINISHED}),
        (_P.OPENED, _I.BRACKET): frozenset({_P.BODY}),
        (_P.OPENED, _I.TEXT): frozenset({_P.TEXT}),
        (_P.OPENED, _I.END): frozenset({_P.FINISHED}),
        (_P.BODY, _I.CLOSE): frozenset({_P.AFTER_CALL, _P.TEXT, _P.CONTENT}),
        (_P.BODY, _I.END): frozenset({_P.FINISHED}),
        (_P.AFTER_CALL, _I.BRACKET): frozenset({_P.BODY}),
        (_P.AFTER_CALL, _I.TEXT): frozenset({_P.TEXT, _P.CONTENT}),
        (_P.AFTER_CALL, _I.END): frozenset({_P.FINISHED}),
        (_P.CONTENT, _I.END): frozenset({_P.FINISHED}),
    }
)
"""Where each (phase, input) may lead; which target is taken depends on the format
(a marker with or without a closing tag, bare JSON) and on whether a body parses."""

_BRACKETS = {"{": "}", "[": "]"}


class _JsonStrings:
    """Whether a character of JSON text, read in order, belongs to a string (its
    quotes included), aware of escapes."""

    __slots__ = ("_escape", "_in_string")

    def __init__(self) -> None:
        self._in_string = False
        self._escape = False

    def quoted(self, char: str) -> bool:
        """Take the next character; True if it is part of a string."""
        if self._in_string:
            if self._escape:
                self._escape = False
            elif char == "\\":
                self._escape = True
            elif char == '"':
                self._in_string = False
            return True
        if char == '"':
            self._in_string = True
            return True
        return False


class _JsonExtent:
    """Finds where a JSON value that began with a bracket ends, one character at a
    time, aware of strings and escapes. A closer that does not match ends it too:
    the value is malformed, and parsing it will say so."""

    __slots__ = ("_open", "_strings")

    def __init__(self) -> None:
        self._open: list[str] = []
        self._strings = _JsonStrings()

    def end(self, text: str, start: int) -> int:
        """Index just past the value's end in ``text`` (scanned from ``start``),
        or -1 when it has not ended yet."""
        for at in range(start, len(text)):
            char = text[at]
            if self._strings.quoted(char):
                continue
            if char in _BRACKETS:
                self._open.append(_BRACKETS[char])
            elif char in "}]":
                if not self._open or self._open.pop() != char:
                    return at + 1
                if not self._open:
                    return at + 1
        return -1


class ToolCallParser:
    """Splits one output into ``Content`` and ``ToolCall`` segments, incrementally.

    ``feed`` takes each piece and returns the segments it completes; ``finish`` ends
    the output and releases what was held back, as content. Calls are numbered from
    0 in the order they appear; any way of cutting the same output gives the same
    segments (once adjacent content is joined).
    """

    def __init__(
        self, fmt: ToolFormat, *, tool_names: Sequence[str], id_seed: str
    ) -> None:
        self._rule = FORMATS[fmt]
        self._names = frozenset(name for name in tool_names if name)
        self._seed = id_seed
        self._phase = ToolCallPhase.START if not self._rule.marker else _P.TEXT
        self._held = ""
        """Text not yet given out; what it is depends on the phase."""
        self._gap = ""
        """Whitespace before the current block: dropped if it is a call."""
        self._block = ""
        """The current block's text before its body (marker, whitespace)."""
        self._scanned = 0
        self._strings = _JsonStrings()
        """Where the closing-tag scan is: inside a JSON string or not."""
        self._extent = _JsonExtent()
        self._calls = 0

    @property
    def phase(self) -> ToolCallPhase:
        return self._phase

    @property
    def calls(self) -> int:
        """How many calls were found so far."""
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

    def finish(self) -> list[Content | ToolCall]:
        """End of output: whatever was held back is content, an unclosed call too.

        Raises:
            LocalProtocolError: ``finish`` was already called.
        """
        rest = self._held
        if self._phase in (ToolCallPhase.OPENED, ToolCallPhase.BODY):
            rest = self._gap + self._block + rest
        self._held = self._gap = self._block = ""
        self._move(ToolCallInput.END, ToolCallPhase.FINISHED)
        return [Content(text=rest)] if rest else []

    def _step(self, out: list[Content | ToolCall]) -> bool:
        """Make one move on the held text; False when it must wait for more."""
        match self._phase:
            case ToolCallPhase.START | ToolCallPhase.AFTER_CALL:
                return self._between()
            case ToolCallPhase.TEXT:
                return self._text(out)
            case ToolCallPhase.OPENED:
                trimmed = self._held.lstrip()
                if not trimmed:
                    return False
                if trimmed[0] in _BRACKETS:
                    self._block += self._held[: len(self._held) - len(trimmed)]
                    self._open_body(trimmed, ToolCallInput.BRACKET)
                    return True
                _content(out, self._gap + self._block)
                self._gap = self._block = ""
                self._move(ToolCallInput.TEXT, ToolCallPhase.TEXT)
                return True
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
        if not trimmed:
            if self._phase is ToolCallPhase.AFTER_CALL:
                self._held = ""
            return False
        if self._phase is ToolCallPhase.START:
            self._gap = self._held[: len(self._held) - len(trimmed)]
        if trimmed[0] in _BRACKETS and not self._rule.marker:
            self._open_body(trimmed, ToolCallInput.BRACKET)
            return True
        if self._phase is ToolCallPhase.AFTER_CALL:
            self._held = trimmed
        else:
            self._gap = ""
        target = _P.TEXT if self._rule.marker else _P.CONTENT
        self._move(ToolCallInput.TEXT, target)
        return True

    def _text(self, out: list[Content | ToolCall]) -> bool:
        held, marker = self._held, self._rule.marker
        at = held.find(marker)
        if at < 0:
            ready = held[: len(held) - partial_tag_length(held, marker)].rstrip()
            _content(out, ready)
            self._held = held[len(ready) :]
            return False
        before = held[:at]
        text = before.rstrip()
        _content(out, text)
        self._gap = before[len(text) :]
        self._block = marker
        if self._rule.closing:
            self._open_body(held[at + len(marker) :], ToolCallInput.MARKER)
        else:
            self._held = held[at + len(marker) :]
            self._move(ToolCallInput.MARKER, ToolCallPhase.OPENED)
        return True

    def _open_body(self, held: str, event: ToolCallInput) -> None:
        self._held = held
        self._scanned = 0
        self._strings = _JsonStrings()
        self._extent = _JsonExtent()
        self._move(event, ToolCallPhase.BODY)

    def _body(self, out: list[Content | ToolCall]) -> bool:
        held, closing = self._held, self._rule.closing
        if closing:
            at = self._closing_at(held, closing)
            if at < 0:
                return False
            body, end = held[:at], at + len(closing)
        else:
            end = self._extent.end(held, self._scanned)
            if end < 0:
                self._scanned = len(held)
                return False
            body = held[:end]
        self._held = held[end:]
        calls = self._parse(body)
        if calls is None:
            _content(out, self._gap + self._block + held[:end])
            target = _P.TEXT if self._rule.marker else _P.CONTENT
        else:
            out.extend(calls)
            target = _P.AFTER_CALL
        self._gap = self._block = ""
        self._move(ToolCallInput.CLOSE, target)
        return True

    def _closing_at(self, held: str, closing: str) -> int:
        """Where the closing tag starts in ``held``, outside any JSON string (a
        string may hold the tag's text: the body is not over there), or -1 when it
        is not there yet. Scans each character once across feeds."""
        at = self._scanned
        while at < len(held):
            if self._strings.quoted(held[at]):
                pass
            elif held.startswith(closing, at):
                self._scanned = at
                return at
            elif closing.startswith(held[at:]):
                break  # maybe the start of the tag: wait for the rest
            at += 1
        self._scanned = at
        return -1

    def _parse(self, body: str) -> list[ToolCall] | None:
        """The calls a body holds, or None if it is not wholly calls of known tools."""
        try:
            value = loads_strict(body.strip())
        except ValueError:
            return None
        items = value if isinstance(value, list) else [value]
        found: list[tuple[str, dict[str, JsonValue]]] = []
        for item in items:
            call = self._call(item)
            if call is None:
                return None
            found.append(call)
        if not found:
            return None
        calls: list[ToolCall] = []
        for name, arguments in found:
            index = self._calls
            self._calls += 1
            calls.append(
                ToolCall(
                    index=index,
                    id=call_id(self._seed, index),
                    name=name,
                    arguments=arguments,
                )
            )
        return calls

    def _call(self, item: JsonValue) -> tuple[str, dict[str, JsonValue]] | None:
        if not isinstance(item, dict):
            return None
        function = item.get("function")
        if "name" not in item and isinstance(function, dict):
            item = function
        name = item.get("name")
        if not isinstance(name, str) or name not in self._names:
            return None
        arguments = item["arguments"] if "arguments" in item else item.get("parameters")
        if isinstance(arguments, str):
            try:
                arguments = loads_strict(arguments)
            except ValueError:
                return None
        if arguments is None:
            return name, {}
        if not isinstance(arguments, dict):
            return None
        return name, arguments

    def _move(self, event: ToolCallInput, target: ToolCallPhase) -> None:
        allowed = TOOL_CALL_TRANSITIONS.get((self._phase, event), frozenset())
        if target not in allowed:
            raise LocalProtocolError(
                f"tool call parser: {event.value} in phase {self._phase.value}"
            )
        self._phase = target


def _content(out: list[Content | ToolCall], text: str) -> None:
    if text:
        out.append(Content(text=text))
