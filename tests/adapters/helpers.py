"""Test clients and probes for the server adapter.

``H11Client`` is the client half of an in-memory connection, speaking through its own
``h11.Connection(CLIENT)`` so that the server's bytes are checked by an independent
parser. ``LogWaiter`` turns log records into something a test can await, so that tests
wait for what the server did instead of sleeping.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import h11
import trio

CLIENT_READ_TIMEOUT = 30.0
# A format no random-weight model can finish early: the constraint forbids the
# end-of-generation token until 20,000 characters, so a stream runs until the
# test stops it (by disconnecting, shutting down, or num_predict).
ENDLESS_SCHEMA: dict[str, Any] = {"type": "string", "minLength": 20000}


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete response as the client saw it."""

    response: h11.Response
    body: bytes

    @property
    def status(self) -> int:
        return self.response.status_code

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode("ascii")
        for key, value in self.response.headers:
            if key == wanted:
                return value.decode("latin-1")
        return None

    def json(self) -> dict[str, Any]:
        value = json.loads(self.body)
        assert isinstance(value, dict), value
        return value


def request(
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]] = (),
) -> h11.Request:
    return h11.Request(
        method=method, target=target, headers=[("host", "localhost"), *headers]
    )


def expecting_continue(target: str, size: int) -> h11.Request:
    """A POST head that announces ``size`` body bytes and waits for ``100 Continue``.

    A client that honours the expectation sends nothing more until the server asks,
    so the request is in flight but its body is not: the state these tests need.
    """
    return request(
        "POST",
        target,
        [("content-length", str(size)), ("expect", "100-continue")],
    )


class H11Client:
    """An HTTP/1.1 client over any trio stream, for tests."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    async def send(self, *events: h11.Event) -> None:
        """Send the events, each in its own write."""
        for event in events:
            data = self.conn.send(event)
            if data:
                await self.stream.send_all(data)

    async def send_at_once(self, *events: h11.Event) -> None:
        """Send the events in a single write, so the server reads them together."""
        await self.stream.send_all(
            b"".join(self.conn.send(event) or b"" for event in events)
        )

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def next_event(self) -> h11.Event:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self._receive())
                continue
            assert isinstance(event, h11.Event), event
            return event

    async def reply(self) -> Reply:
        """Read one whole response, skipping nothing: a 1xx here fails the test."""
        response = await self.next_event()
        assert isinstance(response, h11.Response), response
        body = bytearray()
        while True:
            event = await self.next_event()
            if isinstance(event, h11.EndOfMessage):
                return Reply(response, bytes(body))
            assert isinstance(event, h11.Data), event
            body += event.data

    async def exchange(self, req: h11.Request, body: bytes = b"") -> Reply:
        """Send a request (with its body) and read the reply; ready for the next."""
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        await self.send(req)
        if body:
            await self.send(h11.Data(data=body))
        await self.send(h11.EndOfMessage())
        return await self.reply()

    async def read_to_eof(self) -> bytes:
        """Everything the server still sends, until it closes."""
        data = bytearray()
        while chunk := await self._receive():
            data += chunk
        return bytes(data)

    async def _receive(self) -> bytes:
        # A server bug must fail the test, not hang it. Under the autojump clock this
        # deadline is virtual, so the failure comes at once.
        with trio.fail_after(CLIENT_READ_TIMEOUT):
            return bytes(await self.stream.receive_some(65536))


def parse_responses(data: bytes, methods: Iterable[str]) -> list[Reply]:
    """Parse raw bytes as consecutive responses to requests with these methods."""
    conn = h11.Connection(h11.CLIENT)
    conn.receive_data(data)
    replies = []
    for index, method in enumerate(methods):
        if index:
            conn.start_next_cycle()
        conn.send(request(method, "/"))
        conn.send(h11.EndOfMessage())
        response = conn.next_event()
        assert isinstance(response, h11.Response), response
        body = bytearray()
        while not isinstance(event := conn.next_event(), h11.EndOfMessage):
            assert isinstance(event, h11.Data), event
            body += event.data
        replies.append(Reply(response, bytes(body)))
    return replies


class LogWaiter(logging.Handler):
    """Collects log messages and lets a trio task wait for one to appear.

    Only for loggers used from the trio thread: ``emit`` wakes waiters directly.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []
        self._changed = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, text: str) -> str:
        """The first message containing ``text``, waiting for it if need be."""
        while True:
            for message in self.messages:
                if text in message:
                    return message
            await self._changed.wait()
