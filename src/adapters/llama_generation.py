"""One generation on a ``LlamaRunner``: its tokens, made in a thread of their own.

A generation's thread evaluates the prompt, then decodes and samples one token at a
time, handing each to the event loop through a ``Handoff``. How far it may run
ahead of its consumer is the generation's ``lookahead``:

- 0 (the default): a token is made only once it is asked for, so a consumer that
  stops pulling stops generation at once, and the cost is one thread round trip per
  token;
- more: the thread works while the consumer is busy with the previous tokens (the
  server's case: it formats and sends token N while llama.cpp makes token N+1), and
  a consumer that fell behind finds several tokens ready at once.

Either way ``aclose()``, a cancellation or the runner's ``close()`` stops the thread
before its next token: the one in progress is finished (a C call cannot be
interrupted) and dropped, and the runner is free once the call returns.
"""

from __future__ import annotations

import ctypes
import threading
import time
from typing import TYPE_CHECKING, Final, Literal

import anyio
import llama_cpp
import numpy as np

from .handoff import Handoff, HandoffClosed
from .llama_types import ConstraintFailed, RunnerError, Sampling, TokenPiece

if TYPE_CHECKING:
    from .constraint import ConstraintState
    from .llama_runner import LlamaRunner

__all__ = ["DoneReason", "Generation", "VocabCache", "read_piece"]

DoneReason = Literal["stop", "length"]

_PIECE_BUFFER: Final = 64


def read_piece(vocab: llama_cpp.llama_vocab_p, token: int) -> bytes:
    """A token's text bytes (``llama_token_to_piece``), special tokens rendered."""
    size = _PIECE_BUFFER
    while True:
        buffer = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(vocab, token, buffer, size, 0, True)
        if n >= 0:
            return buffer.raw[:n]
        size = -n


class VocabCache:
    """Each token's text, and whether it ends a generation, asked of llama.cpp once.

    Why: every C call through ctypes lets go of the interpreter lock and takes it
    back, and a generation's thread that wants it back must wait while the event
    loop's thread runs Python. On a small model those waits, not llama.cpp, set the
    pace; with this cache a token costs two C calls (decode and sample), not four.
    Safe from any thread: a race only asks llama.cpp twice.
    """

    def __init__(self, vocab: llama_cpp.llama_vocab_p) -> None:
        self._vocab = vocab
        self._pieces: dict[int, bytes] = {}
        self._ends: dict[int, bool] = {}

    def piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = read_piece(self._vocab, token)
        return piece

    def is_eog(self, token: int) -> bool:
        ends = self._ends.get(token)
        if ends is None:
            ends = bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))
            self._ends[token] = ends
        return ends


class Generation:
    """The tokens after one prompt; use as ``async with`` and ``async for``.

    Ends (StopAsyncIteration) at an end-of-generation token, which is not yielded,
    with ``done_reason`` "stop", or when prompt plus output fill the context, with
    "length" (no context shift). An exception in the thread is raised from the pull
    that would have returned the next token; it, a cancellation or ``aclose()`` end
    the generation with ``done_reason`` None. Finishing releases the runner; a
    generation left half-read holds it until ``aclose()``.

    Counts: ``prompt_eval_count`` is the prompt tokens decoded now,
    ``prompt_reused_count`` those the KV cache already held (the two add up to the
    prompt's length); ``eval_count`` is the tokens yielded and ``eval_duration`` the
    seconds of llama.cpp work they cost (each ``TokenPiece.duration``), so waiting
    and the consumer's own time are not in them; sampling the first token counts as
    generation. Tokens made ahead and never yielded count in
    ``LlamaRunner.tokens_generated`` only.
    """

    def __init__(
        self,
        runner: LlamaRunner,
        prompt: list[int],
        sampling: Sampling,
        constraint: ConstraintState | None = None,
        *,
        lookahead: int = 0,
    ):
        self._runner = runner
        self._prompt = prompt
        self._sampling = sampling
        self._constraint = constraint
        self._handoff: Handoff[TokenPiece] = Handoff(lookahead=lookahead)
        self._thread: threading.Thread | None = None
        self._end_reason: DoneReason | None = None  # written by the thread
        self._pulling = False
        self._finished = False
        self._aborted = False
        self._stopped = anyio.Event()
        self.done_reason: DoneReason | None = None
        self.prompt_eval_count = 0
        self.prompt_reused_count = 0
        self.prompt_eval_duration = 0.0
        self.eval_count = 0
        self.eval_duration = 0.0

    def __aiter__(self) -> Generation:
        return self

    async def __aenter__(self) -> Generation:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def __anext__(self) -> TokenPiece:
        if self._pulling:
            raise RuntimeError("another task is already pulling from this generation")
        if self._finished:
            self._raise_if_aborted()
            raise StopAsyncIteration
        if self._thread is None:
            self._start()
        self._pulling = True
        try:
            piece = await self._handoff.get()
        except HandoffClosed:
            # The thread ended by itself, or close() stopped it during this pull.
            await self._end(self._end_reason)
            self._raise_if_aborted()
            raise StopAsyncIteration from None
        except BaseException:
            await self._end(None)
            raise
        finally:
            self._pulling = False
        return self._yielded(piece)

    def next_ready(self) -> TokenPiece | None:
        """The next token if the thread has already made it, else None (never waits;
        the generation's end and errors come from ``__anext__``)."""
        if self._finished or self._pulling:
            return None
        piece = self._handoff.take_ready()
        return None if piece is None else self._yielded(piece)

    async def aclose(self) -> None:
        """Stop generating and release the runner; safe to call more than once."""
        await self._end(None)

    async def abort(self) -> None:
        """End because the runner is closing: later pulls raise RunnerError."""
        self._aborted = True
        await self._end(None)

    # -- on the event loop -----------------------------------------------------------

    def _start(self) -> None:
        name = f"generation:{self._runner.model_file}"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _yielded(self, piece: TokenPiece) -> TokenPiece:
        self.eval_count += 1
        self.eval_duration += piece.duration
        return piece

    def _raise_if_aborted(self) -> None:
        if self._aborted:
            raise RunnerError("the runner was closed during this generation")

    async def _end(self, reason: DoneReason | None) -> None:
        """Stop the thread, wait for it, and give the runner back (once)."""
        if self._finished:
            await self._stopped.wait()
            return
        self._finished = True
        self.done_reason = reason
        self._handoff.close()
        # Shielded: this runs while being cancelled too, and the runner may only be
        # reused once the thread has let go of the context.
        with anyio.CancelScope(shield=True):
            if self._thread is not None:
                await self._handoff.finished()
            self._handoff.release()
            if self._runner._active is self:
                self._runner._active = None
            self._stopped.set()

    # -- in the generation's thread --------------------------------------------------

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            self._produce()
        except BaseException as exc:  # handed to the consumer, raised there
            error = exc
        finally:
            self._handoff.finish(error)

    def _produce(self) -> None:
        runner, handoff, prompt = self._runner, self._handoff, self._prompt
        if not handoff.wait_for_credit():
            return
        if len(prompt) >= runner.n_ctx:  # no room for even one token
            self._end_reason = "length"
            return
        started = time.perf_counter()
        self.prompt_reused_count = runner._evaluate_prompt(prompt)
        self.prompt_eval_count = len(prompt) - self.prompt_reused_count
        sampler = runner._make_sampler(self._sampling, prompt)
        self.prompt_eval_duration = time.perf_counter() - started
        try:
            vocab = runner._vocab_cache
            slot = (llama_cpp.llama_token * 1)()  # the token to decode next
            batch = runner._batch(slot)
            made = 0
            while True:
                if len(prompt) + made >= runner.n_ctx:
                    self._end_reason = "length"
                    return
                started = time.perf_counter()
                if made:
                    runner._decode_batch(batch, slot[:])
                token = self._sample(sampler)
                if token is None:
                    self._end_reason = "stop"
                    return
                runner.tokens_generated += 1
                if vocab.is_eog(token):
                    self._end_reason = "stop"
                    return
                slot[0] = token
                piece = TokenPiece(
                    token, vocab.piece(token), time.perf_counter() - started
                )
                handoff.put(piece)
                made += 1
                if not handoff.wait_for_credit():
                    return
        finally:
            llama_cpp.llama_sampler_free(sampler)

    def _sample(self, sampler: llama_cpp.llama_sampler_p) -> int | None:
        """The next token; None when a complete constraint allows nothing more."""
        runner = self._runner
        if self._constraint is None:
            token: int = llama_cpp.llama_sampler_sample(sampler, runner._ctx, -1)
            return token
        try:
            return self._sample_constrained(sampler, self._constraint)
        except ConstraintFailed:
            raise
        except Exception as error:
            raise ConstraintFailed(f"the constraint failed: {error!r}") from error

    def _sample_constrained(
        self, sampler: llama_cpp.llama_sampler_p, state: ConstraintState
    ) -> int | None:
        runner = self._runner
        allowed = state.allowed_tokens()
        if state.is_complete():
            return None
        if len(allowed) == 0:
            raise ConstraintFailed("the constraint allows no token here")
        token = runner._sample_allowed(sampler, allowed)
        if not np.any(allowed == token):
            raise ConstraintFailed(f"token {token} was sampled but is not allowed")
        if not runner._vocab_cache.is_eog(token):
            state.advance(token)
        return token
