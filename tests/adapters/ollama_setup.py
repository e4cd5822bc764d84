"""Shared setup for the tests that drive the server with the official ``ollama``
client: a live server on a temporary store, the tiny generated model, and a way to
call the synchronous client without blocking the loop the server runs on.

conftest.py imports the fixtures defined here, so every test module in the package
can ask for them by name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import ollama
import pytest
import trio

from gateway_core_adapters.demo_model import write_demo_model
from gateway_core_adapters.settings import ServerSettings

from .live import LiveServer, start_live_server

_T = TypeVar("_T")

# Short answers keep the suite fast; the seed makes them repeatable.
QUICK = {"num_predict": 8, "seed": 7, "temperature": 0.0}


async def call(function: Callable[[], _T]) -> _T:
    """Run a client call in a worker thread. Streams must be consumed in there too
    (``lambda: list(client.generate(..., stream=True))``): their iterators read the
    socket lazily, and reading it here would block the loop the server runs on."""
    return await trio.to_thread.run_sync(function)


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gguf"
    write_demo_model(path)
    return path


@pytest.fixture
def clients() -> Iterator[list[ollama.Client]]:
    """Clients opened by a test; their connections are closed when it ends."""
    opened: list[ollama.Client] = []
    yield opened
    for client in opened:
        client.close()  # type: ignore[no-untyped-call]


async def ollama_server(
    nursery: trio.Nursery,
    clients: list[ollama.Client],
    root: Path,
    *,
    max_queue: int = 512,
    max_loaded_models: int = 3,
    num_parallel: int = 4,
    schema_compile_timeout: float = 10.0,
) -> tuple[LiveServer, ollama.Client]:
    settings = ServerSettings(
        host="127.0.0.1",
        port=0,
        models=root,
        max_queue=max_queue,
        max_loaded_models=max_loaded_models,
        num_parallel=num_parallel,
        schema_compile_timeout=schema_compile_timeout,
    )
    live = await start_live_server(nursery, settings)
    client = ollama.Client(host=f"http://127.0.0.1:{live.port}")
    clients.append(client)
    return live, client


async def install(client: ollama.Client, name: str, path: Path) -> None:
    """Upload a GGUF file and create a model from it, as `ollama create` does."""
    digest = await call(lambda: client.create_blob(path))
    await call(lambda: client.create(model=name, files={"m.gguf": digest}))


async def load(
    client: ollama.Client, name: str, options: dict[str, int] | None = None
) -> None:
    """Load a model with an empty prompt, as Open WebUI does."""
    answer = await call(lambda: client.generate(model=name, prompt="", options=options))
    assert answer.done_reason == "load"


@pytest.fixture
async def served(
    nursery: trio.Nursery, clients: list[ollama.Client], tmp_path: Path, gguf: Path
) -> AsyncIterator[tuple[LiveServer, ollama.Client]]:
    """A server whose store has the tiny model installed as ``tiny``."""
    live, client = await ollama_server(nursery, clients, tmp_path / "models")
    await install(client, "tiny", gguf)
    yield live, client
    live.server.shutdown()
