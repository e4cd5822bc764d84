"""A real server on a loopback port, for tests that need real sockets."""

from __future__ import annotations

from dataclasses import dataclass

import trio

from gateway_core_adapters.server import Server
from gateway_core_adapters.settings import ServerSettings


@dataclass(frozen=True, slots=True)
class LiveServer:
    server: Server
    host: str
    port: int
    done: trio.Event
    """Set when ``serve()`` has returned."""


async def start_live_server(
    nursery: trio.Nursery, settings: ServerSettings
) -> LiveServer:
    server = Server(settings)
    done = trio.Event()

    async def run(*, task_status: trio.TaskStatus[tuple[tuple[str, int], ...]]) -> None:
        try:
            await server.serve(task_status=task_status)
        finally:
            done.set()

    addresses: tuple[tuple[str, int], ...] = await nursery.start(run)
    (host, port), *_ = addresses
    return LiveServer(server, host, port, done)
