"""Hostile schemas: each gets a 400 or an answer, and none holds up anyone else.

A schema that takes long to compile is compiled off the runner's decode loop, with
a deadline (``--schema-compile-timeout``): past it, its request gets a 400 while the
compile finishes in the background (and is cached for the next request); other
requests to the same model are served meanwhile; a shutdown does not wait for it.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import h11
import httpx
import ollama
import pytest
import trio

from gateway_core._json import JsonValue
from gateway_core._structured import check_answer

from .helpers import request
from .live import LiveServer
from .ollama_setup import call, install, ollama_server
from .processes import server_process


def three_hundred_strings() -> dict[str, JsonValue]:
    names: list[JsonValue] = [f"field_{i}" for i in range(300)]
    return {
        "type": "object",
        "properties": {str(name): {"type": "string"} for name in names},
        "required": names,
    }


def nested(depth: int) -> dict[str, JsonValue]:
    schema: dict[str, JsonValue] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}, "required": ["x"]}
    return schema


def slow_to_compile() -> dict[str, JsonValue]:
    """About 150 KB of alternatives: compiles in a few hundred milliseconds."""
    return {
        "anyOf": [
            {
                "type": "object",
                "properties": {
                    f"k{j}": {"type": "integer", "minimum": i} for j in range(30)
                },
                "required": [f"k{j}" for j in range(30)],
            }
            for i in range(100)
        ]
    }


async def generate(
    http: httpx.AsyncClient, schema: JsonValue, **options: Any
) -> httpx.Response:
    body = {
        "model": "tiny",
        "prompt": "JSON, please.",
        "format": schema,
        "stream": False,
        "options": {"num_predict": 256, "seed": 1, **options},
    }
    return await http.post("/api/generate", json=body)


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (three_hundred_strings(), 200),
        ({"type": "string", "maxLength": 10**9}, 200),
        ({"type": "array", "items": {"type": "integer"}, "maxItems": 10**9}, 200),
        (nested(200), 400),
        ({"type": "string", "minLength": 10**9}, 400),
    ],
    ids=[
        "300 properties",
        "maxLength 1e9",
        "maxItems 1e9",
        "nested 200",
        "minLength 1e9",
    ],
)
async def test_hostile_schemas_get_a_400_or_an_answer(
    served: tuple[LiveServer, ollama.Client], schema: JsonValue, expected: int
) -> None:
    live, _ = served
    async with httpx.AsyncClient(
        base_url=f"http://{live.host}:{live.port}", timeout=60
    ) as http:
        reply = await generate(http, schema)
        assert reply.status_code == expected, reply.text
        if expected == 400:
            assert reply.json()["error"]
            return
        answer = reply.json()
        if answer["done_reason"] == "stop":
            check_answer(answer["response"], schema)
        else:  # a random model can write a long string: cut, and saying so
            assert answer["done_reason"] == "length"
        # And the server still answers.
        assert (await http.get("/api/version")).status_code == 200


async def test_a_compile_past_its_deadline_is_a_400_and_holds_up_no_one(
    nursery: trio.Nursery, clients: list[ollama.Client], tmp_path: Path, gguf: Path
) -> None:
    live, client = await ollama_server(
        nursery, clients, tmp_path / "models", schema_compile_timeout=0.01
    )
    await install(client, "tiny", gguf)
    slow = slow_to_compile()
    async with httpx.AsyncClient(
        base_url=f"http://{live.host}:{live.port}", timeout=60
    ) as http:
        refused = await generate(http, slow)
        assert refused.status_code == 400
        assert "compiling the constraint took longer than 0.01 s" in refused.text
        # The runner goes on serving while that compile finishes in the background.
        plain = await call(
            lambda: client.generate(
                model="tiny", prompt="hi", options={"num_predict": 8}
            )
        )
        # A random model may end early with its end-of-generation token.
        assert plain.done
        assert 0 < (plain.eval_count or 0) <= 8
        if plain.done_reason == "length":
            assert plain.eval_count == 8
        # Once it has finished, it is in the cache: the same schema is served.
        for _ in range(200):
            reply = await generate(http, slow)
            if reply.status_code == 200:
                break
            await trio.sleep(0.05)
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        if answer["done_reason"] == "stop":
            check_answer(answer["response"], slow)


async def test_shutdown_does_not_wait_for_a_compile(tmp_path: Path) -> None:
    """SIGTERM while a schema compiles: the server stops within its shutdown
    deadline; the runner does not wait for the compile's thread."""
    env = {"GATEWAY_SHUTDOWN_TIMEOUT": "0.1", "GATEWAY_SCHEMA_COMPILE_TIMEOUT": "60"}
    async with server_process(tmp_path / "models", env=env) as server:
        body = json.dumps(
            {"model": "demo", "prompt": "x", "format": slow_to_compile(),
             "stream": False}
        ).encode()  # fmt: skip
        client = await server.connect()
        head = request(
            "POST", "/api/generate", headers=[("content-length", str(len(body)))]
        )
        await client.send(head, h11.Data(data=body), h11.EndOfMessage())
        await server.wait_for(rb"loaded sha256:")  # the model is up: compiling now
        server.process.send_signal(signal.SIGTERM)
        sent = trio.current_time()
        code = await server.exit_code()
        elapsed = trio.current_time() - sent
        await client.stream.aclose()
    assert code == 0, server.log.decode()
    assert elapsed < 2.5
