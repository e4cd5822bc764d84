"""A real OCI registry for the pull and push tests: Debian's ``docker-registry``
(the CNCF distribution registry) on a loopback port, with its storage in a
temporary directory; and a TCP proxy in front of it that counts the bytes it
carries and can stall mid-stream, to cut a pull short and measure its resume.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

REGISTRY_BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


@dataclass(frozen=True, slots=True)
class LocalRegistry:
    host: str
    """``127.0.0.1:PORT``: the host part of a model name."""
    storage: Path

    def blob_file(self, digest: str) -> Path:
        """Where the registry keeps blob ``digest`` (its filesystem driver's layout)."""
        hex_digest = digest.removeprefix("sha256:")
        return (
            self.storage
            / "docker/registry/v2/blobs/sha256"
            / hex_digest[:2]
            / hex_digest
            / "data"
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.05)
    raise RuntimeError("docker-registry did not start")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[LocalRegistry]:
    """A registry of its own for one test; skipped without the Debian package,
    except where ``GATEWAY_TESTS_NEED_REGISTRY`` is set (nox sets it, so that CI
    cannot pass by skipping the pull and push tests)."""
    if not Path(REGISTRY_BINARY).is_file():
        missing = (
            "the docker-registry binary is absent (apt-get install docker-registry; "
            ".ci/run installs it)"
        )
        if os.environ.get("GATEWAY_TESTS_NEED_REGISTRY"):
            pytest.fail(missing)
        pytest.skip(missing)
    storage = tmp_path / "registry-storage"
    storage.mkdir()
    port = _free_port()
    config = tmp_path / "registry.yml"
    config.write_text(_CONFIG.format(storage=storage, port=port))
    process = subprocess.Popen(
        [REGISTRY_BINARY, "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(f"http://127.0.0.1:{port}/v2/", process)
        yield LocalRegistry(host=f"127.0.0.1:{port}", storage=storage)
    finally:
        process.terminate()
        process.wait(10)


class CountingProxy:
    """Forwards loopback TCP to ``target``; counts the bytes sent back to clients.

    ``stall_after``: once that many bytes have gone back in total, stop forwarding
    (the connection stays open, as a stuck network would), and set ``stalled``.
    """

    def __init__(self, target_port: int, stall_after: int | None = None) -> None:
        self.target_port = target_port
        self.stall_after = stall_after
        self.downstream = 0
        self.stalled = trio.Event()
        self.port = 0

    async def serve(self, *, task_status: trio.TaskStatus[int]) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            upstream = await trio.open_tcp_stream("127.0.0.1", self.target_port)
            async with upstream, trio.open_nursery() as nursery:
                nursery.start_soon(self._pipe, client, upstream, False)
                nursery.start_soon(self._pipe, upstream, client, True)

    async def _pipe(
        self, source: trio.SocketStream, sink: trio.SocketStream, counted: bool
    ) -> None:
        try:
            while data := await source.receive_some(16384):
                if counted and self.stall_after is not None:
                    room = self.stall_after - self.downstream
                    if len(data) >= room:
                        if room > 0:
                            self.downstream += room
                            await sink.send_all(data[:room])
                        self.stalled.set()
                        await trio.sleep_forever()
                if counted:
                    self.downstream += len(data)
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        # One side ended: end the other too, so the connection closes as a whole.
        await sink.aclose()
