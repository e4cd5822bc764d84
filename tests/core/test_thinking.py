"""The thinking parser, fed whole, one character at a time, and cut anywhere.

Every case is run the three ways and must give the same segments once adjacent ones
of a kind are joined. A short non-incremental reading of the same rules (``reference``)
is the oracle for hypothesis: whatever the text and wherever it is cut, the parser
agrees with it, and nothing held back is lost at the end.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_core._errors import LocalProtocolError
from gateway_core._segments import Content, Segment, Thinking, merge_segments
from gateway_core._thinking import (
    THINKING_TRANSITIONS,
    ThinkingInput,
    ThinkingParser,
    ThinkingPhase,
    partial_tag_length,
    prompt_opens_thinking,
    strip_thinking,
)

OPEN, CLOSE = "<think>", "</think>"


def split_at(text: str, cuts: Iterable[int]) -> list[str]:
    points = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    pieces = [text[a:b] for a, b in itertools.pairwise(points)]
    assert "".join(pieces) == text  # nothing, trailing text included, is left out
    return pieces


def parse(
    pieces: Iterable[str],
    *,
    inside: bool = False,
    opening: str = OPEN,
    closing: str = CLOSE,
) -> list[Segment]:
    parser = ThinkingParser(opening=opening, closing=closing, inside=inside)
    out: list[Segment] = []
    for piece in pieces:
        emitted = parser.feed(piece)
        assert all(s.text for s in emitted)  # never an empty segment
        out += emitted
    out += parser.finish()
    assert parser.phase is ThinkingPhase.FINISHED
    return merge_segments(out)


def three_ways(
    text: str, *, inside: bool = False, opening: str = OPEN, closing: str = CLOSE
) -> list[Segment]:
    def run(pieces: list[str]) -> list[Segment]:
        return parse(pieces, inside=inside, opening=opening, closing=closing)

    whole = run([text])
    assert run(list(text)) == whole
    assert run(split_at(text, range(0, len(text), 3))) == whole
    return whole


def T(text: str) -> Thinking:
    return Thinking(text=text)


def C(text: str) -> Content:
    return Content(text=text)


CASES = [
    # (output, starts inside thinking, expected segments)
    ("<think>I reason</think>Answer", False, [T("I reason"), C("Answer")]),
    # Whitespace before and right after either tag goes; inside thinking it stays.
    ("  \n<think>\n  hmm, well  </think>\n\n Hi there", False,
     [T("hmm, well  "), C("Hi there")]),
    # Text before the opening tag: no thinking at all, tags are content.
    ("Hello <think>x</think>", False, [C("Hello <think>x</think>")]),
    (" x<think>y", False, [C(" x<think>y")]),
    ("<thinker>", False, [C("<thinker>")]),
    # A second block after the first is content.
    ("<think>a</think>b <think>c</think>", False, [T("a"), C("b <think>c</think>")]),
    # Empty thinking gives no thinking segment.
    ("<think>\n</think>\n\nHi", False, [C("Hi")]),
    # Something that starts like the closing tag but is not is thinking.
    ("<think>a </th b </think-ish></think>c", False,
     [T("a </th b </think-ish>"), C("c")]),
    # Whitespace inside the answer is kept.
    ("<think>t</think>line 1\n\nline 2\n", False, [T("t"), C("line 1\n\nline 2\n")]),
    # The prompt opened thinking.
    (" I think… </think> Answer", True, [T("I think… "), C("Answer")]),
    ("<think>\nfoo</think>bar", True, [T("foo"), C("bar")]),
    ("<think><think>x</think>", True, [T("<think>x")]),
    ("</think>answer only", True, [C("answer only")]),
    ("<thinx", True, [T("<thinx")]),
    # What is held at the end is released, not lost.
    ("<think>abc</th", False, [T("abc</th")]),
    ("abc</thi", True, [T("abc</thi")]),
    ("  <thi", False, [C("  <thi")]),
    ("  <thi", True, [T("<thi")]),
    (" \n ", False, [C(" \n ")]),
    ("<think>never closed", False, [T("never closed")]),
    ("<think>", False, []),
    ("", False, []),
    ("", True, []),
    # Unicode whitespace is whitespace; non-ASCII text passes through.
    ("\u3000<think>\u00e9t\u00e9</think>\u00a0\u2028r\u00e9ponse", False,
     [T("\u00e9t\u00e9"), C("r\u00e9ponse")]),
]  # fmt: skip


@pytest.mark.parametrize(("text", "inside", "expected"), CASES)
def test_cases_three_ways(text: str, inside: bool, expected: list[Segment]) -> None:
    assert three_ways(text, inside=inside) == expected


def test_other_tags() -> None:
    def mistral(text: str) -> list[Segment]:
        return three_ways(text, opening="[THINK]", closing="[/THINK]")

    assert mistral("[THINK] plan [/THINK] done") == [T("plan "), C("done")]
    assert mistral("<think>x</think>") == [C("<think>x</think>")]


@pytest.mark.parametrize(
    ("text", "flips_at"),
    [
        ("<think>ab</think>cd", len("<think>ab</think>") - 1),
        ("  Hello", 2),  # the first character that cannot begin the opening tag
        ("<tx", 2),
        ("<think>ab</thin", None),  # ends inside thinking: never done
    ],
)
def test_done_thinking_turns_true_at_the_right_character(
    text: str, flips_at: int | None
) -> None:
    parser = ThinkingParser()
    seen = []
    for char in text:
        parser.feed(char)
        seen.append(parser.done_thinking)
    first = seen.index(True) if True in seen else None
    assert first == flips_at
    assert all(seen[first:]) if first is not None else not any(seen)
    parser.finish()
    assert parser.done_thinking is (flips_at is not None)


def test_done_thinking_after_an_empty_or_blank_output() -> None:
    """An output with nothing but whitespace has no thinking: done, at the end."""
    blank = ThinkingParser()
    blank.feed("  ")
    states = [blank.done_thinking]
    blank.finish()
    states.append(blank.done_thinking)
    assert states == [False, True]
    primed = ThinkingParser(inside=True)
    primed.finish()
    assert not primed.done_thinking


def test_chunks_come_out_as_soon_as_they_are_known() -> None:
    parser = ThinkingParser()
    assert parser.feed("  <th") == []
    assert parser.feed("ink>Let me") == [T("Let me")]
    assert parser.feed(" see</") == [T(" see")]
    assert parser.feed("think") == []
    assert parser.feed(">\n") == []
    assert parser.phase is ThinkingPhase.CLOSED
    assert parser.feed("\nOK") == [C("OK")]
    assert parser.feed(" <think>") == [C(" <think>")]
    assert parser.finish() == []


def test_misuse_after_finish() -> None:
    parser = ThinkingParser()
    parser.finish()
    with pytest.raises(LocalProtocolError):
        parser.feed("x")
    with pytest.raises(LocalProtocolError):
        parser.finish()


def test_empty_tags_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        ThinkingParser(opening="")


def test_the_table_is_what_the_parser_does() -> None:
    """Fed one character at a time, the parser makes at most one move per feed; over
    the cases it makes every move of the table and no other."""
    sources = {phase for phase, _ in THINKING_TRANSITIONS}
    assert sources == set(ThinkingPhase) - {ThinkingPhase.FINISHED}
    for phase in sources:
        assert THINKING_TRANSITIONS[phase, ThinkingInput.END] is ThinkingPhase.FINISHED
    moves: set[tuple[ThinkingPhase, ThinkingPhase]] = set()
    # A call inside thinking (Qwen3), given the call tags; cut, and closed.
    with_calls = [
        ("<think>a<tool_call>{}</tool_call>b</think>c", False),
        ("a<tool_call>{", True),
    ]
    for text, inside, call in [
        *((text, inside, None) for text, inside, _ in CASES),
        *(
            (text, inside, ("<tool_call>", "</tool_call>"))
            for text, inside in with_calls
        ),
    ]:
        parser = ThinkingParser(inside=inside, call=call)
        for char in [*text, None]:
            before = parser.phase
            parser.feed(char) if char is not None else parser.finish()
            if parser.phase is not before:
                moves.add((before, parser.phase))
    assert moves == {
        (phase, target) for (phase, _), target in THINKING_TRANSITIONS.items()
    }


def test_partial_tag_length() -> None:
    assert partial_tag_length("abc</th", CLOSE) == 4
    assert partial_tag_length("abc<", CLOSE) == 1
    assert partial_tag_length("abc</think>", CLOSE) == 0  # whole tags are not partial
    assert partial_tag_length("", CLOSE) == 0


def test_prompt_opens_thinking() -> None:
    assert prompt_opens_thinking("<|im_start|>assistant\n<think>\n")
    assert not prompt_opens_thinking("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert not prompt_opens_thinking("<|im_start|>assistant\n")
    assert prompt_opens_thinking("x [THINK] ", "[THINK]")


def test_strip_thinking() -> None:
    assert (
        strip_thinking("<think>\nold reasoning\n</think>\n\nThe answer") == "The answer"
    )
    assert strip_thinking("No thinking here") == "No thinking here"
    assert strip_thinking("Use <think> tags") == "Use <think> tags"
    assert strip_thinking("<think>only thinking") == ""


def reference(text: str, *, inside: bool) -> list[Segment]:
    """The rules of the module docstring, read on the whole text at once."""
    rest = text.lstrip()
    if not inside and not rest.startswith(OPEN):
        return [C(text)] if text else []
    if rest.startswith(OPEN):
        rest = rest[len(OPEN) :]
    rest = rest.lstrip()
    end = rest.find(CLOSE)
    if end < 0:
        return [T(rest)] if rest else []
    thought, answer = rest[:end], rest[end + len(CLOSE) :].lstrip()
    out: list[Segment] = [T(thought)] if thought else []
    return [*out, C(answer)] if answer else out


FRAGMENTS = st.sampled_from(
    [
        OPEN,
        CLOSE,
        "<",
        "</",
        "<th",
        "</thi",
        "think",
        ">",
        "/",
        " ",
        "\n",
        "\t",
        "a",
        "é",
    ]
)
OUTPUTS = st.lists(FRAGMENTS, max_size=20).map("".join)


@given(text=OUTPUTS, inside=st.booleans(), cuts=st.lists(st.integers(0, 200)))
def test_any_cut_gives_the_reference_reading(
    text: str, inside: bool, cuts: list[int]
) -> None:
    expected = reference(text, inside=inside)
    assert parse([text], inside=inside) == expected
    assert parse(split_at(text, cuts), inside=inside) == expected
    assert parse(list(text), inside=inside) == expected


@given(text=st.text(max_size=40), cuts=st.lists(st.integers(0, 100)))
def test_any_text_any_cut(text: str, cuts: list[int]) -> None:
    for inside in (False, True):
        assert parse(split_at(text, cuts), inside=inside) == reference(
            text, inside=inside
        )


def test_demo_template_round_trip() -> None:
    """What the demo template writes for an assistant turn with thinking parses back."""
    demo_model = pytest.importorskip("gateway_core_adapters.demo_model")
    from gateway_core._templates import ChatTemplate

    template = ChatTemplate.compile(demo_model.CHAT_TEMPLATE)
    rendered = template.render(
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!", "thinking": "Greet back."},
        ],
        add_generation_prompt=False,
    )
    turn = rendered.split("<|im_start|>assistant\n", 1)[1].split("<|im_end|>", 1)[0]
    assert three_ways(turn) == [T("Greet back.\n"), C("Hello!")]
    assert strip_thinking(turn) == "Hello!"
    off = template.render(
        messages=[{"role": "user", "content": "Hi"}], enable_thinking=False
    )
    on = template.render(
        messages=[{"role": "user", "content": "Hi"}], enable_thinking=True
    )
    assert not prompt_opens_thinking(off)
    assert not prompt_opens_thinking(on)
