"""The examples in docs/embedding.md run, and the doc shows them as they are.

Each example is a file under docs/examples, loaded here as a module: the
in-process one with all three official clients, the FastAPI one under uvicorn
with the official ollama client pointed at the mount. The first way in (driving
an ``Exchange`` yourself) is the blocking server, which test_blocking_example.py
runs.
"""

from __future__ import annotations

import importlib.util
import json
import urllib.request
from pathlib import Path
from types import ModuleType

import ollama
import pytest

from gateway_core_adapters.asgi.serve import UvicornThread
from gateway_core_adapters.demo_model import write_demo_model
from gateway_core_adapters.settings import ServerSettings

DOCS = Path(__file__).resolve().parents[2] / "docs"
EXAMPLES = DOCS / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_in_process_example_answers_with_three_clients(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _load("in_process").main(tmp_path)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["ollama", "openai", "anthropic"]
    assert lines[2].endswith("tokens")


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_fastapi_example_serves_its_routes_and_the_gateway(tmp_path: Path) -> None:
    settings = ServerSettings(host="127.0.0.1", port=0, models=tmp_path / "models")
    app = _load("fastapi_mount").build(settings)
    with UvicornThread(app, settings) as server:
        assert _get(f"{server.url}/hello") == (200, b'{"hello":"from the host app"}')
        assert _get(f"{server.url}/llm/") == (200, b"Ollama is running")
        status, body = _get(f"{server.url}/llm/nope")
        assert status == 404
        assert json.loads(body) == {"error": "unknown endpoint: GET /nope"}

        client = ollama.Client(host=f"{server.url}/llm")
        write_demo_model(tmp_path / "demo.gguf")
        client.create(
            model="demo", files={"d.gguf": client.create_blob(tmp_path / "demo.gguf")}
        )
        assert [m.model for m in client.list().models] == ["demo:latest"]
        chunks = list(
            client.chat(
                model="demo",
                messages=[{"role": "user", "content": "hi"}],
                options={"num_predict": 4, "seed": 1},
                stream=True,
            )
        )
        assert chunks[-1].done is True
        client.close()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("name", ["blocking_server", "fastapi_mount", "in_process"])
def test_embedding_doc_shows_the_example_verbatim(name: str) -> None:
    doc = (DOCS / "embedding.md").read_text(encoding="utf-8")
    assert (EXAMPLES / f"{name}.py").read_text(encoding="utf-8") in doc
