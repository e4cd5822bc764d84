"""Pull and push in the core: where names point, how blobs are cut, and the flows'
effects and progress lines, with a scripted registry and store."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from gateway_core import (
    DownloadBlob,
    FetchManifest,
    GatewayConfig,
    InstallManifest,
    ManifestData,
    ModelName,
    PutManifest,
    ReadManifest,
    RegistryReference,
    Result,
    StoreDone,
    TransferDone,
    TransferProgress,
    UploadBlob,
    WorkEffect,
    WorkFailed,
)
from gateway_core._manifest import (
    CONFIG_MEDIA_TYPE,
    MODEL_MEDIA_TYPE,
    TEMPLATE_MEDIA_TYPE,
    Layer,
    Manifest,
)
from gateway_core._registry._transfer import Part, plan_chunks, plan_parts, valid_resume

from .helpers import World, run

MODEL = "sha256:" + "a1" * 32
TEMPLATE = "sha256:" + "b2" * 32
CONFIG = "sha256:" + "c3" * 32
MANIFEST = Manifest(
    config=Layer(media_type=CONFIG_MEDIA_TYPE, digest=CONFIG, size=300),
    layers=(
        Layer(media_type=MODEL_MEDIA_TYPE, digest=MODEL, size=1000),
        Layer(media_type=TEMPLATE_MEDIA_TYPE, digest=TEMPLATE, size=20),
    ),
).to_bytes()


# -- names and URLs ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "insecure", "manifest_url"),
    [
        (
            "llama3.2",
            False,
            "https://registry.ollama.ai/v2/library/llama3.2/manifests/latest",
        ),
        ("me/mine:q4", False, "https://registry.ollama.ai/v2/me/mine/manifests/q4"),
        (
            "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
            False,
            "https://hf.co/v2/bartowski/Llama-3.2-1B-Instruct-GGUF/manifests/Q4_K_M",
        ),
        (
            "127.0.0.1:5000/library/tiny",
            True,
            "http://127.0.0.1:5000/v2/library/tiny/manifests/latest",
        ),
    ],
)
def test_a_name_points_where_ollama_points_it(
    name: str, insecure: bool, manifest_url: str
) -> None:
    reference = RegistryReference.of(ModelName.parse(name), insecure=insecure)
    assert reference.manifest_url == manifest_url


def test_blob_and_upload_urls_and_scopes() -> None:
    reference = RegistryReference.of(ModelName.parse("ns/m:t"))
    assert reference.blob_url(MODEL.replace(":", "-")) == (
        f"https://registry.ollama.ai/v2/ns/m/blobs/{MODEL}"
    )
    assert reference.upload_url == "https://registry.ollama.ai/v2/ns/m/blobs/uploads/"
    assert reference.scope(push=False) == "repository:ns/m:pull"
    assert reference.scope(push=True) == "repository:ns/m:pull,push"


# -- parts ---------------------------------------------------------------------


def test_parts_follow_ollamas_sizes_and_cover_the_blob() -> None:
    mb = 1000 * 1000
    assert plan_parts(0) == ()
    assert plan_parts(5) == (Part(0, 5),)
    assert plan_parts(250 * mb) == (
        Part(0, 100 * mb),
        Part(100 * mb, 100 * mb),
        Part(200 * mb, 50 * mb),
    )
    big = plan_parts(64_000 * mb)
    assert len(big) == 64
    assert {p.size for p in big} == {1000 * mb}
    assert len(plan_parts(3200 * mb)) == 16
    for size in (1, 99, 100, 101, 12345):
        parts = plan_parts(size, parts=4, min_part=10, max_part=40)
        assert valid_resume(parts, size)
        assert sum(p.size for p in parts) == size


def test_a_resume_record_must_cover_the_blob_exactly() -> None:
    assert valid_resume((Part(0, 10, 3), Part(10, 5, 5)), 15)
    assert not valid_resume((Part(0, 10), Part(11, 4)), 15)  # a gap
    assert not valid_resume((Part(0, 10),), 15)  # too short
    assert not valid_resume((Part(0, 10), Part(5, 10)), 15)  # overlapping
    with pytest.raises(ValueError, match="invalid part"):
        Part(0, 10, 11)


def test_chunks() -> None:
    assert plan_chunks(10, 4) == ((0, 4), (4, 4), (8, 2))
    assert plan_chunks(0, 4) == ()


# -- pull ------------------------------------------------------------------------


def registry_world(effect: WorkEffect) -> Sequence[Result]:
    match effect:
        case FetchManifest():
            return [ManifestData(data=MANIFEST)]
        case DownloadBlob(size=size) | UploadBlob(size=size):
            return [
                TransferProgress(completed=size // 2, total=size),
                TransferProgress(completed=size, total=size),
                TransferDone(),
            ]
        case InstallManifest() | PutManifest():
            return [StoreDone()]
        case ReadManifest():
            return [ManifestData(data=MANIFEST)]
        case _:
            return [WorkFailed(status=500, message=f"unexpected {effect!r}")]


def lines(body: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in body.splitlines()]


def test_pull_streams_ollamas_progress_and_writes_the_manifest_last() -> None:
    answer = run(
        "POST",
        "/api/pull",
        b'{"model": "127.0.0.1:5000/library/tiny", "insecure": true}',
        world=registry_world,
    )
    assert answer.status == 200
    got = lines(answer.body)
    assert got[0] == {"status": "pulling manifest"}
    assert got[1] == {
        "status": "pulling a1a1a1a1a1a1",
        "digest": MODEL,
        "total": 1000,
        "completed": 500,
    }
    assert [line["status"] for line in got[-3:]] == [
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    pulled = [e.digest for e in answer.work if isinstance(e, DownloadBlob)]
    assert pulled == [MODEL, TEMPLATE, CONFIG]  # layers, then the config
    assert all(
        e.reference.scheme == "http"
        for e in answer.work
        if isinstance(e, DownloadBlob | FetchManifest)
    )
    last = answer.work[-1]
    assert isinstance(last, InstallManifest)
    assert last.data == MANIFEST  # byte for byte: the model digest is the registry's
    assert last.name == ModelName.parse("127.0.0.1:5000/library/tiny")


def test_pull_without_stream_answers_the_last_status() -> None:
    answer = run(
        "POST", "/api/pull", b'{"model": "tiny", "stream": false}', world=registry_world
    )
    assert (answer.status, answer.json()) == (200, {"status": "success"})
    first = answer.work[0]
    assert isinstance(first, FetchManifest)
    assert first.reference.scheme == "https"


def failing(at: type, status: int, message: str) -> World:
    def world(effect: WorkEffect) -> Sequence[Result]:
        if isinstance(effect, at):
            return [WorkFailed(status=status, message=message)]
        return registry_world(effect)

    return world


@pytest.mark.parametrize(
    ("at", "status", "message"),
    [
        (FetchManifest, 404, "pull model manifest: file does not exist"),
        (DownloadBlob, 502, "digest mismatch, file must be downloaded again"),
        (FetchManifest, 401, "pull model manifest: unauthorized: denied"),
    ],
)
def test_registry_failures_keep_their_status_and_install_nothing(
    at: type, status: int, message: str
) -> None:
    world = failing(at, status, message)
    answer = run(
        "POST",
        "/api/pull",
        b'{"model": "tiny", "stream": false}',
        world=world,
    )
    assert (answer.status, answer.json()) == (status, {"error": message})
    assert not any(isinstance(e, InstallManifest) for e in answer.work)
    streamed = run("POST", "/api/pull", b'{"model": "tiny"}', world=world)
    assert streamed.status == 200  # the stream opened before the registry answered
    assert lines(streamed.body)[-1] == {"error": message}


def test_a_manifest_that_is_not_a_model_is_a_502_before_any_download() -> None:
    def world(effect: WorkEffect) -> Sequence[Result]:
        if isinstance(effect, FetchManifest):
            return [ManifestData(data=b'{"schemaVersion": 2, "layers": []}')]
        return registry_world(effect)

    answer = run("POST", "/api/pull", b'{"model": "x", "stream": false}', world=world)
    assert answer.status == 502
    assert "not a model" in str(answer.json())
    assert [type(e) for e in answer.work] == [FetchManifest]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{}", "model is required"),
        (b'{"model": "a/b/c/d"}', "invalid model name"),
        # A host no DNS could resolve (a label over 63 characters): once a 500.
        (
            b'{"model": "' + b"h" * 64 + b'.example/ns/m"}',
            "invalid model name: its registry '" + "h" * 64 + ".example' is not "
            "a host name",
        ),
        (
            b'{"model": "h.example:99999/ns/m"}',
            "invalid model name: its registry '99999' is not a port",
        ),
    ],
)
def test_bad_names_are_400_before_any_work(body: bytes, message: str) -> None:
    for path in ("/api/pull", "/api/push"):
        answer = run("POST", path, body, world=registry_world)
        assert (answer.status, answer.json()) == (400, {"error": message})
        assert answer.work == ()


# -- push ------------------------------------------------------------------------


def test_push_uploads_every_blob_then_the_stored_manifest() -> None:
    answer = run(
        "POST",
        "/api/push",
        b'{"model": "h:1/ns/m", "insecure": true}',
        world=registry_world,
    )
    statuses = [line["status"] for line in lines(answer.body)]
    assert statuses[0] == "retrieving manifest"
    assert statuses[-2:] == ["pushing manifest", "success"]
    assert "pushing c3c3c3c3c3c3" in statuses
    pushed = [e.digest for e in answer.work if isinstance(e, UploadBlob)]
    assert pushed == [MODEL, TEMPLATE, CONFIG]
    last = answer.work[-1]
    assert isinstance(last, PutManifest)
    assert last.data == MANIFEST
    assert last.reference.manifest_url == "http://h:1/v2/ns/m/manifests/latest"


def test_push_of_a_missing_model_is_a_404() -> None:
    world = failing(ReadManifest, 404, "no such model")
    answer = run(
        "POST", "/api/push", b'{"model": "gone", "stream": false}', world=world
    )
    assert (answer.status, answer.json()) == (
        404,
        {"error": 'model "gone:latest" not found'},
    )


def test_a_short_name_goes_to_the_configured_default_registry() -> None:
    """Only a name without a host is redirected, and it keeps its short name in
    the store; an explicit host or namespace is the client's."""
    config = GatewayConfig(
        registry="mirror.internal:5000",
        registry_namespace="team",
        registry_insecure=True,
    )

    def pull(name: str) -> tuple[str, str, str, ModelName]:
        body = json.dumps({"model": name, "stream": False}).encode()
        answer = run("POST", "/api/pull", body, world=registry_world, config=config)
        fetch = answer.work[0]
        assert isinstance(fetch, FetchManifest)
        last = answer.work[-1]
        assert isinstance(last, InstallManifest)
        ref = fetch.reference
        return ref.scheme, ref.host, ref.repository, last.name

    assert pull("tiny") == (
        "http",
        "mirror.internal:5000",
        "team/tiny",
        ModelName.parse("tiny"),
    )
    assert pull("someone/tiny")[1:3] == ("mirror.internal:5000", "someone/tiny")
    assert pull("other.example/x/tiny")[:3] == ("https", "other.example", "x/tiny")
