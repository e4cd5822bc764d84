"""The server on real loopback sockets: interop, robustness and graceful shutdown.

Each test starts ``Server.serve`` on 127.0.0.1 port 0 and talks to it over TCP, either
with Python's own ``http.client`` (run in a worker thread, since it blocks) or with an
``H11Client`` over a trio socket when the test needs to misbehave on purpose.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11
import pytest
import trio

from gateway_core_adapters.settings import ServerSettings

from .conftest import LiveServer, TcpConnect, start_live_server
from .helpers import LogWaiter, expecting_continue, parse_responses, request


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> dict[str, Any]:
        value = json.loads(self.body)
        assert isinstance(value, dict), value
        return value


class StdlibClient:
    """``http.client`` as a user drives it: one connection, reopened when closed."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        self.conn.request(method, path, body=body, headers=headers or {})
        response = self.conn.getresponse()
        return Answer(response.status, response.headers, response.read())

    def version_ok(self) -> bool:
        answer = self.call("GET", "/api/version")
        return answer.status == 200 and answer.json() == {"version": "0.33.0"}


def new_client_is_served(port: int) -> bool:
    client = StdlibClient(port)
    try:
        return client.version_ok()
    finally:
        client.conn.close()


def stdlib_conversation(port: int) -> list[Answer]:
    """The acceptance sequence, each step followed by a request that must succeed."""
    client = StdlibClient(port)
    json_type = {"content-type": "application/json"}
    steps: list[Callable[[], Answer]] = [
        lambda: client.call("GET", "/api/version"),
        lambda: client.call("DELETE", "/api/version"),
        lambda: client.call("GET", "/nope"),
        lambda: client.call("POST", "/api/chat", b"{bad json", json_type),
        lambda: client.call("POST", "/api/chat", b"x" * (10 * 1024 * 1024), json_type),
    ]
    answers = []
    for step in steps:
        answers.append(step())
        assert client.version_ok(), f"no answer after {answers[-1].status}"
    client.conn.close()
    return answers


async def test_http_client_interop(live_server: LiveServer) -> None:
    version, delete, missing, bad_json, too_big = await trio.to_thread.run_sync(
        stdlib_conversation, live_server.port
    )
    assert version.status == 200
    assert version.headers["content-type"].startswith("application/json")
    assert version.json() == {"version": "0.33.0"}

    assert delete.status == 405
    assert delete.headers["allow"] == "GET, HEAD"
    assert "error" in delete.json()

    assert missing.status == 404
    assert missing.json() == {"error": "unknown endpoint: GET /nope"}

    assert bad_json.status == 400
    assert "invalid JSON" in bad_json.json()["error"]

    # Decided from Content-Length before the body; the client still got to send all
    # 10 MB (the server drained it while closing) and read the status.
    assert too_big.status == 413
    assert too_big.headers["connection"] == "close"
    assert "exceeds the limit" in too_big.json()["error"]


async def test_misbehaving_clients_never_stop_the_server(
    live_server: LiveServer, logs: LogWaiter, tcp_client: TcpConnect
) -> None:
    garbage = await tcp_client(live_server)
    await garbage.send_raw(b"\x00\x01\x02\x03 nonsense\r\n\r\n")
    (reply,) = parse_responses(await garbage.read_to_eof(), ["GET"])
    assert reply.status == 400

    leaver = await tcp_client(live_server)
    await leaver.send(request("POST", "/api/chat", [("content-length", "1000")]))
    await leaver.send(h11.Data(data=b'{"model": "x", "mess'))
    await leaver.stream.aclose()
    await logs.wait_for("(client disconnected while sending the body)")

    # 100 silent connections and 100 that stopped halfway through their head.
    for _ in range(100):
        await tcp_client(live_server)  # held open by the fixture until the test ends
    halfway = [await tcp_client(live_server) for _ in range(100)]
    for client in halfway:
        await client.send_raw(b"GET /api/version HTTP/1.1\r\nhost: localhost\r\n")
    assert await trio.to_thread.run_sync(new_client_is_served, live_server.port)


async def test_graceful_shutdown_finishes_in_flight_requests_and_refuses_new_ones(
    nursery: trio.Nursery, logs: LogWaiter, tcp_client: TcpConnect
) -> None:
    live = await start_live_server(nursery, ServerSettings(host="127.0.0.1", port=0))
    idle = await tcp_client(live)
    assert (await idle.exchange(request("GET", "/api/version"))).status == 200

    busy = await tcp_client(live)
    body = b"{bad json"
    await busy.send(expecting_continue("/api/chat", len(body)))
    # The 100 proves the server has the head and is waiting for the body: in flight.
    interim = await busy.next_event()
    assert isinstance(interim, h11.InformationalResponse)

    live.server.shutdown()
    await live.server.wait_not_accepting()
    with pytest.raises(OSError, match="all attempts to connect") as refused:
        await trio.open_tcp_stream(live.host, live.port)
    assert isinstance(refused.value.__cause__, ExceptionGroup)
    assert refused.value.__cause__.subgroup(ConnectionRefusedError) is not None

    # The idle keep-alive connection is closed now, not after the 5 s idle timeout.
    with trio.fail_after(1.0):
        assert await idle.read_to_eof() == b""

    await busy.send(h11.Data(data=body), h11.EndOfMessage())
    reply = await busy.reply()
    assert reply.status == 400
    assert reply.header("connection") == "close"
    assert "invalid JSON" in reply.json()["error"]
    assert await busy.read_to_eof() == b""

    with trio.fail_after(2.0):
        await live.done.wait()
    assert "stopped" in logs.messages


async def test_the_shutdown_deadline_answers_what_is_left_with_503(
    nursery: trio.Nursery, logs: LogWaiter, tcp_client: TcpConnect
) -> None:
    settings = ServerSettings(host="127.0.0.1", port=0, shutdown_timeout=0.3)
    live = await start_live_server(nursery, settings)
    stuck = await tcp_client(live)
    await stuck.send(expecting_continue("/api/chat", 10))
    assert isinstance(await stuck.next_event(), h11.InformationalResponse)
    # ... and the body never comes.
    start = trio.current_time()
    live.server.shutdown()
    with trio.fail_after(3.0):
        await live.done.wait()
    assert trio.current_time() - start >= 0.3
    reply = await stuck.reply()  # the server stops waiting for the body and says so
    assert reply.status == 503
    assert "shutting down" in reply.json()["error"]
    assert await stuck.read_to_eof() == b""  # and closes
    await logs.wait_for("interrupting the requests still running after 0.3 s")
    await logs.wait_for('"POST /api/chat HTTP/1.1" 503')
