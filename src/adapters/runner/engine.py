"""The decode loop: parallel slots and continuous batching over one llama.cpp context.

One thread runs ``Engine.run``. Each turn of the loop is one ``llama_decode`` of one
batch that holds, for every slot that is generating (and has credit), the token it
sampled last, plus chunks of the prompts still being evaluated, up to ``n_batch``
tokens in all (chunked prefill: a long prompt delays the streaming slots by one
chunk per step, never by its whole length). Then every slot whose output came back
samples its next token. A request joins at the next step and leaves when it ends or
is cancelled; its slot is free for the next request at once.

Slots (``Slot``, with the phases in ``SLOT_MOVES``)::

    FREE --admit--> PREFILL --prompt done--> GENERATE --end, cancel, fail--> FREE
                       |                                                     ^
                       +------------------- cancel, fail --------------------+

Each slot is one llama.cpp sequence with its own cells (the context is not unified),
so what a slot computes does not depend on what shares the batch: the same prompt,
sampling and seed give the same tokens alone or among fifteen others. A slot keeps
its cells when its request ends (``Slot.cached``); a new request goes to the free
slot whose cells share the longest prefix with its prompt, and only the rest is
evaluated (a chat's next turn evaluates the new messages only); a slot whose cells
share little with the prompt is left for its own conversation (``_choose_slot``).

Flow control is by credit: a generation makes at most ``credit`` tokens beyond what
its consumer has taken; a slot without credit sits out the steps (its consumer is
slow) while the others go on.

Everything the engine reports goes through ``send`` as protocol messages; commands
come in through ``submit``, ``cancel``, ``grant`` and ``stop``, from any thread.
"""

from __future__ import annotations

import enum
import logging
import queue
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

import llama_cpp

from .constraint import ConstraintFailed, ConstraintState
from .llama import Model
from .protocol import Ended, Failed, FailureKind, Message, Pieces, PromptDone
from .sampling import RequestSampler
from .values import Sampling

__all__ = ["SLOT_MOVES", "Engine", "Job", "Slot", "SlotMove", "SlotPhase"]

logger = logging.getLogger("adapters.runner.engine")


class SlotPhase(enum.Enum):
    FREE = "free"
    PREFILL = "prefill"
    GENERATE = "generate"


class SlotMove(enum.Enum):
    ADMIT = "admit"
    PROMPT_DONE = "prompt done"
    END = "end"


_P, _M = SlotPhase, SlotMove
SLOT_MOVES: Final[Mapping[tuple[SlotPhase, SlotMove], SlotPhase]] = MappingProxyType(
    {
        (_P.FREE, _M.ADMIT): _P.PREFILL,
        (_P.PREFILL, _M.PROMPT_DONE): _P.GENERATE,
        (_P.PREFILL, _M.END): _P.FREE,
        (_P.GENERATE, _M.END): _P.FREE,
    }
)
"""Every move a slot can make; any other is a bug and raises."""


@dataclass(slots=True, kw_only=True)
class Job:
    """One generation request, as the engine runs it."""

    id: int
    prompt: list[int]
    sampling: Sampling
    constraint: ConstraintState | None
    credit: int
    limit: int = 0
    """Tokens to make at most (0: until the end or a full context)."""
    logprobs: int | None = None
    """Alternatives to report with each token's logprob; None: no logprobs."""
    submitted: float = field(default_factory=time.perf_counter)


@dataclass(slots=True, kw_only=True)
class Slot:
    """One llama.cpp sequence and the request it serves, if any."""

    seq: int
    phase: SlotPhase = SlotPhase.FREE
    cached: list[int] = field(default_factory=list)
    """Tokens whose cells the sequence holds, in order (its position is len())."""
    job: Job | None = None
    sampler: RequestSampler | None = None
    evaluated: int = 0
    """Prompt tokens in the cells so far (reused ones included)."""
    reused: int = 0
    made: int = 0
    next_token: int = -1
    """Sampled, not decoded yet: the slot's input to the next step."""
    output: int = -1
    """Where this slot's logits are in the batch being decoded; -1: none."""
    last_used: int = 0
    started: float = 0.0

    def move(self, move: SlotMove) -> None:
        try:
            self.phase = SLOT_MOVES[self.phase, move]
        except KeyError:
            raise RuntimeError(
                f"slot {self.seq}: cannot {move.value} when {self.phase.value}"
            ) from None


@dataclass(frozen=True, slots=True)
class _Cancel:
    id: int


@dataclass(frozen=True, slots=True)
class _Grant:
    id: int
    tokens: int


class _Stop:
    pass


_Command = Job | _Cancel | _Grant | _Stop


class Engine:
    """Runs generations on ``model``'s slots; see the module docstring."""

    def __init__(self, model: Model, *, send: Callable[[Message], None]) -> None:
        self._model = model
        self._send = send
        self._commands: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self.slots = [Slot(seq=seq) for seq in range(model.params.slots)]
        self._waiting: deque[Job] = deque()
        self._batch = llama_cpp.llama_batch_init(model.n_batch, 0, 1)
        self._steps = 0
        self._stopped = False
        self.decode_calls = 0
        """``llama_decode`` calls so far, for tests."""
        self.tokens_sampled = 0
        """Tokens sampled by every generation so far, for tests."""

    # -- commands, from any thread ----------------------------------------------------

    def submit(self, job: Job) -> None:
        self._commands.put(job)

    def cancel(self, request_id: int) -> None:
        self._commands.put(_Cancel(request_id))

    def grant(self, request_id: int, tokens: int) -> None:
        self._commands.put(_Grant(request_id, tokens))

    def stop(self) -> None:
        """End the loop after the step in progress; every request still running is
        told it was cancelled."""
        self._commands.put(_Stop())

    # -- the loop ------------------------------------------------------------------

    def run(self) -> None:
        """The decode loop; returns after ``stop()``. Frees its batch on the way out."""
        try:
            while self._take_commands(block=not self._has_work()):
                self._admit()
                if self._fill_batch():
                    self._step()
        finally:
            for slot in self.slots:
                if slot.job is not None:
                    self._end(slot, "cancelled")
            for job in self._waiting:
                self._send(Ended(id=job.id, reason="cancelled"))
            self._waiting.clear()
            llama_cpp.llama_batch_free(self._batch)

    def _has_work(self) -> bool:
        if self._waiting and any(s.phase is SlotPhase.FREE for s in self.slots):
            return True
        return any(
            slot.phase is SlotPhase.PREFILL
            or (
                slot.phase is SlotPhase.GENERATE
                and slot.job is not None
                and slot.job.credit > 0
            )
            for slot in self.slots
        )

    def _take_commands(self, *, block: bool) -> bool:
        """Apply the commands that came in (waiting for one if ``block``); False
        once the engine is told to stop."""
        try:
            command = self._commands.get(block=block)
            while True:
                self._apply(command)
                command = self._commands.get_nowait()
        except queue.Empty:
            pass
        return not self._stopped

    def _apply(self, command: _Command) -> None:
        match command:
            case Job():
                self._waiting.append(command)
            case _Grant(id=request_id, tokens=tokens):
                slot = self._slot_of(request_id)
                if slot is not None and slot.job is not None:
                    slot.job.credit += tokens
            case _Cancel(id=request_id):
                self._cancel(request_id)
            case _Stop():
                self._stopped = True

    def _cancel(self, request_id: int) -> None:
        for job in self._waiting:
            if job.id == request_id:
                self._waiting.remove(job)
                self._send(Ended(id=request_id, reason="cancelled"))
                return
        slot = self._slot_of(request_id)
        if slot is not None:
            self._end(slot, "cancelled")

    def _slot_of(self, request_id: int) -> Slot | None:
        for slot in self.slots:
            if slot.job is not None and slot.job.id == request_id:
                return slot
        return None

    # -- admission: the free slot with the longest cached prefix -----------------------

    def _admit(self) -> None:
        while self._waiting:
            free = [slot for slot in self.slots if slot.phase is SlotPhase.FREE]
            if not free:
                return
            job = self._waiting.popleft()
            n_ctx = self._model.n_ctx
            if len(job.prompt) > n_ctx:
                self._send(
                    Failed(
                        id=job.id,
                        kind="prompt_too_long",
                        message=f"the prompt has {len(job.prompt)} tokens,"
                        f" the context holds {n_ctx}",
                    )
                )
                continue
            # The last prompt token is always decoded, even when cached: sampling
            # needs its logits, and llama.cpp keeps only the latest decode's.
            slot, reused = _choose_slot(free, job.prompt[:-1])
            self._start(slot, job, reused)

    def _start(self, slot: Slot, job: Job, reused: int) -> None:
        memory = self._model.memory
        if not llama_cpp.llama_memory_seq_rm(memory, slot.seq, reused, -1):
            # Some memories (recurrent models) cannot drop a tail: start afresh.
            llama_cpp.llama_memory_seq_rm(memory, slot.seq, -1, -1)
            reused = 0
        del slot.cached[reused:]
        slot.move(SlotMove.ADMIT)
        slot.job = job
        slot.reused = slot.evaluated = reused
        slot.made = 0
        slot.started = time.perf_counter()
        slot.last_used = self._steps
        slot.sampler = RequestSampler(
            self._model, job.sampling, job.prompt, job.constraint
        )
        if len(job.prompt) >= self._model.n_ctx:
            # No room for even one token: a full context, before any work.
            self._end(slot, "length")

    # -- one step ------------------------------------------------------------------

    def _fill_batch(self) -> int:
        """Put this step's tokens in the batch; return how many.

        The generating slots come first, least recently served first, in case
        there are more of them than the batch holds; prompts fill what is left,
        oldest request first.
        """
        batch, capacity = self._batch, self._model.n_batch
        tokens, positions, seq_counts = batch.token, batch.pos, batch.n_seq_id
        seq_ids, outputs = batch.seq_id, batch.logits
        count = 0
        for slot in self.slots:
            slot.output = -1
        generating = sorted(
            (s for s in self.slots if s.phase is SlotPhase.GENERATE and s.job),
            key=lambda s: s.last_used,
        )
        for slot in generating:
            assert slot.job is not None
            if count >= capacity:
                break
            if slot.job.credit <= 0:
                continue
            tokens[count] = slot.next_token
            positions[count] = len(slot.cached)
            seq_counts[count] = 1
            seq_ids[count][0] = slot.seq
            outputs[count] = 1
            slot.output = count
            slot.cached.append(slot.next_token)
            count += 1
        prefilling = sorted(
            (s for s in self.slots if s.phase is SlotPhase.PREFILL and s.job),
            key=lambda s: s.job.submitted if s.job else 0.0,
        )
        for slot in prefilling:
            assert slot.job is not None
            if count >= capacity:
                break
            prompt = slot.job.prompt
            end = min(len(prompt), slot.evaluated + capacity - count)
            for index in range(slot.evaluated, end):
                tokens[count] = prompt[index]
                positions[count] = index
                seq_counts[count] = 1
                seq_ids[count][0] = slot.seq
                outputs[count] = 0
                count += 1
            slot.cached.extend(prompt[slot.evaluated : end])
            slot.evaluated = end
            if end == len(prompt):
                outputs[count - 1] = 1
                slot.output = count - 1
        batch.n_tokens = count
        return count

    def _step(self) -> None:
        self._steps += 1
        started = time.perf_counter()
        status = llama_cpp.llama_decode(self._model.ctx, self._batch)
        self.decode_calls += 1
        decoded = time.perf_counter()
        if status != 0:
            self._decode_failed(status)
            return
        step = decoded - started
        for slot in self.slots:
            if slot.output < 0 or slot.job is None:
                continue
            slot.last_used = self._steps
            if slot.phase is SlotPhase.PREFILL:
                self._prompt_done(slot)
            self._sample(slot, step)

    def _prompt_done(self, slot: Slot) -> None:
        assert slot.job is not None
        slot.move(SlotMove.PROMPT_DONE)
        self._send(
            PromptDone(
                id=slot.job.id,
                evaluated=len(slot.job.prompt) - slot.reused,
                reused=slot.reused,
                duration=time.perf_counter() - slot.started,
            )
        )

    def _sample(self, slot: Slot, step: float) -> None:
        job, sampler = slot.job, slot.sampler
        assert job is not None
        assert sampler is not None
        started = time.perf_counter()
        try:
            token = sampler.pick(slot.output)
        except ConstraintFailed as exc:
            self._fail(slot, "constraint", str(exc))
            return
        self.tokens_sampled += token is not None
        if token is None or self._model.pieces.is_eog(token):
            self._end(slot, "stop")
            return
        logprobs = (
            ()
            if job.logprobs is None
            else (sampler.logprobs(slot.output, token, job.logprobs),)
        )
        duration = step + time.perf_counter() - started
        piece = self._model.pieces.piece(token)
        self._send(
            Pieces(
                id=job.id,
                tokens=(token,),
                data=(piece,),
                durations=(duration,),
                logprobs=logprobs,
            )
        )
        slot.next_token = token
        slot.made += 1
        job.credit -= 1
        if slot.made == job.limit or len(job.prompt) + slot.made >= self._model.n_ctx:
            self._end(slot, "length")

    def _decode_failed(self, status: int) -> None:
        """A failed decode may leave part of the batch in the cells: every slot that
        had tokens in it starts afresh, and its request fails."""
        message = f"llama_decode failed with status {status}"
        logger.error(message)
        batch = self._batch
        seqs = {batch.seq_id[i][0] for i in range(batch.n_tokens)}
        for slot in self.slots:
            if slot.seq not in seqs:
                continue
            llama_cpp.llama_memory_seq_rm(self._model.memory, slot.seq, -1, -1)
            slot.cached.clear()
            if slot.job is not None:
                self._fail(slot, "runner", message)

    def _end(self, slot: Slot, reason: Literal["stop", "length", "cancelled"]) -> None:
        assert slot.job is not None
        self._release(slot, Ended(id=slot.job.id, reason=reason, made=slot.made))

    def _fail(self, slot: Slot, kind: FailureKind, message: str) -> None:
        assert slot.job is not None
        self._release(slot, Failed(id=slot.job.id, kind=kind, message=message))

    def _release(self, slot: Slot, message: Ended | Failed) -> None:
        if slot.sampler is not None:
            slot.sampler.close()
        slot.move(SlotMove.END)
        slot.job = None
        slot.sampler = None
        slot.output = -1
        self._send(message)


def _choose_slot(free: list[Slot], head: list[int]) -> tuple[Slot, int]:
    """The free slot for a prompt starting with ``head``, and how many of its
    cached tokens it reuses.

    A slot's cells are reused when they hold at least half of the prompt (a chat's
    next turn, a long shared system prompt); among those, the one that reuses the
    most, then the one that loses the fewest other cells. Otherwise the least
    recently used free slot (an empty one first), evaluated from the start: a short
    shared prefix saves little, and a prompt evaluated whole gives bit for bit the
    logits it gives anywhere else (llama.cpp computes a token a little differently
    in a batch of one than among a prompt's tokens, which can change a sampled token
    on a near-tie).
    """
    scored = [(_common_prefix(slot.cached, head), slot) for slot in free]
    worth_it = [(n, slot) for n, slot in scored if n and 2 * n >= len(head)]
    if worth_it:
        reused, slot = max(
            worth_it,
            key=lambda pair: (
                pair[0],
                pair[0] - len(pair[1].cached),
                -pair[1].last_used,
            ),
        )
        return slot, reused
    return min(free, key=lambda slot: slot.last_used), 0


def _common_prefix(cached: list[int], wanted: list[int]) -> int:
    """How many leading tokens the two share."""
    limit = min(len(cached), len(wanted))
    if cached[:limit] == wanted[:limit]:  # the usual case, compared in C
        return limit
    low, high = 0, limit  # the first difference, by halves
    while low < high:
        middle = (low + high + 1) // 2
        if cached[:middle] == wanted[:middle]:
            low = middle
        else:
            high = middle - 1
    return low
