"""Stop strings and UTF-8 decoding on output that arrives in pieces.

Both machines are run three ways on every case (the whole input in one feed, one
character or byte at a time, and cut where hypothesis chooses), and all three must
give the same result. The stop scanner is also checked against a brute-force
reference that reads the text one position at a time.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_core._stops import StopScanner, Utf8Decoder


def scan(stops: Sequence[str], pieces: Iterable[str]) -> tuple[str, bool]:
    scanner = StopScanner(stops)
    out: list[str] = []
    for piece in pieces:
        text, stopped = scanner.feed(piece)
        out.append(text)
        if stopped:
            assert scanner.stopped
            return "".join(out), True
    assert not scanner.stopped
    out.append(scanner.flush())
    return "".join(out), False


def split_at(text: str, cuts: Iterable[int]) -> list[str]:
    points = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    return [text[a:b] for a, b in itertools.pairwise(points)] or [""]


def reference(stops: Sequence[str], text: str) -> tuple[str, bool]:
    """Read left to right; stop at the first position where a stop string ends."""
    for end in range(1, len(text) + 1):
        ending = [stop for stop in stops if stop and text[:end].endswith(stop)]
        if ending:
            return text[: end - max(map(len, ending))], True
    return text, False


STOP_CASES = [
    # (stops, text, expected output, stopped)
    ((), "anything at all", "anything at all", False),
    (("<|im_end|>",), "Hello<|im_end|>ignored", "Hello", True),
    (("<|im_end|>",), "<|im_end|>", "", True),
    (("<|im_end|>",), "Hello <|im", "Hello <|im", False),
    (("<|im_end|>",), "a <| b <|im_en c", "a <| b <|im_en c", False),
    (("\n\n",), "line one\nline two\n\nthree", "line one\nline two", True),
    (("User:", "\nUser"), "Sure.\nUser: hi", "Sure.", True),
    # Whichever is complete first wins, not whichever starts first.
    (("abcd", "bc"), "xabcd", "xa", True),
    # Two ending at the same place: the longer one, so less text leaks.
    (("abc", "bc"), "xabc", "x", True),
    (("aab",), "aaab", "a", True),
    (("ab", "ab"), "xxab", "xx", True),
    (("", "stop"), "go on, then stop here", "go on, then ", True),
    (("",), "empty stops are ignored", "empty stops are ignored", False),
    (("é!",), "café au lait, café!", "café au lait, caf", True),
    (("👋",), "hi 👋 there", "hi ", True),
]


@pytest.mark.parametrize(("stops", "text", "output", "stopped"), STOP_CASES)
def test_stop_scanner_whole_input(
    stops: tuple[str, ...], text: str, output: str, stopped: bool
) -> None:
    assert scan(stops, [text]) == (output, stopped)
    assert reference(stops, text) == (output, stopped)


@pytest.mark.parametrize(("stops", "text", "output", "stopped"), STOP_CASES)
def test_stop_scanner_one_char_at_a_time(
    stops: tuple[str, ...], text: str, output: str, stopped: bool
) -> None:
    assert scan(stops, list(text)) == (output, stopped)


@pytest.mark.parametrize(("stops", "text", "output", "stopped"), STOP_CASES)
@given(cuts=st.lists(st.integers(min_value=0), max_size=12))
def test_stop_scanner_any_split(
    stops: tuple[str, ...], text: str, output: str, stopped: bool, cuts: list[int]
) -> None:
    assert scan(stops, split_at(text, cuts)) == (output, stopped)


small_text = st.text(alphabet="ab\n", max_size=30)
small_stops = st.lists(st.text(alphabet="ab\n", max_size=4), max_size=3)


@given(stops=small_stops, text=small_text, cuts=st.lists(st.integers(0), max_size=10))
def test_stop_scanner_matches_the_reference(
    stops: list[str], text: str, cuts: list[int]
) -> None:
    expected = reference(stops, text)
    assert scan(stops, [text]) == expected
    assert scan(stops, list(text)) == expected
    assert scan(stops, split_at(text, cuts)) == expected


def reference_match(stops: Sequence[str], text: str) -> str | None:
    """The stop string the reference stops at: the first to end, the longest of
    those ending there."""
    for end in range(1, len(text) + 1):
        ending = [stop for stop in stops if stop and text[:end].endswith(stop)]
        if ending:
            return max(ending, key=len)
    return None


@given(stops=small_stops, text=small_text, cuts=st.lists(st.integers(0), max_size=10))
def test_stop_scanner_names_the_stop_string_it_stopped_at(
    stops: list[str], text: str, cuts: list[int]
) -> None:
    scanner = StopScanner(stops)
    for piece in split_at(text, cuts):
        if scanner.feed(piece)[1]:
            break
    assert scanner.matched == reference_match(stops, text)


@given(stops=small_stops, pieces=st.lists(small_text, max_size=6))
def test_stop_scanner_holds_back_only_a_possible_stop_start(
    stops: list[str], pieces: list[str]
) -> None:
    scanner = StopScanner(stops)
    seen = emitted = ""
    for piece in pieces:
        text, stopped = scanner.feed(piece)
        seen += piece
        emitted += text
        if stopped:
            return
        held = seen[len(emitted) :]
        assert seen.startswith(emitted)
        # What waits is exactly the longest tail that could still grow into a stop.
        possible = [
            n
            for n in range(len(seen) + 1)
            if any(stop.startswith(seen[len(seen) - n :]) for stop in stops if stop)
        ]
        assert len(held) == max([0, *(n for n in possible if n > 0)])


def test_text_that_cannot_begin_a_stop_is_released_at_once() -> None:
    scanner = StopScanner(["</s>"])
    assert scanner.feed("Hello, wor") == ("Hello, wor", False)
    assert scanner.feed("ld<") == ("ld", False)
    assert scanner.feed("/") == ("", False)
    assert scanner.feed("b>") == ("</b>", False)
    assert scanner.feed(" </s") == (" ", False)
    assert scanner.feed("></s>") == ("", True)


def test_held_text_is_released_by_flush() -> None:
    scanner = StopScanner(["<|im_end|>"])
    assert scanner.feed("ends with <|im_") == ("ends with ", False)
    assert scanner.flush() == "<|im_"


def test_feeding_after_a_stop_is_a_bug() -> None:
    scanner = StopScanner(["."])
    assert scanner.feed("one. two") == ("one", True)
    with pytest.raises(RuntimeError, match="after the output ended"):
        scanner.feed("more")
    assert scanner.flush() == ""


def test_feeding_after_flush_is_a_bug() -> None:
    scanner = StopScanner(["."])
    assert scanner.flush() == ""
    with pytest.raises(RuntimeError, match="after the output ended"):
        scanner.feed("more")


UTF8_CASES = [
    b"",
    b"plain ascii",
    "café, 東京, 👋🏽".encode(),
    b"\xff\xfe bad start",
    b"caf\xc3",  # truncated at the very end
    b"\xe2\x82A",  # a truncated character followed by more text
    b"\x80\x80 lone continuations",
    b"\xed\xa0\x80",  # a UTF-16 surrogate, which UTF-8 forbids
    b"\xf0\x9f\x91",
    b"\xc0\xaf overlong slash",
    b"\xf4\x90\x80\x80 past U+10FFFF",
    b"ok \xf0\x9f\x98\x80 \xe6\x97\xa5 \xc3\xa9",
]


def decode(pieces: Iterable[bytes]) -> str:
    decoder = Utf8Decoder()
    return "".join(decoder.feed(piece) for piece in pieces) + decoder.flush()


def split_bytes(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)] or [b""]


@pytest.mark.parametrize("data", UTF8_CASES)
def test_decoder_whole_input(data: bytes) -> None:
    assert decode([data]) == data.decode("utf-8", "replace")


@pytest.mark.parametrize("data", UTF8_CASES)
def test_decoder_one_byte_at_a_time(data: bytes) -> None:
    assert decode(data[i : i + 1] for i in range(len(data))) == data.decode(
        "utf-8", "replace"
    )


@pytest.mark.parametrize("data", UTF8_CASES)
@given(cuts=st.lists(st.integers(min_value=0), max_size=12))
def test_decoder_any_split(data: bytes, cuts: list[int]) -> None:
    assert decode(split_bytes(data, cuts)) == data.decode("utf-8", "replace")


@given(data=st.binary(max_size=40), cuts=st.lists(st.integers(0), max_size=10))
def test_decoder_agrees_with_decoding_everything_at_once(
    data: bytes, cuts: list[int]
) -> None:
    expected = data.decode("utf-8", "replace")
    assert decode([data]) == expected
    assert decode(data[i : i + 1] for i in range(len(data))) == expected
    assert decode(split_bytes(data, cuts)) == expected


def test_a_split_character_waits_for_its_last_byte() -> None:
    decoder = Utf8Decoder()
    assert decoder.feed(b"hi \xf0\x9f") == "hi "
    assert decoder.feed(b"\x91") == ""
    assert decoder.feed(b"\x8b!") == "👋!"
    assert decoder.flush() == ""


def test_an_unfinished_character_at_the_end_becomes_a_replacement() -> None:
    decoder = Utf8Decoder()
    assert decoder.feed(b"caf\xc3") == "caf"
    assert decoder.flush() == "\ufffd"
    # Flushed, the decoder starts afresh.
    assert decoder.feed(b"\xa9") == "\ufffd"
