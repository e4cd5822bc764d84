"""Pull and push against a real registry (Debian's docker-registry on loopback),
driven by the official ``ollama`` client as a user's scripts drive Ollama."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import ollama
import pytest
import trio

from gateway_core_adapters.cli import main
from gateway_core_adapters.registry import RegistryOptions
from gateway_core_adapters.settings import ServerSettings, parse_registry

from .live import LiveServer, start_live_server
from .ollama_setup import call, install, ollama_server
from .registry_setup import CountingProxy, LocalRegistry, registry

__all__ = ["registry"]  # the fixture, for pytest

pytestmark = pytest.mark.slow


def _manifest(root: Path, name: str) -> bytes:
    host, rest = name.split("/", 1)
    namespace, model_tag = rest.split("/")
    model, tag = model_tag.split(":")
    return (root / "manifests" / host / namespace / model / tag).read_bytes()


def _statuses(parts: list[ollama.ProgressResponse]) -> list[str]:
    """The statuses in order, each run of one status shown once."""
    shown: list[str] = []
    for part in parts:
        if part.status is not None and (not shown or shown[-1] != part.status):
            shown.append(part.status)
    return shown


async def _pushed(
    nursery: trio.Nursery,
    clients: list[ollama.Client],
    tmp_path: Path,
    gguf: Path,
    name: str,
) -> tuple[list[ollama.ProgressResponse], Path]:
    """Install the tiny model in a first server and push it as ``name``."""
    root = tmp_path / "source"
    _, client = await ollama_server(nursery, clients, root)
    await install(client, "tiny", gguf)
    await call(lambda: client.copy("tiny", name))
    parts = await call(lambda: list(client.push(name, insecure=True, stream=True)))
    return parts, root


async def test_push_then_pull_into_an_empty_store_keeps_every_digest(
    nursery: trio.Nursery,
    clients: list[ollama.Client],
    tmp_path: Path,
    gguf: Path,
    registry: LocalRegistry,
) -> None:
    name = f"{registry.host}/library/tiny:latest"
    pushed, source = await _pushed(nursery, clients, tmp_path, gguf, name)
    manifest = json.loads(_manifest(source, name))
    digests = [layer["digest"] for layer in manifest["layers"]]
    digests.append(manifest["config"]["digest"])
    assert _statuses(pushed) == [
        "retrieving manifest",
        *[f"pushing {digest[7:19]}" for digest in digests],
        "pushing manifest",
        "success",
    ]
    for digest in digests:  # the registry holds each blob, byte for byte
        data = registry.blob_file(digest).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest

    target = tmp_path / "target"
    _, client = await ollama_server(nursery, clients, target)
    pulled = await call(lambda: list(client.pull(name, insecure=True, stream=True)))
    assert _statuses(pulled) == [
        "pulling manifest",
        *[f"pulling {digest[7:19]}" for digest in digests],
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    model_lines = [p for p in pulled if p.digest == digests[0]]
    assert model_lines[-1].total == model_lines[-1].completed == gguf.stat().st_size
    # The manifest is the registry's, byte for byte: the model digest is the same.
    assert _manifest(target, name) == _manifest(source, name)
    for digest in digests:
        blob = target / "blobs" / digest.replace(":", "-")
        assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == digest
    listed = await call(client.list)
    source_list = await call(clients[0].list)  # the first server's client
    assert [m.digest for m in listed.models] == [
        m.digest for m in source_list.models if m.model == name
    ]
    shown = await call(lambda: client.show(name))
    assert shown.details is not None
    assert shown.details.family == "llama"

    # A second pull finds every blob in place and moves nothing.
    again = await call(lambda: client.pull(name, insecure=True, stream=False))
    assert again.status == "success"


async def test_pull_of_an_unknown_tag_fails_with_404_and_installs_nothing(
    nursery: trio.Nursery,
    clients: list[ollama.Client],
    tmp_path: Path,
    registry: LocalRegistry,
) -> None:
    _, client = await ollama_server(nursery, clients, tmp_path / "models")
    name = f"{registry.host}/library/nothing:here"
    with pytest.raises(ollama.ResponseError) as raised:
        await call(lambda: client.pull(name, insecure=True, stream=False))
    assert raised.value.status_code == 404
    assert "file does not exist" in raised.value.error
    # Streaming: the stream opened before the registry answered, so the error is
    # in-band, as Ollama sends it.
    with pytest.raises(ollama.ResponseError, match="file does not exist"):
        await call(lambda: list(client.pull(name, insecure=True, stream=True)))
    assert (await call(client.list)).models == []


async def test_a_tampered_blob_is_rejected_and_nothing_becomes_visible(
    nursery: trio.Nursery,
    clients: list[ollama.Client],
    tmp_path: Path,
    gguf: Path,
    registry: LocalRegistry,
) -> None:
    name = f"{registry.host}/library/tiny:latest"
    _, source = await _pushed(nursery, clients, tmp_path, gguf, name)
    model_digest = json.loads(_manifest(source, name))["layers"][0]["digest"]
    stored = registry.blob_file(model_digest)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte off
    stored.write_bytes(bytes(data))

    target = tmp_path / "target"
    _, client = await ollama_server(nursery, clients, target)
    with pytest.raises(ollama.ResponseError) as raised:
        await call(lambda: client.pull(name, insecure=True, stream=False))
    assert raised.value.status_code == 502
    assert "digest mismatch" in raised.value.error
    assert model_digest in raised.value.error
    assert (await call(client.list)).models == []
    assert not (target / "manifests" / registry.host).exists()
    leftovers = [p.name for p in (target / "blobs").iterdir()]
    assert not any(model_digest[7:] in entry for entry in leftovers), leftovers


async def _pull_lines(port: int, name: str) -> list[dict[str, object]]:
    lines: list[dict[str, object]] = []
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream(
            "POST",
            f"http://127.0.0.1:{port}/api/pull",
            json={"model": name, "insecure": True},
        ) as answer,
    ):
        async for line in answer.aiter_lines():
            lines.append(json.loads(line))
    return lines


def _small_parts(live: LiveServer) -> None:
    """Parts of 64 KiB, so that the tiny model's blob comes in several."""
    assert live.server.models is not None
    live.server.models.registry.client.options = RegistryOptions(
        download_parts=4, min_part_size=64 * 1024, checkpoint_bytes=8 * 1024
    )


async def test_a_killed_pull_resumes_where_it_stopped(
    nursery: trio.Nursery,
    clients: list[ollama.Client],
    tmp_path: Path,
    gguf: Path,
    registry: LocalRegistry,
) -> None:
    name = f"{registry.host}/library/tiny:latest"
    _, source = await _pushed(nursery, clients, tmp_path, gguf, name)
    size = gguf.stat().st_size
    model_digest = json.loads(_manifest(source, name))["layers"][0]["digest"]
    registry_port = int(registry.host.rsplit(":", 1)[1])

    # The first pull goes through a proxy that stalls after about half the blob;
    # then the server is killed (its task cancelled, mid-read).
    stalling = CountingProxy(registry_port, stall_after=size // 2)
    await nursery.start(stalling.serve)
    via_stalling = f"127.0.0.1:{stalling.port}/library/tiny:latest"
    target = tmp_path / "target"
    with trio.CancelScope() as killed:
        async with trio.open_nursery() as doomed:
            first, _ = await ollama_server(doomed, clients, target)
            _small_parts(first)
            doomed.start_soon(_pull_lines, first.port, via_stalling)
            await stalling.stalled.wait()
            partial = target / "blobs" / (model_digest.replace(":", "-") + "-partial")
            record = partial.with_name(partial.name + ".json")
            while not record.exists():  # the parts checkpoint as bytes arrive
                await trio.sleep(0.01)
            killed.cancel()
    saved = sum(done for _, _, done in json.loads(record.read_text()))
    assert 0 < saved < size
    assert (await trio.Path(partial).stat()).st_size == size
    assert not (target / "blobs" / model_digest.replace(":", "-")).exists()

    # The second server on the same store resumes through a counting proxy.
    counting = CountingProxy(registry_port)
    await nursery.start(counting.serve)
    via_counting = f"127.0.0.1:{counting.port}/library/tiny:latest"
    second, _ = await ollama_server(nursery, clients, target)
    _small_parts(second)
    lines = await _pull_lines(second.port, via_counting)
    assert lines[-1] == {"status": "success"}
    first_model_line = next(
        line for line in lines if line.get("digest") == model_digest
    )
    # The bar starts where the killed pull stopped, not at 0.
    assert isinstance(first_model_line["completed"], int)
    assert saved <= first_model_line["completed"] < size
    blob = target / "blobs" / model_digest.replace(":", "-")
    assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == model_digest
    assert not partial.exists()
    assert not record.exists()
    # Only the missing bytes came again (plus headers, the manifest and the small
    # config blob, well under 16 KiB together).
    assert counting.downstream < size - saved + 16 * 1024
    assert counting.downstream >= size - saved


async def test_the_cli_pushes_and_pulls_a_model(
    nursery: trio.Nursery,
    clients: list[ollama.Client],
    tmp_path: Path,
    gguf: Path,
    registry: LocalRegistry,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``gateway-core push`` from one server, ``gateway-core pull`` into another:
    the same model digest, and exit status 0 with ``success`` printed."""
    name = f"{registry.host}/team/tiny:v1"
    source_live, source = await ollama_server(nursery, clients, tmp_path / "one")
    await install(source, "tiny", gguf)
    await call(lambda: source.copy("tiny", name))
    monkeypatch.setenv("GATEWAY_HOST", f"127.0.0.1:{source_live.port}")
    assert await call(lambda: main(["push", name, "--insecure"])) == 0
    assert capsys.readouterr().out.endswith("success\n")

    target_live, target = await ollama_server(nursery, clients, tmp_path / "two")
    monkeypatch.setenv("GATEWAY_HOST", f"127.0.0.1:{target_live.port}")
    assert await call(lambda: main(["pull", name, "--insecure"])) == 0
    assert capsys.readouterr().out.endswith("success\n")
    assert (
        await call(lambda: main(["pull", "127.0.0.1:1/no/such:x", "--insecure"])) == 1
    )
    assert "Error:" in capsys.readouterr().err
    pulled = {m.model: m.digest for m in (await call(target.list)).models}
    pushed = {m.model: m.digest for m in (await call(source.list)).models}
    assert pulled[name] == pushed[name]


async def test_a_short_name_pulls_from_the_configured_default_registry(
    nursery: trio.Nursery,
    clients: list[ollama.Client],
    tmp_path: Path,
    gguf: Path,
    registry: LocalRegistry,
) -> None:
    """``--registry http://HOST/NAMESPACE``: ``pull tiny`` fetches
    ``HOST/NAMESPACE/tiny:latest`` and installs it as ``tiny:latest``."""
    full = f"{registry.host}/team/tiny:latest"
    await _pushed(nursery, clients, tmp_path, gguf, full)
    settings = ServerSettings(
        host="127.0.0.1",
        port=0,
        models=tmp_path / "mirrored",
        registry=parse_registry(f"http://{registry.host}/team"),
    )
    live = await start_live_server(nursery, settings)
    client = ollama.Client(host=f"http://127.0.0.1:{live.port}")
    clients.append(client)
    pulled = await call(lambda: client.pull("tiny", stream=False))
    assert pulled.status == "success"
    (model,) = (await call(client.list)).models
    assert model.model == "tiny:latest"
    source = [m for m in (await call(clients[0].list)).models if m.model == full]
    assert model.digest == source[0].digest
    live.server.shutdown()
