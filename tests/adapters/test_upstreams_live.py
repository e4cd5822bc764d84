"""A front gateway routing to real upstreams on loopback: ``gateway-core serve``
processes (their empty stores serve the demo model) and llama-cpp-python's own
OpenAI-compatible server, driven by the official ollama, openai and anthropic
clients. Random weights: structure is checked, never wording."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from gateway_core import ProxyCompletion, Timeouts, UpstreamTable, WorkFailed
from gateway_core._completion_request import chat_request
from gateway_core._upstream._requests import upstream_requests
from gateway_core._upstream._table import remote_pool
from gateway_core_adapters.demo_model import write_demo_model
from gateway_core_adapters.settings import ServerSettings
from gateway_core_adapters.upstream import Upstreams

from .live import LiveServer, start_live_server
from .ollama_setup import call
from .processes import ServerProcess, server_process

pytestmark = pytest.mark.slow

HI: list[Any] = [{"role": "user", "content": "Say hi."}]
QUICK = {"num_predict": 6, "seed": 3, "temperature": 0.0}
WEATHER: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"enum": ["Tokyo", "Paris"]}},
                "required": ["city"],
            },
        },
    }
]
SCHEMA = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}


def pools(
    *upstreams: tuple[str, str, str], extra: str = "", more: str = ""
) -> UpstreamTable:
    """One pool ``remote*`` of (name, kind, url) upstreams, each serving ``demo``
    (``extra``: more keys of the pool; ``more``: of each upstream)."""
    text = f'[[pool]]\nname = "p"\nmodels = ["remote*"]\n{extra}\n'
    for name, kind, url in upstreams:
        text += (
            f'[[pool.upstream]]\nname = "{name}"\nkind = "{kind}"\n'
            f'url = "{url}"\nmodel = "demo"\n{more}\n'
        )
    return UpstreamTable.from_toml(text)


async def front(
    nursery: trio.Nursery, tmp_path: Path, table: UpstreamTable, **more: Any
) -> LiveServer:
    settings = ServerSettings(
        host="127.0.0.1", port=0, models=tmp_path / "front", upstreams=table, **more
    )
    return await start_live_server(nursery, settings)


@pytest.fixture
async def upstream(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    async with server_process(tmp_path / "up") as process:
        yield process


def ollama_at(live: LiveServer) -> ollama.Client:
    return ollama.Client(host=f"http://127.0.0.1:{live.port}")


def openai_at(live: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"http://127.0.0.1:{live.port}/v1", api_key="x", max_retries=0
    )


def anthropic_at(live: LiveServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=f"http://127.0.0.1:{live.port}", api_key="x", max_retries=0
    )


async def check_every_client(live: LiveServer, *, forced_calls: bool) -> None:
    """Chat through ``live`` with each official client, streaming and not, with
    tools and ``format``; every reply carries the local name ``remote-demo``."""
    model = "remote-demo"
    native = ollama_at(live)
    whole = await call(lambda: native.chat(model=model, messages=HI, options=QUICK))
    assert whole.model == model
    assert whole.done_reason in ("stop", "length")
    assert whole.message.role == "assistant"
    chunks = await call(
        lambda: list(native.chat(model=model, messages=HI, options=QUICK, stream=True))
    )
    assert {c.model for c in chunks} == {model}
    assert chunks[-1].done
    shaped = await call(
        lambda: native.chat(
            model=model,
            messages=HI,
            format=SCHEMA,
            options={"num_predict": 40, "temperature": 0.0},
        )
    )
    assert shaped.done_reason == "stop"
    assert isinstance(json.loads(shaped.message.content or "")["ok"], bool)
    offered = await call(
        lambda: native.chat(model=model, messages=HI, tools=WEATHER, options=QUICK)
    )
    assert offered.model == model
    assert offered.done
    text = await call(lambda: native.generate(model=model, prompt="Hi", options=QUICK))
    assert text.model == model
    assert text.done
    native.close()  # type: ignore[no-untyped-call]

    oa = openai_at(live)
    completion = await call(
        lambda: oa.chat.completions.create(
            model=model, messages=HI, max_tokens=6, tools=WEATHER
        )
    )
    assert completion.model == model
    assert completion.choices[0].finish_reason in ("stop", "length", "tool_calls")
    stream = await call(
        lambda: list(
            oa.chat.completions.create(
                model=model, messages=HI, max_tokens=6, stream=True
            )
        )
    )
    assert {c.model for c in stream} == {model}
    assert stream[-1].choices == [] or stream[-1].choices[0].finish_reason
    structured = await call(
        lambda: oa.chat.completions.create(
            model=model,
            messages=HI,
            max_tokens=40,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": SCHEMA},
            },
        )
    )
    answer = json.loads(structured.choices[0].message.content or "")
    assert isinstance(answer["ok"], bool)
    if forced_calls:
        forced = await call(
            lambda: oa.chat.completions.create(
                model=model,
                messages=HI,
                max_tokens=256,
                seed=1,
                tools=WEATHER,
                tool_choice="required",
            )
        )
        assert forced.choices[0].finish_reason == "tool_calls"
        (tool_call,) = forced.choices[0].message.tool_calls or []
        assert tool_call.type == "function"
        assert tool_call.function.name == "get_weather"
        assert json.loads(tool_call.function.arguments)["city"] in ("Tokyo", "Paris")
    oa.close()

    claude = anthropic_at(live)
    message = await call(
        lambda: claude.messages.create(
            model=model, max_tokens=6, messages=[{"role": "user", "content": "Hi"}]
        )
    )
    assert message.model == model
    assert message.stop_reason in ("end_turn", "max_tokens")
    events = await call(
        lambda: list(
            claude.messages.create(
                model=model,
                max_tokens=6,
                messages=[{"role": "user", "content": "Hi"}],
                stream=True,
            )
        )
    )
    assert events[0].type == "message_start"
    assert events[-1].type == "message_stop"
    if forced_calls:
        used = await call(
            lambda: claude.messages.create(
                model=model,
                max_tokens=256,
                messages=[{"role": "user", "content": "Weather?"}],
                tools=[
                    {
                        "name": "get_weather",
                        "description": "The weather in a city.",
                        "input_schema": WEATHER[0]["function"]["parameters"],
                    }
                ],
                tool_choice={"type": "any"},
            )
        )
        # A random model may spend its tokens before the call is whole: then it
        # is a cut call, still a tool_use block (issue 15's rule).
        assert used.stop_reason in ("tool_use", "max_tokens")
        (block,) = [b for b in used.content if b.type == "tool_use"]
        assert block.name == "get_weather"
        if used.stop_reason == "tool_use":
            assert block.input["city"] in ("Tokyo", "Paris")
    claude.close()


@pytest.mark.parametrize("kind", ["gateway", "ollama", "openai"])
async def test_every_client_through_a_gateway_process_of_each_kind(
    nursery: trio.Nursery, tmp_path: Path, upstream: ServerProcess, kind: str
) -> None:
    base = f"http://127.0.0.1:{upstream.port}" + ("/v1" if kind == "openai" else "")
    live = await front(nursery, tmp_path, pools(("up", kind, base)))
    await check_every_client(live, forced_calls=True)
    live.server.shutdown()


@asynccontextmanager
async def llama_cpp_server(model: Path) -> AsyncIterator[int]:
    """``python -m llama_cpp.server`` on a free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "512",
    ]
    process = await trio.lowlevel.open_process(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        with trio.fail_after(60):
            while True:
                try:
                    async with httpx.AsyncClient() as probe_client:
                        if (
                            await probe_client.get(f"http://127.0.0.1:{port}/v1/models")
                        ).status_code == 200:
                            break
                except httpx.HTTPError:
                    pass
                await trio.sleep(0.2)
        yield port
    finally:
        with trio.CancelScope(shield=True):
            process.kill()
            await process.wait()


async def test_every_client_through_llama_cpp_pythons_server(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    pytest.importorskip("llama_cpp.server.app")
    gguf = tmp_path / "demo.gguf"
    write_demo_model(gguf)
    async with llama_cpp_server(gguf) as port:
        table = pools(
            ("llama", "openai", f"http://127.0.0.1:{port}/v1"),
            more='schema_format = "json_object"',
        )
        live = await front(nursery, tmp_path, table)
        await check_every_client(live, forced_calls=False)
        live.server.shutdown()


class RecordingListener:
    """A socket that counts the connections it is offered, and answers none. On
    127.0.0.2: another loopback address, so that the allow-list can hold
    127.0.0.1 (the real upstream) and not it."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.2", 0))
        self.socket.listen(8)
        self.socket.setblocking(False)
        self.port = self.socket.getsockname()[1]

    def connections(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.socket.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1


async def test_remote_models_work_on_the_allow_list_only(
    nursery: trio.Nursery, tmp_path: Path, upstream: ServerProcess
) -> None:
    recorder = RecordingListener()
    live = await front(nursery, tmp_path, UpstreamTable(), remotes=("127.0.0.1",))
    client = ollama_at(live)
    base = f"http://127.0.0.1:{live.port}"
    async with httpx.AsyncClient() as raw:
        # The ollama client's create has no remote_host: the request as Ollama's
        # CLI sends it.
        for name, host in (
            ("near", f"127.0.0.1:{upstream.port}"),
            ("far", f"http://127.0.0.2:{recorder.port}"),
        ):
            created = await raw.post(
                f"{base}/api/create",
                json={"model": name, "from": "demo", "remote_host": host,
                      "system": "Answer briefly.", "stream": False},
            )  # fmt: skip
            assert created.status_code == 200, created.text
        tags = (await raw.get(f"{base}/api/tags")).json()["models"]
    listed = {entry["name"]: entry for entry in tags}
    assert listed["near:latest"]["remote_host"] == f"http://127.0.0.1:{upstream.port}"
    assert listed["near:latest"]["remote_model"] == "demo"
    shown = await call(lambda: client.show("near"))
    assert shown.modelfile
    assert "FROM demo" in shown.modelfile
    answer = await call(lambda: client.chat(model="near", messages=HI, options=QUICK))
    assert answer.model == "near"
    assert answer.done
    with pytest.raises(ollama.ResponseError) as refused:
        await call(lambda: client.chat(model="far", messages=HI, options=QUICK))
    assert refused.value.status_code == 403
    assert "GATEWAY_REMOTES" in refused.value.error
    assert recorder.connections() == 0
    recorder.socket.close()
    client.close()  # type: ignore[no-untyped-call]
    live.server.shutdown()


async def upstream_states(live: LiveServer) -> dict[str, dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        found = (await client.get(f"http://127.0.0.1:{live.port}/api/ps")).json()
    return {entry["name"]: entry for entry in found["upstreams"]}


async def test_least_busy_spreads_and_sessions_stick(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with (
        server_process(tmp_path / "a") as first,
        server_process(tmp_path / "b") as second,
    ):
        table = pools(
            ("a", "gateway", f"http://127.0.0.1:{first.port}"),
            ("b", "gateway", f"http://127.0.0.1:{second.port}"),
        )
        live = await front(nursery, tmp_path, table, metrics=True)
        url = f"http://127.0.0.1:{live.port}/api/chat"
        body = {"model": "remote", "messages": HI, "options": {"num_predict": 24}}
        async with httpx.AsyncClient(timeout=60) as client:

            async def one() -> None:
                reply = await client.post(url, json=body)
                assert reply.status_code == 200

            async with trio.open_nursery() as requests:
                for _ in range(32):
                    requests.start_soon(one)
            states = await upstream_states(live)
            counts = [states["a"]["requests"], states["b"]["requests"]]
            assert sum(counts) == 32, counts
            assert all(14 <= count <= 18 for count in counts), counts  # 16 ± 2
            scraped = await client.get(f"http://127.0.0.1:{live.port}/metrics")
            found = {
                (sample.name, sample.labels.get("upstream")): sample.value
                for family in text_string_to_metric_families(scraped.text)
                for sample in family.samples
                if sample.name.startswith("gateway_upstream_")
            }
            for name, count in zip("ab", counts, strict=True):
                assert found[("gateway_upstream_requests_total", name)] == count
                assert found[("gateway_upstream_up", name)] == 1
                assert found[("gateway_upstream_requests_in_flight", name)] == 0
        session_table = pools(
            ("a", "gateway", f"http://127.0.0.1:{first.port}"),
            ("b", "gateway", f"http://127.0.0.1:{second.port}"),
            extra='policy = "session"',
        )
        sticky = await front(nursery, tmp_path / "s", session_table)
        async with httpx.AsyncClient(timeout=60) as client:
            for session in ("alpha", "beta", "gamma", "delta"):
                before = await upstream_states(sticky)
                for _ in range(3):
                    reply = await client.post(
                        f"http://127.0.0.1:{sticky.port}/api/chat",
                        json={**body, "stream": False},
                        headers={"x-session-id": session},
                    )
                    assert reply.status_code == 200
                after = await upstream_states(sticky)
                moved = {
                    name: after[name]["requests"] - before[name]["requests"]
                    for name in after
                }
                assert sorted(moved.values()) == [0, 3], moved
        live.server.shutdown()
        sticky.server.shutdown()


async def test_a_dead_upstream_fails_over_and_comes_back(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with server_process(tmp_path / "a") as steady:
        doomed_cm = server_process(tmp_path / "b", args=("--host", f"127.0.0.1:{port}"))
        doomed = await doomed_cm.__aenter__()
        table = pools(
            ("steady", "gateway", f"http://127.0.0.1:{steady.port}"),
            ("doomed", "gateway", f"http://127.0.0.1:{port}"),
            extra="health_interval = 1",
        )
        live = await front(nursery, tmp_path, table)
        url = f"http://127.0.0.1:{live.port}/api/chat"
        quick = {"model": "remote", "messages": HI, "options": QUICK, "stream": False}
        # A schema that forbids ending before the context (4,096 tokens) is full:
        # seconds of work, so the kill lands mid-answer (the random model's own
        # answers end in a few milliseconds).
        long_answer = {
            "model": "remote",
            "messages": HI,
            "format": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0, "maximum": 9},
                "minItems": 3000,
            },
            "options": {"num_predict": -1, "num_ctx": 4096},
        }
        async with httpx.AsyncClient(timeout=60) as client:
            for _ in range(4):  # both serve
                assert (await client.post(url, json=quick)).status_code == 200
            assert (await upstream_states(live))["doomed"]["requests"] == 2
            # One stream on each upstream (least busy); the doomed one is killed
            # under its stream.
            async with contextlib.AsyncExitStack() as opened:
                readers = []
                for _ in range(2):
                    reply = await opened.enter_async_context(
                        client.stream("POST", url, json=long_answer)
                    )
                    readers.append(reply.aiter_lines())
                for reader in readers:
                    assert json.loads(await anext(reader))["done"] is False
                doomed.process.send_signal(signal.SIGKILL)
                endings: list[dict[str, Any]] = []

                async def follow(reader: AsyncIterator[str]) -> None:
                    last: dict[str, Any] = {}
                    async for line in reader:
                        last = json.loads(line)
                    endings.append(last)

                # An in-band error, never a hang. The survivor is read to its end
                # (a few seconds here; the bound is for a loaded machine).
                with trio.fail_after(150):
                    async with trio.open_nursery() as both:
                        for reader in readers:
                            both.start_soon(follow, reader)
            assert sorted("error" in end for end in endings) == [False, True], endings
            await doomed_cm.__aexit__(None, None, None)
            # Requests not yet started go to the steady one: no client error.
            for _ in range(6):
                reply = await client.post(url, json=quick)
                assert reply.status_code == 200, reply.text
            with trio.fail_after(2.5):  # within one health interval (and a check)
                while (await upstream_states(live))["doomed"]["up"]:
                    await trio.sleep(0.1)
            states = await upstream_states(live)
            assert states["doomed"]["failovers"] <= 1
            assert states["steady"]["requests"] >= 9
            async with server_process(
                tmp_path / "b", args=("--host", f"127.0.0.1:{port}")
            ):
                with trio.fail_after(5):
                    while not (await upstream_states(live))["doomed"]["up"]:
                        await trio.sleep(0.2)
                for _ in range(4):
                    assert (await client.post(url, json=quick)).status_code == 200
                assert (await upstream_states(live))["doomed"]["requests"] >= 3
        live.server.shutdown()


async def scripted_upstream(
    nursery: trio.Nursery, lines: int, on_close: list[float], started: trio.Event
) -> int:
    """A scripted Ollama upstream: it answers any request with ``lines`` NDJSON
    lines, one every 20 ms, then drops the connection without a done line (as a
    killed process does), and notes when its connection closed. It stands in for
    a model slow enough to be caught mid-answer: the tiny test model answers in
    milliseconds, and one cannot say when a real upstream saw a close."""

    async def answer(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        line = json.dumps({"message": {"role": "assistant", "content": "x"}}) + "\n"
        chunk = f"{len(line):x}\r\n{line}\r\n".encode()
        started.set()
        try:
            for _ in range(lines):
                await stream.send_all(chunk)
                await trio.sleep(0.02)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            on_close.append(time.monotonic())
            return
        sock = stream.socket
        # An abortive close (RST), as the kernel does for a killed process.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        sock.close()

    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, answer, 0, host="127.0.0.1")
    )
    return int(listeners[0].socket.getsockname()[1])


async def test_a_stream_cut_by_a_dying_upstream_ends_in_band(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    port = await scripted_upstream(nursery, 5, [], trio.Event())
    live = await front(
        nursery, tmp_path, pools(("scripted", "ollama", f"http://127.0.0.1:{port}"))
    )
    url = f"http://127.0.0.1:{live.port}/api/chat"
    async with httpx.AsyncClient(timeout=60) as client:
        with trio.fail_after(10):  # never a hang
            async with client.stream(
                "POST", url, json={"model": "remote", "messages": HI}
            ) as reply:
                assert reply.status_code == 200
                found = [json.loads(line) async for line in reply.aiter_lines()]
    assert [f["message"]["content"] for f in found[:-1]] == ["x"] * 5
    assert "error" in found[-1], found[-1]
    live.server.shutdown()


async def test_a_client_that_leaves_closes_the_upstream_connection(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    closed_at: list[float] = []
    started = trio.Event()
    port = await scripted_upstream(nursery, 10_000, closed_at, started)
    table = pools(("scripted", "ollama", f"http://127.0.0.1:{port}"))
    live = await front(nursery, tmp_path, table)
    client_socket = await trio.open_tcp_stream("127.0.0.1", live.port)
    body = json.dumps({"model": "remote", "messages": HI}).encode()
    await client_socket.send_all(
        b"POST /api/chat HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await started.wait()
    await client_socket.receive_some(4096)
    left_at = time.monotonic()
    await client_socket.aclose()
    with trio.fail_after(5):
        while not closed_at:
            await trio.sleep(0.005)
    assert closed_at[0] - left_at < 0.1, closed_at[0] - left_at
    live.server.shutdown()


async def test_the_adapter_refuses_a_host_nobody_allowed_before_any_socket() -> None:
    """A second line behind the core's allow-list check: the HTTP side itself
    opens no connection to a host that neither the upstreams file nor the remote
    allow-list names."""
    recorder = RecordingListener()
    pool = dataclasses.replace(
        remote_pool(f"http://127.0.0.2:{recorder.port}", "demo"),
        timeouts=Timeouts(connect=1, first_byte=0.5, idle=1),
    )
    completion = chat_request({"model": "far", "messages": HI})
    effect = ProxyCompletion(
        model="far", pool=pool, requests=upstream_requests(completion, pool)
    )
    upstreams = Upstreams(UpstreamTable(), remotes=("127.0.0.1",))
    refused = await upstreams.open(effect)
    assert isinstance(refused, WorkFailed)
    assert refused.status == 403
    assert recorder.connections() == 0
    allowed = Upstreams(UpstreamTable(), remotes=("127.0.0.2",))
    reached = await allowed.open(effect)  # the recorder never answers: a timeout
    assert isinstance(reached, WorkFailed)
    assert reached.status == 504
    assert recorder.connections() == 1
    recorder.socket.close()
    await upstreams.aclose()
    await allowed.aclose()


async def recording_upstream(
    nursery: trio.Nursery, heads: list[bytes], *, stall_after: int | None = None
) -> int:
    """A scripted Ollama upstream that keeps each request's head and answers one
    line and a done line; with ``stall_after``, it sends that many lines and then
    nothing, keeping the connection open."""

    async def answer(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        heads.append(data.split(b"\r\n\r\n")[0])
        lines = [
            {"message": {"role": "assistant", "content": "x"}},
            {"message": {"role": "assistant", "content": ""}, "done": True},
        ]
        body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        # A stalling upstream promises more than it sends.
        length = len(body) + (1000 if stall_after is not None else 0)
        if stall_after is not None:
            body = b"".join(body.splitlines(True)[:stall_after])
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\n"
            + f"content-length: {length}\r\n\r\n".encode()
            + body
        )
        if stall_after is not None:
            await trio.sleep_forever()

    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, answer, 0, host="127.0.0.1")
    )
    return int(listeners[0].socket.getsockname()[1])


async def test_the_clients_key_stays_here_and_the_upstreams_own_goes(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    heads: list[bytes] = []
    port = await recording_upstream(nursery, heads)
    monkeypatch.setenv("UPSTREAM_TEST_KEY", "upstream-secret")
    table = pools(
        ("keyed", "ollama", f"http://127.0.0.1:{port}"),
        more='api_key_env = "UPSTREAM_TEST_KEY"',
    )
    live = await front(nursery, tmp_path, table)
    async with httpx.AsyncClient(timeout=30) as client:
        reply = await client.post(
            f"http://127.0.0.1:{live.port}/api/chat",
            json={"model": "remote", "messages": HI, "stream": False},
            headers={"authorization": "Bearer client-secret", "cookie": "a=b"},
        )
    assert reply.status_code == 200, reply.text
    assert reply.json()["message"]["content"] == "x"
    (head,) = [h for h in heads if h.startswith(b"POST")]  # and health checks
    assert b"authorization: Bearer upstream-secret" in head
    for each in heads:
        assert b"client-secret" not in each
        assert b"cookie" not in each.lower()
    live.server.shutdown()


async def test_an_upstream_that_stalls_mid_answer_ends_in_band_after_idle(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    port = await recording_upstream(nursery, [], stall_after=1)
    table = pools(
        ("stalls", "ollama", f"http://127.0.0.1:{port}"),
        extra="timeouts = { connect = 1, first_byte = 5, idle = 0.5 }",
    )
    live = await front(nursery, tmp_path, table)
    async with httpx.AsyncClient(timeout=30) as client:
        with trio.fail_after(10):
            async with client.stream(
                "POST",
                f"http://127.0.0.1:{live.port}/api/chat",
                json={"model": "remote", "messages": HI},
            ) as reply:
                found = [json.loads(line) async for line in reply.aiter_lines()]
    assert found[0]["message"]["content"] == "x"
    assert "sent nothing for 0.5 s" in found[-1]["error"]
    live.server.shutdown()
