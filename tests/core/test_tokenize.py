"""``/api/tokenize``, ``/api/detokenize`` and llama-server's aliases through the
Exchange, with a scripted runner whose tokens are characters (``ord``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from gateway_core import (
    AcquireRunner,
    Detokenize,
    LookupModel,
    ModelFound,
    Result,
    RunnerReady,
    Text,
    Tokenize,
    TokenizerInfo,
    Tokens,
    WorkEffect,
    WorkFailed,
)

from .helpers import model_record, run

BOS = 1


class World:
    def __init__(self) -> None:
        self.acquired: list[AcquireRunner] = []
        self.tokenized: list[Tokenize] = []

    def __call__(self, effect: WorkEffect) -> Sequence[Result]:
        match effect:
            case LookupModel(name=name):
                if name.model != "m":
                    return [WorkFailed(status=404, message="gone")]
                return [ModelFound(record=model_record("m"))]
            case AcquireRunner():
                self.acquired.append(effect)
                info = TokenizerInfo(context_length=4096, add_bos=True, add_eos=False)
                return [RunnerReady(load_duration=0.25, tokenizer=info)]
            case Tokenize(text=text, add_bos=add_bos):
                self.tokenized.append(effect)
                return [Tokens(ids=(BOS,) * add_bos + tuple(map(ord, text)))]
            case Detokenize(ids=ids):
                return [Text(text="".join(chr(i) for i in ids if i != BOS))]
        raise AssertionError(effect)


def post(path: str, body: dict[str, Any], world: World | None = None) -> Any:
    t = run("POST", path, json.dumps(body).encode(), world=world or World())
    return t.status, t.json()


def test_tokenize_adds_the_models_special_tokens_unless_told_not_to() -> None:
    status, answer = post("/api/tokenize", {"model": "m", "content": "Hi"})
    assert status == 200
    assert answer["model"] == "m"
    assert answer["tokens"] == [BOS, ord("H"), ord("i")]
    assert answer["load_duration"] == 250_000_000
    assert "pieces" not in answer
    _, plain = post(
        "/api/tokenize", {"model": "m", "content": "Hi", "add_special": False}
    )
    assert plain["tokens"] == [ord("H"), ord("i")]


def test_with_pieces_gives_each_tokens_text() -> None:
    body = {"model": "m", "content": "ab", "with_pieces": True, "add_special": False}
    _, answer = post("/api/tokenize", body)
    assert answer["pieces"] == ["a", "b"]
    _, server = post("/tokenize", body)
    assert server == {"tokens": [{"id": 97, "piece": "a"}, {"id": 98, "piece": "b"}]}


def test_detokenize_round_trips_and_llama_servers_shapes_are_bare() -> None:
    _, answer = post("/api/detokenize", {"model": "m", "tokens": [72, 105]})
    assert answer["content"] == "Hi"
    assert answer["model"] == "m"
    assert post("/detokenize", {"model": "m", "tokens": [72, 105]}) == (
        200,
        {"content": "Hi"},
    )
    assert post("/tokenize", {"model": "m", "content": "Hi"})[1] == {
        "tokens": [BOS, 72, 105]
    }


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/api/tokenize", {"content": "x"}, 400, "model is required"),
        ("/api/tokenize", {"model": "m"}, 400, "content must be a string"),
        ("/api/tokenize", {"model": "nope", "content": "x"}, 404, "not found"),
        ("/api/tokenize", {"model": "m", "content": 3}, 400, "content"),
        ("/api/detokenize", {"model": "m", "tokens": [1, -2]}, 400, "token ids"),
        ("/api/detokenize", {"model": "m", "tokens": [True]}, 400, "token ids"),
        ("/api/detokenize", {"model": "m"}, 400, "token ids"),
        ("/tokenize", {"model": "m", "content": "x", "with_pieces": 1}, 400, "boolean"),
    ],
)  # fmt: skip
def test_bad_requests_are_precise_4xx(
    path: str, body: dict[str, Any], status: int, words: str
) -> None:
    got, answer = post(path, body)
    assert got == status
    assert words in answer["error"]


def test_a_chat_model_is_tokenized_by_its_generation_runner() -> None:
    world = World()
    post("/api/tokenize", {"model": "m", "content": "x"}, world)
    assert [a.embedding for a in world.acquired] == [False]


def test_a_piece_that_is_part_of_a_character_comes_as_bytes() -> None:
    class Halves(World):
        def __call__(self, effect: WorkEffect) -> Sequence[Result]:
            if isinstance(effect, Detokenize):
                data = b"\xc3" if effect.ids == (1,) else b"\xa9"
                return [Text(text="\ufffd", data=data)]
            return super().__call__(effect)

    def halves(effect: WorkEffect) -> Sequence[Result]:
        if isinstance(effect, Tokenize):
            return [Tokens(ids=(1, 2))]
        return Halves()(effect)

    body = {"model": "m", "content": "é", "with_pieces": True}
    t = run("POST", "/api/tokenize", json.dumps(body).encode(), world=halves)
    assert t.json()["pieces"] == [[0xC3], [0xA9]]  # type: ignore[index]
