"""What a tool call is, whatever syntax a model wrote it in.

The family parsers (``_families``) find where calls are in an answer; this module
holds what they share once a call's text is found:

- ``Toolbox``: the request's tools, by name, with their parameter schemas (some
  families coerce arguments by them) and other spellings a family writes;
- ``Found``: a call read from text, before it is numbered;
- the JSON call readers: ``{"name": ..., "arguments": {...}}`` (``parameters`` is
  accepted for ``arguments``, a JSON-encoded string of an object too, and the OpenAI
  wrapping ``{"function": {...}}``), or an array of such calls; the name must be one
  of the request's tools;
- reading a call the token limit cut (``read_json_cut``, ``salvage_json``): its tool
  and the arguments text so far, so that no call is ever lost;
- ``JsonStrings``, ``JsonExtent`` and ``json_value_end``, which scan JSON text a
  character at a time, aware of strings and escapes;
- ``call_id``: deterministic ids, the core having no randomness.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from ._json import JsonValue, encode_utf8, loads_strict

__all__ = [
    "BodyReader",
    "Found",
    "JsonExtent",
    "JsonStrings",
    "Toolbox",
    "call_id",
    "cut_call",
    "json_value_end",
    "read_json_calls",
    "read_json_cut",
    "salvage_json",
]


# -- the request's tools ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Toolbox:
    """The tools a request offers: each name and its parameters' JSON schema.

    ``aliases`` are other spellings a family's model writes for a name (harmony's
    sanitized identifiers); ``resolve`` turns either into the offered name.
    """

    parameters: Mapping[str, Mapping[str, JsonValue]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    aliases: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(cls, tools: Iterable[Mapping[str, JsonValue]]) -> Toolbox:
        """The tools of a request, as its ``tools`` list spells them."""
        found: dict[str, Mapping[str, JsonValue]] = {}
        for tool in tools:
            function = tool.get("function")
            if not isinstance(function, dict):
                continue
            name = function.get("name")
            if isinstance(name, str) and name:
                parameters = function.get("parameters")
                found[name] = parameters if isinstance(parameters, dict) else {}
        return cls(MappingProxyType(found))

    @classmethod
    def named(cls, names: Iterable[str]) -> Toolbox:
        """Tools known by name only (their arguments are not checked)."""
        return cls(MappingProxyType({name: {} for name in names if name}))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.parameters)

    def with_aliases(self, aliases: Mapping[str, str]) -> Toolbox:
        return Toolbox(self.parameters, MappingProxyType(dict(aliases)))

    def resolve(self, name: str) -> str | None:
        """The offered tool ``name`` means, or None."""
        if name in self.parameters:
            return name
        return self.aliases.get(name)


# -- grammars -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Found:
    """A call read from a body: the offered tool's name and its arguments, and for a
    call the token limit cut, the arguments text so far."""

    name: str
    arguments: Mapping[str, JsonValue]
    partial: str | None = None


BodyReader = Callable[[str, str, Toolbox], list[Found] | None]
"""``(head, body, tools)``: the calls a whole body holds, or None if it is not wholly
calls of offered tools. ``head`` is the name read before the body ("" if none)."""


def read_json_calls(head: str, body: str, tools: Toolbox) -> list[Found] | None:
    """The calls of a JSON body: one call object or an array of them; after a head,
    the body is the arguments object of that one call."""
    try:
        value = loads_strict(body.strip())
    except ValueError:
        return None
    if head:
        name = tools.resolve(head)
        if name is None or not isinstance(value, dict):
            return None
        return [Found(name, value)]
    items = value if isinstance(value, list) else [value]
    found = [_json_call(item, tools) for item in items]
    if not found or any(call is None for call in found):
        return None
    return [call for call in found if call is not None]


def _json_call(item: JsonValue, tools: Toolbox) -> Found | None:
    if not isinstance(item, dict):
        return None
    function = item.get("function")
    if "name" not in item and isinstance(function, dict):
        item = function
    name = item.get("name")
    offered = tools.resolve(name) if isinstance(name, str) else None
    if offered is None:
        return None
    arguments = item["arguments"] if "arguments" in item else item.get("parameters")
    if isinstance(arguments, str):
        try:
            arguments = loads_strict(arguments)
        except ValueError:
            return None
    if arguments is None:
        return Found(offered, {})
    if not isinstance(arguments, dict):
        return None
    return Found(offered, arguments)


_NAME_FIELD = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')
_ARGUMENTS_FIELD = re.compile(r'"(?:arguments|parameters)"\s*:\s*')


def read_json_cut(head: str, body: str, tools: Toolbox) -> list[Found] | None:
    """The calls of a JSON body the token limit cut: the complete ones, and the last
    one with the arguments text so far if its tool's name was written whole. A cut
    element whose name never came is dropped; None if no call is left."""
    text = body.strip()
    if head:
        name = tools.resolve(head)
        if name is None:
            return None
        return [_cut(name, text)]
    found: list[Found] = []
    if text.startswith("["):
        rest = text[1:]
        while True:
            rest = rest.lstrip().removeprefix(",").lstrip()
            end = json_value_end(rest)
            if end < 0:
                break
            call = read_json_calls("", rest[:end], tools)
            if call is None:
                return None
            found += call
            rest = rest[end:]
        text = rest
    last = _json_cut_call(text, tools)
    if last is not None:
        found.append(last)
    return found or None


def _json_cut_call(text: str, tools: Toolbox) -> Found | None:
    named = _NAME_FIELD.search(text)
    if named is None:
        return None
    try:
        written = loads_strict(f'"{named.group(1)}"')
    except ValueError:
        return None
    name = tools.resolve(written) if isinstance(written, str) else None
    if name is None:
        return None
    arguments = _ARGUMENTS_FIELD.search(text, named.end())
    if arguments is None:
        arguments = _ARGUMENTS_FIELD.search(text)
    raw = text[arguments.end() :] if arguments else ""
    end = json_value_end(raw)
    if end >= 0:
        raw = raw[:end]  # the arguments were whole; the call's own brace was cut
    if raw.startswith('"'):
        # Arguments as a JSON string: its text is the arguments text.
        decoded = salvage_json(raw)
        raw = decoded if isinstance(decoded, str) else ""
    return _cut(name, raw)


_NAME_STARTED = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)(")?')


def cut_call(text: str, names: Sequence[str]) -> Found | None:
    """A forced call (``{"name": ..., "arguments": ...}``, constrained to ``names``)
    that the token limit cut: the tool its name names, or begins to name (the first
    such, in the request's order), with the arguments so far. None when the model
    wrote nothing of it: a call is not made up from nothing."""
    text = text.strip()
    if not text:
        return None
    named = _NAME_STARTED.search(text)
    written = named.group(1) if named else ""
    try:
        decoded = loads_strict(f'"{written}"')
        written = decoded if isinstance(decoded, str) else written
    except ValueError:
        pass  # an escape the limit cut: the text before it still narrows the name
    whole = named is not None and named.group(2) is not None
    chosen = [n for n in names if (n == written if whole else n.startswith(written))]
    if not chosen:
        return None
    arguments = _ARGUMENTS_FIELD.search(text, named.end() if named else 0)
    raw = text[arguments.end() :] if arguments else ""
    end = json_value_end(raw)
    return _cut(chosen[0], raw[:end] if end >= 0 else raw)


def _cut(name: str, raw: str) -> Found:
    value = salvage_json(raw)
    return Found(name, value if isinstance(value, dict) else {}, partial=raw)


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


# -- JSON text, read incrementally ---------------------------------------------------

_BRACKETS = {"{": "}", "[": "]"}


class JsonStrings:
    """Whether a character of JSON text, read in order, belongs to a string (its
    quotes included), aware of escapes."""

    __slots__ = ("_escape", "_in_string")

    def __init__(self) -> None:
        self._in_string = False
        self._escape = False

    @property
    def inside(self) -> bool:
        return self._in_string

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


class JsonExtent:
    """Finds where a JSON value that began with a bracket ends, one character at a
    time, aware of strings and escapes. A closer that does not match ends it too:
    the value is malformed, and parsing it will say so."""

    __slots__ = ("_open", "_strings")

    def __init__(self) -> None:
        self._open: list[str] = []
        self._strings = JsonStrings()

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


def json_value_end(text: str) -> int:
    """Where the JSON value ``text`` starts with ends: just past its closing
    bracket, or past a whole string; -1 when it is cut or not bracketed."""
    if text.startswith('"'):
        strings = JsonStrings()
        for at, char in enumerate(text):
            strings.quoted(char)
            if at and not strings.inside:
                return at + 1
        return -1
    if not text.startswith(("{", "[")):
        return -1
    return JsonExtent().end(text, 0)


_SALVAGE_TRIES = 64
_PARTIAL_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{0,3})?$")


def salvage_json(text: str) -> JsonValue | None:
    """The value a JSON text cut short was writing: open strings and brackets
    closed, and a last member too short to complete dropped (``{"a": 1, "b`` is
    ``{"a": 1}``); None when nothing can be read."""
    # Where to cut when closing what is open is not enough: before a comma (the
    # member after it is dropped) or just inside a bracket (an empty container).
    strings = JsonStrings()
    points: list[int] = []
    for at, char in enumerate(text):
        if strings.quoted(char):
            continue
        if char in _BRACKETS:
            points.append(at + 1)
        elif char == ",":
            points.append(at)
    whole = _closed(text)
    if whole is None:
        return None  # a closer that closes nothing: not the start of a JSON value
    candidates = [whole] + [_closed(text[:end]) for end in reversed(points)]
    for candidate in candidates[:_SALVAGE_TRIES]:
        if candidate is None:
            continue
        try:
            return loads_strict(candidate)
        except ValueError:
            continue
    return None


def _closed(prefix: str) -> str | None:
    """``prefix`` with its open string and brackets closed, or None if it is not
    the start of a JSON value at all."""
    closers: list[str] = []
    strings = JsonStrings()
    for char in prefix:
        if strings.quoted(char):
            continue
        if char in _BRACKETS:
            closers.append(_BRACKETS[char])
        elif char in "}]" and (not closers or closers.pop() != char):
            return None
    if strings.inside:
        # A cut escape (``\\`` or ``\\u12``) cannot be completed; drop it.
        prefix = _PARTIAL_ESCAPE.sub("", prefix) + '"'
    return prefix + "".join(reversed(closers))
