"""Accelerator discovery: what llama.cpp's backends see, asked once at start.

The default context length follows accelerator memory (``context_length_for_memory``
in the core). The memory is read through ggml's backend device API, which every
llama-cpp-python build has (CUDA, Metal, Vulkan, ROCm, or the CPU alone). It is asked
in a child process (``python -m adapters.hardware``), as Ollama does: initialising a
GPU driver costs memory and can fail in ways a server should not inherit, and the
server process never loads llama.cpp otherwise.
"""

from __future__ import annotations

import ctypes
import functools
import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from gateway_core._config import context_length_for_memory

__all__ = ["Device", "choose_context_length", "discover_devices"]

logger = logging.getLogger("adapters.hardware")

# ggml_backend_dev_type, in ggml-backend.h's order.
_DEVICE_KINDS = ("cpu", "gpu", "igpu", "accel", "meta")
# Kinds whose memory holds a model's weights and KV cache on the device.
_ACCELERATORS = frozenset({"gpu", "igpu"})
_PROBE_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Device:
    name: str
    kind: str
    total_bytes: int
    free_bytes: int


def choose_context_length(
    devices: Sequence[Device], overhead: int = 0
) -> tuple[int, str]:
    """The default context for these devices, and a sentence saying why."""
    accelerators = [d for d in devices if d.kind in _ACCELERATORS]
    memory = sum(d.total_bytes for d in accelerators)
    context = context_length_for_memory(memory, overhead)
    if not accelerators:
        return context, "no GPU found: CPU only"
    names = ", ".join(
        f"{d.name} ({d.total_bytes / 1024**3:.1f} GiB)" for d in accelerators
    )
    less = f" less {overhead / 1024**3:.1f} GiB of overhead" if overhead else ""
    return context, f"accelerator memory {memory / 1024**3:.1f} GiB{less}: {names}"


@functools.cache
def discover_devices() -> tuple[Device, ...]:
    """The devices llama.cpp sees, from a child process; () if it cannot say.

    Cached: the hardware does not change while the process runs.
    """
    try:
        done = subprocess.run(
            # This module, under the name it was imported by (installed, it is
            # gateway_core_adapters.hardware).
            [sys.executable, "-m", __name__],
            capture_output=True,
            check=True,
            text=True,
            timeout=_PROBE_TIMEOUT,
        )
        listed = json.loads(done.stdout)
        return tuple(Device(**item) for item in listed)
    except (OSError, subprocess.SubprocessError, ValueError, TypeError) as exc:
        logger.warning(
            "could not list llama.cpp's devices (%s); assuming CPU only", exc
        )
        return ()


def _probe() -> list[Device]:
    """Ask ggml directly; runs in the child process."""
    # Imported here: only the child process loads llama.cpp.
    from llama_cpp import llama_cpp

    lib = llama_cpp._lib  # ggml's device API has no Python binding
    lib.ggml_backend_load_all()
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    lib.ggml_backend_dev_name.restype = ctypes.c_char_p
    lib.ggml_backend_dev_name.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_type.restype = ctypes.c_int
    lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_memory.restype = None
    lib.ggml_backend_dev_memory.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.POINTER(ctypes.c_size_t),
    ]
    devices = []
    for index in range(lib.ggml_backend_dev_count()):
        device = lib.ggml_backend_dev_get(index)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        lib.ggml_backend_dev_memory(device, ctypes.byref(free), ctypes.byref(total))
        kind = lib.ggml_backend_dev_type(device)
        devices.append(
            Device(
                name=lib.ggml_backend_dev_name(device).decode("utf-8", "replace"),
                kind=_DEVICE_KINDS[kind] if 0 <= kind < len(_DEVICE_KINDS) else "other",
                total_bytes=int(total.value),
                free_bytes=int(free.value),
            )
        )
    return devices


if __name__ == "__main__":
    print(json.dumps([asdict(device) for device in _probe()]))
