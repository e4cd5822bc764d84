"""NDJSON and SSE framing: exact bytes out, and decoders that ignore how input is split.

Every decoder case runs three ways (the whole input in one feed, one byte at a time,
and cut at points hypothesis picks) and all three must agree, errors included. The
fuzz tests at the bottom hold the decoders to the same invariant on arbitrary input:
the three ways agree, and nothing but ``FramingError`` ever escapes.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable
from typing import Protocol, TypeAlias, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gateway_core._framing as framing
from gateway_core._framing import (
    SSE_DONE,
    FramingError,
    NdjsonDecoder,
    SseDecoder,
    SseEvent,
    encode_ndjson,
    encode_sse,
)
from gateway_core._json import JsonValue

T = TypeVar("T")


class Decoder(Protocol[T]):
    def feed(self, data: bytes) -> list[T]: ...

    def close(self) -> list[T]: ...


# Either everything the decoder returned, or "FramingError: <message>".
Outcome: TypeAlias = "list[T] | str"


def decode_chunks(
    make: Callable[[], Decoder[T]], chunks: Iterable[bytes]
) -> Outcome[T]:
    decoder = make()
    out: list[T] = []
    try:
        for chunk in chunks:
            out += decoder.feed(chunk)
        out += decoder.close()
    except FramingError as exc:
        return f"FramingError: {exc}"
    return out


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    # Repeated cuts give empty chunks, which a decoder must take in its stride too.
    points = sorted(cut % (len(data) + 1) for cut in cuts)
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def decode_three_ways(
    make: Callable[[], Decoder[T]], data: bytes, cuts: Iterable[int]
) -> Outcome[T]:
    whole = decode_chunks(make, [data])
    one_by_one = decode_chunks(make, [data[i : i + 1] for i in range(len(data))])
    split = decode_chunks(make, split_at(data, cuts))
    assert one_by_one == whole
    assert split == whole
    return whole


def check(result: Outcome[T], expected: Outcome[T]) -> None:
    """An expected error is a prefix, so stdlib wording after it may vary."""
    if isinstance(expected, str):
        assert isinstance(result, str), result
        assert result.startswith(expected), result
    else:
        assert result == expected


# The case tables below run once per case, so a few cut patterns each are plenty.
per_case = settings(max_examples=25)

cut_lists = st.lists(st.integers(min_value=0, max_value=10_000), max_size=8)

json_values: st.SearchStrategy[JsonValue] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)


# ---------------------------------------------------------------------------------
# Writers: golden bytes


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, b"null\n"),
        ([1, 2.5, "x", True], b'[1,2.5,"x",true]\n'),
        (
            {"model": "m", "done": False, "response": "\u00e9\n"},
            b'{"model":"m","done":false,"response":"\xc3\xa9\\n"}\n',
        ),
        ({}, b"{}\n"),
    ],
)
def test_encode_ndjson_golden_bytes(value: object, expected: bytes) -> None:
    assert encode_ndjson(value) == expected


def test_encode_ndjson_refuses_nan() -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        encode_ndjson(float("nan"))


@pytest.mark.parametrize(
    ("data", "event", "expected"),
    [
        ("hello", None, b"data: hello\n\n"),
        ("", None, b"data: \n\n"),
        ("x\n", None, b"data: x\ndata: \n\n"),
        (" lead", None, b"data:  lead\n\n"),
        (
            "a\nb\r\nc\rd",
            "delta",
            b"event: delta\ndata: a\ndata: b\ndata: c\ndata: d\n\n",
        ),
        (
            '{"type":"ping"}',
            "ping",
            b'event: ping\ndata: {"type":"ping"}\n\n',
        ),
        ("\u20ac", "\u00e9v", b"event: \xc3\xa9v\ndata: \xe2\x82\xac\n\n"),
        ("x", "", b"event: \ndata: x\n\n"),
        # Lone surrogates become U+FFFD; a split pair is joined back.
        ("a\ud800b", None, b"data: a\xef\xbf\xbdb\n\n"),
        ("\ud83d\ude00", None, b"data: \xf0\x9f\x98\x80\n\n"),
    ],
)
def test_encode_sse_golden_bytes(data: str, event: str | None, expected: bytes) -> None:
    assert encode_sse(data, event=event) == expected


@pytest.mark.parametrize("event", ["a\nb", "a\rb", "\r\n", "end\n"])
def test_encode_sse_refuses_line_breaks_in_event_name(event: str) -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        encode_sse("x", event=event)


def test_sse_done_golden_bytes() -> None:
    assert SSE_DONE == b"data: [DONE]\n\n"
    assert SseDecoder().feed(SSE_DONE) == [SseEvent(data="[DONE]")]


def test_public_names() -> None:
    assert sorted(framing.__all__) == sorted(
        [
            "SSE_DONE",
            "FramingError",
            "NdjsonDecoder",
            "SseDecoder",
            "SseEvent",
            "encode_ndjson",
            "encode_sse",
        ]
    )
    assert issubclass(FramingError, ValueError)


# ---------------------------------------------------------------------------------
# NDJSON decoder


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", []),
        (b'{"a":1}\n[1,2]\n"x"\n', [{"a": 1}, [1, 2], "x"]),
        (b"1\r\n2\r\n", [1, 2]),
        (b"\n\n1\n  \n\t\r\n2\n", [1, 2]),
        (b"  ", []),
        # No LF at the end: the last line still counts.
        (b'1\n{"b":null}', [1, {"b": None}]),
        (b"1\r", [1]),
        (b'"a\\nb"\n', ["a\nb"]),
        (
            '{"s":"h\u00e9llo \u20ac\U0001f600"}\n'.encode(),
            [{"s": "h\u00e9llo \u20ac\U0001f600"}],
        ),
        (b"1.5e3\n-0\n", [1500.0, 0]),
        # Errors name the line, counting blank lines.
        (
            b"1\n{bad}\n2\n",
            "FramingError: NDJSON line 2 is not valid JSON: Expecting property name",
        ),
        (b"\n\n{\n", "FramingError: NDJSON line 3 is not valid JSON"),
        (b"1 2\n", "FramingError: NDJSON line 1 is not valid JSON: Extra data"),
        (b"NaN\n", "FramingError: NDJSON line 1 is not valid JSON: NaN is not valid"),
        (
            b"[1,-Infinity]\n",
            "FramingError: NDJSON line 1 is not valid JSON: -Infinity is not valid",
        ),
        (
            b"1e999\n",
            "FramingError: NDJSON line 1 is not valid JSON: number 1e999 is out of",
        ),
        (b'"\xff"\n', "FramingError: NDJSON line 1 is not valid UTF-8 (byte 1)"),
        # The held final line is checked at close().
        (b"1\n2\n{", "FramingError: NDJSON line 3 is not valid JSON"),
    ],
)
@given(cuts=cut_lists)
@per_case
def test_ndjson_decoder_cases(
    data: bytes, expected: Outcome[JsonValue], cuts: list[int]
) -> None:
    check(decode_three_ways(NdjsonDecoder, data, cuts), expected)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"12345\n", [12345]),
        (b"12345\r\n", [12345]),
        (b"12345", [12345]),
        (b"12345\r", [12345]),
        (b"     \n1\n", [1]),
        (b"123456\n", "FramingError: NDJSON line 1 is longer than 5 bytes"),
        (b"1\n\n123456", "FramingError: NDJSON line 3 is longer than 5 bytes"),
        (b"12345\rx\n", "FramingError: NDJSON line 1 is longer than 5 bytes"),
        (b"12345\r\r\n", "FramingError: NDJSON line 1 is longer than 5 bytes"),
        (b"      \n", "FramingError: NDJSON line 1 is longer than 5 bytes"),
    ],
)
@given(cuts=cut_lists)
@per_case
def test_ndjson_line_limit(
    data: bytes, expected: Outcome[JsonValue], cuts: list[int]
) -> None:
    check(
        decode_three_ways(lambda: NdjsonDecoder(max_line_bytes=5), data, cuts), expected
    )


def test_ndjson_too_deeply_nested_line_is_malformed() -> None:
    # Too long to run byte by byte for every hypothesis example, so cut by hand.
    payload = b"1\n" + b"[" * 100_000 + b"\n"
    assert decode_three_ways(NdjsonDecoder, payload, [1, 2, 3, 50_000]) == (
        "FramingError: NDJSON line 2 is not valid JSON: nested too deeply"
    )


def test_ndjson_holds_a_partial_line_until_it_completes() -> None:
    decoder = NdjsonDecoder()
    assert decoder.feed(b'{"a":1}\n{"b"') == [{"a": 1}]
    assert decoder.feed(b":2}") == []
    assert decoder.feed(b"\r") == []
    assert decoder.feed(b"\n3") == [{"b": 2}]
    assert decoder.feed(b"") == []
    assert decoder.close() == [3]
    assert decoder.close() == []


def test_ndjson_too_long_partial_line_fails_before_its_end_arrives() -> None:
    decoder = NdjsonDecoder(max_line_bytes=4)
    assert decoder.feed(b"1\n1234") == [1]
    with pytest.raises(FramingError, match="line 2 is longer than 4 bytes"):
        decoder.feed(b"5")


def test_ndjson_feed_after_close_is_misuse_not_bad_input() -> None:
    decoder = NdjsonDecoder()
    assert decoder.close() == []
    with pytest.raises(ValueError, match="after close") as info:
        decoder.feed(b"1\n")
    assert not isinstance(info.value, FramingError)


def test_ndjson_decoder_stays_broken_after_an_error() -> None:
    decoder = NdjsonDecoder()
    with pytest.raises(FramingError, match="line 1"):
        decoder.feed(b"nope\n")
    with pytest.raises(FramingError, match="already failed: NDJSON line 1"):
        decoder.feed(b"1\n")
    with pytest.raises(FramingError, match="already failed"):
        decoder.close()


def test_ndjson_decoder_stays_broken_after_an_error_at_close() -> None:
    decoder = NdjsonDecoder()
    assert decoder.feed(b"1\n{") == [1]
    with pytest.raises(FramingError, match="line 2"):
        decoder.close()
    with pytest.raises(FramingError, match="already failed"):
        decoder.close()


def test_ndjson_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_line_bytes"):
        NdjsonDecoder(max_line_bytes=0)


@given(values=st.lists(json_values, max_size=5), data=st.data())
def test_ndjson_round_trip(values: list[JsonValue], data: st.DataObject) -> None:
    payload = b"".join(encode_ndjson(value) for value in values)
    cuts = data.draw(cut_lists)
    assert decode_three_ways(NdjsonDecoder, payload, cuts) == values
    # The same without the final LF: the last line comes out of close().
    assert decode_three_ways(NdjsonDecoder, payload.removesuffix(b"\n"), cuts) == values


# ---------------------------------------------------------------------------------
# SSE decoder


def ev(
    data: str,
    event: str = "message",
    id: str | None = None,
    retry: int | None = None,
) -> SseEvent:
    return SseEvent(event=event, data=data, id=id, retry=retry)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", []),
        (b"data: hello\n\n", [ev("hello")]),
        (b"event: add\ndata: 1\n\n", [ev("1", event="add")]),
        (b"data: a\ndata:b\ndata:  c\n\n", [ev("a\nb\n c")]),
        (b"data\n\n", [ev("")]),
        (b"data\ndata\n\n", [ev("\n")]),
        (b"data: x\x00y\n\n", [ev("x\x00y")]),
        (b"event: a:b\ndata: x\n\n", [ev("x", event="a:b")]),
        (b"event:\ndata: x\n\n", [ev("x")]),
        # Every line end: CRLF, CR alone (also CR CR), LF.
        (b"data: a\r\ndata: b\r\r\ndata: c\n\n", [ev("a\nb"), ev("c")]),
        (b"data: x\r\r", [ev("x")]),
        (b"data: x\r\n\r\ndata: y\r\rdata: z\n\n", [ev("x"), ev("y"), ev("z")]),
        # A blank line without data dispatches nothing and forgets the event type.
        (b"event: foo\n\n", []),
        (b"event: foo\n\ndata: x\n\n", [ev("x")]),
        (b"\n\n\r\n\r", []),
        # Comments and unknown fields are ignored; field names are case-sensitive.
        (b": ping\n\n:another\ndata: x\n: mid\n\n", [ev("x")]),
        (b"foo: bar\ndata: x\nDATA: y\n data: z\n\n", [ev("x")]),
        # id persists across events until changed; empty resets it; NUL is ignored,
        # and an id in a block without data still takes effect.
        (
            b"id: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\n",
            [ev("a", id="7"), ev("b", id="7"), ev("c")],
        ),
        (b"id: 1\n\nid: 2\x00\ndata: x\n\n", [ev("x", id="1")]),
        (b"id:  sp\ndata: x\n\n", [ev("x", id=" sp")]),
        # retry: ASCII digits only, stream state like id.
        (b"retry: 1500\ndata: x\n\n", [ev("x", retry=1500)]),
        (b"retry: 10\n\ndata: x\n\n", [ev("x", retry=10)]),
        (
            "retry: 5\ndata: x\n\nretry: 1.5\nretry: -1\nretry:\nretry: \u0661\n"
            "retry: 1 \nretry: 9x\ndata: y\n\n".encode(),
            [ev("x", retry=5), ev("y", retry=5)],
        ),
        (b"retry: 007\ndata: x\n\n", [ev("x", retry=7)]),
        # One leading BOM is dropped; a second one, or one later on, is not.
        (b"\xef\xbb\xbfdata: x\n\n", [ev("x")]),
        (b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n", []),
        (b"data: x\n\n\xef\xbb\xbfdata: y\n\n", [ev("x")]),
        (b"\xef\xbb\xbf", []),
        # UTF-8, with invalid bytes replaced.
        (
            "data: h\u00e9llo \u20ac\U0001f600\n\n".encode(),
            [ev("h\u00e9llo \u20ac\U0001f600")],
        ),
        (b"data: \xff\xe2\x82\n\n", [ev("\ufffd\ufffd")]),
        # An unfinished event at the end is discarded.
        (b"data: x\n\ndata: y\n", [ev("x")]),
        (b"data: y", []),
        (b"data: x\n\n\xe2\x82", [ev("x")]),
        (b"data: x\r", []),
    ],
)
@given(cuts=cut_lists)
@per_case
def test_sse_decoder_cases(
    data: bytes, expected: Outcome[SseEvent], cuts: list[int]
) -> None:
    check(decode_three_ways(SseDecoder, data, cuts), expected)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"data: 1234\n\n", [ev("1234")]),
        (b"data: 1234\n\ndata: 5678\n\n", [ev("1234"), ev("5678")]),
        (b"data: 1234\r\n\r\ndata: 5678\r\r", [ev("1234"), ev("5678")]),
        ("data: \u20ac\n\n".encode(), [ev("\u20ac")]),
        (b"data: 12345\n\n", "FramingError: SSE event is longer than 10 bytes"),
        (b"data: 12\ndata: 34\n\n", "FramingError: SSE event is longer than 10 bytes"),
        (b":123456789\ndata: x\n\n", "FramingError: SSE event is longer than 10 bytes"),
        (
            "data: \u20ac\u20ac".encode(),
            "FramingError: SSE event is longer than 10 bytes",
        ),
        (b"data: 1\n\nxxxxxxxxxxx", "FramingError: SSE event is longer than 10 bytes"),
    ],
)
@given(cuts=cut_lists)
@per_case
def test_sse_event_limit(
    data: bytes, expected: Outcome[SseEvent], cuts: list[int]
) -> None:
    check(
        decode_three_ways(lambda: SseDecoder(max_event_bytes=10), data, cuts), expected
    )


def test_sse_retry_past_the_int_digit_limit_is_ignored() -> None:
    payload = b"retry: 3\n\nretry: " + b"9" * 5000 + b"\ndata: x\n\n"
    assert decode_three_ways(SseDecoder, payload, [5, 2000, 4000]) == [ev("x", retry=3)]


def test_sse_holds_an_event_until_its_blank_line() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: x\n") == []
    assert decoder.feed(b"data: y") == []
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\n") == [ev("x\ny")]


def test_sse_crlf_split_across_feeds_is_one_line_end() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: x\r") == []
    # Were this LF a line end of its own, it would be a blank line and dispatch.
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\n") == [ev("x")]


def test_sse_cr_at_end_of_feed_dispatches_without_waiting() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: x\r") == []
    assert decoder.feed(b"\r") == [ev("x")]
    # The LF completes the CRLF begun above, so it is not another blank line.
    assert decoder.feed(b"\ndata: y\n\n") == [ev("y")]


def test_sse_cr_waits_across_a_feed_that_decodes_to_nothing() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: x\r") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\n\xe2") == []
    assert decoder.feed(b"\x82") == []
    assert decoder.feed(b"\xac\n\n") == [ev("x")]


def test_sse_multibyte_character_split_across_feeds() -> None:
    decoder = SseDecoder()
    payload = "data: \u20ac\U0001f600\n\n".encode()
    for i in range(len(payload) - 1):
        assert decoder.feed(payload[i : i + 1]) == []
    assert decoder.feed(payload[-1:]) == [ev("\u20ac\U0001f600")]


def test_sse_bom_split_across_feeds() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"\xef") == []
    assert decoder.feed(b"\xbb") == []
    assert decoder.feed(b"\xbfdata: x\n\n") == [ev("x")]


def test_sse_close_discards_the_pending_event() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\n\ndata: b\n") == [ev("a")]
    assert decoder.close() == []
    assert decoder.close() == []


def test_sse_feed_after_close_is_misuse_not_bad_input() -> None:
    decoder = SseDecoder()
    assert decoder.close() == []
    with pytest.raises(ValueError, match="after close") as info:
        decoder.feed(b"data: x\n\n")
    assert not isinstance(info.value, FramingError)


def test_sse_decoder_stays_broken_after_an_error() -> None:
    decoder = SseDecoder(max_event_bytes=4)
    with pytest.raises(FramingError, match="longer than 4 bytes"):
        decoder.feed(b"data: x")
    with pytest.raises(FramingError, match="already failed"):
        decoder.feed(b"\n\n")
    with pytest.raises(FramingError, match="already failed"):
        decoder.close()


def test_sse_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_event_bytes"):
        SseDecoder(max_event_bytes=0)


def test_sse_event_defaults_and_immutability() -> None:
    event = SseEvent(data="x")
    assert (event.event, event.data, event.id, event.retry) == (
        "message",
        "x",
        None,
        None,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.data = "y"  # type: ignore[misc]
    with pytest.raises(TypeError):
        SseEvent("x")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"event": "a\nb"},
        {"event": "a\rb"},
        {"id": "1\n"},
        {"id": "1\x00"},
        {"retry": -1},
    ],
)
def test_sse_event_refuses_what_the_wire_cannot_carry(
    kwargs: dict[str, str | int],
) -> None:
    with pytest.raises(ValueError, match="SSE"):
        SseEvent(data="x", **kwargs)  # type: ignore[arg-type]


def normalize_newlines(text: str) -> str:
    return re.sub(r"\r\n?", "\n", text)


sse_texts = st.lists(
    st.text(max_size=8)
    | st.sampled_from(["\r", "\n", "\r\n", "\n\r", " ", ":", "\u00e9", "\U0001f600"]),
    max_size=6,
).map("".join)

sse_event_names = st.none() | st.text(
    st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=8
)


@given(
    events=st.lists(st.tuples(sse_event_names, sse_texts), max_size=4),
    data=st.data(),
)
def test_sse_round_trip(
    events: list[tuple[str | None, str]], data: st.DataObject
) -> None:
    payload = b"".join(encode_sse(text, event=name) for name, text in events)
    payload += SSE_DONE
    expected = [
        ev(normalize_newlines(text), event=name or "message") for name, text in events
    ]
    expected.append(ev("[DONE]"))
    assert decode_three_ways(SseDecoder, payload, data.draw(cut_lists)) == expected


# ---------------------------------------------------------------------------------
# Fuzz: any input, split anywhere, gives the same events or the same FramingError.

ndjson_pieces = st.lists(
    st.sampled_from(
        [
            *(b"1", b"[", b"]", b"{", b"}", b'"', b",", b":", b" ", b"\n", b"\r"),
            *(b"\xc3", b"\xa9", b"\xff", b"NaN", b"null", b'"k"'),
        ]
    ),
    max_size=30,
).map(b"".join)

sse_pieces = st.lists(
    st.sampled_from(
        [
            *(b"data", b"event", b"id", b"retry", b":", b" ", b"\r", b"\n", b"x"),
            *(b"7", b"\xef\xbb\xbf", b"\xe2\x82\xac", b"\xe2", b"\x82", b"\xff"),
            b"\x00",
        ]
    ),
    max_size=40,
).map(b"".join)


@given(payload=ndjson_pieces | st.binary(max_size=40), cuts=cut_lists)
def test_ndjson_fuzz_split_invariance(payload: bytes, cuts: list[int]) -> None:
    decode_three_ways(lambda: NdjsonDecoder(max_line_bytes=6), payload, cuts)


@given(payload=sse_pieces | st.binary(max_size=40), cuts=cut_lists)
def test_sse_fuzz_split_invariance(payload: bytes, cuts: list[int]) -> None:
    decode_three_ways(lambda: SseDecoder(max_event_bytes=12), payload, cuts)


def test_line_breaks_a_line_reader_knows_are_escaped() -> None:
    """U+0085, U+2028 and U+2029 may stand raw in JSON, but line readers (Python's
    splitlines, httpx's iter_lines, and so the ollama client) break lines there:
    raw, one NDJSON line would reach the client as two."""
    value = {"text": "a\x85b\u2028c\u2029d"}
    line = encode_ndjson(value)
    assert line.decode("utf-8").splitlines() == [line.decode("utf-8").rstrip("\n")]
    assert json.loads(line) == value
