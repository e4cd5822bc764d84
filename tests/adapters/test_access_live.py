"""Access control over real sockets, with the official clients.

The server listens on 127.0.0.1, so the Host check is on. Browser behaviour (Host,
Origin, preflights) is sent as raw HTTP; API keys are exercised with the ollama,
openai and anthropic packages, each of which must raise its own error type.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import h11
import httpx
import ollama
import openai
import pytest
import trio

from gateway_core import hash_api_key
from gateway_core_adapters.settings import ServerSettings

from .conftest import TcpConnect
from .helpers import request
from .live import LiveServer, start_live_server
from .ollama_setup import QUICK, call, install

ADMIN, BOB = "gk-admin-key", "gk-bob-key"
HI: Any = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/"),
        ("GET", "/api/version"),
        ("GET", "/api/tags"),
        ("POST", "/api/chat"),
        ("POST", "/api/create"),
        ("POST", "/api/copy"),
        ("DELETE", "/api/delete"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/messages"),
    ],
)
async def test_a_foreign_host_gets_403_on_every_route(
    live_server: LiveServer, tcp_client: TcpConnect, method: str, target: str
) -> None:
    client = await tcp_client(live_server)
    body = b'{"model": "x"}'
    head = request(method, target, [("content-length", str(len(body)))])
    evil = head.headers.raw_items()
    foreign = [(n, b"evil.example:11434" if n == b"host" else v) for n, v, *_ in evil]
    reply = await client.exchange(
        type(head)(method=method, target=target, headers=foreign), body
    )
    assert reply.status == 403
    ok = await (await tcp_client(live_server)).exchange(request("GET", "/"))
    assert ok.status == 200


async def _ask(
    live: LiveServer, method: str, path: str, headers: dict[str, str], body: str = ""
) -> httpx.Response:
    def send() -> httpx.Response:
        with httpx.Client(base_url=f"http://127.0.0.1:{live.port}") as client:
            return client.request(method, path, headers=headers, content=body)

    return await call(send)


async def test_a_preflight_from_localhost_gets_204_and_from_elsewhere_403(
    live_server: LiveServer,
) -> None:
    ask = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,authorization",
    }
    local = await _ask(
        live_server, "OPTIONS", "/api/chat", {"origin": "http://localhost:3000", **ask}
    )
    assert local.status_code == 204
    assert local.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "POST" in local.headers["access-control-allow-methods"]
    assert "authorization" in local.headers["access-control-allow-headers"]
    evil = await _ask(
        live_server, "OPTIONS", "/api/chat", {"origin": "http://evil.example", **ask}
    )
    assert evil.status_code == 403
    version = await _ask(
        live_server, "GET", "/api/version", {"origin": "http://localhost:3000"}
    )
    assert version.headers["access-control-allow-origin"] == "http://localhost:3000"


async def test_a_simple_cross_site_post_is_refused_before_any_work(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    live, client = served
    body = json.dumps({"source": "tiny", "destination": "stolen"})
    refused = await _ask(
        live,
        "POST",
        "/api/copy",
        {"origin": "http://evil.example", "content-type": "text/plain"},
        body,
    )
    assert refused.status_code == 403
    names = [m.model for m in (await call(client.list)).models]
    assert names == ["tiny:latest"]


# -- API keys ------------------------------------------------------------------------


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.toml"
    path.write_text(
        f'[[key]]\nname = "admin"\nsha256 = "{hash_api_key(ADMIN)}"\n\n'
        f'[[key]]\nname = "bob"\nsha256 = "{hash_api_key(BOB)}"\n'
        'models = ["tiny"]\nmax_concurrent = 1\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture
def opened() -> Iterator[list[Any]]:
    clients: list[Any] = []
    yield clients
    for client in clients:
        client.close()


@pytest.fixture
async def keyed(
    nursery: trio.Nursery,
    tmp_path: Path,
    gguf: Path,
    keys_file: Path,
    opened: list[Any],
) -> AsyncIterator[LiveServer]:
    """A server that needs keys, with ``tiny`` and ``other`` installed."""
    settings = ServerSettings(
        host="127.0.0.1", port=0, models=tmp_path / "models", api_keys_file=keys_file
    )
    live = await start_live_server(nursery, settings)
    admin = _ollama(live, ADMIN, opened)
    await install(admin, "tiny", gguf)
    await call(lambda: admin.copy("tiny", "other"))
    yield live
    live.server.shutdown()


def _ollama(live: LiveServer, key: str | None, opened: list[Any]) -> ollama.Client:
    headers = {} if key is None else {"authorization": f"Bearer {key}"}
    client = ollama.Client(host=f"http://127.0.0.1:{live.port}", headers=headers)
    opened.append(client)
    return client


def _openai(live: LiveServer, key: str, opened: list[Any]) -> openai.OpenAI:
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{live.port}/v1", api_key=key, max_retries=0
    )
    opened.append(client)
    return client


def _anthropic(live: LiveServer, key: str, opened: list[Any]) -> anthropic.Anthropic:
    client = anthropic.Anthropic(
        base_url=f"http://127.0.0.1:{live.port}", api_key=key, max_retries=0
    )
    opened.append(client)
    return client


async def test_the_ollama_client_works_with_a_key_and_gets_401_without(
    keyed: LiveServer, opened: list[Any]
) -> None:
    good = _ollama(keyed, ADMIN, opened)
    answer = await call(lambda: good.chat(model="tiny", messages=HI, options=QUICK))
    assert answer.done
    for key in (None, "gk-wrong"):
        bad = _ollama(keyed, key, opened)
        with pytest.raises(ollama.ResponseError) as caught:
            await call(functools.partial(bad.chat, model="tiny", messages=HI))
        assert caught.value.status_code == 401
        assert "API key" in caught.value.error
    # The root answers without a key: clients probe it to see whether a server runs.
    root = await _ask(keyed, "GET", "/", {})
    assert root.status_code == 200


async def test_the_openai_client_gets_its_own_error_types(
    keyed: LiveServer, opened: list[Any]
) -> None:
    good = _openai(keyed, ADMIN, opened)
    answer = await call(
        lambda: good.chat.completions.create(model="tiny", messages=HI, max_tokens=4)
    )
    assert answer.choices
    bad = _openai(keyed, "gk-wrong", opened)
    with pytest.raises(openai.AuthenticationError):
        await call(lambda: bad.models.list())
    bob = _openai(keyed, BOB, opened)
    with pytest.raises(openai.PermissionDeniedError, match="other"):
        await call(
            lambda: bob.chat.completions.create(
                model="other", messages=HI, max_tokens=4
            )
        )
    listed = await call(lambda: bob.models.list())
    assert [model.id for model in listed.data] == ["tiny:latest"]


async def test_the_anthropic_client_gets_its_own_error_types(
    keyed: LiveServer, opened: list[Any]
) -> None:
    good = _anthropic(keyed, ADMIN, opened)
    answer = await call(
        lambda: good.messages.create(model="tiny", messages=HI, max_tokens=4)
    )
    assert answer.type == "message"
    wrong = _anthropic(keyed, "gk-wrong", opened)
    with pytest.raises(anthropic.AuthenticationError):
        await call(
            lambda: wrong.messages.create(model="tiny", messages=HI, max_tokens=4)
        )
    bob = _anthropic(keyed, BOB, opened)
    with pytest.raises(anthropic.PermissionDeniedError):
        await call(
            lambda: bob.messages.create(model="other", messages=HI, max_tokens=4)
        )


async def test_a_keys_concurrency_limit_gives_429_with_retry_after(
    keyed: LiveServer, tcp_client: TcpConnect
) -> None:
    auth = {"authorization": f"Bearer {BOB}"}
    # A request counts from its head: one whose body is still coming holds bob's
    # only place for as long as it takes.
    body = json.dumps({"model": "tiny", "prompt": "hi", "stream": False}).encode()
    holder = await tcp_client(keyed)
    head = request(
        "POST",
        "/api/show",
        [("authorization", auth["authorization"]), ("content-length", str(len(body)))],
    )
    await holder.send(head, h11.Data(data=body[:5]))
    busy = await _wait_for_status(keyed, auth, 429)
    assert busy.headers["retry-after"] == "1"
    assert "limit" in busy.json()["error"]
    other = await _ask(keyed, "GET", "/api/tags", {"authorization": f"Bearer {ADMIN}"})
    assert other.status_code == 200
    await holder.send(h11.Data(data=body[5:]), h11.EndOfMessage())
    assert (await holder.reply()).status == 200
    assert (await _ask(keyed, "GET", "/api/tags", auth)).status_code == 200


async def _wait_for_status(
    live: LiveServer, headers: dict[str, str], status: int
) -> httpx.Response:
    """The head sent on another connection reaches the server soon, not at once."""
    for _ in range(200):
        answer = await _ask(live, "GET", "/api/tags", headers)
        if answer.status_code == status:
            return answer
        await trio.sleep(0.01)
    raise AssertionError(f"never answered {status}; last {answer.status_code}")
