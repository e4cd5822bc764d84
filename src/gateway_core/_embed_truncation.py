"""Embedding with truncate-and-retry, as a table-driven machine.

The fast path is one ``Embed`` of every input. Only when the runner reports that an
input overflows the context does the machine shorten it: tokenize it (without special
tokens), cut the tokens to the budget, detokenize, and embed again. A detokenize /
tokenize round trip need not give the same tokens back (merges differ at the cut), so
a retry can overflow again; each overflow then cuts by exactly the excess the runner
saw, and after ``MAX_ATTEMPTS`` cuts of one input the request fails instead of looping.

The budget comes from a ``TokenizerInfo``: the context length minus the special tokens
the runner adds around each input. The machine never looks at GGUF keys or token ids
beyond counting them.

Phases and inputs (``TRANSITIONS`` is the whole of it; a pair not in it is a bug)::

    EMBEDDING    --EMBEDDED--> DONE
    EMBEDDING    --OVERFLOW--> TOKENIZING     (truncation allowed, attempts left)
    EMBEDDING    --OVERFLOW--> FAILED         (truncate: false, or out of attempts)
    TOKENIZING   --TOKENS----> DETOKENIZING   (something is left after the cut)
    TOKENIZING   --TOKENS----> FAILED         (nothing is left)
    DETOKENIZING --TEXT------> EMBEDDING
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeAlias

from ._errors import LocalProtocolError
from ._work import (
    ContextOverflow,
    Detokenize,
    Embed,
    Embedded,
    Result,
    Text,
    Tokenize,
    TokenizerInfo,
    Tokens,
)

__all__ = [
    "MAX_ATTEMPTS",
    "TRANSITIONS",
    "EmbedFailed",
    "EmbedFinished",
    "Phase",
    "TruncateRetry",
]

MAX_ATTEMPTS = 3
"""Cuts of one input before giving up. The first cut uses the budget; later ones only
correct the few tokens a round trip can add, so a third failure means the tokenizer
will not converge."""


class Phase(enum.Enum):
    EMBEDDING = "embedding"
    TOKENIZING = "tokenizing"
    DETOKENIZING = "detokenizing"
    DONE = "done"
    FAILED = "failed"


class Input(enum.Enum):
    EMBEDDED = "embedded"
    OVERFLOW = "overflow"
    TOKENS = "tokens"
    TEXT = "text"


_P, _I = Phase, Input

TRANSITIONS: Mapping[tuple[Phase, Input], frozenset[Phase]] = MappingProxyType(
    {
        (_P.EMBEDDING, _I.EMBEDDED): frozenset({_P.DONE}),
        (_P.EMBEDDING, _I.OVERFLOW): frozenset({_P.TOKENIZING, _P.FAILED}),
        (_P.TOKENIZING, _I.TOKENS): frozenset({_P.DETOKENIZING, _P.FAILED}),
        (_P.DETOKENIZING, _I.TEXT): frozenset({_P.EMBEDDING}),
    }
)
"""Where each (phase, input) may lead; which of the targets is taken depends on the
request (``truncate``) and on how the cut came out."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbedFinished:
    """Every input is embedded; ``texts`` are the inputs as finally embedded."""

    result: Embedded
    texts: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbedFailed:
    status: int
    message: str


Step: TypeAlias = Embed | Tokenize | Detokenize | EmbedFinished | EmbedFailed

_TOO_LONG = "the input length exceeds the context length"


class TruncateRetry:
    """Drives one batch of inputs to vectors. ``start()`` gives the first effect;
    ``feed(result)`` takes each result and gives the next effect, or the end."""

    def __init__(
        self, texts: tuple[str, ...], *, tokenizer: TokenizerInfo, truncate: bool
    ) -> None:
        self._texts = list(texts)
        self._tokenizer = tokenizer
        self._truncate = truncate
        self._phase = Phase.EMBEDDING
        self._attempts = [0] * len(texts)
        self._index = -1  # the input being shortened
        self._excess = 0  # by how much its last embedding overflowed
        self.cuts = 0
        """How many times an input was shortened (for the log)."""

    @property
    def phase(self) -> Phase:
        return self._phase

    def start(self) -> Step:
        return Embed(texts=tuple(self._texts))

    def feed(self, result: Result) -> Step:
        match result:
            case Embedded():
                self._move(Input.EMBEDDED, Phase.DONE)
                return EmbedFinished(result=result, texts=tuple(self._texts))
            case ContextOverflow(index=index, tokens=tokens):
                return self._overflowed(index, tokens)
            case Tokens(ids=ids):
                return self._cut(ids)
            case Text(text=text):
                self._move(Input.TEXT, Phase.EMBEDDING)
                self._texts[self._index] = text
                return Embed(texts=tuple(self._texts))
        raise LocalProtocolError(f"{result!r} does not belong to an embedding")

    def _overflowed(self, index: int, tokens: int) -> Step:
        if not 0 <= index < len(self._texts):
            raise LocalProtocolError(f"overflow of input {index} of {len(self._texts)}")
        if not self._truncate:
            return self._fail(Input.OVERFLOW, _TOO_LONG)
        if self._attempts[index] >= MAX_ATTEMPTS:
            return self._fail(
                Input.OVERFLOW,
                "input exceeds maximum context length and cannot be truncated further",
            )
        self._move(Input.OVERFLOW, Phase.TOKENIZING)
        self._attempts[index] += 1
        self._index = index
        self._excess = tokens - self._tokenizer.context_length
        return Tokenize(text=self._texts[index], add_bos=False)

    def _cut(self, ids: tuple[int, ...]) -> Step:
        budget = self._tokenizer.context_length - self._tokenizer.special_tokens
        if self._attempts[self._index] > 1:
            # A retry that still overflowed: the round trip added tokens; shed
            # exactly as many as the runner counted too many.
            budget = min(budget, len(ids) - max(1, self._excess))
        if budget <= 0:
            return self._fail(
                Input.TOKENS,
                "input after truncation exceeds maximum context length",
            )
        self._move(Input.TOKENS, Phase.DETOKENIZING)
        self.cuts += 1
        return Detokenize(ids=ids[:budget])

    def _fail(self, event: Input, message: str) -> EmbedFailed:
        self._move(event, Phase.FAILED)
        return EmbedFailed(status=400, message=message)

    def _move(self, event: Input, target: Phase) -> None:
        allowed = TRANSITIONS.get((self._phase, event), frozenset())
        if target not in allowed:
            raise LocalProtocolError(
                f"embedding: {event.value} in phase {self._phase.value}"
            )
        self._phase = target
