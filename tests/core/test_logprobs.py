"""Token logprobs through the core: the request fields, the Generate effect, and
where each token's entry lands in Ollama's NDJSON (with the chunk that brings its
text, or the last object for text held back) and in a whole answer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from gateway_core import (
    AcquireRunner,
    Alternative,
    Generate,
    GenerationDone,
    LookupModel,
    ModelFound,
    Piece,
    PromptEvaluated,
    Result,
    RunnerReady,
    Tokenize,
    TokenizerInfo,
    TokenLogprob,
    Tokens,
    WorkEffect,
)
from gateway_core._logprobs import native_logprobs, openai_logprobs

from .helpers import CHATML, model_record, run


class World:
    """A model that says ``pieces``, each token with a logprob of its own."""

    def __init__(self, pieces: Sequence[bytes]) -> None:
        self.pieces = pieces
        self.generations: list[Generate] = []

    def __call__(self, effect: WorkEffect) -> Sequence[Result]:
        match effect:
            case LookupModel():
                return [ModelFound(record=model_record("m", CHATML))]
            case AcquireRunner():
                info = TokenizerInfo(context_length=4096, add_bos=False, add_eos=False)
                return [RunnerReady(load_duration=0.0, tokenizer=info)]
            case Tokenize(text=text):
                return [Tokens(ids=tuple(map(ord, text)))]
            case Generate():
                self.generations.append(effect)
                asked = effect.logprobs
                results: list[Result] = [PromptEvaluated(count=3, duration=0.0)]
                for index, data in enumerate(self.pieces):
                    logprob = None
                    if asked is not None:
                        top = (Alternative(data, -0.5), Alternative(b"x", -1.5))
                        logprob = TokenLogprob(data=data, logprob=-0.5, top=top[:asked])
                    results.append(
                        Piece(token=index, data=data, duration=0.0, logprob=logprob)
                    )
                results.append(GenerationDone(reason="stop"))
                return results
        raise AssertionError(effect)


def chat(world: World, **fields: object) -> list[dict[str, Any]]:
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], **fields}
    t = run("POST", "/api/chat", json.dumps(body).encode(), world=world)
    assert t.status == 200, t.body
    return [json.loads(line) for line in t.body.splitlines()]


def test_no_logprobs_unless_asked() -> None:
    world = World([b"Hi"])
    lines = chat(world)
    assert world.generations[0].logprobs is None
    assert all("logprobs" not in line for line in lines)


@pytest.mark.parametrize(
    ("fields", "asked"),
    [
        ({"logprobs": True}, 0),
        ({"logprobs": True, "top_logprobs": 2}, 2),
        # Asking for alternatives asks for logprobs.
        ({"top_logprobs": 1}, 1),
        ({"logprobs": False, "top_logprobs": 0}, None),
    ],
)
def test_the_request_fields_become_the_generations_logprobs(
    fields: dict[str, object], asked: int | None
) -> None:
    world = World([b"Hi"])
    chat(world, **fields)
    assert world.generations[0].logprobs == asked


@pytest.mark.parametrize("top", [-1, 21])
def test_top_logprobs_out_of_range_is_a_400(top: int) -> None:
    body = {"model": "m", "messages": [], "logprobs": True, "top_logprobs": top}
    t = run("POST", "/api/chat", json.dumps(body).encode(), world=World([]))
    assert t.status == 400
    assert t.json() == {"error": "top_logprobs must be between 0 and 20"}


def test_each_chunk_carries_the_logprobs_of_its_tokens() -> None:
    lines = chat(World([b"Hel", b"lo"]), logprobs=True, top_logprobs=1)
    texts = [line["message"]["content"] for line in lines[:-1]]
    entries = [[e["token"] for e in line.get("logprobs", [])] for line in lines]
    assert texts == ["Hel", "lo"]
    assert entries == [["Hel"], ["lo"], []]
    assert lines[0]["logprobs"][0] == {
        "token": "Hel",
        "logprob": -0.5,
        "bytes": [72, 101, 108],
        "top_logprobs": [{"token": "Hel", "logprob": -0.5, "bytes": [72, 101, 108]}],
    }


def test_held_back_text_brings_its_tokens_entries_when_it_is_shown() -> None:
    # " <" might open a tag: held until the output ends, then shown in a chunk of
    # its own, which carries that token's entry.
    lines = chat(World([b"a", b" <"]), logprobs=True)
    shown = [(line["message"]["content"], line.get("logprobs")) for line in lines]
    assert [(text, [e["token"] for e in entries or []]) for text, entries in shown] == [
        ("a", ["a"]),
        (" <", [" <"]),
        ("", []),
    ]


def test_tokens_of_a_stop_string_come_with_the_last_object() -> None:
    # The stop string's text is never shown, but the model made its tokens.
    lines = chat(
        World([b"a", b"<|x", b"|>", b"b"]), logprobs=True, options={"stop": ["<|x|>"]}
    )
    assert [line["message"]["content"] for line in lines] == ["a", ""]
    assert [e["token"] for e in lines[0]["logprobs"]] == ["a"]
    assert lines[-1]["done"] is True
    assert [e["token"] for e in lines[-1]["logprobs"]] == ["<|x", "|>"]


def test_a_whole_answer_has_every_tokens_entry_in_order() -> None:
    (whole,) = chat(World([b"Hel", b"lo", b"!"]), logprobs=True, stream=False)
    assert whole["message"]["content"] == "Hello!"
    assert [e["token"] for e in whole["logprobs"]] == ["Hel", "lo", "!"]
    assert all("top_logprobs" not in e for e in whole["logprobs"])


def test_a_token_that_splits_a_character_shows_its_exact_bytes() -> None:
    entry = TokenLogprob(data=b"\xe2\x82", logprob=-1.0)
    (shown,) = native_logprobs([entry])
    assert shown == {"token": "\ufffd", "logprob": -1.0, "bytes": [226, 130]}


def test_openai_entries_always_carry_a_top_list() -> None:
    entry = TokenLogprob(data=b"a", logprob=-0.25)
    assert openai_logprobs([entry]) == {
        "content": [
            {"token": "a", "logprob": -0.25, "bytes": [97], "top_logprobs": []}
        ],
        "refusal": None,
    }


@pytest.mark.parametrize("value", [0.5, float("nan")])
def test_a_logprob_above_zero_is_refused(value: float) -> None:
    with pytest.raises(ValueError, match="at most 0"):
        TokenLogprob(data=b"a", logprob=value)


def test_an_impossible_token_is_shown_with_openais_floor() -> None:
    shown = native_logprobs([TokenLogprob(data=b"a", logprob=float("-inf"))])
    assert shown == [{"token": "a", "logprob": -9999.0, "bytes": [97]}]
