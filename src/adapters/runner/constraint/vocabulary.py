"""A model's vocabulary as llguidance sees it: token bytes, special tokens, ends.

llguidance matches grammars against the bytes of tokens. What it is told each token
is decides what a constraint can produce, so the choices are made here, once:

- Control tokens (ChatML's ``<|im_start|>``, BOS) are *special*: llguidance marks
  them with a leading 0xFF byte and never lets them stand for text, so a JSON answer
  cannot contain a turn marker, and free text under a tool-call constraint cannot
  either (end-of-generation aside).
- User-defined tokens (Qwen's ``<think>``, ``<tool_call>``) are text: they are what
  the model writes to open a call, and the grammar names them as text.
- Unknown and unused tokens have no bytes: never allowed.
- llguidance tokenizes text it must force (a grammar's literal, the rest of a
  string) with the model's tokenizer, and trusts that the tokens spell that text.
  llama.cpp's does not always: a SentencePiece vocabulary reads U+2581 (its word
  boundary) as a space, so "▁calls" came back as the token " calls", which the
  mask then allowed and the matcher refused, failing the request (DeepSeek's
  markers on gemma's vocabulary). A tokenization that does not spell its text is
  replaced by the longest text tokens that do.
- Every end-of-generation token is an end-of-sequence token to llguidance, allowed
  wherever the grammar may end. A vocabulary without any gets a stand-in id past
  its last token, which no sampler can pick: the constraint then ends the output by
  itself when nothing may follow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import llama_cpp
import llguidance

from ..llama import TokenTable

__all__ = ["Vocabulary", "build_vocabulary"]

_Tokenize = Callable[[bytes], list[int]]

_SPECIAL_MARKER: Final = b"\xff"
_NO_TEXT: Final = llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN | llama_cpp.LLAMA_TOKEN_ATTR_UNUSED


@dataclass(frozen=True, slots=True, kw_only=True)
class Vocabulary:
    """llguidance's tokenizer for one model, and how its ids map to the model's.

    ``size`` is what a mask covers: the model's tokens, plus the end stand-in when
    there is one. ``ends`` are the ids llguidance treats as end-of-sequence.
    """

    tokenizer: llguidance.LLTokenizer
    n_vocab: int
    size: int
    ends: tuple[int, ...]


class _Wrapper:
    """What ``llguidance.TokenizerWrapper`` reads: the tokens' bytes, the end and
    begin ids, and a way to tokenize text (used by llguidance's own helpers)."""

    def __init__(
        self, tokens: list[bytes], eos: int, bos: int | None, tokenize: _Tokenize
    ) -> None:
        self.tokens = tokens
        self.eos_token_id = eos
        self.bos_token_id = bos
        self.special_token_ids = [
            i for i, t in enumerate(tokens) if t.startswith(_SPECIAL_MARKER)
        ]
        self._tokenize = tokenize

    def __call__(self, text: bytes | str) -> list[int]:
        data = text.encode() if isinstance(text, str) else text
        return self._tokenize(data)


def build_vocabulary(table: TokenTable, *, bos: int, tokenize: _Tokenize) -> Vocabulary:
    """llguidance's view of ``table`` (see the module docstring). ``tokenize`` is
    the model's tokenizer for plain text (llguidance tokenizes with it, e.g. in
    ``tokenize_bytes``; it must not raise). Takes a second or so for a
    262k-token vocabulary: build it once per model."""
    tokens = [_token_bytes(table, token) for token in range(len(table.pieces))]
    ends = _ends(table)
    if not ends:
        tokens.append(_SPECIAL_MARKER + b"<end of output>")
        ends = (len(tokens) - 1,)
    wrapper = _Wrapper(
        tokens,
        eos=ends[0],
        bos=bos if bos >= 0 else None,
        tokenize=_faithful(tokenize, tokens),
    )
    tokenizer = llguidance.LLTokenizer(
        llguidance.TokenizerWrapper(wrapper), eos_token=list(ends)
    )
    return Vocabulary(
        tokenizer=tokenizer, n_vocab=len(table.pieces), size=len(tokens), ends=ends
    )


def _faithful(tokenize: _Tokenize, tokens: Sequence[bytes]) -> _Tokenize:
    """``tokenize``, checked to spell its text with ``tokens``' bytes; where it
    does not, the text greedily in the longest text tokens (a special token never
    stands for text). A vocabulary with a token for every byte always has one."""
    by_bytes: dict[bytes, int] = {}
    for token, data in enumerate(tokens):
        if data and not data.startswith(_SPECIAL_MARKER):
            by_bytes.setdefault(data, token)
    longest = max(map(len, by_bytes), default=1)

    def spelled(data: bytes) -> list[int]:
        found = tokenize(data)
        if all(0 <= t < len(tokens) for t in found) and (
            b"".join(tokens[t] for t in found) == data
        ):
            return found
        out: list[int] = []
        at = 0
        while at < len(data):
            for size in range(min(longest, len(data) - at), 0, -1):
                token = by_bytes.get(data[at : at + size])
                if token is not None:
                    out.append(token)
                    at += size
                    break
            else:
                at += 1  # no token holds this byte: it cannot be produced anyway
        return out

    return spelled


def _token_bytes(table: TokenTable, token: int) -> bytes:
    piece, attributes = table.pieces[token], table.attributes[token]
    if attributes & _NO_TEXT or not piece:
        return b""
    if token in table.eog or attributes & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL:
        return _SPECIAL_MARKER + piece
    return piece


def _ends(table: TokenTable) -> tuple[int, ...]:
    ends: Sequence[int] = sorted(table.eog)
    if table.eos is not None and table.eos in table.eog:
        # The model's own end-of-sequence first: llguidance's primary end token.
        ends = [table.eos, *(t for t in ends if t != table.eos)]
    return tuple(ends)
