"""A runner that dies takes nothing with it: the server, other models' streams and
the next request to the same model all go on.

Each model runs in a runner process of its own. These tests kill runners (SIGKILL,
as the OOM killer does) and load a model that makes llama.cpp abort, over real
HTTP, and check what clients see: a clean error in the dialect they speak (a 500
before the first byte; after it, the in-band error and the proper end of the
stream), and a server that keeps serving.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import h11
import ollama
import pytest
import trio

from .conftest import TcpConnect
from .helpers import H11Client, request
from .live import LiveServer
from .ollama_setup import QUICK, call, install, load
from .runner.conftest import write_aborting_model

LONG = {"num_predict": 3000, "seed": 1, "temperature": 0.0}


def runner_pid(live: LiveServer) -> int:
    models = live.server.models
    assert models is not None
    (running,) = [m for m in models.pool.running() if not m.key.endswith("#embed")]
    return running.runner.pid


async def open_stream(
    connect: TcpConnect, live: LiveServer, path: str, body: dict[str, object]
) -> H11Client:
    client = await connect(live)
    data = json.dumps(body).encode()
    await client.send(
        request(
            "POST",
            path,
            headers=[
                ("content-length", str(len(data))),
                ("content-type", "application/json"),
            ],
        ),
        h11.Data(data=data),
        h11.EndOfMessage(),
    )
    head = await client.next_event()
    assert isinstance(head, h11.Response)
    assert head.status_code == 200, head
    return client


async def read_some(client: H11Client) -> bytes:
    event = await client.next_event()
    assert isinstance(event, h11.Data), event
    return bytes(event.data)


async def read_rest(client: H11Client) -> bytes:
    body = b""
    with trio.fail_after(30):
        while True:
            event = await client.next_event()
            if isinstance(event, h11.EndOfMessage):
                return body
            assert isinstance(event, h11.Data), event
            body += bytes(event.data)


DIALECTS: dict[str, tuple[str, dict[str, object]]] = {
    "native": (
        "/api/chat",
        {"model": "tiny", "messages": [{"role": "user", "content": "Go"}],
         "options": LONG},
    ),
    "openai": (
        "/v1/chat/completions",
        {"model": "tiny", "messages": [{"role": "user", "content": "Go"}],
         "stream": True, "max_tokens": 3000, "seed": 1, "temperature": 0.0},
    ),
    "anthropic": (
        "/v1/messages",
        {"model": "tiny", "messages": [{"role": "user", "content": "Go"}],
         "stream": True, "max_tokens": 3000, "temperature": 0.0},
    ),
}  # fmt: skip


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_a_runner_killed_mid_stream_ends_the_stream_properly(
    served: tuple[LiveServer, ollama.Client], tcp_client: TcpConnect, dialect: str
) -> None:
    live, client = served
    path, body = DIALECTS[dialect]
    stream = await open_stream(tcp_client, live, path, body)
    first = await read_some(stream)
    pid = runner_pid(live)
    os.kill(pid, signal.SIGKILL)
    rest = (first + await read_rest(stream)).decode()
    if dialect == "native":
        last = json.loads(rest.strip().splitlines()[-1])
        assert "runner" in last["error"]
    elif dialect == "openai":
        assert rest.rstrip().endswith("data: [DONE]")
        (error,) = [
            json.loads(line[len("data: ") :])
            for line in rest.splitlines()
            if line.startswith("data: {") and '"error"' in line
        ]
        assert "runner" in error["error"]["message"]
    else:
        assert "event: error" in rest
        assert "runner" in rest.split("event: error", 1)[1]
    # The model is loaded afresh for the next request, in a new process.
    answer = await call(
        lambda: client.generate(model="tiny", prompt="hi", options=QUICK)
    )
    assert answer.eval_count == 8
    assert runner_pid(live) != pid


async def test_a_runner_killed_while_idle_is_reloaded_on_the_next_request(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    live, client = served
    await load(client, "tiny")
    pid = runner_pid(live)
    os.kill(pid, signal.SIGKILL)
    models = live.server.models
    assert models is not None
    with trio.fail_after(10):
        while models.pool.running():
            await trio.sleep(0.01)
    ps = await call(client.ps)
    assert ps.models == []  # /api/ps shows what is really loaded
    answer = await call(
        lambda: client.generate(model="tiny", prompt="hi", options=QUICK)
    )
    assert answer.eval_count == 8


async def test_a_model_that_aborts_llama_cpp_fails_alone(
    served: tuple[LiveServer, ollama.Client],
    tcp_client: TcpConnect,
    gguf: Path,
    tmp_path: Path,
) -> None:
    """Another model's stream goes on while the broken one's load aborts its
    runner; the broken model's request gets a 500 that says so."""
    live, client = served
    await install(client, "broken", write_aborting_model(gguf, tmp_path / "b.gguf"))
    path, body = DIALECTS["native"]
    options = {**LONG, "num_predict": 400}
    stream = await open_stream(tcp_client, live, path, {**body, "options": options})
    await read_some(stream)
    with pytest.raises(ollama.ResponseError) as caught:
        await call(lambda: client.generate(model="broken", prompt="hi"))
    assert caught.value.status_code == 500
    assert "SIGABRT" in caught.value.error
    lines = (await read_rest(stream)).decode().strip().splitlines()
    final = json.loads(lines[-1])
    assert final["done"] is True
    assert "error" not in final
    # And the server still answers everything else.
    answer = await call(
        lambda: client.generate(model="tiny", prompt="hi", options=QUICK)
    )
    assert answer.eval_count == 8


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize(
    "kills", [5, pytest.param(1000, marks=pytest.mark.slow)], ids=["few", "many"]
)
async def test_killed_runners_leave_nothing_behind(
    served: tuple[LiveServer, ollama.Client], kills: int
) -> None:
    """Runner after runner is killed; the server's threads, file descriptors and
    memory stay where they were (RSS within 5%, after a warm-up round)."""
    live, client = served
    models = live.server.models
    assert models is not None

    async def one_round() -> None:
        await load(client, "tiny")
        os.kill(runner_pid(live), signal.SIGKILL)
        with trio.fail_after(10):
            while models.pool.running():
                await trio.sleep(0.005)

    for _ in range(3):  # warm-up: imports, caches, the first connections
        await one_round()
    threads, fds, rss = threading.active_count(), _open_fds(), _rss_kib()
    for _ in range(kills):
        await one_round()
    assert threading.active_count() <= threads
    assert _open_fds() <= fds
    assert _rss_kib() <= rss * 1.05, (rss, _rss_kib())
