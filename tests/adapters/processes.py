"""Servers in subprocesses: ``python -m adapters serve``, as users start it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import final

import trio

from .helpers import H11Client

SRC = Path(__file__).resolve().parents[2] / "src"


@final
class ServerProcess:
    """``python -m adapters serve`` in a subprocess, and what it wrote to stderr.

    It is started on port 0; its ``listening on`` log line says which port it got, and
    waiting for that line is how a test knows the server is ready, with no polling.
    """

    def __init__(self, process: trio.Process, stderr: trio.abc.ReceiveStream) -> None:
        self.process = process
        self._stderr = stderr
        self.log = bytearray()
        self.port = 0

    async def wait_for(self, pattern: bytes) -> re.Match[bytes]:
        """Read stderr until ``pattern`` (a regex) appears in it."""
        while not (found := re.search(pattern, self.log)):
            chunk = await self._stderr.receive_some()
            assert chunk, f"the server exited early:\n{self.log.decode()}"
            self.log += chunk
        return found

    async def wait_until_listening(self) -> None:
        # The trio server's line, or uvicorn's (serve --asgi uvicorn).
        found = await self.wait_for(
            rb"(?:listening on|Uvicorn running on) http://[\d.]+:(\d+)"
        )
        self.port = int(found[1])

    async def connect(self) -> H11Client:
        return H11Client(await trio.open_tcp_stream("127.0.0.1", self.port))

    async def exit_code(self) -> int:
        """Read stderr to its end, then reap the process."""
        while chunk := await self._stderr.receive_some():
            self.log += chunk
        return await self.process.wait()


@asynccontextmanager
async def server_process(
    models: Path, *, env: dict[str, str] | None = None, args: Sequence[str] = ()
) -> AsyncIterator[ServerProcess]:
    pythonpath = [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(pythonpath),
        # Never the user's own store.
        "GATEWAY_MODELS": str(models),
        **(env or {}),
    }
    command = [
        sys.executable,
        "-m",
        "adapters",
        "serve",
        "--host",
        "127.0.0.1:0",
        *args,
    ]
    process = await trio.lowlevel.open_process(command, stderr=subprocess.PIPE, env=env)
    assert process.stderr is not None
    try:
        # A server that never starts fails the test instead of hanging it. The
        # deadline covers the start only: a cancel scope around the yield would
        # bound the caller's whole block, and break when it is exited elsewhere.
        server = ServerProcess(process, process.stderr)
        with trio.fail_after(20):
            await server.wait_until_listening()
        yield server
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()
            await process.stderr.aclose()
