"""The mask applied to the logits: the sparse path (a few allowed tokens, read from
the mask's non-zero words) and the dense path (every bit unpacked) agree, on every
token id including the last of a vocabulary that is not a multiple of 32."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from gateway_core_adapters.runner.sampling import _SPARSE_WORDS, mask_logits


def _mask(allowed: list[int], count: int) -> npt.NDArray[np.int32]:
    words = np.zeros((count + 31) // 32, dtype=np.uint32)
    for token in allowed:
        words[token >> 5] |= np.uint32(1 << (token & 31))
    return words.view(np.int32)


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("seed", range(20))
def test_only_allowed_tokens_keep_their_logits(seed: int, dense: bool) -> None:
    rng = np.random.default_rng(seed)
    count = 262_145  # one token past a whole word
    many = 40 * (_SPARSE_WORDS + 1) if dense else int(rng.integers(1, 60))
    allowed = sorted({*rng.choice(count, size=many).tolist(), count - 1, 31})
    words = _mask(allowed, count)
    used = np.flatnonzero(words)
    assert (len(used) > _SPARSE_WORDS) == dense
    logits = rng.standard_normal(count).astype(np.float32)
    before = logits.copy()
    mask_logits(logits, words, used)
    kept = np.flatnonzero(np.isfinite(logits))
    assert kept.tolist() == allowed
    assert np.array_equal(logits[kept], before[kept])
