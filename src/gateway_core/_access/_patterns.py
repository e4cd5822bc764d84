"""Allow-list patterns: a literal, or ``*`` standing for any run of characters.

The one wildcard of Ollama's ``OLLAMA_ORIGINS`` and of shell globs people already
write; no character classes, so no pattern can mean something its author did not see.
Matching ignores letter case, as host names, schemes and model names do.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

__all__ = ["matches_any"]


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    pieces = (re.escape(piece) for piece in pattern.lower().split("*"))
    return re.compile(".*".join(pieces), re.DOTALL)


def matches_any(text: str, patterns: Sequence[str]) -> bool:
    """True when ``text`` matches one of ``patterns`` entirely."""
    lowered = text.lower()
    return any(_compiled(pattern).fullmatch(lowered) for pattern in patterns)
