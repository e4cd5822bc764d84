"""Durations parse and print as Go does; keep_alive is Ollama's; timestamps RFC 3339."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_core._durations import (
    FOREVER,
    FOREVER_TIMESTAMP,
    format_go_duration,
    format_rfc3339,
    keep_alive_seconds,
    parse_go_duration,
    parse_keep_alive_setting,
)
from gateway_core._errors import ClientError
from gateway_core._json import JsonValue

MAX_GO_SECONDS = (2**63 - 1) / 1e9
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("-0", 0.0),
        ("+0", 0.0),
        ("0s", 0.0),
        ("5s", 5.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1h30m15s", 5415.0),
        ("-1m", -60.0),
        ("+2s", 2.0),
        ("1.5h", 5400.0),
        ("1.s", 1.0),
        (".5s", 0.5),
        ("300ms", 0.3),
        ("2us", 2e-6),
        ("2\u00b5s", 2e-6),
        ("2\u03bcs", 2e-6),
        ("7ns", 7e-9),
        ("1m1m", 120.0),  # Go adds repeated units
        ("0000000000000000000000001s", 1.0),
        ("2562047h47m16.854775807s", MAX_GO_SECONDS),
        ("-2562047h47m16.854775808s", -(2**63) / 1e9),
    ],
)
def test_parse_go_duration(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "invalid duration"),
        ("-", "invalid duration"),
        ("5", "missing unit"),
        ("1h5", "missing unit"),
        ("00", "missing unit"),
        (".s", "invalid duration"),
        ("s", "invalid duration"),
        ("5d", 'unknown unit "d"'),
        ("1hm", 'unknown unit "hm"'),
        ("5S", 'unknown unit "S"'),
        (" 5s", "invalid duration"),
        ("5s ", 'unknown unit "s "'),
        ("1e3s", 'unknown unit "e"'),
        ("--5s", "invalid duration"),
        ("2562047h47m16.854775808s", "out of range"),
        ("3000000h", "out of range"),
        ("9" * 5000 + "s", "out of range"),
    ],
)
def test_parse_go_duration_refuses_what_go_refuses(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match="duration") as info:
        parse_go_duration(text)
    assert reason in str(info.value)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (1e-9, "1ns"),
        (999e-9, "999ns"),
        (1.5e-6, "1.5\u00b5s"),
        (0.3, "300ms"),
        (0.0015, "1.5ms"),
        (1, "1s"),
        (1.25, "1.25s"),
        (60, "1m0s"),
        (300, "5m0s"),
        (5400, "1h30m0s"),
        (3723.5, "1h2m3.5s"),
        (86400, "24h0m0s"),
        (-60, "-1m0s"),
        (-0.001, "-1ms"),
        (FOREVER, "2562047h47m16.854775807s"),
        (1e30, "2562047h47m16.854775807s"),
        (-FOREVER, "-2562047h47m16.854775808s"),
    ],
)
def test_format_go_duration(seconds: float, text: str) -> None:
    assert format_go_duration(seconds) == text


def test_format_go_duration_refuses_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        format_go_duration(math.nan)


# Up to ~11 days in nanoseconds: every such count survives the trip through a float.
nanoseconds = st.integers(min_value=-(10**15), max_value=10**15)


@given(nanoseconds)
def test_format_then_parse_gives_the_same_seconds(ns: int) -> None:
    seconds = ns / 1_000_000_000
    assert parse_go_duration(format_go_duration(seconds)) == seconds


terms = st.tuples(
    st.integers(min_value=0, max_value=99),
    st.none() | st.text(alphabet="0123456789", min_size=1, max_size=12),
    st.sampled_from(["ns", "us", "\u00b5s", "ms", "s", "m", "h"]),
).map(lambda t: f"{t[0]}{'' if t[1] is None else '.' + t[1]}{t[2]}")
go_durations = st.tuples(
    st.sampled_from(["", "-", "+"]), st.lists(terms, min_size=1, max_size=3)
).map(lambda t: t[0] + "".join(t[1]))


@given(go_durations)
def test_formatting_a_parsed_duration_is_canonical(text: str) -> None:
    seconds = parse_go_duration(text)
    canonical = format_go_duration(seconds)
    assert parse_go_duration(canonical) == seconds
    assert format_go_duration(parse_go_duration(canonical)) == canonical


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        (0, 0.0),
        (0.0, 0.0),
        (5, 5.0),
        (42.5, 42.5),
        (-1, FOREVER),
        (-0.5, FOREVER),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("0", 0.0),
        ("-1m", FOREVER),
        ("-1ns", FOREVER),
        (1e300, FOREVER),
        (10**400, FOREVER),
        (int(MAX_GO_SECONDS), float(int(MAX_GO_SECONDS))),
    ],
)
def test_keep_alive_seconds(value: JsonValue, seconds: float | None) -> None:
    assert keep_alive_seconds(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5", 'invalid keep_alive: missing unit in duration "5"'),
        ("forever", "invalid keep_alive:"),
        ("", 'invalid keep_alive: invalid duration ""'),
        (True, 'a number of seconds or a duration string such as "5m", not a boolean'),
        (False, "not a boolean"),
        ([5], "not an array"),
        ({"s": 5}, "not an object"),
        (math.nan, "NaN"),
    ],
)
def test_keep_alive_mistakes_are_400_naming_the_field(
    value: JsonValue, message: str
) -> None:
    with pytest.raises(ClientError) as info:
        keep_alive_seconds(value)
    assert info.value.status == 400
    assert info.value.param == "keep_alive"
    assert message in info.value.message


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5m", 300.0),
        ("300", 300.0),
        ("0", 0.0),
        ("-1", FOREVER),
        ("-1m", FOREVER),
        (" 10m\n", 600.0),
        ('"24h"', 86400.0),
        ("'45s'", 45.0),
        ("1h30m", 5400.0),
        ("9" * 30, FOREVER),
    ],
)
def test_keep_alive_setting(text: str, seconds: float) -> None:
    assert parse_keep_alive_setting(text) == seconds


@pytest.mark.parametrize("text", ["", "  ", "five minutes", "5x", "1.5", "5 m"])
def test_keep_alive_setting_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="a keep-alive is a duration like 5m"):
        parse_keep_alive_setting(text)


@pytest.mark.parametrize(
    ("unix", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1.5, "1970-01-01T00:00:01.5Z"),
        (1761498924.097767, "2025-10-26T17:15:24.097767Z"),
        (1761498924.1, "2025-10-26T17:15:24.1Z"),
        (-1, "1969-12-31T23:59:59Z"),
        (-62135596800, "0001-01-01T00:00:00Z"),
        (FOREVER, FOREVER_TIMESTAMP),
        (1e12, FOREVER_TIMESTAMP),
    ],
)
def test_format_rfc3339(unix: float, text: str) -> None:
    assert format_rfc3339(unix) == text


@pytest.mark.parametrize("unix", [math.nan, -1e12, -math.inf])
def test_format_rfc3339_refuses_what_has_no_timestamp(unix: float) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        format_rfc3339(unix)


def test_the_forever_timestamp_is_the_last_int64_nanosecond() -> None:
    since_epoch = datetime.fromisoformat(FOREVER_TIMESTAMP) - EPOCH
    assert since_epoch // timedelta(microseconds=1) == (2**63 - 1) // 1000


@given(st.floats(min_value=-1e10, max_value=9e9))
def test_timestamps_read_back_to_the_microsecond(unix: float) -> None:
    text = format_rfc3339(unix)
    assert text.endswith("Z")
    seconds = text[17:-1]
    assert not seconds.endswith("0") or "." not in seconds
    # Near 1e10 s a float is only good to about 2 µs, in timestamp() as well.
    assert datetime.fromisoformat(text).timestamp() == pytest.approx(unix, abs=5e-6)
