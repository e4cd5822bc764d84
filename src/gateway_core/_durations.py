"""Durations and timestamps, spelled the way Ollama's Go code spells them.

Clients send ``keep_alive`` as seconds or as a Go duration string (``"5m"``,
``"1h30m"``, ``"-1m"``), and the gateway's own setting takes the same forms. Parsing
follows Go's ``time.ParseDuration`` exactly, counting whole nanoseconds as Go does, so
a string means here what it means to Ollama; the results are float seconds, the unit
the rest of the core works in.

"Forever" is ``math.inf``. Go has no infinite duration and uses its largest one (about
292 years) instead; the formatting functions below print that Go value where a client
expects a concrete one.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from ._errors import ClientError
from ._json import JsonValue

__all__ = [
    "FOREVER",
    "FOREVER_TIMESTAMP",
    "format_go_duration",
    "format_rfc3339",
    "keep_alive_seconds",
    "parse_go_duration",
    "parse_keep_alive_setting",
]

FOREVER = math.inf

_SECOND = 1_000_000_000
_MAX_NS = 2**63 - 1  # Go's time.Duration is an int64 count of nanoseconds.
_MIN_NS = -(2**63)
_MAX_SECONDS = _MAX_NS / _SECOND

# Go accepts both micro signs, U+00B5 and U+03BC, and prints U+00B5.
_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": _SECOND,
    "m": 60 * _SECOND,
    "h": 3600 * _SECOND,
}
# One "<number><unit>" term; the unit runs up to the next digit or ".".
_TERM = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

FOREVER_TIMESTAMP = "2262-04-11T23:47:16.854775Z"
"""What ``format_rfc3339(FOREVER)`` returns: a fixed instant instead of a moving one.

Ollama prints "now + 292 years" for a model kept forever, which changes every request
and lies beyond what many clients can hold. This is the last microsecond an int64 count
of nanoseconds since 1970 reaches (Go's ``time.Unix(0, math.MaxInt64)``): as far in the
future as Go, pandas and friends can parse, and the same in every response.
"""


def _quoted(text: str) -> str:
    shown = text if len(text) <= 80 else text[:80] + "..."
    return '"' + shown.encode("unicode_escape").decode("ascii") + '"'


def _parse_ns(text: str) -> int:
    """Go's ``time.ParseDuration``, in integer nanoseconds."""
    rest = text
    negative = rest[:1] == "-"
    if rest[:1] in ("-", "+"):
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise ValueError(f"invalid duration {_quoted(text)}")
    total = 0
    position = 0
    while position < len(rest):
        match = _TERM.match(rest, position)
        assert match is not None  # every group may be empty, so it always matches
        whole, fraction, unit = match.groups()
        if not whole and not fraction:
            raise ValueError(f"invalid duration {_quoted(text)}")
        if not unit:
            raise ValueError(
                f'missing unit in duration {_quoted(text)} (write e.g. "5s" or "5m")'
            )
        scale = _UNITS.get(unit)
        if scale is None:
            raise ValueError(
                f"unknown unit {_quoted(unit)} in duration {_quoted(text)} "
                "(use ns, us, ms, s, m or h)"
            )
        if len(whole.lstrip("0")) > 19:  # more than an int64 holds, in any unit
            raise ValueError(f"duration {_quoted(text)} is out of range")
        total += int(whole or "0") * scale
        if fraction:
            # Digits past the 19th are below a nanosecond even for hours; Go drops
            # them too.
            fraction = fraction[:19]
            total += int(fraction) * scale // 10 ** len(fraction)
        if total > (_MAX_NS + 1 if negative else _MAX_NS):
            raise ValueError(f"duration {_quoted(text)} is out of range")
        position = match.end()
    return -total if negative else total


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string: ``"300ms"``, ``"1h30m"``, ``"-1.5h"``, ``"0"``.

    A number without a unit is an error (except ``"0"``), as in Go: ``"5"`` could mean
    seconds or minutes, and guessing would keep a model loaded for the wrong time.

    Raises:
        ValueError: naming the problem (missing or unknown unit, out of range, ...).
    """
    return _parse_ns(text) / _SECOND


def _json_kind(value: JsonValue) -> str:
    if isinstance(value, bool):
        return "a boolean"
    return "an array" if isinstance(value, list) else "an object"


def keep_alive_seconds(value: JsonValue) -> float | None:
    """The ``keep_alive`` request field (ollama-api.md §7.2) in seconds.

    None means the field was absent (or null): the runner keeps its current duration.
    A number counts seconds, a string is a Go duration; anything negative, or longer
    than Go can count, is ``FOREVER``; ``0`` unloads when the request is done.

    Raises:
        ClientError: 400, saying what was wrong. Ollama answers the same mistakes
            with Go decoder messages such as ``Unsupported type: 'bool'``.
    """
    if value is None:
        return None
    if isinstance(value, bool | list | dict):
        raise ClientError(
            400,
            "keep_alive must be a number of seconds or a duration string such as "
            f'"5m", not {_json_kind(value)}',
            param="keep_alive",
        )
    if isinstance(value, str):
        try:
            seconds = parse_go_duration(value)
        except ValueError as exc:
            raise ClientError(
                400, f"invalid keep_alive: {exc}", param="keep_alive"
            ) from None
    elif isinstance(value, float) and math.isnan(value):
        raise ClientError(400, "keep_alive must not be NaN", param="keep_alive")
    elif value > _MAX_SECONDS:
        return FOREVER
    else:
        seconds = float(value)
    return FOREVER if seconds < 0 else seconds


def parse_keep_alive_setting(text: str) -> float:
    """The gateway's default keep-alive (``GATEWAY_KEEP_ALIVE``) in seconds.

    Accepts what ``OLLAMA_KEEP_ALIVE`` accepts: a Go duration, or an integer count of
    seconds; surrounding whitespace and quotes are ignored. Negative means ``FOREVER``.
    Unlike Ollama, which silently falls back to five minutes, garbage is an error: a
    typo in a setting should stop the server, not change its behaviour.

    Raises:
        ValueError: naming the problem.
    """
    cleaned = text.strip().strip("\"'")
    if re.fullmatch(r"[-+]?[0-9]+", cleaned):
        count = int(cleaned)
        if count > _MAX_SECONDS:
            return FOREVER
        seconds = float(count)
    else:
        try:
            seconds = parse_go_duration(cleaned)
        except ValueError as exc:
            raise ValueError(
                f"{exc}; a keep-alive is a duration like 5m or a number of seconds"
            ) from None
    return FOREVER if seconds < 0 else seconds


def _decimal(value: int, scale: int) -> str:
    """``value / scale`` written exactly, without trailing zeros (``scale`` = 10**k)."""
    whole, fraction = divmod(value, scale)
    if not fraction:
        return str(whole)
    digits = str(fraction).rjust(len(str(scale)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def _format_ns(ns: int) -> str:
    """Go's ``time.Duration.String``: ``"1h2m3.5s"``, ``"5m0s"``, ``"1.5ms"``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    size = abs(ns)
    if size < 1_000:
        return f"{sign}{size}ns"
    if size < 1_000_000:
        return f"{sign}{_decimal(size, 1_000)}\u00b5s"
    if size < _SECOND:
        return f"{sign}{_decimal(size, 1_000_000)}ms"
    minutes, rest = divmod(size, 60 * _SECOND)
    seconds = _decimal(rest, _SECOND) + "s"
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def format_go_duration(seconds: float) -> str:
    """``seconds`` as Go prints a duration: ``"5m0s"``, ``"1h30m0s"``, ``"300ms"``.

    Rounded to the nanosecond. ``FOREVER`` (and anything past Go's range) prints as
    Go's largest duration, ``"2562047h47m16.854775807s"``, which is what Ollama shows
    for a model kept forever.

    Raises:
        ValueError: for NaN.
    """
    if math.isnan(seconds):
        raise ValueError("a duration cannot be NaN")
    if seconds >= _MAX_SECONDS:
        return _format_ns(_MAX_NS)
    if seconds <= _MIN_NS / _SECOND:
        return _format_ns(_MIN_NS)
    return _format_ns(round(seconds * _SECOND))


def format_rfc3339(unix_seconds: float) -> str:
    """A UTC timestamp as Ollama writes them: ``"2025-10-26T17:15:24.097767Z"``.

    Microsecond precision with trailing zeros dropped (Go's RFC 3339 "nano" layout
    does the same with nanoseconds). ``FOREVER``, or any instant at or past it, gives
    ``FOREVER_TIMESTAMP``.

    Raises:
        ValueError: for NaN, or a time before the year 1.
    """
    if math.isnan(unix_seconds):
        raise ValueError("a timestamp cannot be NaN")
    if unix_seconds >= _MAX_SECONDS:
        return FOREVER_TIMESTAMP
    try:
        whole, micro = divmod(round(unix_seconds * 1_000_000), 1_000_000)
        text = _format_second(whole)
    except (OverflowError, ValueError):  # -inf, or before the year 1
        raise ValueError(f"timestamp {unix_seconds} is out of range") from None
    if micro:
        text += f".{micro:06d}".rstrip("0")
    return text + "Z"


@lru_cache(maxsize=4)
def _format_second(unix_second: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of a whole second; cached because a stream stamps
    every chunk, and its chunks share a few seconds."""
    moment = _EPOCH + timedelta(seconds=unix_second)  # OverflowError before the year 1
    # Not strftime: it drops the leading zeros of years before 1000 on some platforms.
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
