"""JSON in and out, with the limits a server needs.

The standard library's ``json`` is lenient in ways a server must not be: it accepts
``NaN`` and ``Infinity`` (not JSON), turns ``1e999`` into ``inf``, overflows the
Python stack on deeply nested input, and decodes a lone ``\\ud800`` escape into a
string that has no UTF-8 form. ``parse_body`` closes those holes and reports every
failure as a ``ClientError`` with a message a person can act on.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Final, NoReturn, TypeAlias

from ._errors import ClientError

__all__ = [
    "MAX_BODY_NESTING",
    "Flaw",
    "JsonValue",
    "dumps",
    "encode_utf8",
    "find_lone_surrogate",
    "find_nesting_over",
    "loads_strict",
    "parse_body",
    "resolve_pointer",
]

JsonValue: TypeAlias = (
    bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None
)


# One encoder for every call: ``json.dumps`` with any non-default option builds a new
# one each time, which is a tenth of the cost of a streamed chunk.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


# Characters that JSON lets stand raw in a string but that line readers take for
# line breaks (Python's splitlines, which httpx's iter_lines uses, and with it the
# ollama client): raw, they cut an NDJSON line in two. Go's encoder, and so Ollama,
# escapes the last two for the same reason.
_LINE_BREAKS: Final = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def dumps(value: object) -> bytes:
    """Encode compactly as UTF-8, the way Ollama's Go encoder does.

    Non-ASCII text is written as-is rather than as ``\\uXXXX`` escapes, except the
    three characters line readers break lines at (U+0085, U+2028, U+2029).
    """
    text = _ENCODER.encode(value)
    if "\x85" in text or "\u2028" in text or "\u2029" in text:
        text = text.translate(_LINE_BREAKS)
    return encode_utf8(text)


def encode_utf8(text: str) -> bytes:
    """UTF-8 bytes of ``text``, even when it holds lone surrogates.

    A detokenizer can produce a lone surrogate from a split byte sequence, and it has no
    UTF-8 form. Going through UTF-16 joins a split pair back into its character and
    turns the rest into U+FFFD, so one bad token never fails a whole response. That
    round trip is rare, so it stays off the common path.
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        repaired = text.encode("utf-16-le", "surrogatepass").decode(
            "utf-16-le", "replace"
        )
        return repaired.encode("utf-8")


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text} is out of range")
    return number


def loads_strict(text: str) -> JsonValue:
    """Decode one JSON text, refusing what is not JSON or would crash a naive parser.

    Raises:
        ValueError: with a reason a person can act on, e.g.
            ``Expecting ',' delimiter (line 1, column 5)`` or ``nested too deeply``.
    """
    try:
        value: JsonValue = json.loads(
            text, parse_constant=_reject_constant, parse_float=_finite_float
        )
    except json.JSONDecodeError as exc:
        raise ValueError(f"{exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    # Other ValueErrors (NaN, 1e999, ints past Python's digit limit) carry their reason.
    return value


def parse_body(body: bytes) -> JsonValue:
    """Decode a request body, or raise ``ClientError(400)`` saying what is wrong.

    Beyond JSON's own rules, a body may not nest arrays and objects deeper than
    ``MAX_BODY_NESTING``, and no string in it (keys included) may hold a lone UTF-16
    surrogate; either is a 400 naming the place by its JSON path, e.g.
    ``messages[0].content``.
    """
    if not body:
        raise ClientError(400, "missing request body")
    try:
        # Strict: UTF-8 that encodes a surrogate (ED A0 80) is refused too, so a
        # lone surrogate can only come from a \uXXXX escape in the text.
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ClientError(
            400, f"request body is not valid UTF-8 (byte {exc.start})"
        ) from None
    try:
        value = loads_strict(text)
    except ValueError as exc:
        raise ClientError(400, f"invalid JSON in request body: {exc}") from None
    # Each walk runs only when the raw text shows it could find something, so a
    # common body costs a few substring scans.
    if text.count("[") + text.count("{") > MAX_BODY_NESTING:
        _refuse(
            find_nesting_over(MAX_BODY_NESTING, value),
            "request body is nested too deeply: {where} is more than "
            f"{MAX_BODY_NESTING} levels of arrays and objects deep",
        )
    if "\\ud" in text or "\\uD" in text:
        _refuse(
            find_lone_surrogate(value),
            "invalid text in {where}: a lone UTF-16 surrogate ({found}) is not a "
            "character; a character past U+FFFF is escaped as a pair, like "
            "\\ud83d\\ude00",
        )
    return value


MAX_BODY_NESTING: Final = 128
"""Deepest nesting of arrays and objects in a request body. A chat with tools and a
schema needs a few dozen levels; no legitimate body comes near this, and code that
walks a value recursively (a JSON Schema validator, a template, a serializer) could
run out of stack on a deeper one: a 500 instead of the client's 400."""


@dataclass(frozen=True, slots=True)
class Flaw:
    """Where a decoded value breaks a rule, for an error message to say."""

    where: str
    """Its JSON path (``messages[0].content``, ``the field name options["x"]``,
    ``the body``), ASCII and cut short."""
    field: str | None
    """The top-level field it lies in (an error's ``param``), if it has a name a
    message can print."""
    found: str
    """What is wrong there, e.g. the lone surrogate as an escape (``\\ud800``)."""


def find_nesting_over(limit: int, value: JsonValue) -> Flaw | None:
    """The first array or object (in document order) more than ``limit`` levels
    deep; the value itself is level 1. Iterative: a value may be hundreds of levels
    deep, which is the point."""
    stack: list[tuple[JsonValue, int, _Path]] = [(value, 1, None)]
    while stack:
        node, depth, path = stack.pop()
        if depth > limit:
            return Flaw(_path_text(path), _top_field(path), f"{depth} levels")
        if isinstance(node, dict | list):
            stack.extend(
                (child, depth + 1, (path, key))
                for key, child in _children_last_first(node)
                if isinstance(child, dict | list)
            )
    return None


def find_lone_surrogate(value: JsonValue) -> Flaw | None:
    """The first string or key (in document order) holding a lone UTF-16
    surrogate. Python's json decodes a lone ``\\ud800`` escape into one, and text
    holding it has no UTF-8 form: it fails the first time it is encoded (for the
    tokenizer, a log, a file). Check JSON decoded from a client's text here, a
    body or JSON inside one (OpenAI's tool call ``arguments``)."""
    stack: list[tuple[JsonValue, _Path]] = [(value, None)]
    while stack:
        node, path = stack.pop()
        if path is not None and isinstance(path[1], str):
            found = _lone_surrogate(path[1])
            if found is not None:
                where = f"the field name {_path_text(path)}"
                return Flaw(where, _top_field(path), found)
        if isinstance(node, str):
            found = _lone_surrogate(node)
            if found is not None:
                return Flaw(_path_text(path), _top_field(path), found)
        elif isinstance(node, dict | list):
            stack.extend(
                (child, (path, key)) for key, child in _children_last_first(node)
            )
    return None


def _refuse(flaw: Flaw | None, message: str) -> None:
    """Raise the 400 ``message`` (formatted with the flaw's where and found)."""
    if flaw is not None:
        raise ClientError(
            400, message.format(where=flaw.where, found=flaw.found), param=flaw.field
        )


# Any surrogate left in a decoded string is a lone one: json joins an escaped
# pair (\ud83d\ude00) into the one character it stands for.
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SHOWN_KEY: Final = 40
_SHOWN_PATH: Final = 100

_Container: TypeAlias = list[JsonValue] | dict[str, JsonValue]
# Where a value sits: its parent's path and the key or index that leads to it, None
# for the value itself. Linked, so the walks build no text until one is shown.
_Path: TypeAlias = tuple["_Path", str | int] | None


def _lone_surrogate(text: str) -> str | None:
    """The first lone surrogate in ``text``, written as its escape."""
    found = _SURROGATE.search(text)
    return None if found is None else f"\\u{ord(found.group()):04x}"


def _children_last_first(node: _Container) -> list[tuple[str | int, JsonValue]]:
    """Keys (or indexes) and values, last first: a stack then pops them in order."""
    if isinstance(node, dict):
        return list(reversed(node.items()))
    return list(zip(range(len(node) - 1, -1, -1), reversed(node), strict=True))


def _path_text(path: _Path) -> str:
    """``messages[0].content``: keys that are identifiers after a dot, others quoted
    (escaped to ASCII, cut short), indexes in brackets; "the body" for the root."""
    steps: list[str] = []
    while path is not None:
        path, step = path
        if isinstance(step, int):
            steps.append(f"[{step}]")
        elif _IDENTIFIER.fullmatch(step):
            steps.append(f".{step}")
        else:
            shown = step if len(step) <= _SHOWN_KEY else step[:_SHOWN_KEY] + "..."
            steps.append(f"[{json.dumps(shown)}]")
    text = "".join(reversed(steps)).removeprefix(".") or "the body"
    return text if len(text) <= _SHOWN_PATH else text[:_SHOWN_PATH] + "..."


def _top_field(path: _Path) -> str | None:
    """The top-level field ``path`` lies in; None at the root, under an array, or
    for a field name no error message could print."""
    while path is not None and path[0] is not None:
        path = path[0]
    if path is None or not isinstance(path[1], str):
        return None
    return None if _SURROGATE.search(path[1]) else path[1]


def resolve_pointer(root: JsonValue, pointer: str) -> tuple[bool, JsonValue]:
    """Whether the JSON Pointer ``pointer`` (``/$defs/a~1b/0``, RFC 6901; empty
    steps skipped) names a value in ``root``, and that value."""
    target = root
    for part in filter(None, pointer.split("/")):
        key = part.replace("~1", "/").replace("~0", "~")
        if isinstance(target, dict) and key in target:
            target = target[key]
        elif isinstance(target, list) and key.isdigit() and int(key) < len(target):
            target = target[int(key)]
        else:
            return False, None
    return True, target
