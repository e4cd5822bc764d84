"""The ASGI app under uvicorn against the trio server, paired.

Why: the ASGI adapter drives the same ``Exchange`` through uvicorn's event loop
(asyncio) instead of the bundled trio/h11 server. The question is what that costs:
``GET /api/version`` requests/s from eight connections (the HTTP plumbing alone) and
the decode rate of single streams on the tiny generated model (the per-token path).
The two servers run one after the other, never at once (``paired_servers``);
reported are each side's medians and the ASGI/trio ratios.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from .embed_batch import SRC, start_server
from .paired_servers import compare_servers

__all__ = ["run"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_asgi(models: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    env = {
        **os.environ,
        "GATEWAY_MODELS": str(models),
        "GATEWAY_HOST": f"127.0.0.1:{port}",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(SRC), os.environ.get("PYTHONPATH")])
        ),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "adapters.asgi"],
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.1)
        else:
            return process, port
    process.kill()
    raise RuntimeError("the ASGI app under uvicorn did not start")


def _start_trio(models: Path) -> tuple[subprocess.Popen[bytes], int]:
    return start_server(models)


def run(*, quick: bool = False) -> dict[str, object]:
    return compare_servers(("trio", _start_trio), ("asgi", _start_asgi), quick=quick)
