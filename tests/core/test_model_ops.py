"""Model management endpoints through the Exchange, with a scripted store.

What is checked here is the core's share: requests refused before the store is asked
(names, digests, parameter types), the effects handed to the store, and the shape and
status of each answer. The real store on disk has its own tests, and the whole path
runs with the official client in tests/adapters/test_ollama_client.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from gateway_core import (
    BlobStored,
    CopyModel,
    CreateModel,
    DeleteModel,
    ListModels,
    ListRunning,
    LookupModel,
    ModelCreated,
    ModelFound,
    ModelList,
    ModelName,
    ModelRecord,
    Result,
    RunningList,
    RunningModel,
    StoreDone,
    WorkEffect,
    WorkFailed,
)

from .helpers import NOW, Transcript, run

RECORD = ModelRecord(
    name="tiny:latest",
    digest="ab" * 32,
    size=1234,
    modified_at=NOW - 3600,
    model_file="/store/blobs/sha256-cd",
    model_digest="sha256:" + "cd" * 32,
    template="{{ messages }} {# tools #}",
    system="Be brief.",
    parameters={"temperature": 0.5, "stop": ["<|im_end|>", "</s>"]},
    model_info={"general.architecture": "llama"},
)
DIGEST = "sha256:" + "ef" * 32


def store(effect: WorkEffect) -> Sequence[Result]:
    """A store with one model, ``tiny``, loaded and kept forever."""
    match effect:
        case LookupModel(name=name) | DeleteModel(name=name):
            if name.model.lower() != "tiny":
                return [WorkFailed(status=404, message="no such model")]
            if isinstance(effect, DeleteModel):
                return [StoreDone()]
            return [ModelFound(record=RECORD)]
        case CopyModel(source=source):
            if source.model != "tiny":
                return [WorkFailed(status=404, message="no such model")]
            return [StoreDone()]
        case ListModels():
            return [ModelList(records=(RECORD,))]
        case ListRunning():
            running = RunningModel(
                record=RECORD, expires_at=float("inf"), context_length=2048
            )
            return [RunningList(models=(running,))]
        case CreateModel():
            return [ModelCreated(statuses=("parsing GGUF", "writing manifest"))]
    raise AssertionError(f"unexpected {effect!r}")


def call(method: str, path: str, body: object | None = None) -> Transcript:
    data = None if body is None else json.dumps(body).encode()
    return run(method, path, data, world=store)


def test_tags_lists_each_model_with_its_details() -> None:
    t = call("GET", "/api/tags")
    assert t.work == (ListModels(),)
    assert t.json() == {
        "models": [
            {
                "name": "tiny:latest",
                "model": "tiny:latest",
                "modified_at": "2023-11-14T21:13:20Z",
                "size": 1234,
                "digest": "ab" * 32,
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": "",
                    "families": [],
                    "parameter_size": "",
                    "quantization_level": "",
                },
                "capabilities": ["completion", "tools"],
            }
        ]
    }


def test_ps_shows_a_model_kept_forever_with_a_fixed_far_date() -> None:
    t = call("GET", "/api/ps")
    (model,) = t.json()["models"]  # type: ignore[index]
    assert model["expires_at"] == "2262-04-11T23:47:16.854775Z"
    assert model["context_length"] == 2048
    assert model["size_vram"] == 0


def test_show_reports_the_model_and_previews_request_overrides() -> None:
    options = {"temperature": 0.1, "mirostat": 2}  # unknown keys are ignored, as Ollama
    t = call("POST", "/api/show", {"model": "TINY", "options": options})
    body = t.json()
    assert isinstance(body, dict)
    assert body["system"] == "Be brief."
    assert body["model_info"] == {"general.architecture": "llama"}
    assert body["capabilities"] == ["completion", "tools"]
    parameters = body["parameters"]
    assert isinstance(parameters, str)
    assert parameters.splitlines() == [
        "temperature                    0.1",
        'stop                           "<|im_end|>"',
        'stop                           "</s>"',
    ]
    assert 'SYSTEM """Be brief."""' in str(body["modelfile"])
    lookup = t.work[0]
    assert isinstance(lookup, LookupModel)
    assert lookup.name == ModelName.parse(
        "TINY"
    )  # the store matches case-insensitively


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", "/api/show", {}, 400, "model is required"),
        ("POST", "/api/show", {"model": "no such"}, 400, "invalid model name"),
        ("POST", "/api/show", {"model": "gone"}, 404, "model 'gone' not found"),
        (
            "POST",
            "/api/copy",
            {"source": "", "destination": "x"},
            400,
            'source "" is invalid',
        ),
        (
            "POST",
            "/api/copy",
            {"source": "tiny", "destination": "a b"},
            400,
            'destination "a b" is invalid',
        ),
        (
            "POST",
            "/api/copy",
            {"source": "gone", "destination": "x"},
            404,
            'model "gone" not found',
        ),
        (
            "DELETE",
            "/api/delete",
            {"model": "a/b/c/d"},
            400,
            'name "a/b/c/d" is invalid',
        ),
        ("DELETE", "/api/delete", {"model": "gone"}, 404, "model 'gone' not found"),
    ],
)
def test_management_errors_use_ollamas_words(
    method: str, path: str, body: object, status: int, message: str
) -> None:
    t = call(method, path, body)
    assert (t.status, t.json()) == (status, {"error": message})


def test_copy_and_delete_answer_an_empty_200() -> None:
    for t in (
        call("POST", "/api/copy", {"source": "tiny", "destination": "other"}),
        call("DELETE", "/api/delete", {"name": "tiny"}),  # the deprecated spelling
    ):
        assert t.status == 200
        assert t.body == b""
        assert t.header("content-length") == "0"


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (
            "/api/copy",
            {"source": "tiny", "destination": "TINY"},
            'destination "TINY" names the same model as source "tiny"',
        ),
        (
            "/api/copy",
            {"source": "library/tiny:latest", "destination": "Tiny"},
            'destination "Tiny" names the same model as source "library/tiny:latest"',
        ),
        (
            "/api/create",
            {"model": "Tiny", "from": "tiny"},
            'model "Tiny" names the same model as from "tiny"',
        ),
    ],
)
def test_a_case_variant_of_the_source_is_refused_before_the_store_is_touched(
    path: str, body: dict[str, object], message: str
) -> None:
    """The store keeps one spelling per model: writing the other spelling would
    replace (so remove) the source."""
    t = call("POST", path, body)
    assert (t.status, t.json()) == (
        400,
        {"error": f"{message} (model names ignore case)"},
    )
    assert t.work == ()


def test_the_exact_same_name_still_reaches_the_store() -> None:
    copied = call("POST", "/api/copy", {"source": "tiny", "destination": "tiny"})
    assert (copied.status, copied.work) == (
        200,
        (
            CopyModel(
                source=ModelName.parse("tiny"), destination=ModelName.parse("tiny")
            ),
        ),
    )
    rebuilt = call(
        "POST", "/api/create", {"model": "tiny", "from": "tiny:latest", "system": "x"}
    )
    assert rebuilt.status == 200
    (effect,) = rebuilt.work
    assert isinstance(effect, CreateModel)
    assert effect.name == effect.base == ModelName.parse("tiny")


def test_create_streams_progress_then_success() -> None:
    t = call(
        "POST",
        "/api/create",
        {
            "model": "new",
            "files": {"m.gguf": DIGEST},
            "parameters": {"num_ctx": 2048},
            "license": "MIT",
        },
    )
    assert [json.loads(line) for line in t.body.splitlines()] == [
        {"status": "parsing GGUF"},
        {"status": "writing manifest"},
        {"status": "success"},
    ]
    (effect,) = t.work
    assert effect == CreateModel(
        name=ModelName.parse("new"),
        files=(("m.gguf", DIGEST),),
        parameters={"num_ctx": 2048},
        license=("MIT",),
    )


def test_create_without_streaming_answers_success_only() -> None:
    t = call("POST", "/api/create", {"model": "n", "from": "tiny", "stream": False})
    assert t.json() == {"status": "success"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"files": {"m.gguf": DIGEST}}, "model is required"),
        ({"model": "n"}, "give either 'files' (GGUF blob digests) or 'from'"),
        ({"model": "n", "from": "tiny", "files": {"m.gguf": DIGEST}}, "give either"),
        ({"model": "n", "files": {"m.gguf": "sha256:12"}}, "invalid digest"),
        ({"model": "n", "files": {"../m.gguf": DIGEST}}, "invalid file name"),
        (
            {"model": "n", "from": "tiny", "quantize": "q4_K_M"},
            "'quantize' is not supported",
        ),
        (
            {"model": "n", "from": "tiny", "parameters": {"top_k": "x"}},
            'parameter "top_k"',
        ),
        ({"model": "n", "from": "tiny", "template": "{% if %}"}, "invalid template"),
        ({"model": "n", "from": "tiny", "messages": [{"role": 1}]}, "messages[0]"),
    ],
)
def test_create_refuses_a_bad_request_before_the_store_is_touched(
    body: dict[str, object], message: str
) -> None:
    t = call("POST", "/api/create", body)
    assert t.status == 400
    assert message in str(t.json())
    assert t.work == ()


def test_blob_digests_are_checked_and_missing_blobs_are_404() -> None:
    t = run("HEAD", f"/api/blobs/{DIGEST}", world=lambda e: [_absent()])
    assert t.status == 404
    assert t.body == b""  # HEAD: the status says it all


def _absent() -> Result:
    from gateway_core import BlobPresence

    return BlobPresence(exists=False)


def test_tags_puts_the_newest_model_first() -> None:
    older = RECORD
    newer = ModelRecord(
        name="newer:latest",
        digest="12" * 32,
        size=1,
        modified_at=NOW,
        model_file="/store/blobs/sha256-34",
        model_digest="sha256:" + "34" * 32,
    )
    t = run("GET", "/api/tags", world=lambda e: [ModelList(records=(older, newer))])
    names = [m["name"] for m in t.json()["models"]]  # type: ignore[index]
    assert names == ["newer:latest", "tiny:latest"]


@pytest.mark.parametrize(("created", "status"), [(True, 201), (False, 200)])
def test_a_blob_upload_says_whether_it_was_new(created: bool, status: int) -> None:
    t = run(
        "POST",
        f"/api/blobs/{DIGEST}",
        [b"data"],
        world=lambda e: [BlobStored(created=created)],
    )
    assert t.status == status


def test_a_failed_upload_answers_with_the_stores_status() -> None:
    mismatch = WorkFailed(status=400, message='digest mismatch, expected "a", got "b"')
    t = run("POST", f"/api/blobs/{DIGEST}", [b"data"], world=lambda e: [mismatch])
    assert (t.status, t.json()) == (400, {"error": mismatch.message})
