"""Fixtures for the adapter tests: in-memory connections, a live server, log probes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import trio
import trio.testing

from gateway_core_adapters.server import Server
from gateway_core_adapters.settings import ServerSettings

from .helpers import H11Client, LogWaiter
from .live import LiveServer, start_live_server
from .ollama_setup import clients, gguf, served

# The ollama client's fixtures, for every test module here.
__all__ = ["LiveServer", "clients", "gguf", "served", "start_live_server"]

Connect = Callable[..., Awaitable[H11Client]]


@pytest.fixture
def logs() -> Iterator[LogWaiter]:
    """Every message from the ``adapters`` loggers, debug and up."""
    waiter = LogWaiter()
    logger = logging.getLogger("adapters")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(waiter)
    try:
        yield waiter
    finally:
        logger.removeHandler(waiter)
        logger.setLevel(old_level)


@pytest.fixture
def connect(nursery: trio.Nursery) -> Connect:
    """Open an in-memory connection to a server; no sockets, no listeners.

    Call as ``await connect(server)``; the connection's server side runs in the
    test's nursery, which is cancelled when the test ends.
    """

    async def open_connection(server: Server) -> H11Client:
        client_stream, server_stream = trio.testing.memory_stream_pair()
        nursery.start_soon(server.handle_connection, server_stream)
        return H11Client(client_stream)

    return open_connection


TcpConnect = Callable[[LiveServer], Awaitable[H11Client]]


@pytest.fixture
async def tcp_client() -> AsyncIterator[TcpConnect]:
    """Open TCP connections to a live server; all are closed when the test ends."""
    opened: list[H11Client] = []

    async def open_client(live: LiveServer) -> H11Client:
        client = H11Client(await trio.open_tcp_stream(live.host, live.port))
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        await trio.aclose_forcefully(client.stream)


@pytest.fixture
async def live_server(nursery: trio.Nursery) -> LiveServer:
    """A real server on 127.0.0.1, on a port the kernel picked."""
    return await start_live_server(nursery, ServerSettings(host="127.0.0.1", port=0))
