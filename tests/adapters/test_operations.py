"""Running it in production: metrics, the visible queue, health, request ids, logs.

Real server, real sockets, real llama.cpp (the tiny generated model); the metrics
are read back with prometheus_client's own parser.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import httpx
import ollama
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from gateway_core_adapters.hardware import Device, choose_context_length
from gateway_core_adapters.settings import ServerSettings

from .conftest import TcpConnect
from .helpers import ENDLESS_SCHEMA, request
from .live import LiveServer, start_live_server
from .ollama_setup import QUICK, call, install
from .processes import server_process

HI: Any = [{"role": "user", "content": "hi"}]
GIB = 1024**3


def scrape(live: LiveServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``GET /metrics``, by name and labels."""
    text = httpx.get(f"http://127.0.0.1:{live.port}/metrics").text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def moved(
    before: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    after: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    name: str,
    **labels: str,
) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.fixture
def opened() -> Iterator[list[ollama.Client]]:
    clients: list[ollama.Client] = []
    yield clients
    for client in clients:
        client.close()  # type: ignore[no-untyped-call]


async def _metered(
    nursery: trio.Nursery, root: Path, gguf: Path, opened: list[ollama.Client]
) -> tuple[LiveServer, ollama.Client]:
    settings = ServerSettings(
        host="127.0.0.1",
        port=0,
        models=root,
        metrics=True,
        num_parallel=1,
        max_queue=1,
        context_length=32768,
    )
    live = await start_live_server(nursery, settings)
    client = ollama.Client(host=f"http://127.0.0.1:{live.port}")
    opened.append(client)
    await install(client, "tiny", gguf)
    return live, client


# A generation that cannot end soon: a 20,000-character string, all of it asked
# for, and not streamed, so that its answer has not begun when its client leaves.
# (With QUICK's 8 tokens it ended in 0.4 s on a loaded machine, before the test
# saw anyone wait behind it.)
_HELD_OPTIONS = {**QUICK, "num_predict": 30000}


def _hold_the_only_slot(port: int) -> socket.socket:
    """Start a generation that cannot end soon and read none of it: it keeps the
    model's one slot busy until the socket is closed, which aborts it."""
    held = socket.socket()
    held.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    held.connect(("127.0.0.1", port))
    body = json.dumps(
        {
            "model": "tiny",
            "messages": HI,
            "format": ENDLESS_SCHEMA,
            "options": _HELD_OPTIONS,
            "stream": False,
        }
    ).encode()
    held.sendall(
        b"POST /api/chat HTTP/1.1\r\nhost: localhost\r\ncontent-type: "
        b"application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    )
    return held


async def _wait_for_waiting(live: LiveServer, count: int) -> dict[str, Any]:
    with trio.fail_after(20):
        while True:
            listed = (await call(lambda: httpx.get(f"{_url(live)}/api/ps"))).json()
            for model in listed["models"]:
                if model["waiting"] == count:
                    return dict(model)
            await trio.sleep(0.02)


def _url(live: LiveServer) -> str:
    return f"http://127.0.0.1:{live.port}"


async def test_metrics_move_by_exactly_the_workload_and_the_queue_is_visible(
    nursery: trio.Nursery, tmp_path: Path, gguf: Path, opened: list[ollama.Client]
) -> None:
    live, client = await _metered(nursery, tmp_path / "models", gguf, opened)
    before = await call(lambda: scrape(live))
    chats = [
        await call(lambda: client.chat(model="tiny", messages=HI, options=QUICK))
        for _ in range(3)
    ]
    embedded = await call(lambda: client.embed(model="tiny", input=["a b", "c"]))
    missing = await call(lambda: httpx.get(f"{_url(live)}/api/nope"))
    assert missing.status_code == 404
    # The queue: one request holds the only slot, one waits, a third is refused.
    held = await trio.to_thread.run_sync(_hold_the_only_slot, live.port)
    try:
        await _wait_for_slot_busy(live)
        async with trio.open_nursery() as waiters:
            waited: list[Any] = []

            async def wait_in_line() -> None:
                waited.append(
                    await call(
                        lambda: client.chat(model="tiny", messages=HI, options=QUICK)
                    )
                )

            waiters.start_soon(wait_in_line)
            queued = await _wait_for_waiting(live, 1)
            assert queued["slots"] == {"busy": 1, "total": 1}
            busy = await call(
                lambda: httpx.post(
                    f"{_url(live)}/api/chat",
                    json={"model": "tiny", "messages": HI, "options": QUICK},
                )
            )
            assert busy.status_code == 503
            assert busy.headers["retry-after"] == "2"
            held.close()  # the held generation is aborted; the waiter gets the slot
        (late,) = waited
        assert late.done
    finally:
        held.close()
    after = await _settled_scrape(live)

    chat_count = len(chats) + 1  # the one that waited
    generated = sum(c.eval_count or 0 for c in [*chats, late])
    prompt = sum(c.prompt_eval_count or 0 for c in [*chats, late])
    tiny = {"model": "tiny:latest"}
    assert moved(before, after, "gateway_generated_tokens_total", **tiny) >= generated
    assert moved(before, after, "gateway_embedded_inputs_total", **tiny) == 2
    assert moved(before, after, "gateway_prompt_tokens_total", **tiny) >= prompt + (
        embedded.prompt_eval_count or 0
    )
    duration = "gateway_http_request_duration_seconds_count"
    ok_chat = {"route": "/api/chat", "method": "POST"}
    assert moved(before, after, duration, status="200", **ok_chat) == chat_count
    # The held chat was cut by its client before its answer began: no status.
    assert moved(before, after, duration, status="-", **ok_chat) == 1
    assert moved(before, after, duration, status="503", **ok_chat) == 1
    assert (
        moved(before, after, duration, route="/api/embed", method="POST", status="200")
        == 1
    )
    assert (
        moved(
            before, after, "gateway_http_errors_total", status="404", dialect="ollama"
        )
        == 1
    )
    assert (
        moved(
            before, after, "gateway_http_errors_total", status="503", dialect="ollama"
        )
        == 1
    )
    # The held chat has a first token too unless its client left before the
    # first one reached the gateway; that race is the test's, not the server's.
    first_tokens = "gateway_time_to_first_token_seconds_count"
    assert moved(before, after, first_tokens, **tiny) in (chat_count, chat_count + 1)
    loads = moved(before, after, "gateway_model_load_duration_seconds_count", **tiny)
    assert loads == 2  # the generating runner, and the embedding one


async def _settled_scrape(
    live: LiveServer,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A scrape once every other request is over (the cut one ends soon after its
    client leaves, not at once): only the scrape itself is in flight."""
    with trio.fail_after(20):
        while True:
            after = await call(lambda: scrape(live))
            if after[("gateway_http_requests_in_flight", ())] == 1:
                return after
            await trio.sleep(0.02)


async def _wait_for_slot_busy(live: LiveServer) -> None:
    with trio.fail_after(20):
        while True:
            listed = (await call(lambda: httpx.get(f"{_url(live)}/api/ps"))).json()
            if any(m["slots"]["busy"] == 1 for m in listed["models"]):
                return
            await trio.sleep(0.02)


async def test_metrics_are_off_unless_asked_for(live_server: LiveServer) -> None:
    answer = await call(lambda: httpx.get(f"{_url(live_server)}/metrics"))
    assert answer.status_code in (404, 500)  # 500: this server has no model store


async def test_health_answers_503_once_shutdown_has_begun(
    nursery: trio.Nursery, tcp_client: TcpConnect
) -> None:
    live = await start_live_server(
        nursery, ServerSettings(host="127.0.0.1", port=0, shutdown_timeout=5)
    )
    ok = await (await tcp_client(live)).exchange(request("GET", "/health"))
    assert ok.status == 200
    assert ok.json() == {"status": "ok"}
    # A request whose head is on its way when shutdown begins is still answered.
    probe = await tcp_client(live)
    await probe.send_raw(b"GET /health HTTP/1.1\r\nhost: localhost\r\n")
    await trio.sleep(0.05)
    live.server.shutdown()
    await probe.send_raw(b"\r\n")
    stopping = await probe.reply()
    assert stopping.status == 503
    assert stopping.json() == {"status": "shutting down"}


async def test_a_request_id_is_taken_from_the_client_or_made(
    live_server: LiveServer, tcp_client: TcpConnect
) -> None:
    client = await tcp_client(live_server)
    named = await client.exchange(
        request("GET", "/api/version", [("x-request-id", "trace-42")])
    )
    assert named.header("x-request-id") == "trace-42"
    made = await client.exchange(request("GET", "/api/version"))
    assert made.header("x-request-id")
    assert made.header("x-request-id") != "trace-42"
    error = await client.exchange(
        request(
            "POST", "/v1/messages", [("x-request-id", "ant-1"), ("content-length", "1")]
        ),
        b"{",
    )
    assert error.json()["request_id"] == "ant-1"


def test_the_default_context_is_chosen_from_the_devices_llama_cpp_lists() -> None:
    cpu = Device(name="CPU", kind="cpu", total_bytes=64 * GIB, free_bytes=60 * GIB)
    assert choose_context_length([cpu]) == (4096, "no GPU found: CPU only")
    big = Device(name="CUDA0", kind="gpu", total_bytes=48 * GIB, free_bytes=40 * GIB)
    context, why = choose_context_length([cpu, big])
    assert context == 262_144
    assert "CUDA0 (48.0 GiB)" in why
    assert choose_context_length([cpu, big], overhead=2 * GIB)[0] == 32_768
    two = Device(name="CUDA1", kind="gpu", total_bytes=12 * GIB, free_bytes=12 * GIB)
    assert choose_context_length([two, two])[0] == 32_768  # memory adds up
    accel = Device(name="BLAS", kind="accel", total_bytes=99 * GIB, free_bytes=0)
    assert choose_context_length([accel])[0] == 4096


async def test_a_stalled_stderr_does_not_stall_the_server(tmp_path: Path) -> None:
    """The server's stderr is a pipe nobody reads after start-up: once the pipe is
    full, a blocking write would stop every connection."""
    async with server_process(tmp_path, env={"GATEWAY_LOG_FORMAT": "json"}) as server:
        assert b"default context length 4096 (no GPU found: CPU only)" in server.log
        client = await server.connect()
        with trio.fail_after(60):
            for number in range(2000):  # ~300 bytes of log each: far past 64 KiB
                reply = await client.exchange(
                    h11.Request(
                        method="GET",
                        target="/api/version",
                        headers=[("host", "localhost"), ("x-request-id", f"r{number}")],
                    )
                )
                assert reply.status == 200
        await trio.aclose_forcefully(client.stream)
        # Reading again, the log catches up: JSON lines with the access fields.
        found = await server.wait_for(rb'\{[^\n]*"request_id": "r1999"[^\n]*\}')
        line = json.loads(found[0])
        assert line["path"] == "/api/version"
        assert line["status"] == 200
        assert line["method"] == "GET"
