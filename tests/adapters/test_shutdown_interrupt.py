"""A stream still running at the shutdown deadline ends the way its dialect ends a
failed stream, and the access log says it was cut.

Real server, real llama.cpp: the tiny model is given a long context and a schema
that allows no short answer (the random model would otherwise soon pick its
end-of-generation token), so the generation is still going when the deadline comes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest
import trio

from gateway_core_adapters.demo_model import write_demo_model
from gateway_core_adapters.settings import ServerSettings

from .helpers import ENDLESS_SCHEMA, LogWaiter
from .live import start_live_server
from .ollama_setup import call, install

LONG = 32768
HI: Any = [{"role": "user", "content": "Tell me everything."}]

# (path, body) per dialect; each asks for a stream as long as the context allows.
REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "native": (
        "/api/chat",
        {
            "model": "long",
            "messages": HI,
            "format": ENDLESS_SCHEMA,
            "options": {"num_ctx": LONG},
        },
    ),
    "openai": (
        "/v1/chat/completions",
        {
            "model": "long",
            "messages": HI,
            "stream": True,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "endless", "schema": ENDLESS_SCHEMA},
            },
        },
    ),
    "anthropic": (
        "/v1/messages",
        {
            "model": "long",
            "messages": HI,
            "stream": True,
            "max_tokens": LONG // 2,
            "output_config": {
                "format": {"type": "json_schema", "schema": ENDLESS_SCHEMA}
            },
        },
    ),
}


def _last_frames(dialect: str, lines: list[str]) -> list[Any]:
    """The stream's final frames, decoded: the in-band error and what follows it."""
    if dialect == "native":
        return [json.loads(line) for line in lines if line][-1:]
    data = [line.removeprefix("data: ") for line in lines if line.startswith("data:")]
    if dialect == "openai":
        assert data[-1] == "[DONE]", data[-3:]
        return [json.loads(data[-2]), data[-1]]
    events = [line for line in lines if line.startswith("event:")]
    assert events[-1] == "event: error", events[-3:]
    return [json.loads(data[-1])]


@pytest.mark.parametrize("dialect", sorted(REQUESTS))
async def test_a_stream_cut_at_the_deadline_ends_with_an_in_band_error(
    nursery: trio.Nursery, tmp_path: Path, logs: LogWaiter, dialect: str
) -> None:
    gguf = tmp_path / "long.gguf"
    write_demo_model(gguf, context_length=LONG)
    settings = ServerSettings(
        host="127.0.0.1", port=0, models=tmp_path / "models", shutdown_timeout=0.2
    )
    live = await start_live_server(nursery, settings)
    admin = ollama.Client(host=f"http://127.0.0.1:{live.port}")
    try:
        await install(admin, "long", gguf)
    finally:
        admin.close()  # type: ignore[no-untyped-call]
    path, body = REQUESTS[dialect]
    streaming = trio.Event()
    token = trio.lowlevel.current_trio_token()

    def read_stream() -> list[str]:
        lines: list[str] = []
        with (
            httpx.Client(
                base_url=f"http://127.0.0.1:{live.port}", timeout=30
            ) as client,
            client.stream("POST", path, json=body) as response,
        ):
            assert response.status_code == 200
            for line in response.iter_lines():
                lines.append(line)
                if len(lines) == 3:
                    trio.from_thread.run_sync(streaming.set, trio_token=token)
        return lines

    async with trio.open_nursery() as readers:
        result: list[list[str]] = []

        async def read() -> None:
            result.append(await call(read_stream))

        readers.start_soon(read)
        await streaming.wait()
        live.server.shutdown()
    await live.done.wait()
    (lines,) = result
    final = _last_frames(dialect, lines)
    error = final[0]
    message = error["error"] if dialect == "native" else error["error"]["message"]
    assert "shutting down" in message
    if dialect == "anthropic":
        assert error["type"] == "error"
    assert await logs.wait_for("cut at the shutdown deadline")
