"""Constrained decoding with llguidance: a model's vocabulary as llguidance sees it
(``vocabulary``), the grammars of constraints (``tool_grammar``, ``call_forms``;
JSON schemas in ``..grammars``), and their compilation, cache and per-request
state (``compiler``).
"""

from __future__ import annotations

from .compiler import (
    Compiled,
    Compiler,
    ConstraintFailed,
    ConstraintState,
    UnsupportedConstraint,
)
from .vocabulary import Vocabulary, build_vocabulary

__all__ = [
    "Compiled",
    "Compiler",
    "ConstraintFailed",
    "ConstraintState",
    "UnsupportedConstraint",
    "Vocabulary",
    "build_vocabulary",
]
