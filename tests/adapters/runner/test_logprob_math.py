"""``log_probabilities``: the log-softmax the runner reports, checked against a
plain reference, with masked (minus infinity) logits and ties."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gateway_core_adapters.runner.sampling import log_probabilities


def _reference(logits: list[float], token: int) -> float:
    total = sum(math.exp(value) for value in logits if value != -math.inf)
    return logits[token] - math.log(total)


@pytest.mark.parametrize("seed", range(10))
def test_logprobs_are_the_log_softmax(seed: int) -> None:
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal(1000) * 8).astype(np.float32)
    token = int(rng.integers(0, 1000))
    chosen, best = log_probabilities(logits, token, 5)
    # The exponentials are float32 (the logits' own precision), the sum float64.
    assert chosen == pytest.approx(_reference(logits.tolist(), token), abs=1e-6)
    order = sorted(range(1000), key=lambda i: (-float(logits[i]), i))[:5]
    assert [i for i, _ in best] == order
    assert [v for _, v in best] == pytest.approx(
        [_reference(logits.tolist(), i) for i in order], abs=1e-6
    )
    assert sum(math.exp(v) for _, v in best) <= 1.0


def test_masked_tokens_have_no_probability_and_are_no_alternative() -> None:
    logits = np.full(64, -np.inf, dtype=np.float32)
    logits[[3, 40]] = [2.0, 2.0]  # a tie: the lower id first
    chosen, best = log_probabilities(logits, 40, 10)
    assert chosen == pytest.approx(math.log(0.5))
    assert [i for i, _ in best] == [3, 40]
    assert log_probabilities(logits, 7, 0) == (-math.inf, [])


def test_a_certain_token_has_logprob_zero() -> None:
    logits = np.full(8, -np.inf, dtype=np.float32)
    logits[5] = -3.0
    assert log_probabilities(logits, 5, 3) == (0.0, [(5, 0.0)])
