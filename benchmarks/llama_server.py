"""llama-server, built from the llama.cpp sources that llama-cpp-python's sdist carries.

Why this build: llama-server is the reference for slots and continuous batching
(Ollama runs it as its runner), and building it from the very sources of the
installed llama-cpp-python means both sides run the same llama.cpp, so the
comparison measures the servers and not two releases of the kernels.

``python -m benchmarks.llama_server --build`` is an install step (``nox -s bench``
runs it): it downloads the sdist of the installed llama-cpp-python release from
the package index with pip, configures the vendored llama.cpp with CMake (CPU
only, no curl, the same generic x86-64 code the wheel builds) and builds only the
``llama-server`` target. The binary is written under a temporary name, checked
with ``--version``, then renamed into ``~/.cache/gateway-core/`` (or
``$GATEWAY_BENCH_CACHE``), keyed by the release. Benchmarks only look for it and
skip llama-server, saying why, where it could not be built: no compiler, no
CMake, no index.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from .peer import START_TIMEOUT, _free_port, _ready

__all__ = ["binary", "build", "start"]

_BUILD_TIMEOUT = 3600


def _cache() -> Path:
    root = os.environ.get("GATEWAY_BENCH_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "gateway-core"


def binary() -> Path | None:
    """The built llama-server for the installed llama-cpp-python, or None."""
    path = _cache() / f"llama-server-{version('llama-cpp-python')}"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def build() -> Path:
    """Build llama-server (minutes) unless it is already in the cache."""
    found = binary()
    if found is not None:
        return found
    release = version("llama-cpp-python")
    target = _cache() / f"llama-server-{release}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llama-server-") as name:
        work = Path(name)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
             ":all:", "--dest", str(work), f"llama-cpp-python=={release}"],
            check=True,
        )  # fmt: skip
        (sdist,) = work.glob("llama_cpp_python-*.tar.gz")
        with tarfile.open(sdist) as archive:
            archive.extractall(work, filter="data")
        (source,) = work.glob("llama_cpp_python-*/vendor/llama.cpp")
        out = work / "build"
        subprocess.run(
            ["cmake", "-S", str(source), "-B", str(out), "-DCMAKE_BUILD_TYPE=Release",
             "-DGGML_NATIVE=OFF", "-DLLAMA_CURL=OFF", "-DBUILD_SHARED_LIBS=OFF",
             "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
             "-DLLAMA_BUILD_SERVER=ON"],
            check=True, timeout=_BUILD_TIMEOUT,
        )  # fmt: skip
        jobs = str(os.cpu_count() or 1)
        subprocess.run(
            ["cmake", "--build", str(out), "--target", "llama-server", "-j", jobs],
            check=True, timeout=_BUILD_TIMEOUT,
        )  # fmt: skip
        built = out / "bin" / "llama-server"
        partial = target.with_name(target.name + ".partial")
        shutil.copy2(built, partial)
        subprocess.run([str(partial), "--version"], check=True, capture_output=True)
        partial.replace(target)
    return target


def start(
    model: Path,
    alias: str,
    *,
    n_ctx: int,
    parallel: int,
    threads: tuple[int, int],
) -> tuple[subprocess.Popen[bytes], int]:
    """llama-server on a free port with ``parallel`` slots of ``n_ctx`` cells each
    (its ``-c`` is the whole context, shared out between the slots)."""
    path = binary()
    if path is None:
        raise FileNotFoundError("llama-server is not built")
    port = _free_port()
    command = [
        str(path), "-m", str(model), "--alias", alias, "--host", "127.0.0.1",
        "--port", str(port), "-c", str(n_ctx * parallel), "--parallel",
        str(parallel), "-t", str(threads[0]), "-tb", str(threads[1]),
        "--flash-attn", "off", "--no-webui", "--log-disable",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama-server exited with {process.returncode}")
        if _ready(port):
            return process, port
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("llama-server did not start in time")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true", help="build it if missing")
    args = parser.parse_args()
    if args.build:
        try:
            print(build())
        except (OSError, subprocess.SubprocessError) as error:
            # An install step that cannot build (no compiler, no index) must not fail
            # the benchmarks: they skip llama-server and say so.
            print(f"llama-server not built: {error}", file=sys.stderr)
        return 0
    print(binary() or "not built")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
