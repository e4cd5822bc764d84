"""The server on in-memory streams: HTTP/1.1 connection handling, limits and timeouts.

Each test connects an ``H11Client`` to ``Server.handle_connection`` through
``trio.testing.memory_stream_pair``. Where time matters the ``autojump_clock`` fixture
runs trio on virtual time, which jumps ahead whenever every task is blocked, so the
timeout tests take no real time and measure exact virtual durations.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import h11
import pytest
import trio

from gateway_core_adapters.server import Server
from gateway_core_adapters.settings import ServerSettings

from .conftest import Connect
from .helpers import LogWaiter, expecting_continue, parse_responses, request

SETTINGS = ServerSettings(host="127.0.0.1", port=0)


async def test_keep_alive_serves_two_requests_on_one_connection(
    connect: Connect,
) -> None:
    client = await connect(Server(SETTINGS))
    first = await client.exchange(request("GET", "/api/version"))
    second = await client.exchange(request("GET", "/nope"))
    assert first.status == 200
    assert first.json() == {"version": "0.33.0"}
    assert first.header("connection") is None
    assert second.status == 404
    assert "error" in second.json()


async def test_pipelined_requests_are_answered_in_order(connect: Connect) -> None:
    client = await connect(Server(SETTINGS))
    # Three requests in one write; the second is a HEAD so that framing must be right.
    await client.send_raw(
        b"GET /nope HTTP/1.1\r\nhost: localhost\r\n\r\n"
        b"HEAD /api/version HTTP/1.1\r\nhost: localhost\r\n\r\n"
        b"GET /api/version HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )
    replies = parse_responses(await client.read_to_eof(), ["GET", "HEAD", "GET"])
    assert [reply.status for reply in replies] == [404, 200, 200]
    assert replies[1].body == b""
    assert replies[2].json() == {"version": "0.33.0"}
    assert replies[2].header("connection") == "close"


async def test_expect_100_continue_is_answered_before_the_body_is_sent(
    connect: Connect,
) -> None:
    client = await connect(Server(SETTINGS))
    body = b"{bad json"
    await client.send(expecting_continue("/api/chat", len(body)))
    # Nothing of the body has been sent: the server must ask for it first.
    interim = await client.next_event()
    assert isinstance(interim, h11.InformationalResponse)
    assert interim.status_code == 100
    await client.send(h11.Data(data=body), h11.EndOfMessage())
    reply = await client.reply()
    assert reply.status == 400
    assert "invalid JSON" in reply.json()["error"]


async def test_expect_100_continue_with_an_oversized_body_gets_413_without_100(
    connect: Connect,
) -> None:
    client = await connect(Server(replace(SETTINGS, max_body_bytes=100)))
    await client.send(expecting_continue("/api/chat", 1000))
    reply = await client.reply()  # fails on a 100: none may be sent here
    assert reply.status == 413
    assert reply.header("connection") == "close"
    assert await client.read_to_eof() == b""


async def test_head_gets_the_get_headers_and_no_body(connect: Connect) -> None:
    client = await connect(Server(SETTINGS))
    head = await client.exchange(request("HEAD", "/api/version"))
    get = await client.exchange(request("GET", "/api/version"))
    assert head.status == get.status == 200
    assert head.body == b""
    assert head.header("content-length") == str(len(get.body)) == "20"


async def test_a_slow_request_head_gets_408_then_close(
    connect: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    client = await connect(Server(replace(SETTINGS, header_timeout=7.0)))
    start = trio.current_time()
    await client.send_raw(b"GET /api/version HTTP/1.1\r\nhost: localhost\r\n")  # no end
    reply = await client.reply()
    assert reply.status == 408
    assert trio.current_time() - start == pytest.approx(7.0)
    assert reply.header("connection") == "close"
    assert "error" in reply.json()
    assert await client.read_to_eof() == b""


async def test_a_trickling_head_is_timed_from_its_first_byte(
    connect: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    client = await connect(Server(replace(SETTINGS, header_timeout=7.0)))

    async def trickle() -> None:
        # One byte a second keeps bytes arriving, but the head takes 36 s in all.
        with contextlib.suppress(trio.BrokenResourceError):
            for byte in b"GET /api/version HTTP/1.1\r\nhost: localhost\r\n\r\n":
                await client.send_raw(bytes([byte]))
                await trio.sleep(1.0)

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trickle)
        reply = await client.reply()
        elapsed = trio.current_time() - start
        nursery.cancel_scope.cancel()
    assert reply.status == 408
    assert elapsed == pytest.approx(7.0)


async def test_an_idle_connection_is_closed_quietly(
    connect: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    client = await connect(Server(replace(SETTINGS, keep_alive_timeout=3.0)))
    assert (await client.exchange(request("GET", "/api/version"))).status == 200
    start = trio.current_time()
    assert await client.read_to_eof() == b""  # no 408: idling is not a fault
    assert trio.current_time() - start == pytest.approx(3.0)


async def test_a_head_over_the_size_limit_gets_431(connect: Connect) -> None:
    client = await connect(Server(replace(SETTINGS, max_header_bytes=1024)))
    # Sent whole, in one write: the limit must hold however the head arrives.
    await client.send(request("GET", "/api/version", [("x-filler", "a" * 2000)]))
    reply = await client.reply()
    assert reply.status == 431
    assert reply.header("connection") == "close"
    assert "1024" in reply.json()["error"]


async def test_a_head_under_the_size_limit_is_served(connect: Connect) -> None:
    client = await connect(Server(replace(SETTINGS, max_header_bytes=1024)))
    reply = await client.exchange(
        request("GET", "/api/version", [("x-filler", "a" * 900)])
    )
    assert reply.status == 200


async def test_garbage_gets_400_then_close(connect: Connect) -> None:
    client = await connect(Server(SETTINGS))
    await client.send_raw(b"\x16\x03\x01\x02\x00 this is not HTTP\r\n\r\n")
    response = await client.read_to_eof()
    (reply,) = parse_responses(response, ["GET"])
    assert reply.status == 400
    assert reply.header("connection") == "close"
    assert "malformed request" in reply.json()["error"]


async def test_a_stalled_body_gets_408(
    connect: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    client = await connect(Server(replace(SETTINGS, body_timeout=4.0)))
    await client.send(request("POST", "/api/chat", [("content-length", "100")]))
    await client.send(h11.Data(data=b'{"model":'))
    start = trio.current_time()
    reply = await client.reply()
    assert reply.status == 408
    assert trio.current_time() - start == pytest.approx(4.0)
    assert reply.header("connection") == "close"


async def test_an_early_answer_to_a_fully_buffered_request_keeps_the_connection(
    connect: Connect,
) -> None:
    # The 404 is decided from the head alone, but the small body came in the same
    # write, so h11 already holds all of it and the connection can be reused.
    client = await connect(Server(SETTINGS))
    await client.send_at_once(
        request("POST", "/nope", [("content-length", "2")]),
        h11.Data(data=b"{}"),
        h11.EndOfMessage(),
    )
    first = await client.reply()
    assert first.status == 404
    assert first.header("connection") is None
    assert (await client.exchange(request("GET", "/api/version"))).status == 200


async def test_an_early_answer_before_the_body_closes_the_connection(
    connect: Connect,
) -> None:
    client = await connect(Server(replace(SETTINGS, max_body_bytes=10)))
    await client.send(request("POST", "/api/chat", [("content-length", "5000")]))
    reply = await client.reply()  # the body has not been sent, and never will be
    assert reply.status == 413
    assert reply.header("connection") == "close"
    assert await client.read_to_eof() == b""


async def test_a_bug_in_one_request_gives_500_and_spares_the_others(
    connect: Connect, monkeypatch: pytest.MonkeyPatch, logs: LogWaiter
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated bug")

    the_server = Server(SETTINGS)
    healthy = await connect(the_server)
    monkeypatch.setattr("gateway_core_adapters.server.Exchange", broken)
    victim = await connect(the_server)
    reply = await victim.exchange(request("GET", "/api/version"))
    assert reply.status == 500
    assert reply.header("connection") == "close"
    assert reply.json() == {"error": "internal server error"}
    assert "GET /api/version" in await logs.wait_for("failed")
    monkeypatch.undo()
    assert (await healthy.exchange(request("GET", "/api/version"))).status == 200


async def test_a_client_that_leaves_mid_body_is_logged_and_dropped(
    connect: Connect, logs: LogWaiter
) -> None:
    client = await connect(Server(SETTINGS))
    await client.send(request("POST", "/api/chat", [("content-length", "100")]))
    await client.send(h11.Data(data=b'{"mo'))
    await client.stream.aclose()
    line = await logs.wait_for('"POST /api/chat HTTP/1.1"')
    assert line.endswith("(client disconnected while sending the body)")
    assert '" - 0 ' in line  # no status: nothing was sent


async def test_a_client_that_leaves_before_the_100_continue_is_dropped_quietly(
    connect: Connect, logs: LogWaiter
) -> None:
    client = await connect(Server(SETTINGS))
    await client.send(expecting_continue("/api/chat", 9))
    await client.stream.aclose()  # so sending the 100 fails
    line = await logs.wait_for('"POST /api/chat HTTP/1.1"')
    assert line.endswith("(client disconnected while sending the body)")
    assert not [message for message in logs.messages if "failed" in message]


async def test_every_request_gets_an_access_log_line(
    connect: Connect, logs: LogWaiter
) -> None:
    client = await connect(Server(SETTINGS))
    await client.exchange(request("GET", "/api/version?x=1"))
    line = await logs.wait_for("GET /api/version?x=1")
    assert '"GET /api/version?x=1 HTTP/1.1" 200 20 ' in line
    assert "id=" in line
