"""Embedding vectors after the model: L2 normalization and Matryoshka reduction."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["finish_vector", "l2_normalize"]

# Below this norm a vector is treated as zero and left as it is, instead of being
# blown up into noise (or dividing by zero).
_TINY_NORM = 1e-12


def l2_normalize(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(math.fsum(x * x for x in vector))
    if norm < _TINY_NORM:
        return list(vector)
    return [x / norm for x in vector]


def finish_vector(
    vector: Sequence[float], *, dimensions: int | None, normalize: bool
) -> list[float]:
    """The vector a client gets: cut to ``dimensions`` (the first values, as
    Matryoshka-trained models intend), then L2-normalized unless ``normalize`` is off.

    Raises:
        ValueError: the model produced NaN or infinity (a broken model or input).
    """
    if not all(math.isfinite(x) for x in vector):
        raise ValueError("embedding contains NaN or Inf values")
    cut = vector if dimensions is None else vector[:dimensions]
    return l2_normalize(cut) if normalize else list(cut)
