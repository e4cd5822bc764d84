"""The decode loop, in this process, against real llama.cpp and the demo model.

The demo model has random weights, so its text is noise: these tests check
structure (slots, batching, credit, cancellation, cache reuse, determinism), never
wording. The engine runs in a thread of its own, as in a runner process; its
messages are collected by id.
"""

from __future__ import annotations

import queue
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway_core_adapters.runner import llama
from gateway_core_adapters.runner.engine import (
    SLOT_MOVES,
    Engine,
    Job,
    Slot,
    SlotMove,
    SlotPhase,
)
from gateway_core_adapters.runner.protocol import (
    Ended,
    Failed,
    Message,
    Pieces,
    PromptDone,
)
from gateway_core_adapters.runner.values import LoadParams, Sampling

from .conftest import CHAT

GREEDY = Sampling(temperature=0.0)
# Penalise every token already seen: greedy output then never repeats and never
# ends early, whatever the weights (for the first hundred tokens at least).
NON_ENDING = Sampling(temperature=0.0, repeat_last_n=-1, presence_penalty=1e9)
DEADLINE = 30.0


@dataclass
class Run:
    """One engine on its thread, and what it said, by request id."""

    engine: Engine
    model: llama.Model
    inbox: queue.SimpleQueue[Message] = field(default_factory=queue.SimpleQueue)
    said: dict[int, list[Message]] = field(default_factory=lambda: defaultdict(list))
    next_id: int = 1

    def start(
        self,
        prompt: list[int],
        sampling: Sampling = GREEDY,
        *,
        credit: int = 10_000,
        limit: int = 0,
    ) -> int:
        request_id = self.next_id
        self.next_id += 1
        self.engine.submit(
            Job(
                id=request_id,
                prompt=prompt,
                sampling=sampling,
                constraint=None,
                credit=credit,
                limit=limit,
            )
        )
        return request_id

    def pump(self) -> Message:
        message = self.inbox.get(timeout=DEADLINE)
        request_id = getattr(message, "id", 0)
        self.said[request_id].append(message)
        return message

    def until_done(self, request_id: int) -> Ended | Failed:
        while not self.said[request_id] or not isinstance(
            self.said[request_id][-1], Ended | Failed
        ):
            self.pump()
        last = self.said[request_id][-1]
        assert isinstance(last, Ended | Failed)
        return last

    def reason(self, request_id: int) -> str:
        """How the request ended (it must not have failed)."""
        end = self.until_done(request_id)
        assert isinstance(end, Ended), end
        return end.reason

    def until_tokens(self, request_id: int, count: int) -> None:
        while len(self.tokens(request_id)) < count:
            self.pump()

    def tokens(self, request_id: int) -> list[int]:
        return [
            token
            for message in self.said[request_id]
            if isinstance(message, Pieces)
            for token in message.tokens
        ]

    def prompt_done(self, request_id: int) -> PromptDone:
        (done,) = [m for m in self.said[request_id] if isinstance(m, PromptDone)]
        return done


@pytest.fixture
def run(model_file: Path, request: pytest.FixtureRequest) -> Iterator[Run]:
    marker = request.node.get_closest_marker("engine")
    options = dict(marker.kwargs) if marker else {}
    params = LoadParams(
        model_file=str(model_file),
        n_ctx=options.pop("n_ctx", 512),
        slots=options.pop("slots", 4),
        n_batch=options.pop("n_batch", 512),
    )
    model = llama.load(params)
    inbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
    engine = Engine(model, send=inbox.put)
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    try:
        yield Run(engine=engine, model=model, inbox=inbox)
    finally:
        engine.stop()
        thread.join(DEADLINE)
        assert not thread.is_alive()
        model.close()


def chat_prompt(model: llama.Model, text: str = "hello") -> list[int]:
    return model.tokenize(CHAT.replace("hello", text).encode(), add_bos=False)


# -- the slot machine ----------------------------------------------------------------


def test_every_slot_move_outside_the_table_raises() -> None:
    for phase in SlotPhase:
        for move in SlotMove:
            slot = Slot(seq=0, phase=phase)
            if (phase, move) in SLOT_MOVES:
                slot.move(move)
                assert slot.phase is SLOT_MOVES[phase, move]
            else:
                with pytest.raises(RuntimeError, match="cannot"):
                    slot.move(move)


# -- one request ---------------------------------------------------------------------


def test_a_generation_reports_its_prompt_then_tokens_then_its_end(run: Run) -> None:
    prompt = chat_prompt(run.model)
    request = run.start(prompt, Sampling(seed=3))
    end = run.until_done(request)
    messages = run.said[request]
    assert isinstance(messages[0], PromptDone)
    assert messages[0].evaluated == len(prompt)
    assert messages[0].reused == 0
    assert all(isinstance(m, Pieces) for m in messages[1:-1])
    assert isinstance(end, Ended)
    assert end.reason in ("stop", "length")
    pieces = [m for m in messages if isinstance(m, Pieces)]
    for message in pieces:
        for token, data in zip(message.tokens, message.data, strict=True):
            assert data == run.model.pieces.piece(token)
            assert not run.model.pieces.is_eog(token)


@pytest.mark.engine(n_ctx=256)
def test_a_full_context_ends_with_length(run: Run) -> None:
    # Random weights end a generation whenever the end token wins; among a few
    # seeds, one fills the context first.
    prompt = chat_prompt(run.model)
    for seed in range(20):
        request = run.start(prompt, Sampling(seed=seed, temperature=0.1))
        if run.reason(request) == "length":
            break
    else:
        raise AssertionError("no seed filled the context")
    assert len(prompt) + len(run.tokens(request)) == 256


def test_a_limit_ends_the_generation_with_length(run: Run) -> None:
    request = run.start(chat_prompt(run.model), NON_ENDING, limit=7)
    assert run.reason(request) == "length"
    assert len(run.tokens(request)) == 7
    end = run.said[request][-1]
    assert isinstance(end, Ended)
    assert end.made == 7  # and not one more, however much credit it had


@pytest.mark.engine(n_ctx=256)
def test_prompts_too_long_fail_and_a_prompt_that_fills_the_context_has_no_room(
    run: Run,
) -> None:
    too_long = run.start([65] * 257)
    failure = run.until_done(too_long)
    assert isinstance(failure, Failed)
    assert failure.kind == "prompt_too_long"
    full = run.start([65] * 256)
    assert run.reason(full) == "length"
    assert run.tokens(full) == []


# -- several at once -----------------------------------------------------------------


@pytest.mark.engine(slots=16, n_ctx=256)
def test_sixteen_streams_get_the_tokens_they_get_alone(run: Run) -> None:
    """Each slot is a sequence of its own (no unified cache): what shares the batch
    cannot change a slot's logits, so seeded and greedy sampling agree."""
    prompt = chat_prompt(run.model)
    samplings = [Sampling(seed=seed) for seed in range(12)] + [GREEDY] * 4
    alone = []
    for sampling in samplings:
        request = run.start(prompt, sampling)
        run.until_done(request)
        alone.append(run.tokens(request))
    calls = run.engine.decode_calls
    together = [run.start(prompt, sampling) for sampling in samplings]
    for request in together:
        run.until_done(request)
    assert [run.tokens(request) for request in together] == alone
    # They really shared decodes: far fewer calls than tokens.
    assert run.engine.decode_calls - calls < sum(map(len, alone)) / 2


def test_a_stream_without_credit_waits_while_the_others_go_on(run: Run) -> None:
    prompt = chat_prompt(run.model)
    slow = run.start(prompt, NON_ENDING, credit=2)
    fast = run.start(prompt, NON_ENDING)
    run.until_tokens(fast, 50)
    assert len(run.tokens(slow)) == 2
    run.engine.grant(slow, 3)
    run.until_tokens(slow, 5)
    run.engine.cancel(fast)
    run.engine.cancel(slow)
    assert run.reason(fast) == "cancelled"
    assert run.reason(slow) == "cancelled"
    assert len(run.tokens(slow)) == 5


@pytest.mark.engine(slots=1)
def test_a_cancel_frees_the_slot_for_the_next_request(run: Run) -> None:
    prompt = chat_prompt(run.model)
    first = run.start(prompt, NON_ENDING)
    waiting = run.start(prompt, NON_ENDING)  # one slot: it waits
    run.until_tokens(first, 3)
    assert run.tokens(waiting) == []
    run.engine.cancel(first)
    assert run.reason(first) == "cancelled"
    run.until_tokens(waiting, 3)
    calls = run.engine.decode_calls
    run.engine.cancel(waiting)
    run.until_done(waiting)
    # Cancelled within a step: at most the step in progress finished after it.
    assert run.engine.decode_calls - calls <= 2


def test_a_request_waiting_for_a_slot_can_be_cancelled(run: Run) -> None:
    prompt = chat_prompt(run.model)
    busy = [run.start(prompt, NON_ENDING) for _ in range(4)]
    queued = run.start(prompt)
    run.engine.cancel(queued)
    assert run.reason(queued) == "cancelled"
    assert run.said[queued] == [Ended(id=queued, reason="cancelled", made=0)]
    for request in busy:
        run.engine.cancel(request)
        run.until_done(request)


@pytest.mark.engine(n_batch=32, n_ctx=512)
def test_a_long_prompt_is_evaluated_in_chunks_beside_a_stream(run: Run) -> None:
    """Chunked prefill: while a 300-token prompt goes in 32 tokens a step, the
    streaming slot still gets one token every step."""
    stream = run.start(chat_prompt(run.model), NON_ENDING)
    run.until_tokens(stream, 2)
    before = len(run.tokens(stream))
    long_prompt = [65 + i % 26 for i in range(300)]
    late = run.start(long_prompt, GREEDY)
    while not any(isinstance(m, PromptDone) for m in run.said[late]):
        run.pump()
    # 300 prompt tokens in chunks of at most 31 (one place is the stream's): at
    # least ten steps, each of which also made a token for the stream.
    assert len(run.tokens(stream)) - before >= 10
    for request in (stream, late):
        run.engine.cancel(request)
        run.until_done(request)


# -- the prompt cache ----------------------------------------------------------------


def test_the_next_turn_evaluates_only_what_is_new(run: Run) -> None:
    prompt = chat_prompt(run.model)
    first = run.start(prompt, NON_ENDING)
    run.until_tokens(first, 5)
    run.engine.cancel(first)
    run.until_done(first)
    answer = run.tokens(first)
    follow_up = chat_prompt(run.model, "and then?")
    second_prompt = prompt + answer + follow_up
    second = run.start(second_prompt)
    run.until_done(second)
    done = run.prompt_done(second)
    # Everything the first request left in its slot is reused: its prompt and the
    # tokens decoded after it (the last sampled token was never decoded).
    assert done.reused == len(prompt) + len(answer) - 1
    assert done.evaluated == len(second_prompt) - done.reused


def test_a_request_goes_to_the_slot_with_the_longest_shared_prefix(run: Run) -> None:
    prompts = [chat_prompt(run.model, text) for text in ("one", "two", "three")]
    for prompt in prompts:
        request = run.start(prompt, NON_ENDING)
        run.until_tokens(request, 1)
        run.engine.cancel(request)
        run.until_done(request)
    again = run.start(prompts[1])
    run.until_done(again)
    assert run.prompt_done(again).reused == len(prompts[1]) - 1


def test_the_same_seed_gives_the_same_tokens_with_or_without_cache(run: Run) -> None:
    prompt = chat_prompt(run.model)
    sampling = Sampling(seed=42)
    first = run.start(prompt, sampling)
    run.until_done(first)
    second = run.start(prompt, sampling)
    run.until_done(second)
    assert run.prompt_done(second).reused == len(prompt) - 1
    assert run.tokens(first) == run.tokens(second)
