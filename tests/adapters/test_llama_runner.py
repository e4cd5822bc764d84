"""The llama.cpp runner, against real llama.cpp and the generated demo model.

The demo model has random weights, so its text is noise: these tests check
structure (token counts, done reasons, cancellation, determinism, cache reuse),
never wording.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio
import anyio.to_thread
import llama_cpp
import pytest
import trio
import trio.testing

from adapters import llama_generation, llama_runner
from adapters.demo_model import EOS_TOKEN, IM_START_TOKEN, write_demo_model
from adapters.handoff import Handoff
from adapters.llama_runner import (
    Generation,
    LlamaRunner,
    LoadParams,
    PromptTooLong,
    RunnerError,
    Sampling,
    TokenPiece,
)

CHAT = f"{IM_START_TOKEN}user\nhello{EOS_TOKEN}\n{IM_START_TOKEN}assistant\n"
GREEDY = Sampling(temperature=0.0)
# Penalise every token already seen: greedy output then never repeats and never
# ends early, whatever the weights (for the first hundred tokens, at least: see
# test_presence_penalty_covers_prompt_and_output).
NON_ENDING = Sampling(temperature=0.0, repeat_last_n=-1, presence_penalty=1e9)
# The longest a test waits for a generation's thread; only a bug takes that long.
THREAD_DEADLINE = 10.0


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.gguf"
    write_demo_model(path)
    return path


@pytest.fixture
async def runner(model_file: Path) -> AsyncIterator[LlamaRunner]:
    runner = await LlamaRunner.load(LoadParams(model_file=str(model_file), n_ctx=512))
    yield runner
    await runner.close()


async def collect(generation: Generation) -> list[TokenPiece]:
    async with generation:
        return [piece async for piece in generation]


async def take(generation: Generation, n: int) -> list[TokenPiece]:
    """The first ``n`` pieces (fewer if it ends sooner); then close the generation."""
    pieces: list[TokenPiece] = []
    async with generation:
        async for piece in generation:
            pieces.append(piece)
            if len(pieces) == n:
                break
    return pieces


async def ended_with_stop(
    runner: LlamaRunner, prompt: list[int]
) -> tuple[Generation, list[TokenPiece]]:
    """A seeded generation that ends at an end token: random weights make one soon."""
    for seed in range(20):
        generation = runner.generate(prompt, Sampling(seed=seed))
        pieces = await collect(generation)
        if generation.done_reason == "stop":
            return generation, pieces
    raise AssertionError("no seed ended with an end token")


async def test_load_reports_the_model(runner: LlamaRunner, model_file: Path) -> None:
    assert runner.model_file == str(model_file)
    assert runner.n_ctx == 512
    assert runner.n_ctx_train == 4096
    assert runner.eos_token is not None
    assert runner.is_eog(runner.eos_token)
    assert await runner.tokenize(EOS_TOKEN, add_bos=False) == [runner.eos_token]


async def test_load_writes_nothing_to_stderr(
    model_file: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    runner = await LlamaRunner.load(LoadParams(model_file=str(model_file), n_ctx=64))
    await collect(runner.generate([1, 2, 3], GREEDY))
    await runner.close()
    assert capfd.readouterr() == ("", "")


async def test_load_failures_raise_runner_error(tmp_path: Path) -> None:
    with pytest.raises(RunnerError, match="not found"):
        await LlamaRunner.load(LoadParams(model_file=str(tmp_path / "no"), n_ctx=64))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file" * 100)
    with pytest.raises(RunnerError, match=r"cannot load .*magic"):
        await LlamaRunner.load(LoadParams(model_file=str(junk), n_ctx=64))


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="n_ctx"):
        LoadParams(model_file="m", n_ctx=0)
    with pytest.raises(ValueError, match="n_gpu_layers"):
        LoadParams(model_file="m", n_ctx=8, n_gpu_layers=-2)
    with pytest.raises(ValueError, match="repeat_penalty"):
        Sampling(repeat_penalty=0.0)
    with pytest.raises(ValueError, match="repeat_last_n"):
        Sampling(repeat_last_n=-2)


async def test_token_table_holds_every_token_as_generated(
    runner: LlamaRunner,
) -> None:
    table = runner.token_table()
    assert len(table.pieces) == len(table.attributes) == runner.n_vocab
    assert table.eos == runner.eos_token
    assert table.eog == {t for t in range(runner.n_vocab) if runner.is_eog(t)}
    assert runner.eos_token in table.eog
    tokens = await runner.tokenize(CHAT + "héllo 🦙", add_bos=True)
    assert b"".join(table.pieces[t] for t in tokens) == await runner.detokenize(tokens)
    (im_start,) = await runner.tokenize(IM_START_TOKEN, add_bos=False)
    assert table.attributes[im_start] & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
    assert table.attributes[ord("a")] & llama_cpp.LLAMA_TOKEN_ATTR_NORMAL
    assert runner.token_table() is table


async def test_tokenize_round_trips_text_and_special_tokens(
    runner: LlamaRunner,
) -> None:
    text = "héllo 🦙 wörld\n"
    tokens = await runner.tokenize(CHAT + text, add_bos=True)
    assert await runner.detokenize(tokens) == (CHAT + text).encode()
    (im_start,) = await runner.tokenize(IM_START_TOKEN, add_bos=False)
    assert tokens.count(im_start) == 2
    spaced = await runner.tokenize(" leading space", add_bos=True)
    assert await runner.detokenize(spaced) == b" leading space"
    with pytest.raises(ValueError, match="token ids"):
        await runner.detokenize([runner.n_vocab])


async def test_generation_stops_at_end_of_generation(runner: LlamaRunner) -> None:
    prompt = await runner.tokenize(CHAT, add_bos=True)
    # Random weights: an end token comes soon, but after how many tokens depends
    # on the seed; every seed must end one of the two ways, and most with "stop".
    reasons = []
    for seed in range(8):
        before = runner.tokens_generated
        generation = runner.generate(prompt, Sampling(seed=seed))
        pieces = await collect(generation)
        reasons.append(generation.done_reason)
        assert generation.eval_count == len(pieces)
        assert not any(runner.is_eog(piece.token) for piece in pieces)
        if generation.done_reason == "stop":
            # The end token was sampled, not yielded.
            assert runner.tokens_generated - before == len(pieces) + 1
        else:
            assert len(prompt) + len(pieces) == runner.n_ctx
    assert "stop" in reasons
    assert set(reasons) <= {"stop", "length"}


async def test_pieces_are_the_detokenized_tokens(runner: LlamaRunner) -> None:
    prompt = await runner.tokenize(CHAT, add_bos=True)
    pieces = await take(runner.generate(prompt, Sampling(seed=3)), 100)
    assert b"".join(p.data for p in pieces) == await runner.detokenize(
        [p.token for p in pieces]
    )


async def test_full_context_ends_with_length(tmp_path: Path) -> None:
    # A model trained for 64 tokens: llama.cpp still allocates 256 cells, so the
    # runner must enforce the limit itself.
    path = tmp_path / "m64.gguf"
    write_demo_model(path, context_length=64)
    runner = await LlamaRunner.load(LoadParams(model_file=str(path), n_ctx=64))
    try:
        assert runner.n_ctx_train == 64
        prompt = list(range(10, 70))
        lengths = []
        for seed in range(10):
            generation = runner.generate(prompt, Sampling(seed=seed))
            pieces = await collect(generation)
            assert len(prompt) + len(pieces) <= 64
            if generation.done_reason == "length":
                lengths.append(len(pieces))
        assert lengths
        assert set(lengths) == {4}

        full = runner.generate(list(range(10, 74)), GREEDY)
        assert await collect(full) == []
        assert full.done_reason == "length"
        assert full.prompt_eval_count == 0
        with pytest.raises(PromptTooLong, match="65 tokens"):
            runner.generate(list(range(10, 75)), GREEDY)
    finally:
        await runner.close()


async def test_prompt_checks(runner: LlamaRunner) -> None:
    with pytest.raises(ValueError, match="at least one token"):
        runner.generate([], GREEDY)
    with pytest.raises(ValueError, match="token ids"):
        runner.generate([1, -1], GREEDY)


async def test_one_generation_at_a_time(runner: LlamaRunner) -> None:
    first = runner.generate([1, 2, 3], GREEDY)
    await first.__anext__()
    with pytest.raises(RuntimeError, match="already generating"):
        runner.generate([1, 2, 3], GREEDY)
    await first.aclose()
    await first.aclose()
    with pytest.raises(StopAsyncIteration):
        await first.__anext__()
    assert first.done_reason is None
    # A generation that runs to its end releases the runner by itself.
    second = runner.generate([i % 200 for i in range(runner.n_ctx - 2)], GREEDY)
    assert len([piece async for piece in second]) <= 2
    assert second.done_reason in ("stop", "length")
    await take(runner.generate([1, 2, 3], GREEDY), 1)


async def test_consumer_that_stops_pulling_stops_generation(
    runner: LlamaRunner,
) -> None:
    prompt = await runner.tokenize(CHAT, add_bos=True)
    # Penalise every token already seen: greedy output then never repeats and
    # never ends early, whatever the weights.
    sampling = Sampling(temperature=0.0, repeat_last_n=-1, presence_penalty=1e9)
    before = runner.tokens_generated
    async with runner.generate(prompt, sampling) as generation:
        for _ in range(3):
            await generation.__anext__()
        await trio.testing.wait_all_tasks_blocked()
        assert runner.tokens_generated - before == 3
    assert runner.tokens_generated - before == 3


@pytest.mark.parametrize("lookahead", [0, 16])
async def test_cancelled_consumer_stops_within_one_token(
    runner: LlamaRunner, lookahead: int
) -> None:
    prompt = await runner.tokenize(CHAT, add_bos=True)
    received: list[TokenPiece] = []
    ten = trio.Event()
    before = runner.tokens_generated
    generation = runner.generate(prompt, NON_ENDING, lookahead=lookahead)

    async def consume() -> None:
        async for piece in generation:
            received.append(piece)
            if len(received) == 10:
                ten.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        await ten.wait()
        # Now the consumer is inside a pull, or the thread is waiting for credit.
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    made = runner.tokens_generated - before
    assert len(received) >= 10
    # Beyond those received: the pending pull's token, and the ones made ahead.
    assert 0 <= made - len(received) <= 1 + lookahead
    # The cancellation waited for the thread: nothing is made after it returned.
    await trio.testing.wait_all_tasks_blocked()
    assert runner.tokens_generated - before == made
    # The cancelled generation is over and has released the runner.
    assert generation.done_reason is None
    await take(runner.generate(prompt, GREEDY), 1)
    assert runner.tokens_generated - before == made + 1


async def test_presence_penalty_covers_prompt_and_output(
    runner: LlamaRunner,
) -> None:
    prompt = await runner.tokenize(CHAT, add_bos=True)
    sampling = Sampling(temperature=0.0, repeat_last_n=-1, presence_penalty=1e9)
    tokens = await _first_tokens(runner, prompt, sampling, 100)
    assert len(tokens) == 100
    assert len(set(tokens)) == 100
    assert not set(tokens) & set(prompt)


async def _first_tokens(
    runner: LlamaRunner, prompt: list[int], sampling: Sampling, n: int = 20
) -> list[int]:
    return [piece.token for piece in await take(runner.generate(prompt, sampling), n)]


async def test_fixed_seed_is_deterministic(runner: LlamaRunner) -> None:
    prompt = await runner.tokenize(CHAT, add_bos=True)
    # Warm the cache first, so every run below decodes exactly the same batches.
    await _first_tokens(runner, prompt, GREEDY, 1)
    runs = [await _first_tokens(runner, prompt, Sampling(seed=7)) for _ in range(2)]
    assert runs[0] == runs[1]
    others = {
        tuple(await _first_tokens(runner, prompt, Sampling(seed=s))) for s in (8, 9)
    }
    assert others - {tuple(runs[0])}


@pytest.mark.parametrize(
    "sampling",
    [
        Sampling(top_k=1, temperature=1.5),
        Sampling(top_p=0.0, temperature=1.5),
        Sampling(min_p=1.0, temperature=1.5),
    ],
    ids=["top_k", "top_p", "min_p"],
)
async def test_narrow_filters_are_greedy(
    runner: LlamaRunner, sampling: Sampling
) -> None:
    prompt = await runner.tokenize(CHAT, add_bos=True)
    await _first_tokens(runner, prompt, GREEDY, 1)
    greedy = await _first_tokens(runner, prompt, GREEDY)
    # seed -1: a fresh random seed each time; the filter leaves one candidate.
    assert await _first_tokens(runner, prompt, sampling) == greedy
    assert await _first_tokens(runner, prompt, sampling) == greedy


async def test_kv_cache_prefix_is_reused(runner: LlamaRunner) -> None:
    prompt = await runner.tokenize(CHAT, add_bos=True)
    first = runner.generate(prompt, GREEDY)
    await take(first, 1)
    assert (first.prompt_eval_count, first.prompt_reused_count) == (len(prompt), 0)
    assert first.prompt_eval_duration > 0

    # The same prompt: everything but the last token, whose logits are needed.
    again = runner.generate(prompt, GREEDY)
    await take(again, 1)
    assert (again.prompt_eval_count, again.prompt_reused_count) == (1, len(prompt) - 1)

    # A chat's next turn: prompt, the reply and more. After a "stop" the cache
    # holds the prompt and every yielded token.
    _, output = await ended_with_stop(runner, prompt)
    follow_up = [*prompt, *(p.token for p in output), *prompt]
    turn = runner.generate(follow_up, GREEDY)
    await take(turn, 3)
    assert turn.prompt_reused_count == len(prompt) + len(output)
    assert turn.prompt_eval_count == len(follow_up) - turn.prompt_reused_count

    # A generation closed after 3 tokens decoded the first 2 of them.
    longer = [*follow_up, *(await runner.tokenize("more", add_bos=False))]
    longer_turn = runner.generate(longer, GREEDY)
    await take(longer_turn, 1)
    assert longer_turn.prompt_reused_count == len(follow_up)

    # A prompt that differs early reuses only the common part.
    changed = [*follow_up[:5], (follow_up[5] + 1) % runner.n_vocab, *follow_up[6:]]
    fork = runner.generate(changed, GREEDY)
    await take(fork, 1)
    assert fork.prompt_reused_count == 5


async def test_long_prompts_are_evaluated_in_batches(model_file: Path) -> None:
    runner = await LlamaRunner.load(
        LoadParams(model_file=str(model_file), n_ctx=256, n_batch=16, n_threads=1)
    )
    try:
        assert runner.n_batch == 16
        prompt = list(range(100))
        tokens = await _first_tokens(runner, prompt, GREEDY, 5)
        # The same greedy tokens when the prompt goes in as one batch.
        assert await _first_tokens(runner, prompt[:99], GREEDY, 1)
        single = await LlamaRunner.load(
            LoadParams(model_file=str(model_file), n_ctx=256, n_threads=1)
        )
        try:
            assert single.n_batch >= 100
            assert await _first_tokens(single, prompt, GREEDY, 5) == tokens
        finally:
            await single.close()
    finally:
        await runner.close()


async def test_close_ends_the_active_generation(model_file: Path) -> None:
    runner = await LlamaRunner.load(LoadParams(model_file=str(model_file), n_ctx=64))
    generation = runner.generate([1, 2, 3], GREEDY)
    await generation.__anext__()
    await runner.close()
    await runner.close()
    with pytest.raises(RunnerError, match="closed"):
        await generation.__anext__()
    with pytest.raises(RunnerError, match="closed"):
        await runner.tokenize("x", add_bos=False)
    with pytest.raises(RunnerError, match="closed"):
        runner.generate([1], GREEDY)


def test_works_under_asyncio(model_file: Path) -> None:
    async def main() -> tuple[str | None, int, int]:
        runner = await LlamaRunner.load(
            LoadParams(model_file=str(model_file), n_ctx=64)
        )
        try:
            prompt = await runner.tokenize("hello", add_bos=True)
            generation = runner.generate(prompt, Sampling(seed=1))
            pieces = await collect(generation)
            return generation.done_reason, len(prompt), len(pieces)
        finally:
            await runner.close()

    reason, n_prompt, n_output = anyio.run(main, backend="asyncio")
    assert reason == "stop" or n_prompt + n_output == 64


# -- lookahead: tokens made before they are asked for ---------------------------------


class WatchedHandoff(Handoff[TokenPiece]):
    """A generation's ``Handoff`` that lets a test see where the thread is.

    The thread is a real OS thread, out of ``wait_all_tasks_blocked``'s sight.
    ``out_of_credit(made)`` waits until it has put ``made`` tokens and waits for
    credit: with no more tokens asked for it stays there, so counts read after it
    are exact, not a race.
    """

    def __init__(self, *, lookahead: int = 0) -> None:
        super().__init__(lookahead=lookahead)
        self._moved = threading.Condition()
        self._asking = False
        self.puts = 0

    def wait_for_credit(self) -> bool:
        with self._moved:
            self._asking = True
            self._moved.notify_all()
        try:
            return super().wait_for_credit()
        finally:
            with self._moved:
                self._asking = False

    def put(self, item: TokenPiece) -> None:
        super().put(item)
        with self._moved:
            self.puts += 1
            self._moved.notify_all()

    async def out_of_credit(self, made: int) -> None:
        def wait() -> tuple[int, bool]:
            with self._moved:
                self._moved.wait_for(
                    lambda: self.puts > made or (self._asking and self.puts == made),
                    timeout=THREAD_DEADLINE,
                )
                return self.puts, self._asking

        assert await anyio.to_thread.run_sync(wait) == (made, True)


@pytest.fixture
def handoffs(monkeypatch: pytest.MonkeyPatch) -> list[WatchedHandoff]:
    """The handoffs of the generations started from now on, watched, in order."""
    made: list[WatchedHandoff] = []

    def watched(*, lookahead: int = 0) -> WatchedHandoff:
        made.append(WatchedHandoff(lookahead=lookahead))
        return made[-1]

    monkeypatch.setattr(llama_generation, "Handoff", watched)
    return made


def ready(generation: Generation, n: int) -> list[TokenPiece]:
    """``n`` tokens the thread has already made, taken without waiting."""
    pieces = [generation.next_ready() for _ in range(n)]
    assert None not in pieces, pieces
    return [piece for piece in pieces if piece is not None]


def texts(pieces: Sequence[TokenPiece]) -> list[tuple[int, bytes]]:
    """Tokens and their bytes, without the durations (never equal twice)."""
    return [(piece.token, piece.data) for piece in pieces]


@pytest.mark.parametrize("lookahead", [1, 4])
async def test_lookahead_bounds_the_tokens_made_beyond_those_asked_for(
    runner: LlamaRunner, handoffs: list[WatchedHandoff], lookahead: int
) -> None:
    prompt = await runner.tokenize(CHAT, add_bos=True)
    before = runner.tokens_generated
    async with runner.generate(prompt, NON_ENDING, lookahead=lookahead) as generation:
        for _ in range(3):
            await generation.__anext__()
        (handoff,) = handoffs
        await handoff.out_of_credit(3 + lookahead)
        assert runner.tokens_generated - before == 3 + lookahead
        assert generation.eval_count == 3
        await generation.__anext__()
        await handoff.out_of_credit(4 + lookahead)
        assert runner.tokens_generated - before == 4 + lookahead


async def test_without_lookahead_no_token_is_ready_before_it_is_asked_for(
    runner: LlamaRunner, handoffs: list[WatchedHandoff]
) -> None:
    prompt = await runner.tokenize(CHAT, add_bos=True)
    before = runner.tokens_generated
    async with runner.generate(prompt, NON_ENDING) as generation:
        assert generation.next_ready() is None  # nothing runs before the first pull
        await generation.__anext__()
        (handoff,) = handoffs
        await handoff.out_of_credit(1)
        assert generation.next_ready() is None
        # Finding nothing ready asked for nothing: no token was made for it.
        await handoff.out_of_credit(1)
        assert runner.tokens_generated - before == 1


async def test_tokens_made_ahead_are_handed_out_in_order(
    runner: LlamaRunner, handoffs: list[WatchedHandoff]
) -> None:
    """Greedy sampling after the same prompt makes the same tokens, so those made
    ahead and taken with ``next_ready`` must be those of a generation without
    lookahead, in the same order."""
    prompt = await runner.tokenize(CHAT, add_bos=True)
    lookahead = 4
    expected = await take(runner.generate(prompt, NON_ENDING), 1 + 2 * lookahead)
    async with runner.generate(prompt, NON_ENDING, lookahead=lookahead) as generation:
        assert generation.next_ready() is None  # nothing runs before the first pull
        pieces = [await generation.__anext__()]
        handoff = handoffs[-1]
        await handoff.out_of_credit(1 + lookahead)
        pieces += ready(generation, lookahead)
        # Each token taken asked for one more: the thread made another lookahead.
        await handoff.out_of_credit(1 + 2 * lookahead)
        pieces += ready(generation, lookahead)
    assert texts(pieces) == texts(expected)
    assert generation.eval_count == len(pieces)


async def test_eval_counts_are_the_tokens_yielded_either_way(
    runner: LlamaRunner, handoffs: list[WatchedHandoff]
) -> None:
    prompt = await runner.tokenize(CHAT, add_bos=True)
    lookahead = 4
    before = runner.tokens_generated
    async with runner.generate(prompt, NON_ENDING, lookahead=lookahead) as generation:
        pieces = [await generation.__anext__() for _ in range(2)]
        (handoff,) = handoffs
        await handoff.out_of_credit(2 + lookahead)
        pieces += ready(generation, lookahead)
        pieces.append(await generation.__anext__())
        await handoff.out_of_credit(len(pieces) + lookahead)
    assert generation.eval_count == len(pieces) == 7
    # Tokens made ahead and never yielded count in tokens_generated only.
    assert runner.tokens_generated - before == len(pieces) + lookahead
    assert all(piece.duration > 0 for piece in pieces)
    assert generation.eval_duration == pytest.approx(
        sum(piece.duration for piece in pieces)
    )


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


async def test_closing_a_generation_that_ran_ahead_keeps_the_kv_cache_consistent(
    runner: LlamaRunner, handoffs: list[WatchedHandoff]
) -> None:
    """The thread decodes each token it made ahead before making the next; the
    runner's record of the KV cache must hold exactly those, or a follow-up that
    reuses them would attend to keys that are not there."""
    prompt = await runner.tokenize(CHAT, add_bos=True)
    lookahead = 4
    made = [p.token for p in await take(runner.generate(prompt, NON_ENDING), 7)]
    async with runner.generate(prompt, NON_ENDING, lookahead=lookahead) as generation:
        yielded = [(await generation.__anext__()).token for _ in range(3)]
        await handoffs[-1].out_of_credit(3 + lookahead)
    assert yielded == made[:3]
    # Made 7 tokens; decoded all but the last (as without lookahead: a token is
    # decoded when the next one is made). So the follow-up reuses the 3 yielded
    # tokens, and a 4th if "more" happens to start with it.
    follow_up = [*prompt, *yielded, *await runner.tokenize("more", add_bos=False)]
    turn = runner.generate(follow_up, GREEDY)
    reused = await take(turn, 5)
    decoded = [*prompt, *made[:-1]]
    assert turn.prompt_reused_count == common_prefix(decoded, follow_up[:-1])
    # The same follow-up on a cache that shares nothing with it: the same tokens.
    await take(runner.generate([(follow_up[0] + 1) % runner.n_vocab], GREEDY), 1)
    fresh = runner.generate(follow_up, GREEDY)
    assert texts(await take(fresh, 5)) == texts(reused)
    assert fresh.prompt_reused_count == 0


async def test_long_texts_tokenize_the_same_in_a_thread_and_inline(
    runner: LlamaRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = CHAT + "héllo 🦙 wörld\n" * 100
    data = text.encode()
    assert len(data) > llama_runner.INLINE_TOKENIZE_BYTES
    # Which thread tokenized, to know that each path was taken.
    threads: list[threading.Thread] = []
    tokenize = llama_runner._tokenize

    def spy(vocab: llama_cpp.llama_vocab_p, data: bytes, add_bos: bool) -> list[int]:
        threads.append(threading.current_thread())
        return tokenize(vocab, data, add_bos)

    monkeypatch.setattr(llama_runner, "_tokenize", spy)
    monkeypatch.setattr(llama_runner, "INLINE_TOKENIZE_BYTES", len(data) - 1)
    in_thread = await runner.tokenize(text, add_bos=True)
    monkeypatch.setattr(llama_runner, "INLINE_TOKENIZE_BYTES", len(data))
    inline = await runner.tokenize(text, add_bos=True)
    here = threading.current_thread()
    assert [thread is here for thread in threads] == [False, True]
    assert inline == in_thread
    assert await runner.detokenize(inline) == data
