"""The ASGI app: paths under a mount, limits, lifespan, disconnects, two stores.

Most tests call the app directly with hand-written ``receive``/``send`` (the
shapes ASGI servers produce) or in-process; the official clients' suite runs it
under uvicorn in test_clients_both_servers.py, and hypercorn's trio worker here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import hypercorn.config
import hypercorn.trio
import ollama
import pytest
import trio
from starlette.applications import Starlette
from starlette.routing import Mount

from gateway_core_adapters.asgi import GatewayApp, create_app, lifespan
from gateway_core_adapters.asgi.inprocess import InProcessGateway
from gateway_core_adapters.asgi.scope import Message, Scope, request_head, route_target
from gateway_core_adapters.model_work import LOOKAHEAD
from gateway_core_adapters.settings import ServerSettings

from .ollama_setup import QUICK, call, install

# A context length given: no accelerator probe, and no lifespan needed without a
# model store.
PLAIN = ServerSettings(context_length=2048)


def http_scope(
    method: str,
    path: str,
    *,
    root_path: str = "",
    raw_path: bytes | None = None,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Scope:
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "query_string": query,
        "root_path": root_path,
        "headers": [(b"host", b"localhost"), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 11434),
    }
    if raw_path is not None:
        scope["raw_path"] = raw_path
    return scope


class Recorder:
    """A ``send`` that keeps what the app sent, and its answer decoded."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: bytes) -> bytes | None:
        return dict(self.messages[0]["headers"]).get(name)


def body_then_wait(*chunks: bytes, complete: bool = True) -> Any:
    """A ``receive`` that gives these body chunks (the last one ending the body
    if ``complete``), then waits for ever: a client that stays connected."""
    pending = list(chunks)

    async def receive() -> Message:
        if pending:
            chunk = pending.pop(0)
            more = bool(pending) or not complete
            return {"type": "http.request", "body": chunk, "more_body": more}
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    return receive


# -- paths under a mount ----------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "target"),
    [
        # No mount.
        (http_scope("GET", "/api/tags"), "/api/tags"),
        # Starlette's Mount: full path, root_path, the client's raw path.
        (
            http_scope(
                "GET", "/llm/api/tags", root_path="/llm", raw_path=b"/llm/api/tags"
            ),
            "/api/tags",
        ),
        # uvicorn --root-path behind a proxy that strips it: raw path without it.
        (
            http_scope("GET", "/llm/api/tags", root_path="/llm", raw_path=b"/api/tags"),
            "/api/tags",
        ),
        # Servers before ASGI 2.4's clarification: the path already stripped.
        (http_scope("GET", "/api/tags", root_path="/llm"), "/api/tags"),
        # The mount point itself is the root.
        (http_scope("GET", "/llm", root_path="/llm", raw_path=b"/llm"), "/"),
        # A prefix that is only a prefix of a segment is not the mount.
        (
            http_scope("GET", "/llmx/api", root_path="/llm", raw_path=b"/llmx/api"),
            "/llmx/api",
        ),
        # Percent-encoding is kept as the client sent it, in the prefix too.
        (
            http_scope(
                "GET", "/a b/api/show", root_path="/a b", raw_path=b"/a%20b/api/show"
            ),
            "/api/show",
        ),
        (http_scope("GET", "/api/a b"), "/api/a%20b"),
    ],
)
def test_the_mount_prefix_is_removed_from_the_route(scope: Scope, target: str) -> None:
    assert route_target(scope) == target


def test_the_query_string_and_headers_reach_the_head() -> None:
    head = request_head(
        http_scope(
            "GET",
            "/llm/api/tags",
            root_path="/llm",
            query=b"x=1",
            headers=[(b"x-request-id", b"abc")],
        )
    )
    assert head.target == "/api/tags?x=1"
    assert head.path == "/api/tags"
    assert head.header("x-request-id") == "abc"


async def test_an_unknown_path_under_the_mount_is_the_gateways_404() -> None:
    app = create_app(PLAIN)
    sent = Recorder()
    scope = http_scope("GET", "/llm/nope", root_path="/llm", raw_path=b"/llm/nope")
    await app(scope, body_then_wait(b""), sent)
    assert sent.status == 404
    assert sent.json() == {"error": "unknown endpoint: GET /nope"}


async def test_starlette_mounts_two_apps_with_their_own_errors() -> None:
    """Through Starlette's router: the prefix, ``/v1`` errors in OpenAI's envelope."""
    host = Starlette(routes=[Mount("/llm", app=create_app(PLAIN))])
    sent = Recorder()
    await host(
        http_scope("GET", "/llm/api/version", raw_path=b"/llm/api/version"),
        body_then_wait(b""),
        sent,
    )
    assert sent.status == 200
    assert "version" in sent.json()
    sent = Recorder()
    await host(
        http_scope("GET", "/llm/v1/nope", raw_path=b"/llm/v1/nope"),
        body_then_wait(b""),
        sent,
    )
    assert sent.status == 404
    assert sent.json()["error"]["message"] == "unknown endpoint: GET /v1/nope"


# -- limits -------------------------------------------------------------------------


async def test_a_declared_body_over_the_limit_is_413_before_reading_it() -> None:
    app = create_app(ServerSettings(context_length=2048, max_body_bytes=100))
    sent = Recorder()

    async def receive() -> Message:
        raise AssertionError("the body must not be read")

    headers = [(b"content-length", b"1000"), (b"content-type", b"application/json")]
    await app(http_scope("POST", "/api/chat", headers=headers), receive, sent)
    assert sent.status == 413


async def test_a_stalled_body_is_408(autojump_clock: trio.abc.Clock) -> None:
    app = create_app(ServerSettings(context_length=2048, body_timeout=5))
    sent = Recorder()
    headers = [(b"content-length", b"10")]
    await app(
        http_scope("POST", "/v1/chat/completions", headers=headers),
        body_then_wait(b"{", complete=False),
        sent,
    )
    assert sent.status == 408
    assert "stalled" in sent.json()["error"]["message"]  # OpenAI's envelope


async def test_a_client_that_reads_nothing_is_dropped(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(ServerSettings(context_length=2048, send_timeout=3))
    caplog.set_level(logging.INFO, "adapters.access")

    async def stuck(message: Message) -> None:
        await trio.sleep_forever()

    with trio.fail_after(10):
        await app(http_scope("GET", "/api/version"), body_then_wait(b""), stuck)
    assert "client read nothing for 3 s" in caplog.text


async def test_a_malformed_scope_is_a_400() -> None:
    sent = Recorder()
    await create_app(PLAIN)(http_scope("GE T", "/"), body_then_wait(b""), sent)
    assert sent.status == 400


async def test_websockets_are_refused() -> None:
    sent = Recorder()
    await create_app(PLAIN)({"type": "websocket", "path": "/"}, body_then_wait(), sent)
    assert sent.messages == [{"type": "websocket.close", "code": 1008}]


# -- lifespan -----------------------------------------------------------------------


async def test_before_its_lifespan_a_gateway_with_models_says_so(
    tmp_path: Path,
) -> None:
    app = create_app(ServerSettings(context_length=2048, models=tmp_path))
    sent = Recorder()
    await app(http_scope("GET", "/api/tags"), body_then_wait(b""), sent)
    assert sent.status == 503
    assert "lifespan" in sent.json()["error"]
    async with lifespan(app):
        assert app.running_now
        sent = Recorder()
        await app(http_scope("GET", "/api/tags"), body_then_wait(b""), sent)
        assert sent.status == 200
        assert sent.json() == {"models": []}
    assert not app.running_now


async def test_lifespan_runs_the_block_for_apps_that_do_not_speak_it() -> None:
    async def plain(scope: Scope, receive: Any, send: Any) -> None:
        assert scope["type"] == "http", "no lifespan here"

    async with lifespan(plain) as state:
        assert state == {}


async def test_the_app_cannot_run_twice_at_once() -> None:
    app = create_app(PLAIN)
    async with app.running():
        with pytest.raises(RuntimeError, match="running already"):
            async with app.running():
                pass


# -- with models --------------------------------------------------------------------


@pytest.fixture
def two_stores(tmp_path: Path) -> tuple[GatewayApp, GatewayApp]:
    return (
        create_app(ServerSettings(context_length=2048, models=tmp_path / "a")),
        create_app(ServerSettings(context_length=2048, models=tmp_path / "b")),
    )


def test_two_apps_in_one_loop_see_only_their_own_models(
    two_stores: tuple[GatewayApp, GatewayApp], gguf: Path
) -> None:
    """Two gateways with their own stores, mounted side by side in one host app
    on one event loop: nothing is shared but the process."""
    first, second = two_stores

    @asynccontextmanager
    async def both(_: Starlette) -> AsyncIterator[None]:
        async with first.running(), second.running():
            yield

    host = Starlette(
        routes=[Mount("/a", app=first), Mount("/b", app=second)], lifespan=both
    )
    with InProcessGateway(host) as gateway:
        a = ollama.Client(
            host="http://localhost/a", transport=gateway.httpx_transport()
        )
        b = ollama.Client(
            host="http://localhost/b", transport=gateway.httpx_transport()
        )
        for client, name in ((a, "alpha"), (b, "beta")):
            digest = client.create_blob(gguf)
            client.create(model=name, files={"m.gguf": digest})
        assert [m.model for m in a.list().models] == ["alpha:latest"]
        assert [m.model for m in b.list().models] == ["beta:latest"]
        assert a.generate(model="alpha", prompt="hi", options=QUICK).eval_count == 8
        with pytest.raises(ollama.ResponseError) as caught:
            a.generate(model="beta", prompt="hi", options=QUICK)
        assert caught.value.status_code == 404
        assert [m.model for m in a.ps().models] == ["alpha:latest"]
        assert b.ps().models == []


class _GenerationClosed(logging.Handler):
    """What the model service logs when it closes a generation: (made, taken)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.closed: list[tuple[int, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("generation closed"):
            made, taken = record.args  # type: ignore[misc]
            assert isinstance(made, int)
            assert isinstance(taken, int)
            self.closed.append((made, taken))


@pytest.fixture
def generation_closed() -> Iterator[_GenerationClosed]:
    probe = _GenerationClosed()
    service_log = logging.getLogger("adapters.models")
    old_level = service_log.level
    service_log.setLevel(logging.DEBUG)
    service_log.addHandler(probe)
    yield probe
    service_log.removeHandler(probe)
    service_log.setLevel(old_level)


def test_closing_an_in_process_stream_stops_the_generation(
    tmp_path: Path, gguf: Path, generation_closed: _GenerationClosed
) -> None:
    app = create_app(ServerSettings(context_length=2048, models=tmp_path / "models"))
    with InProcessGateway(app) as gateway:
        client = ollama.Client(
            host="http://localhost", transport=gateway.httpx_transport()
        )
        client.create(model="tiny", files={"m.gguf": client.create_blob(gguf)})
        stream = client.generate(
            model="tiny", prompt="Go on", options={"num_predict": 3000}, stream=True
        )
        first = next(iter(stream))
        assert first.done is False
        stream.close()  # type: ignore[attr-defined]
        models = app.models
        assert models is not None
        deadline = time.monotonic() + 10
        while not generation_closed.closed or any(
            view.busy for view in gateway.portal.call(models.pool.running)
        ):
            assert time.monotonic() < deadline, "the generation was not closed"
            time.sleep(0.01)
        ((made, taken),) = generation_closed.closed
        assert made < 3000, "the generation ran to its end"
        assert made - taken <= LOOKAHEAD
        # And the model serves the next request at once.
        assert client.generate(model="tiny", prompt="x", options=QUICK).eval_count == 8


# -- trio: hypercorn's trio worker --------------------------------------------------


async def test_hypercorn_on_trio_serves_the_official_client(
    nursery: trio.Nursery, tmp_path: Path, gguf: Path, clients: list[ollama.Client]
) -> None:
    app = create_app(ServerSettings(context_length=2048, models=tmp_path / "models"))
    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = 5
    stopped = trio.Event()
    binds: list[str] = await nursery.start(
        lambda task_status: hypercorn.trio.serve(
            app,  # type: ignore[arg-type]  # hypercorn's own TypedDicts, not Mapping
            config,
            shutdown_trigger=stopped.wait,
            task_status=task_status,
        )
    )
    client = ollama.Client(host=binds[0])
    clients.append(client)
    await install(client, "tiny", gguf)
    chunks = await call(
        lambda: list(
            client.chat(
                model="tiny",
                messages=[{"role": "user", "content": "hi"}],
                options=QUICK,
                stream=True,
            )
        )
    )
    assert chunks[-1].done is True
    assert chunks[-1].eval_count == 8
    stopped.set()
