"""JSON in and out, with the limits a server needs.

The standard library's ``json`` is lenient in ways a server must not be: it accepts
``NaN`` and ``Infinity`` (not JSON), turns ``1e999`` into ``inf``, and overflows the
Python stack on deeply nested input. ``parse_body`` closes those holes and reports every
failure as a ``ClientError`` with a message a person can act on.
"""

from __future__ import annotations

import json
import math
from typing import NoReturn, TypeAlias

from ._errors import ClientError

__all__ = ["JsonValue", "dumps", "parse_body"]

JsonValue: TypeAlias = (
    bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None
)


def dumps(value: object) -> bytes:
    """Encode compactly as UTF-8, the way Ollama's Go encoder does.

    Non-ASCII text is written as-is rather than as ``\\uXXXX`` escapes. A lone surrogate
    (which model detokenizers can produce from a split byte sequence) cannot be encoded
    as UTF-8, so it becomes U+FFFD instead of failing the whole response.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Rare, so the round trip through UTF-16 stays off the common path.
        repaired = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return repaired.encode("utf-8")


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text} is out of range")
    return number


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
        value: JsonValue = json.loads(
            text, parse_constant=_reject_constant, parse_float=_finite_float
        )
    except json.JSONDecodeError as exc:
        raise ClientError(
            400,
            f"invalid JSON in request body: {exc.msg} "
            f"(line {exc.lineno}, column {exc.colno})",
        ) from None
    except RecursionError:
        raise ClientError(
            400, "invalid JSON in request body: nested too deeply"
        ) from None
    except ValueError as exc:
        # parse_constant / parse_float rejections, and ints past Python's digit limit.
        raise ClientError(400, f"invalid JSON in request body: {exc}") from None
    return value
