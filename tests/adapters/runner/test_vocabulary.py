"""The vocabulary llguidance sees: a tokenizer that does not spell its text.

llguidance tokenizes the text a grammar forces with the model's tokenizer and
trusts the tokens to spell it. llama.cpp's SentencePiece tokenizer reads U+2581 as
a space, so "▁calls" became the token " calls": the mask allowed it and the matcher
then refused it. The vocabulary checks every tokenization and spells the text
itself where the model's tokenizer did not.
"""

from __future__ import annotations

import llama_cpp
import llguidance

from gateway_core_adapters.runner.constraint import build_vocabulary
from gateway_core_adapters.runner.llama import TokenTable

BOUNDARY = "\u2581".encode()
# A byte for every value (as SentencePiece's byte fallback has), then words.
PIECES = (*(bytes([b]) for b in range(256)), b" calls", BOUNDARY, b"</s>")
CALLS, MARK, END = 256, 257, 258


def table() -> TokenTable:
    attributes = [llama_cpp.LLAMA_TOKEN_ATTR_NORMAL] * len(PIECES)
    attributes[END] = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
    return TokenTable(
        pieces=PIECES, attributes=tuple(attributes), eog=frozenset({END}), eos=END
    )


def sentencepiece_like(data: bytes) -> list[int]:
    """Spells bytes one by one, but reads the word boundary as a space, as
    llama.cpp's SentencePiece tokenizer does."""
    if data.startswith(BOUNDARY + b"calls"):
        return [CALLS, *sentencepiece_like(data[len(BOUNDARY) + 5 :])]
    return list(data)


def test_a_tokenization_that_does_not_spell_the_text_is_replaced() -> None:
    vocabulary = build_vocabulary(table(), bos=-1, tokenize=sentencepiece_like)
    tokenizer = vocabulary.tokenizer
    text = BOUNDARY + b"calls!"
    tokens = tokenizer.tokenize_bytes(text)
    assert tokenizer.decode_bytes(tokens) == text
    assert tokens[0] == MARK  # the longest text token that spells the start
    # Where the model's tokenizer is right, its tokens are kept.
    assert tokenizer.tokenize_bytes(b"ab") == [ord("a"), ord("b")]


def test_a_grammar_that_forces_the_boundary_allows_only_what_it_accepts() -> None:
    vocabulary = build_vocabulary(table(), bos=-1, tokenize=sentencepiece_like)
    grammar = llguidance.LLMatcher.grammar_from_lark(
        'start: "' + "\u2581" + 'calls" "!"'
    )
    matcher = llguidance.LLMatcher(vocabulary.tokenizer, grammar, log_level=0)
    written = b""
    while not matcher.is_stopped():
        mask = matcher.compute_logit_bias()
        allowed = [t for t in range(vocabulary.size) if mask[t]]
        assert allowed, matcher.get_error()
        assert matcher.consume_token(allowed[0]), matcher.get_error()
        if allowed[0] == END:
            break
        written += PIECES[allowed[0]]
    assert written == BOUNDARY + b"calls!"
    assert not matcher.is_error()
