"""JSON in and out, with the limits a server needs.

The standard library's ``json`` is lenient in ways a server must not be: it accepts
``NaN`` and ``Infinity`` (not JSON), turns ``1e999`` into ``inf``, and overflows the
Python stack on deeply nested input. ``parse_body`` closes those holes and reports every
failure as a ``ClientError`` with a message a person can act on.
"""

from __future__ import annotations

import json
import math
from typing import Final, NoReturn, TypeAlias

from ._errors import ClientError

__all__ = ["JsonValue", "dumps", "encode_utf8", "loads_strict", "parse_body"]

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
    """Decode a request body, or raise ``ClientError(400)`` saying what is wrong."""
    if not body:
        raise ClientError(400, "missing request body")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ClientError(
            400, f"request body is not valid UTF-8 (byte {exc.start})"
        ) from None
    try:
        return loads_strict(text)
    except ValueError as exc:
        raise ClientError(400, f"invalid JSON in request body: {exc}") from None
