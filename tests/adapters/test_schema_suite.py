"""Every schema of the JSON-Schema-Test-Suite (draft 2020-12), as a ``format``: either
refused before any work with a 400 that names the keyword, or enforced, so that
every answer the constraint allows validates (format checking included).

Two ways to look at "every answer the constraint allows":

- random walks through llguidance's own matcher over a byte-level vocabulary, with
  no model at all: at each step a random allowed token (biased towards closing
  what is open, so that walks end). Thousands of answers a second, which finds a
  keyword llguidance accepts but does not enforce;
- the demo model over HTTP (slow): the whole server, random weights.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import httpx
import llguidance
import numpy as np
import ollama
import pytest

from gateway_core._flow import FlowError
from gateway_core._json import JsonValue
from gateway_core._structured import check_answer, check_format
from gateway_core_adapters.runner.errors import UnsupportedSchema
from gateway_core_adapters.runner.grammars import check_schema_support, json_grammar

from ..schema_suite import suite_schemas
from .live import LiveServer

# The bar: llguidance alone enforced 126 of the suite's schemas.
AT_LEAST_ENFORCED = 126
_CLOSING = frozenset(b'"}],0123456789')


class _Bytes:
    """A vocabulary of the 256 bytes, some common multi-byte pieces, and an end."""

    def __init__(self) -> None:
        pieces = [b'{"', b'":', b'",', b'"}', b"true", b"false", b"null", b"  "]
        self.tokens: list[bytes] = [bytes([b]) for b in range(256)] + pieces
        self.tokens.append(b"\xff<end>")
        self.eos_token_id = len(self.tokens) - 1
        self.bos_token_id = None
        self.special_token_ids = [self.eos_token_id]

    def __call__(self, text: bytes | str) -> list[int]:
        return list(text.encode() if isinstance(text, str) else text)


_VOCABULARY = _Bytes()
_TOKENIZER = llguidance.LLTokenizer(llguidance.TokenizerWrapper(_VOCABULARY))


def classify(schema: JsonValue) -> str | None:
    """None when the gateway enforces ``schema``; else the 400's message."""
    try:
        checked = check_format(schema)
        if isinstance(checked, dict):
            check_schema_support(checked)
    except FlowError as exc:
        return exc.message if exc.status == 400 else f"a {exc.status}, not a 400"
    except UnsupportedSchema as exc:
        return str(exc)
    return None


def walks(schema: JsonValue, count: int, seed: int) -> Iterator[str]:
    """Up to ``count`` complete answers the constraint allows, at random."""
    matcher = llguidance.LLMatcher(_TOKENIZER, json_grammar(schema), log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    size = len(_VOCABULARY.tokens)
    words = np.zeros((size + 31) // 32, dtype=np.int32)
    rng = random.Random(seed)
    for _ in range(count):
        walk = matcher.deep_copy()
        out = bytearray()
        for _step in range(600):
            walk.unsafe_compute_mask_ptr(words.ctypes.data, words.nbytes)
            bits = np.unpackbits(words.view(np.uint8), bitorder="little", count=size)
            allowed = np.flatnonzero(bits).tolist()
            assert allowed, "the constraint allows nothing and is not finished"
            if _VOCABULARY.eos_token_id in allowed and rng.random() < 0.5:
                yield out.decode("utf-8")
                break
            closing = [t for t in allowed if t < 256 and t in _CLOSING]
            token = rng.choice(closing if closing and rng.random() < 0.6 else allowed)
            if token == _VOCABULARY.eos_token_id:
                yield out.decode("utf-8")
                break
            assert walk.consume_token(token), walk.get_error()
            out += _VOCABULARY.tokens[token]


SUITE = suite_schemas()


def test_the_gateway_enforces_at_least_what_llguidance_alone_does() -> None:
    verdicts = {name: classify(schema) for name, schema in SUITE}
    enforced = [name for name, refusal in verdicts.items() if refusal is None]
    assert len(enforced) >= AT_LEAST_ENFORCED, (len(enforced), len(SUITE))
    for name, refusal in verdicts.items():
        if refusal is not None:
            # A refusal names the keyword (in quotes), or says the schema is invalid.
            assert '"' in refusal or "schema" in refusal.lower(), (name, refusal)


@pytest.mark.parametrize(("name", "schema"), SUITE, ids=[name for name, _ in SUITE])
def test_every_answer_a_schema_allows_validates(name: str, schema: JsonValue) -> None:
    if classify(schema) is not None:
        return  # refused before any work: nothing to enforce
    answers = list(walks(schema, count=30, seed=len(name)))
    assert answers, "no walk ended"
    for answer in answers:
        check_answer(answer, schema)


@pytest.mark.slow
async def test_the_suite_over_http_gets_valid_answers_or_a_400(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    """The demo model, every schema as ``format`` on /api/generate: a 400 that
    says why, or a 200 whose answer validates. Zero 5xx, zero invalid answers."""
    live, _ = served
    counts = {"enforced": 0, "refused": 0, "cut": 0}
    async with httpx.AsyncClient(
        base_url=f"http://{live.host}:{live.port}", timeout=120
    ) as http:
        for index, (name, schema) in enumerate(SUITE):
            for stream in (False, True):
                body: dict[str, Any] = {
                    "model": "tiny",
                    "prompt": "Answer in JSON.",
                    "format": schema,
                    "stream": stream,
                    "options": {"seed": index, "num_predict": 1024},
                }
                reply = await http.post("/api/generate", json=body)
                assert reply.status_code in (200, 400), (name, reply.text)
                if reply.status_code == 400:
                    assert classify(schema) is not None, (name, reply.text)
                    counts["refused"] += 1
                    continue
                text = reply.text.strip("\n")
                lines = [json.loads(line) for line in text.split("\n")]
                assert all("error" not in line for line in lines), (name, lines[-1])
                final = lines[-1]
                if final["done_reason"] == "length":
                    counts["cut"] += 1
                    continue
                answer = "".join(line["response"] for line in lines)
                check_answer(answer, schema)
                counts["enforced"] += 1
    assert counts["enforced"] + counts["cut"] >= 2 * AT_LEAST_ENFORCED, counts
    assert counts["cut"] <= counts["enforced"] // 10, counts
    print(json.dumps(counts))
