"""A model laid out as Ollama writes it, with an Ollama Go template in its template
layer and a GGUF that carries its own Jinja chat template: served with the GGUF's
template, and ``/api/show`` says so while it shows the Go template, as Ollama does."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import ollama
import trio

from gateway_core_adapters.model_store import _chosen_template

from .ollama_setup import call, install, ollama_server

GO_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
    "{{ end }}<|im_start|>assistant\n"
)
TEMPLATE_MEDIA_TYPE = "application/vnd.ollama.image.template"


def _with_go_template(root: Path, source: str, target: str) -> None:
    """Write ``target`` as Ollama would have: ``source``'s layers plus a template
    layer holding a Go template (a blob named by its digest, then the manifest)."""
    manifests = root / "manifests" / "registry.ollama.ai" / "library"
    manifest = json.loads((manifests / source / "latest").read_text())
    data = GO_TEMPLATE.encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (root / "blobs" / digest.replace(":", "-")).write_bytes(data)
    manifest["layers"] = [
        layer
        for layer in manifest["layers"]
        if layer["mediaType"] != TEMPLATE_MEDIA_TYPE
    ]
    manifest["layers"].append(
        {"mediaType": TEMPLATE_MEDIA_TYPE, "digest": digest, "size": len(data)}
    )
    (manifests / target).mkdir()
    (manifests / target / "latest").write_text(json.dumps(manifest))


async def test_a_go_template_gives_way_to_the_ggufs_jinja_template(
    nursery: trio.Nursery, clients: list[ollama.Client], tmp_path: Path, gguf: Path
) -> None:
    root = tmp_path / "ollama-models"
    live, client = await ollama_server(nursery, clients, root)
    await install(client, "tiny", gguf)
    _with_go_template(root, "tiny", "fromollama")

    shown = await call(lambda: client.show("fromollama"))
    assert shown.template == GO_TEMPLATE  # what the model carries, as Ollama shows
    async with httpx.AsyncClient() as http:
        raw = await http.post(
            f"http://127.0.0.1:{live.port}/api/show", json={"model": "fromollama"}
        )
    assert raw.json()["template_source"] == "gguf instead of the Go template"

    answer = await call(
        lambda: client.chat(
            model="fromollama",
            messages=[{"role": "user", "content": "Hi"}],
            options={"num_predict": 3},
        )
    )
    assert answer.done
    assert answer.eval_count is not None
    assert answer.eval_count > 0


def test_a_go_template_without_a_jinja_one_to_stand_in_is_kept() -> None:
    """The chooser: a Jinja layer is used; a Go layer only when the GGUF has no
    template of its own (its first render is then a 400 that says why)."""
    assert _chosen_template("{{ messages }}", "{% x %}") == (
        "{{ messages }}",
        "modelfile",
        None,
    )
    assert _chosen_template(GO_TEMPLATE, "{% jinja %}") == (
        "{% jinja %}",
        "gguf",
        GO_TEMPLATE,
    )
    assert _chosen_template(GO_TEMPLATE, "") == (GO_TEMPLATE, "modelfile", None)
    assert _chosen_template("", "{% jinja %}") == ("{% jinja %}", "gguf", None)
    assert _chosen_template("", "") == ("", "", None)
