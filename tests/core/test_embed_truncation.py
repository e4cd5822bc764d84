"""The truncate-and-retry machine, driven result by result with a scripted runner.

The scripted tokenizer maps each character to one token, and the runner adds the
special tokens its ``TokenizerInfo`` announces. One variant "drifts": every
detokenize/tokenize round trip grows the text, as real tokenizers sometimes do at a
cut, so that the retry bound is reached.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_core import (
    ContextOverflow,
    Detokenize,
    Embed,
    Embedded,
    LocalProtocolError,
    Result,
    Text,
    Tokenize,
    TokenizerInfo,
    Tokens,
)
from gateway_core._embed_truncation import (
    MAX_ATTEMPTS,
    TRANSITIONS,
    EmbedFailed,
    EmbedFinished,
    Phase,
    Step,
    TruncateRetry,
)

INFO = TokenizerInfo(context_length=10, add_bos=True, add_eos=True)  # 8 for text


class Runner:
    """Answers the machine's effects; ``drift`` characters appear per round trip."""

    def __init__(self, info: TokenizerInfo = INFO, *, drift: str = "") -> None:
        self.info = info
        self.drift = drift
        self.effects: list[Step] = []

    def answer(self, step: Step) -> Result:
        self.effects.append(step)
        match step:
            case Embed(texts=texts):
                for index, text in enumerate(texts):
                    count = len(text) + self.info.special_tokens
                    if count > self.info.context_length:
                        return ContextOverflow(index=index, tokens=count)
                counts = tuple(len(t) + self.info.special_tokens for t in texts)
                vectors = tuple((float(len(t)), 1.0) for t in texts)
                return Embedded(vectors=vectors, token_counts=counts, duration=0.01)
            case Tokenize(text=text, add_bos=add_bos):
                assert add_bos is False  # the budget counts the text's own tokens
                return Tokens(ids=tuple(map(ord, text)))
            case Detokenize(ids=ids):
                return Text(text="".join(map(chr, ids)) + self.drift)
        raise AssertionError(step)


def drive(
    machine: TruncateRetry, runner: Runner, limit: int = 50
) -> EmbedFinished | EmbedFailed:
    step = machine.start()
    for _ in range(limit):
        if isinstance(step, EmbedFinished | EmbedFailed):
            return step
        step = machine.feed(runner.answer(step))
    raise AssertionError("the machine did not finish")


def test_inputs_that_fit_take_one_embed_and_nothing_else() -> None:
    runner = Runner()
    end = drive(TruncateRetry(("short", "ok"), tokenizer=INFO, truncate=True), runner)
    assert isinstance(end, EmbedFinished)
    assert [type(s) for s in runner.effects] == [Embed]
    assert end.texts == ("short", "ok")
    assert end.result.token_counts == (7, 4)


def test_an_overflow_is_cut_to_the_budget_and_embedded_again() -> None:
    runner = Runner()
    machine = TruncateRetry(("fits", "x" * 30), tokenizer=INFO, truncate=True)
    end = drive(machine, runner)
    assert isinstance(end, EmbedFinished)
    assert [type(s) for s in runner.effects] == [Embed, Tokenize, Detokenize, Embed]
    assert end.texts == ("fits", "x" * 8)  # 10 minus BOS and EOS
    assert machine.phase is Phase.DONE
    assert machine.cuts == 1


def test_with_truncate_off_an_overflow_is_a_400() -> None:
    machine = TruncateRetry(("x" * 30,), tokenizer=INFO, truncate=False)
    end = drive(machine, Runner())
    assert end == EmbedFailed(
        status=400, message="the input length exceeds the context length"
    )
    assert machine.phase is Phase.FAILED


def test_a_context_with_no_room_for_text_is_a_400() -> None:
    tiny = TokenizerInfo(context_length=2, add_bos=True, add_eos=True)
    end = drive(TruncateRetry(("abc",), tokenizer=tiny, truncate=True), Runner(tiny))
    assert end == EmbedFailed(
        status=400, message="input after truncation exceeds maximum context length"
    )


def test_a_round_trip_that_grows_is_corrected_then_given_up_on() -> None:
    runner = Runner(drift="++")  # every detokenize adds two tokens
    end = drive(TruncateRetry(("x" * 30,), tokenizer=INFO, truncate=True), runner)
    assert end == EmbedFailed(
        status=400,
        message="input exceeds maximum context length and cannot be truncated further",
    )
    cuts = [s for s in runner.effects if isinstance(s, Detokenize)]
    assert len(cuts) == MAX_ATTEMPTS
    # First the budget (8), then the text shrinks by exactly the excess seen (2).
    assert [len(c.ids) for c in cuts] == [8, 8, 8]
    tokenized = [s for s in runner.effects if isinstance(s, Tokenize)]
    assert [len(t.text) for t in tokenized] == [30, 10, 10]


def test_a_round_trip_that_grows_once_converges_on_the_retry() -> None:
    class OnceDrifting(Runner):
        def answer(self, step: Step) -> Result:
            result = super().answer(step)
            self.drift = ""  # only the first round trip adds a token
            return result

    runner = OnceDrifting(drift="+")
    end = drive(TruncateRetry(("y" * 30,), tokenizer=INFO, truncate=True), runner)
    assert isinstance(end, EmbedFinished)
    (text,) = end.texts
    assert len(text) + INFO.special_tokens <= INFO.context_length


def test_only_the_input_that_overflowed_is_touched() -> None:
    runner = Runner()
    texts = ("a" * 20, "fine", "b" * 20)
    end = drive(TruncateRetry(texts, tokenizer=INFO, truncate=True), runner)
    assert isinstance(end, EmbedFinished)
    assert end.texts == ("a" * 8, "fine", "b" * 8)
    assert sum(isinstance(s, Embed) for s in runner.effects) == 3


def test_every_transition_of_the_table_is_taken_by_these_scenarios() -> None:
    taken: set[tuple[Phase, Phase]] = set()
    scenarios = [
        (("ok",), True, Runner()),
        (("x" * 30,), True, Runner()),
        (("x" * 30,), False, Runner()),
        (("x" * 30,), True, Runner(drift="++")),
        (("abc",), True, Runner(TokenizerInfo(context_length=2, add_bos=True,
                                              add_eos=True))),
    ]  # fmt: skip
    for texts, truncate, runner in scenarios:
        machine = TruncateRetry(texts, tokenizer=runner.info, truncate=truncate)
        step = machine.start()
        while not isinstance(step, EmbedFinished | EmbedFailed):
            before = machine.phase
            step = machine.feed(runner.answer(step))
            taken.add((before, machine.phase))
    possible = {
        (phase, target)
        for (phase, _), targets in TRANSITIONS.items()
        for target in targets
    }
    assert taken == possible


@pytest.mark.parametrize(
    "result",
    [
        Text(text="out of turn"),
        Tokens(ids=(1,)),
    ],
)
def test_a_result_out_of_turn_is_misuse(result: Result) -> None:
    machine = TruncateRetry(("a",), tokenizer=INFO, truncate=True)
    machine.start()
    with pytest.raises(LocalProtocolError):
        machine.feed(result)


def test_an_overflow_of_an_input_that_does_not_exist_is_misuse() -> None:
    machine = TruncateRetry(("a",), tokenizer=INFO, truncate=True)
    machine.start()
    with pytest.raises(LocalProtocolError):
        machine.feed(ContextOverflow(index=3, tokens=99))


@given(
    texts=st.lists(st.text(alphabet="abc", max_size=40), min_size=1, max_size=5),
    context=st.integers(min_value=3, max_value=30),
    bos=st.booleans(),
    eos=st.booleans(),
)
def test_with_an_exact_tokenizer_every_batch_fits_after_truncation(
    texts: list[str], context: int, bos: bool, eos: bool
) -> None:
    info = TokenizerInfo(context_length=context, add_bos=bos, add_eos=eos)
    end = drive(
        TruncateRetry(tuple(texts), tokenizer=info, truncate=True), Runner(info)
    )
    assert isinstance(end, EmbedFinished)
    budget = context - info.special_tokens
    for original, final in zip(texts, end.texts, strict=True):
        assert final == original[:budget]  # a prefix, as long as the budget allows
