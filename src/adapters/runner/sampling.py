"""One request's sampling: its llama.cpp sampler chain, and its constraint if any.

Masking happens here, in the runner's own sampling step, in plain Python between two
C calls. Nothing is left to a llama-cpp-python logits-processor callback, where a
Python exception is swallowed by ctypes and generation goes on unconstrained: any
failure of the constraint raises ``ConstraintFailed`` out of ``pick``, and the
request fails. Disallowed tokens get a logit of minus infinity in llama.cpp's own
logits buffer (what llama.cpp's grammar sampler does), so the whole sampler chain
runs in C on the remaining candidates, and the token it picks is checked against
the mask once more.
"""

from __future__ import annotations

import math

import llama_cpp
import numpy as np
import numpy.typing as npt

from .constraint import ConstraintFailed, ConstraintState
from .llama import Model, make_sampler
from .values import Sampling, TokenLogprobs

__all__ = ["RequestSampler", "log_probabilities", "mask_logits"]


class RequestSampler:
    """Picks one request's tokens from the logits of its outputs. Free with
    ``close()``."""

    def __init__(
        self,
        model: Model,
        sampling: Sampling,
        history: list[int],
        constraint: ConstraintState | None,
    ) -> None:
        self._model = model
        self._chain: llama_cpp.llama_sampler_p | None = make_sampler(
            sampling, n_vocab=model.n_vocab, n_ctx=model.n_ctx, history=history
        )
        self.constraint = constraint
        self._n_vocab = model.n_vocab

    def pick(self, index: int) -> int | None:
        """The next token, from output ``index`` of the last decode; None when a
        complete constraint allows nothing more (the output ends there)."""
        ctx = self._model.ctx
        if self._chain is None:
            raise RuntimeError("this sampler is closed")
        if self.constraint is None:
            token: int = llama_cpp.llama_sampler_sample(self._chain, ctx, index)
            return token
        try:
            return self._pick_constrained(self.constraint, index)
        except ConstraintFailed:
            raise
        except Exception as error:  # the matcher, numpy: never go on unconstrained
            raise ConstraintFailed(f"the constraint failed: {error!r}") from error

    def logprobs(self, index: int, token: int, top: int) -> TokenLogprobs:
        """``token``'s logprob at output ``index`` of the last decode, and the ``top``
        most likely tokens there: from the logits the sampler chose from, so after
        the constraint's mask (``pick`` applied it in place) and before penalties,
        temperature and truncation, which act on a copy inside the chain."""
        pointer = llama_cpp.llama_get_logits_ith(self._model.ctx, index)
        if not pointer:
            raise RuntimeError("llama.cpp has no logits at this output")
        logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
        chosen, best = log_probabilities(logits, token, top)
        piece = self._model.pieces.piece
        return chosen, tuple((piece(i), value) for i, value in best)

    def close(self) -> None:
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None

    def _pick_constrained(self, state: ConstraintState, index: int) -> int | None:
        words = state.mask()
        if state.stopped:
            return None
        used = np.flatnonzero(words)  # the mask's words with any allowed token
        if not len(used):
            if state.accepting:
                return None  # only the end stand-in: a vocabulary without ends
            raise ConstraintFailed("the constraint allows no token here")
        pointer = llama_cpp.llama_get_logits_ith(self._model.ctx, index)
        if not pointer:
            raise ConstraintFailed("llama.cpp has no logits to sample from")
        logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
        mask_logits(logits, words, used)
        token: int = llama_cpp.llama_sampler_sample(self._chain, self._model.ctx, index)
        if not 0 <= token < self._n_vocab or not _allows(words, token):
            raise ConstraintFailed(f"token {token} was sampled but is not allowed")
        if not self._model.pieces.is_eog(token):
            state.accept(token)
        return token


def log_probabilities(
    logits: npt.NDArray[np.float32], token: int, top: int
) -> tuple[float, list[tuple[int, float]]]:
    """``token``'s log-softmax over ``logits``, and the ``top`` most likely ids with
    theirs, most likely first (ties: the lower id). Masked logits (minus infinity)
    have no probability and are never among the alternatives.

    In float32 with a float64 sum: a few milliseconds on a 262k vocabulary would be
    a real share of a token's time, and the sum is where precision matters."""
    peak = float(logits.max())
    total = float(np.exp(logits - np.float32(peak)).sum(dtype=np.float64))
    normalizer = peak + math.log(total)
    chosen = min(0.0, float(logits[token]) - normalizer)
    if top <= 0:
        return chosen, []
    count = min(top, len(logits))
    start = len(logits) - count
    candidates = np.argpartition(logits, start)[start:]
    order = sorted(candidates.tolist(), key=lambda i: (-float(logits[i]), i))
    best = [
        (int(i), min(0.0, float(logits[i]) - normalizer))
        for i in order
        if math.isfinite(float(logits[i]))
    ]
    return chosen, best


# Where a mask allows tokens in at most this many of its 32-token words (a JSON
# grammar usually allows a handful: a quote, a digit, a key), the allowed ids are
# read from those words alone and every other logit is overwritten at once: on a
# 262k vocabulary that is tens of microseconds instead of unpacking 262k bits.
_SPARSE_WORDS = 256
_LANES = np.arange(32, dtype=np.int64)


def mask_logits(
    logits: npt.NDArray[np.float32],
    words: npt.NDArray[np.int32],
    used: npt.NDArray[np.intp],
) -> None:
    """Set the logit of every token the mask ``words`` does not allow to minus
    infinity; ``used`` are the indices of its non-zero words."""
    if len(used) <= _SPARSE_WORDS:
        _keep_only(logits, _allowed_ids(words, used, len(logits)))
    else:
        np.putmask(logits, ~_bits(words, len(logits)), -np.inf)


def _allowed_ids(
    words: npt.NDArray[np.int32], used: npt.NDArray[np.intp], count: int
) -> npt.NDArray[np.int64]:
    """The allowed token ids, from the words ``used`` of the mask."""
    bits = np.unpackbits(words[used].view(np.uint8), bitorder="little")
    ids = (used[:, None] * 32 + _LANES).reshape(-1)[bits.view(np.bool_)]
    return ids[ids < count]


def _keep_only(logits: npt.NDArray[np.float32], ids: npt.NDArray[np.int64]) -> None:
    kept = logits[ids]
    logits.fill(-np.inf)
    logits[ids] = kept


def _allows(words: npt.NDArray[np.int32], token: int) -> bool:
    return bool((int(words[token >> 5]) >> (token & 31)) & 1)


def _bits(words: npt.NDArray[np.int32], count: int) -> npt.NDArray[np.bool_]:
    """The mask as one boolean per token id (bit ``i % 32`` of word ``i // 32``)."""
    bits = np.unpackbits(words.view(np.uint8), bitorder="little", count=count)
    return bits.view(np.bool_)
