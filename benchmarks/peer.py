"""The peer: llama-cpp-python's own server, ``python -m llama_cpp.server``.

Why: a user who wants an HTTP server in front of llama.cpp and already has
llama-cpp-python installed can run this one instead of the gateway. Comparing the two
on the same GGUF file, with the same context size and threads, shows what the
gateway's own server costs or saves against the obvious alternative.

The peer is started with the gateway runner's context size (2048), thread counts
(the physical cores for generation, every CPU for the prompt), seed and a model
alias; every other setting stays at the peer's default. That includes
``interrupt_requests``, under which a stream is cut short as soon as another request
waits for the model: the benchmarks record that as they find it rather than tune it
away. Its dependencies (FastAPI, uvicorn, sse-starlette) come with the ``bench``
extra.
"""

from __future__ import annotations

import collections
import http.client
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

__all__ = ["NUM_CTX", "runner_threads", "start_peer", "stop_peer"]

# The gateway runner's default context size: the peer and the raw limit get it too.
NUM_CTX = 2048
SEED = 1
START_TIMEOUT = 60.0
LOG_TAIL_LINES = 40


def runner_threads() -> tuple[int, int]:
    """The gateway runner's default threads: the physical cores to generate, every
    CPU to read prompts (``adapters.runner.llama.decode_threads``).

    The raw limits and the peers use them too, so every target splits the CPUs the
    same way.
    """
    from gateway_core_adapters.runner.llama import decode_threads

    return decode_threads()


def _free_port() -> int:
    """A port nobody listens on now; the peer takes no port 0, so one is picked here.

    Another process could take it before the peer binds it; the peer would then fail
    to start, and ``start_peer`` says so with its log.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _keep_tail(stream: IO[bytes], tail: collections.deque[bytes]) -> None:
    """Read ``stream`` to its end, keeping its last lines for an error message.

    The peer logs every request (and llama.cpp its timings); if nobody read the pipe
    it would fill up and the peer would stall on a blocked write.
    """
    for line in stream:
        tail.append(line)


def _ready(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/v1/models")
        response = conn.getresponse()
        response.read()
    except (OSError, http.client.HTTPException):
        return False
    else:
        return response.status == 200
    finally:
        conn.close()


def start_peer(model: Path, alias: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start the peer serving ``model`` as ``alias``; return the process and its port.

    It is ready once ``GET /v1/models`` answers, which happens only after the model is
    loaded. A peer that exits or is not ready within a minute is stopped, and the
    RuntimeError carries the end of its log.
    """
    n_threads, n_threads_batch = runner_threads()
    port = _free_port()
    command = [
        *(sys.executable, "-m", "llama_cpp.server"),
        *("--model", str(model), "--model_alias", alias),
        *("--host", "127.0.0.1", "--port", str(port)),
        *("--n_ctx", str(NUM_CTX), "--seed", str(SEED)),
        *("--n_threads", str(n_threads), "--n_threads_batch", str(n_threads_batch)),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert process.stdout is not None
    tail: collections.deque[bytes] = collections.deque(maxlen=LOG_TAIL_LINES)
    reader = threading.Thread(
        target=_keep_tail, args=(process.stdout, tail), daemon=True
    )
    reader.start()
    deadline = time.monotonic() + START_TIMEOUT
    while process.poll() is None and time.monotonic() < deadline:
        if _ready(port):
            return process, port
        time.sleep(0.2)
    stop_peer(process)
    reader.join(timeout=5)  # its last lines say why it failed
    log = b"".join(tail).decode(errors="replace")
    raise RuntimeError(f"llama_cpp.server did not start on port {port}:\n{log}")


def stop_peer(process: subprocess.Popen[bytes]) -> None:
    """Ask the peer to shut down; kill it if it has not within 30 seconds."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
