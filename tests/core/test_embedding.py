"""/api/embed and /api/embeddings through the Exchange, with a scripted store and
runner: answer shapes, vector finishing, and errors in Ollama's words."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

import pytest

from gateway_core import (
    AcquireRunner,
    ContextOverflow,
    Detokenize,
    Embed,
    Embedded,
    LookupModel,
    ModelFound,
    ModelRecord,
    Result,
    RunnerReady,
    Text,
    Tokenize,
    TokenizerInfo,
    Tokens,
    WorkEffect,
    WorkFailed,
)

from .helpers import NOW, Transcript, run

RECORD = ModelRecord(
    name="tiny:latest",
    digest="ab" * 32,
    size=1,
    modified_at=NOW,
    model_file="/m",
    model_digest="sha256:" + "cd" * 32,
)
VECTOR = (3.0, 4.0, 0.0, 12.0)  # norm 13


class World:
    def __init__(self, *, context: int = 64, vector: Sequence[float] = VECTOR) -> None:
        self.info = TokenizerInfo(context_length=context, add_bos=True, add_eos=False)
        self.vector = tuple(vector)
        self.embedded: list[tuple[str, ...]] = []

    def __call__(self, effect: WorkEffect) -> Sequence[Result]:
        match effect:
            case LookupModel(name=name):
                if name.model != "tiny":
                    return [WorkFailed(status=404, message="gone")]
                return [ModelFound(record=RECORD)]
            case AcquireRunner(embedding=embedding):
                assert embedding, "embeddings need an embedding runner"
                return [RunnerReady(load_duration=0.25, tokenizer=self.info)]
            case Embed(texts=texts):
                self.embedded.append(texts)
                for index, text in enumerate(texts):
                    if len(text) + 1 > self.info.context_length:
                        return [ContextOverflow(index=index, tokens=len(text) + 1)]
                return [
                    Embedded(
                        vectors=tuple(self.vector for _ in texts),
                        token_counts=tuple(len(t) + 1 for t in texts),
                        duration=0.5,
                    )
                ]
            case Tokenize(text=text):
                return [Tokens(ids=tuple(map(ord, text)))]
            case Detokenize(ids=ids):
                return [Text(text="".join(map(chr, ids)))]
        raise AssertionError(effect)


def post(
    path: str, body: Mapping[str, object], world: World | None = None
) -> Transcript:
    data = json.dumps(body).encode()
    return run("POST", path, data, world=world or World(), started=NOW - 1)


def norm(vector: object) -> float:
    assert isinstance(vector, list)
    return math.sqrt(sum(x * x for x in vector))


def test_embed_returns_unit_vectors_and_metrics() -> None:
    t = post("/api/embed", {"model": "tiny", "input": ["a", "bcd"]})
    body = t.json()
    assert isinstance(body, dict)
    assert body["model"] == "tiny"
    embeddings = body["embeddings"]
    assert isinstance(embeddings, list)
    assert len(embeddings) == 2
    assert embeddings[0] == [3 / 13, 4 / 13, 0.0, 12 / 13]
    assert all(abs(norm(v) - 1) < 1e-12 for v in embeddings)
    assert body["prompt_eval_count"] == 2 + 4  # BOS included, as the model saw them
    assert body["total_duration"] == 1_000_000_000
    assert body["load_duration"] == 250_000_000


def test_a_single_string_is_one_input() -> None:
    world = World()
    t = post("/api/embed", {"model": "tiny", "input": "hello"}, world)
    assert world.embedded == [("hello",)]
    assert len(t.json()["embeddings"]) == 1  # type: ignore[index]


def test_dimensions_keep_the_first_values_and_normalize_again() -> None:
    t = post("/api/embed", {"model": "tiny", "input": "a", "dimensions": 2})
    (vector,) = t.json()["embeddings"]  # type: ignore[index]
    assert vector == [0.6, 0.8]


@pytest.mark.parametrize("dimensions", [0, -3, 5])
def test_dimensions_outside_the_vector_are_a_400(dimensions: int) -> None:
    t = post("/api/embed", {"model": "tiny", "input": "a", "dimensions": dimensions})
    assert t.status == 400
    assert "dimensions must be" in str(t.json())


def test_normalize_false_returns_the_models_vector() -> None:
    t = post("/api/embed", {"model": "tiny", "input": "a", "normalize": False})
    assert t.json()["embeddings"] == [list(VECTOR)]  # type: ignore[index]


def test_the_legacy_endpoint_returns_one_raw_vector() -> None:
    t = post("/api/embeddings", {"model": "tiny", "prompt": "a"})
    assert t.json() == {"embedding": list(VECTOR)}


def test_empty_input_only_loads_the_model() -> None:
    loaded = {"model": "tiny", "embeddings": []}
    cases: list[tuple[str, dict[str, object], object]] = [
        ("/api/embed", {"model": "tiny", "input": ""}, loaded),
        ("/api/embed", {"model": "tiny", "input": []}, loaded),
        ("/api/embeddings", {"model": "tiny", "prompt": ""}, {"embedding": []}),
    ]
    for path, body, answer in cases:
        t = post(path, body)
        assert t.json() == answer
        assert [type(w) for w in t.work] == [LookupModel, AcquireRunner]


def test_an_empty_string_in_a_list_is_embedded() -> None:
    world = World()
    post("/api/embed", {"model": "tiny", "input": [""]}, world)
    assert world.embedded == [("",)]


def test_a_long_input_is_truncated_to_the_context() -> None:
    world = World(context=16)
    t = post("/api/embed", {"model": "tiny", "input": "z" * 100}, world)
    assert t.status == 200
    assert world.embedded[-1] == ("z" * 15,)  # 16 minus the BOS
    assert t.json()["prompt_eval_count"] == 16  # type: ignore[index]
    assert t.notes == ("truncated 1 embedding input(s) to fit",)
    refused = post(
        "/api/embed",
        {"model": "tiny", "input": "z" * 100, "truncate": False},
        World(context=16),
    )
    assert (refused.status, refused.json()) == (
        400,
        {"error": "the input length exceeds the context length"},
    )


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/api/embed", {"input": "a"}, 404, 'model "" not found, try pulling it first'),
        ("/api/embeddings", {"prompt": "a"}, 400, "model is required"),
        ("/api/embed", {"model": "gone", "input": "a"}, 404,
         'model "gone" not found, try pulling it first'),
        ("/api/embed", {"model": "tiny", "input": [1, 2]}, 400, "invalid input type"),
        ("/api/embed", {"model": "tiny", "input": "a", "options": {"num_ctx": "x"}},
         400, 'option "num_ctx" must be of type integer'),
    ],
)  # fmt: skip
def test_embedding_errors(
    path: str, body: dict[str, object], status: int, message: str
) -> None:
    t = post(path, body)
    assert (t.status, t.json()) == (status, {"error": message})


def test_a_vector_with_nan_is_a_500_not_a_json_crash() -> None:
    t = post(
        "/api/embed", {"model": "tiny", "input": "a"}, World(vector=(1.0, math.nan))
    )
    assert (t.status, t.json()) == (
        500,
        {"error": "embedding contains NaN or Inf values"},
    )
