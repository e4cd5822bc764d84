"""The model store on a real directory, with the generated demo model as the GGUF.

Covers the safety promises: uploads are verified before they appear, every write is
atomic, no name or digest reaches outside the root, and damaged or missing files
give errors that name the model instead of crashes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import gguf
import ollama
import pytest

from gateway_core._manifest import file_type_name
from gateway_core._names import InvalidModelName, ModelName
from gateway_core_adapters.demo_model import CHAT_TEMPLATE, EOS_TOKEN, write_demo_model
from gateway_core_adapters.demo_store import ensure_demo_model
from gateway_core_adapters.gguf_info import GgufError, read_gguf
from gateway_core_adapters.model_store import ModelStore, StoreError
from gateway_core_adapters.store_files import STALE_TEMP_AGE, is_temp_name, temp_path

from .live import LiveServer
from .ollama_setup import QUICK, install
from .ollama_setup import call as in_thread


def name(text: str) -> ModelName:
    return ModelName.parse(text)


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def upload(store: ModelStore, data: bytes) -> str:
    blob = digest(data)
    with store.blob_writer(blob) as writer:
        for start in range(0, len(data), 100_000):
            writer.write(data[start : start + 100_000])
        writer.commit()
    return blob


@pytest.fixture(scope="module")
def gguf_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("gguf") / "demo.gguf"
    write_demo_model(path, context_length=512)
    return path.read_bytes()


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "store")


@pytest.fixture
def model_digest(store: ModelStore, gguf_bytes: bytes) -> str:
    return upload(store, gguf_bytes)


def create(store: ModelStore, text: str, blob: str, **fields: object) -> list[str]:
    return store.create(name(text), files={"model.gguf": blob}, **fields)  # type: ignore[arg-type]


def every_file(root: Path) -> Iterator[Path]:
    return (path for path in root.rglob("*") if path.is_file())


def temp_files(root: Path) -> list[Path]:
    return [path for path in every_file(root) if path.name.startswith(".")]


# -- blobs -------------------------------------------------------------------------


def test_upload_is_verified_and_installed(store: ModelStore) -> None:
    data = b"some blob" * 1000
    blob = digest(data)
    assert not store.has_blob(blob)
    with store.blob_writer(blob) as writer:
        writer.write(data[:10])
        writer.write(data[10:])
        assert writer.commit() is True
    assert store.has_blob(blob)
    path = store.root / "blobs" / ("sha256-" + blob[7:])
    assert path.read_bytes() == data
    assert temp_files(store.root) == []


def test_second_upload_of_a_blob_reports_it_was_there(store: ModelStore) -> None:
    upload(store, b"x")
    with store.blob_writer("sha256-" + digest(b"x")[7:].upper()) as writer:
        writer.write(b"x")
        assert writer.commit() is False
    assert temp_files(store.root) == []


def test_digest_mismatch_is_a_400_and_leaves_nothing(store: ModelStore) -> None:
    expected = digest(b"expected")
    writer = store.blob_writer(expected)
    writer.write(b"something else")
    with pytest.raises(StoreError) as caught:
        writer.commit()
    assert caught.value.status == 400
    assert caught.value.message == (
        f'digest mismatch, expected "{expected}", got "{digest(b"something else")}"'
    )
    assert not store.has_blob(expected)
    assert list(every_file(store.root)) == []


def test_aborted_upload_leaves_nothing(store: ModelStore) -> None:
    with store.blob_writer(digest(b"data")) as writer:
        writer.write(b"data")
        assert temp_files(store.root) != []  # it really streams to a file
    assert list(every_file(store.root)) == []
    with pytest.raises(RuntimeError):
        writer.write(b"more")


@pytest.mark.parametrize(
    "text",
    [
        "sha256:../../../../etc/passwd",
        "../" + "a" * 64,
        "sha256:" + "g" * 64,
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 64 + "/..",
        "sha512:" + "a" * 64,
        "",
    ],
)
def test_hostile_digests_are_refused(store: ModelStore, text: str) -> None:
    for call in (store.has_blob, store.blob_writer, store.blob_path):
        with pytest.raises(StoreError) as caught:
            call(text)
        assert caught.value.status == 400
    assert list(every_file(store.root)) == []


# -- create and lookup -------------------------------------------------------------


def test_created_model_is_described_from_its_gguf(
    store: ModelStore, model_digest: str, gguf_bytes: bytes
) -> None:
    statuses = create(store, "demo", model_digest)
    assert statuses[0] == "parsing GGUF"
    assert statuses[-1] == "writing manifest"
    record = store.lookup(name("demo"))
    assert record.name == "demo:latest"
    assert record.model_digest == model_digest
    assert Path(record.model_file).read_bytes() == gguf_bytes
    assert record.template == CHAT_TEMPLATE
    assert record.context_length == 512
    assert record.embedding_length == 64
    assert record.eos_token == EOS_TOKEN
    assert not record.is_embedding
    assert record.details.family == "llama"
    assert record.details.quantization_level == "F32"
    assert record.details.parameter_size.endswith("K")
    assert record.model_info["llama.context_length"] == 512
    assert record.model_info["tokenizer.ggml.tokens"] == []
    assert "general.name" not in record.model_info
    manifest = store.root / "manifests/registry.ollama.ai/library/demo/latest"
    assert record.digest == hashlib.sha256(manifest.read_bytes()).hexdigest()
    layers = json.loads(manifest.read_bytes())["layers"]
    assert record.size == sum(layer["size"] for layer in layers) + len(
        (store.root / "blobs")
        .joinpath("sha256-" + json.loads(manifest.read_bytes())["config"]["digest"][7:])
        .read_bytes()
    )


def test_show_info_verbose_keeps_long_arrays(
    store: ModelStore, model_digest: str
) -> None:
    create(store, "demo", model_digest)
    record = store.lookup(name("demo"))
    assert store.show_info(record, False)["tokenizer.ggml.tokens"] == []
    tokens = store.show_info(record, True)["tokenizer.ggml.tokens"]
    assert isinstance(tokens, list)
    assert EOS_TOKEN in tokens


def test_lookup_ignores_letter_case(store: ModelStore, model_digest: str) -> None:
    create(store, "MyName/Model:Tag", model_digest)
    record = store.lookup(name("myname/MODEL:tag"))
    assert record.name == "MyName/Model:Tag"


def test_creating_a_name_in_another_case_replaces_the_model(
    store: ModelStore, model_digest: str
) -> None:
    create(store, "Demo", model_digest)
    create(store, "DEMO", model_digest)
    assert [record.name for record in store.list_models()] == ["DEMO:latest"]


def test_missing_model_is_a_404(store: ModelStore) -> None:
    for call in (store.lookup, store.delete):
        with pytest.raises(StoreError) as caught:
            call(name("nothing"))
        assert caught.value.status == 404
        assert "nothing:latest" in caught.value.message
    with pytest.raises(StoreError) as caught:
        store.copy(name("nothing"), name("other"))
    assert caught.value.status == 404


def test_non_gguf_blob_is_a_400_at_create_time(store: ModelStore) -> None:
    blob = upload(store, b"this is not a model at all")
    with pytest.raises(StoreError) as caught:
        create(store, "bad", blob)
    assert caught.value.status == 400
    assert "'model.gguf' is not a usable GGUF model" in caught.value.message
    assert "does not start with 'GGUF'" in caught.value.message
    assert store.list_models() == []


@pytest.mark.parametrize("keep", [8, 100, 2000, -100])
def test_truncated_gguf_is_a_400_at_create_time(
    store: ModelStore, gguf_bytes: bytes, keep: int
) -> None:
    blob = upload(store, gguf_bytes[:keep])
    with pytest.raises(StoreError) as caught:
        create(store, "bad", blob)
    assert caught.value.status == 400
    assert "not a usable GGUF model" in caught.value.message
    assert store.list_models() == []


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"model.gguf": "sha256:" + "0" * 64}, "not found"),
        ({"model.gguf": ""}, "empty digest"),
        ({"model.gguf": "sha256:1234"}, "invalid digest"),
        ({"../model.gguf": "sha256:" + "0" * 64}, "invalid file path"),
        ({"/etc/model.gguf": "sha256:" + "0" * 64}, "invalid file path"),
        ({"a.gguf": "sha256:" + "0" * 64, "b.gguf": "sha256:" + "1" * 64}, "one GGUF"),
    ],
)
def test_bad_files_are_a_400(
    store: ModelStore, files: dict[str, str], message: str
) -> None:
    with pytest.raises(StoreError, match=message) as caught:
        store.create(name("bad"), files=files)
    assert caught.value.status == 400


def test_files_and_base_are_exclusive(store: ModelStore, model_digest: str) -> None:
    for files, base in [({"m.gguf": model_digest}, name("x")), (None, None)]:
        with pytest.raises(StoreError) as caught:
            store.create(name("bad"), files=files, base=base)
        assert caught.value.status == 400


def test_create_from_a_base_overrides_and_merges(
    store: ModelStore, model_digest: str
) -> None:
    create(
        store,
        "base",
        model_digest,
        system="be brief",
        parameters={"temperature": 0.5, "stop": ["a"]},
        license=["MIT"],
    )
    store.create(
        name("derived"),
        base=name("base"),
        template="{{ messages }}",
        parameters={"top_k": 3, "temperature": 0.1},
        messages=[{"role": "user", "content": "hi"}],
    )
    derived = store.lookup(name("derived"))
    assert derived.template == "{{ messages }}"
    assert derived.system == "be brief"
    assert dict(derived.parameters) == {"temperature": 0.1, "stop": ["a"], "top_k": 3}
    assert derived.messages == ({"role": "user", "content": "hi"},)
    assert derived.license == ("MIT",)
    assert derived.details.parent_model == "base:latest"
    assert derived.model_digest == model_digest
    # An empty text removes the layer: the GGUF template is used again.
    store.create(name("plain"), base=name("derived"), template="", system="")
    plain = store.lookup(name("plain"))
    assert plain.template == CHAT_TEMPLATE
    assert plain.system is None


def test_create_from_a_missing_base_is_a_404(store: ModelStore) -> None:
    with pytest.raises(StoreError) as caught:
        store.create(name("x"), base=name("missing"))
    assert caught.value.status == 404


# -- list, copy, delete ------------------------------------------------------------


def test_list_is_newest_first(store: ModelStore, model_digest: str) -> None:
    for index, text in enumerate(["b", "a", "c"]):
        create(store, text, model_digest)
        manifest = store.root / "manifests/registry.ollama.ai/library" / text / "latest"
        os.utime(manifest, (1000.0 + index, [2000.0, 1000.0, 3000.0][index]))
    records = store.list_models()
    assert [record.name for record in records] == ["c:latest", "b:latest", "a:latest"]
    assert [record.modified_at for record in records] == [3000.0, 2000.0, 1000.0]


def test_copy_makes_the_same_model_under_another_name(
    store: ModelStore, model_digest: str
) -> None:
    create(store, "src", model_digest, system="s")
    store.copy(name("SRC"), name("ns/dst:v1"))
    source, copied = store.lookup(name("src")), store.lookup(name("ns/dst:v1"))
    assert copied.name == "ns/dst:v1"
    assert copied.digest == source.digest
    assert copied.system == "s"


def test_delete_prunes_only_blobs_no_manifest_uses(
    store: ModelStore, model_digest: str
) -> None:
    create(store, "one", model_digest, system="only one's")
    create(store, "two", model_digest)
    stray = upload(store, b"uploaded for a create that has not happened yet")
    only_ones = store.lookup(name("one"))
    blobs = store.root / "blobs"
    before = {path.name for path in blobs.iterdir()}
    store.delete(name("ONE"))
    after = {path.name for path in blobs.iterdir()}
    assert store.has_blob(model_digest)
    assert store.has_blob(stray)
    assert len(before - after) == 1  # the system prompt layer
    assert only_ones.system is not None
    store.delete(name("two"))
    assert {path.name for path in blobs.iterdir()} == {"sha256-" + stray[7:]}
    assert not (store.root / "manifests/registry.ollama.ai").exists()
    with pytest.raises(StoreError):
        store.lookup(name("two"))


def test_delete_names_the_model_file_so_its_runners_can_go(
    store: ModelStore, model_digest: str
) -> None:
    create(store, "one", model_digest)
    assert store.delete(name("one")) == model_digest
    broken = store.root / "manifests/registry.ollama.ai/library/broken/latest"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"{")
    assert store.delete(name("broken")) is None  # unknown: nothing to unload
    assert not broken.exists()


@pytest.mark.parametrize(
    "destination", ["dup", "DUP", "registry.ollama.ai/library/Dup"]
)
def test_a_copy_onto_the_source_itself_in_any_case_keeps_it(
    store: ModelStore, model_digest: str, destination: str
) -> None:
    """Installing another spelling would replace the source: a rename, not a copy."""
    create(store, "dup", model_digest, system="kept")
    before = store.lookup(name("dup"))
    store.copy(name("dup"), name(destination))
    (after,) = store.list_models()
    assert (after.name, after.digest, after.system) == (
        "dup:latest",
        before.digest,
        "kept",
    )
    assert store.has_blob(model_digest)


def test_creating_a_model_from_itself_rebuilds_it_in_place(
    store: ModelStore, model_digest: str
) -> None:
    create(store, "demo", model_digest, system="old")
    store.create(name("demo"), base=name("demo"), system="new")
    (record,) = store.list_models()
    assert (record.name, record.system) == ("demo:latest", "new")


def test_overwriting_a_model_prunes_its_old_layers(
    store: ModelStore, model_digest: str
) -> None:
    create(store, "m", model_digest, system="old")
    old = {path.name for path in (store.root / "blobs").iterdir()}
    create(store, "m", model_digest, system="new")
    new = {path.name for path in (store.root / "blobs").iterdir()}
    assert len(old - new) == 1
    assert store.lookup(name("m")).system == "new"


# -- the record cache -----------------------------------------------------------


def test_cached_lookup_finds_only_what_lookup_has_read(
    store: ModelStore, model_digest: str
) -> None:
    create(store, "m", model_digest)
    assert store.cached_lookup(name("m")) is None
    record = store.lookup(name("m"))
    assert store.cached_lookup(name("m")) == record


def test_an_unchanged_model_is_not_read_again(
    store: ModelStore, model_digest: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cached_lookup`` runs on the event loop, so it may only ``stat``; ``lookup``
    uses the same cache and reads nothing either while the manifest is unchanged."""
    create(store, "m", model_digest, system="s")
    record = store.lookup(name("m"))

    def no_reading(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError("a file was read")

    monkeypatch.setattr(Path, "open", no_reading)
    monkeypatch.setattr(Path, "read_bytes", no_reading)
    assert store.cached_lookup(name("m")) == record
    assert store.lookup(name("m")) == record


def test_a_recreated_model_is_not_served_from_the_cache(
    store: ModelStore, model_digest: str
) -> None:
    create(store, "m", model_digest, system="old")
    assert store.lookup(name("m")).system == "old"
    create(store, "m", model_digest, system="new")
    assert store.cached_lookup(name("m")) is None
    record = store.lookup(name("m"))
    assert record.system == "new"
    assert store.cached_lookup(name("m")) == record


def test_changes_made_through_the_store_never_rest_on_file_identity(
    store: ModelStore, model_digest: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a filesystem with a coarse clock, a manifest deleted and written again
    # within one tick can reuse the inode and match the old size and mtime. Every
    # file looking the same stands in for that here: the store must still see what
    # it changed itself.
    monkeypatch.setattr(
        "gateway_core_adapters.model_store._identity", lambda stat: (0, 0, 0, 0)
    )
    create(store, "keep", model_digest)  # keeps the model file through the delete
    create(store, "m", model_digest, system="old")
    assert store.lookup(name("m")).system == "old"
    store.delete(name("m"))
    assert store.cached_lookup(name("m")) is None
    create(store, "m", model_digest, system="new")
    assert store.cached_lookup(name("m")) is None
    assert store.lookup(name("m")).system == "new"
    store.copy(name("m"), name("n"))
    assert store.lookup(name("n")).system == "new"


def test_a_model_whose_file_was_removed_is_not_served_from_the_cache(
    store: ModelStore, model_digest: str
) -> None:
    # lookup() then reports the damage: test_model_file_removed_behind_the_stores_back.
    create(store, "gone", model_digest)
    store.lookup(name("gone"))
    store.blob_path(model_digest).unlink()
    assert store.cached_lookup(name("gone")) is None


def test_cached_lookup_finds_only_the_installed_spelling(
    store: ModelStore, model_digest: str
) -> None:
    create(store, "MyName/Model:Tag", model_digest)
    record = store.lookup(name("myname/MODEL:tag"))
    assert store.cached_lookup(name("myname/MODEL:tag")) is None
    assert store.cached_lookup(name("MyName/Model:Tag")) == record


def test_a_deleted_model_is_not_served_from_the_cache(
    store: ModelStore, model_digest: str
) -> None:
    create(store, "m", model_digest)
    create(store, "keep", model_digest)  # keeps the model file: only "m" is gone
    store.lookup(name("m"))
    store.delete(name("m"))
    assert store.has_blob(model_digest)
    assert store.cached_lookup(name("m")) is None


# -- damage --------------------------------------------------------------------


def test_model_file_removed_behind_the_stores_back(
    store: ModelStore, model_digest: str
) -> None:
    create(store, "gone", model_digest)
    store.lookup(name("gone"))  # cached metadata must not hide the loss
    store.blob_path(model_digest).unlink()
    with pytest.raises(StoreError) as caught:
        store.lookup(name("gone"))
    assert caught.value.status == 500
    assert "model 'gone:latest' is damaged" in caught.value.message
    assert "is missing" in caught.value.message
    [listed] = store.list_models()
    assert listed.name == "gone:latest"
    assert listed.details.family == "llama"  # from the config blob
    store.delete(name("gone"))
    assert store.list_models() == []


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b'{"schemaVersion": 2, "config": {}, "layers": []}',
        json.dumps(
            {
                "schemaVersion": 2,
                "config": {"mediaType": "x", "digest": "sha256:../../x", "size": 1},
                "layers": [
                    {
                        "mediaType": "application/vnd.ollama.image.model",
                        "digest": "sha256:../../../../etc/passwd",
                        "size": 1,
                    }
                ],
            }
        ).encode(),
    ],
)
def test_damaged_manifest_is_a_500_naming_the_model(
    store: ModelStore, model_digest: str, content: bytes
) -> None:
    create(store, "fine", model_digest)
    path = store.root / "manifests/registry.ollama.ai/library/broken/latest"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(StoreError) as caught:
        store.lookup(name("broken"))
    assert caught.value.status == 500
    assert "model 'broken:latest' is damaged" in caught.value.message
    assert [record.name for record in store.list_models()] == ["fine:latest"]
    # Blobs are kept while a manifest's references are unknown, then pruned.
    store.delete(name("fine"))
    assert store.has_blob(model_digest)
    store.delete(name("broken"))
    assert not path.exists()


def test_stray_entries_in_the_manifest_tree_are_ignored(
    store: ModelStore, model_digest: str
) -> None:
    create(store, "real", model_digest)
    base = store.root / "manifests"
    (base / "registry.ollama.ai/library/real/.hidden").write_text("x")
    (base / "registry.ollama.ai/library/-bad/latest").parent.mkdir()
    (base / "registry.ollama.ai/library/-bad/latest").write_text("x")
    (base / "stray-file").write_text("x")
    (base / "a/b/c/d/e").mkdir(parents=True)
    assert [record.name for record in store.list_models()] == ["real:latest"]


# -- stale temporary files -----------------------------------------------------------


def _aged(path: Path, data: bytes = b"", *, seconds: float) -> Path:
    """Write ``path`` as if nothing had touched it for ``seconds``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_opening_the_store_removes_only_its_own_stale_temporary_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "store"
    blobs = root / "blobs"
    model = root / "manifests/registry.ollama.ai/library/m"
    old = STALE_TEMP_AGE + 60
    stale = [
        _aged(temp_path(blobs / ("sha256-" + "a" * 64)), b"x" * 1000, seconds=old),
        _aged(temp_path(blobs / "demo.gguf"), b"y" * 24, seconds=old),
        _aged(temp_path(model / "latest"), b"{}", seconds=old),
    ]
    kept = [
        # A writer may still be at work on a fresh one (another server, say).
        _aged(temp_path(blobs / ("sha256-" + "b" * 64)), b"z", seconds=60),
        # Not names the store makes, however old.
        _aged(blobs / ".notes.tmp", seconds=old),
        _aged(blobs / ".x.0123456789ABCDEF.tmp", seconds=old),
        _aged(model / "latest.tmp", seconds=old),
        _aged(root / temp_path(root / "elsewhere").name, seconds=old),
    ]
    with caplog.at_level(logging.INFO, logger="adapters.model_store"):
        ModelStore(root)
    assert [path for path in stale if path.exists()] == []
    assert [path for path in kept if not path.exists()] == []
    (line,) = [r.message for r in caplog.records if "stale temporary" in r.message]
    assert "removed 3 stale temporary files (1026 bytes)" in line


def test_the_sweep_follows_no_symbolic_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    target = _aged(temp_path(outside / "data"), b"precious", seconds=STALE_TEMP_AGE * 2)
    root = tmp_path / "store"
    (root / "blobs").mkdir(parents=True)
    link = root / "blobs" / temp_path(root / "blobs" / "x").name
    link.symlink_to(target)
    linked_dir = root / "manifests/registry.ollama.ai/library/linked"
    linked_dir.parent.mkdir(parents=True)
    linked_dir.symlink_to(outside, target_is_directory=True)
    then = time.time() - STALE_TEMP_AGE * 2
    os.utime(link, (then, then), follow_symlinks=False)
    assert ModelStore(root).sweep() == (0, 0)
    assert target.read_bytes() == b"precious"
    assert link.is_symlink()


def test_temporary_names_are_recognized() -> None:
    made = temp_path(Path("/store/blobs/sha256-" + "c" * 64)).name
    assert is_temp_name(made)
    for other in (
        "sha256-abc",
        ".tmp",
        "..0123456789abcdef.tmp",
        "x.0123456789abcdef.tmp",
    ):
        assert not is_temp_name(other)


# -- atomic writes ------------------------------------------------------------------


def test_a_failed_write_keeps_the_old_manifest(
    store: ModelStore, model_digest: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    create(store, "m", model_digest, system="before")
    real_replace = os.replace

    def fail_for_manifests(source: str, target: str) -> None:
        if Path(target).name == "latest":
            raise OSError("disk on fire")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", fail_for_manifests)
    with pytest.raises(StoreError, match="could not be written: disk on fire") as e:
        create(store, "m", model_digest, system="after")
    assert e.value.status == 500
    monkeypatch.undo()
    assert store.lookup(name("m")).system == "before"
    assert temp_files(store.root) == []


def test_every_file_stays_under_the_root(
    store: ModelStore, model_digest: str, tmp_path: Path
) -> None:
    for text in ["a", "Host.Example:5000/ns/m:t", "_x/y_:z.z", "a.b-c:1.2"]:
        create(store, text, model_digest, system=text)
        store.copy(name(text), name(text + "x"))
    outside = {path for path in every_file(tmp_path) if store.root not in path.parents}
    assert outside == set()


@pytest.mark.parametrize(
    "text",
    [
        "..",
        "../x",
        "a/../../b",
        "x:../../y",
        "/etc/passwd",
        "a\\b",
        "C:\\x",
        "x\x00y",
        ".hidden",
        "%2e%2e/x",
        "a/b/c/d",
        "host/../model",
        "https://evil/../../x",
    ],
)
def test_hostile_names_cannot_reach_a_path(store: ModelStore, text: str) -> None:
    """Names are checked by ModelName (tested with its module); here: whatever a
    hostile text turns into, the store only looks inside its root."""
    try:
        parsed = ModelName.parse(text)
    except InvalidModelName:
        return
    with pytest.raises(StoreError) as caught:
        store.lookup(parsed)
    assert caught.value.status == 404
    path = store.root.joinpath("manifests", *parsed.path_parts).resolve()
    assert store.root.resolve() in path.parents


# -- concurrency ---------------------------------------------------------------------


def test_readers_never_see_a_half_written_model(
    store: ModelStore, model_digest: str, gguf_bytes: bytes
) -> None:
    """Readers race a writer that keeps replacing and deleting the model: each
    lookup finds the model whole, or not at all."""
    create(store, "m", model_digest, system="0")
    errors: list[BaseException] = []
    found: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                record = store.lookup(name("m"))
                assert record.system is not None
                assert record.system.isdigit()
                found.append(record.system)
                store.list_models()
            except StoreError as exc:
                if exc.status != 404:
                    errors.append(exc)
            except BaseException as exc:
                errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for round_ in range(15):
            create(store, "m", model_digest, system=str(round_))
            if round_ % 5 == 0:
                store.delete(name("m"))  # prunes the GGUF blob too
                upload(store, gguf_bytes)
    finally:
        done.set()
        for reader in readers:
            reader.join()
    assert errors == []
    assert found  # the readers did read


# -- demo model and GGUF reading ------------------------------------------------------


def test_ensure_demo_model_only_fills_an_empty_store(store: ModelStore) -> None:
    assert ensure_demo_model(store) is True
    record = store.lookup(name("demo"))
    assert record.template == CHAT_TEMPLATE
    assert ensure_demo_model(store) is False
    assert [record.name for record in store.list_models()] == ["demo:latest"]
    assert temp_files(store.root) == []


def test_gguf_metadata_is_plain_python(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    write_demo_model(path)
    info = read_gguf(path)
    reader = gguf.GGUFReader(path)
    assert info.parameter_count == sum(int(t.n_elements) for t in reader.tensors)
    assert info.metadata["general.parameter_count"] == info.parameter_count
    assert info.metadata["llama.attention.layer_norm_rms_epsilon"] == 1e-05
    assert type(info.metadata["llama.context_length"]) is int
    tokens = info.metadata["tokenizer.ggml.tokens"]
    assert isinstance(tokens, list)
    assert all(type(token) is str for token in tokens)
    assert info.architecture == "llama"
    assert read_gguf(path, max_array=5).metadata["tokenizer.ggml.tokens"] == []


def test_unreadable_gguf_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(GgufError, match="not a GGUF file"):
        read_gguf(empty)
    header_only = tmp_path / "header"
    header_only.write_bytes(b"GGUF\x03\x00\x00\x00")
    with pytest.raises(GgufError, match="corrupt GGUF file"):
        read_gguf(header_only)
    with pytest.raises(FileNotFoundError):
        read_gguf(tmp_path / "missing")


def test_file_type_names_match_llama_cpp() -> None:
    for file_type in gguf.LlamaFileType:
        if file_type == gguf.LlamaFileType.GUESSED or file_type.value > 38:
            continue
        label = file_type.name.removeprefix("ALL_").removeprefix("MOSTLY_")
        assert file_type_name(file_type.value) == label.removesuffix("_MOE")


# -- through the server ----------------------------------------------------------------


async def test_a_deleted_model_leaves_ps_at_once_and_its_runner_is_not_reused(
    served: tuple[LiveServer, ollama.Client], gguf: Path
) -> None:
    live, client = served
    models = live.server.models
    assert models is not None
    hello = [{"role": "user", "content": "hi"}]
    await in_thread(lambda: client.chat(model="tiny", messages=hello, options=QUICK))
    (old,) = models.pool.running()
    # A case variant is the same model: the copy is refused and the source stays.
    with pytest.raises(ollama.ResponseError) as refused:
        await in_thread(lambda: client.copy("tiny", "TINY"))
    assert refused.value.status_code == 400
    assert [m.model for m in (await in_thread(client.ps)).models] == ["tiny:latest"]

    await in_thread(lambda: client.delete("tiny"))
    assert (await in_thread(client.ps)).models == []
    # Created again, from the same file: a fresh runner, never the deleted one.
    await install(client, "tiny", gguf)
    await in_thread(lambda: client.chat(model="tiny", messages=hello, options=QUICK))
    (new,) = models.pool.running()
    assert new.runner is not old.runner
    assert not old.runner.alive
    assert [m.model for m in (await in_thread(client.ps)).models] == ["tiny:latest"]


def test_a_remote_model_has_no_file_and_says_where_it_runs(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    name = ModelName.parse("far")
    store.create(
        name,
        remote=("http://box.lan:11434", "qwen3:8b"),
        system="Be brief.",
        parameters={"temperature": 0.5},
        license=["MIT"],
    )
    record = store.lookup(name)
    assert record.license == ("MIT",)
    assert (record.remote_host, record.remote_model) == (
        "http://box.lan:11434",
        "qwen3:8b",
    )
    assert record.model_file == ""
    assert record.system == "Be brief."
    assert dict(record.parameters) == {"temperature": 0.5}
    assert store.show_info(record, verbose=True) == {}
    assert [r.name for r in store.list_models()] == ["far:latest"]
    # A copy is remote too; deleting one leaves the other, and no runner to retire.
    store.create(ModelName.parse("near"), base=name, system="")
    assert store.lookup(ModelName.parse("near")).remote_model == "qwen3:8b"
    assert store.delete(name) is None
    assert store.lookup(ModelName.parse("near")).system is None
