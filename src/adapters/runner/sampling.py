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

import llama_cpp
import numpy as np
import numpy.typing as npt

from .constraint import ConstraintFailed, ConstraintState
from .llama import Model, make_sampler
from .values import Sampling

__all__ = ["RequestSampler"]


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

    def close(self) -> None:
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None

    def _pick_constrained(self, state: ConstraintState, index: int) -> int | None:
        words = state.mask()
        if state.stopped:
            return None
        allowed = _bits(words, self._n_vocab)
        if not allowed.any():
            if state.accepting:
                return None  # only the end stand-in: a vocabulary without ends
            raise ConstraintFailed("the constraint allows no token here")
        pointer = llama_cpp.llama_get_logits_ith(self._model.ctx, index)
        if not pointer:
            raise ConstraintFailed("llama.cpp has no logits to sample from")
        logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
        np.putmask(logits, ~allowed, -np.inf)
        token: int = llama_cpp.llama_sampler_sample(self._chain, self._model.ctx, index)
        if not 0 <= token < self._n_vocab or not allowed[token]:
            raise ConstraintFailed(f"token {token} was sampled but is not allowed")
        if not self._model.pieces.is_eog(token):
            state.accept(token)
        return token


def _bits(words: npt.NDArray[np.int32], count: int) -> npt.NDArray[np.bool_]:
    """The mask as one boolean per token id (bit ``i % 32`` of word ``i // 32``)."""
    bits = np.unpackbits(words.view(np.uint8), bitorder="little", count=count)
    return bits.view(np.bool_)
