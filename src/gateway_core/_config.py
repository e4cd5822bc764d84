"""Settings the core needs to make its decisions. Pure data; the adapter fills it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._names import DEFAULT_HOST, DEFAULT_NAMESPACE
from ._options import MAX_PARALLEL
from ._upstream._table import UpstreamTable
from ._version import OLLAMA_API_VERSION

__all__ = [
    "CONTEXT_TIERS",
    "DEFAULT_CONTEXT_LENGTH",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_NUM_PARALLEL",
    "GatewayConfig",
    "context_length_for_memory",
]

# 8 MiB. Larger than any text-only chat request a person writes, small enough that a
# stray upload cannot make the server buffer much. Ollama itself has no limit; a chat
# request with several base64 images can pass this, so it is configurable. Blob uploads
# (``/api/blobs``) stream to disk and are not bound by it.
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024

# Ollama's default on machines without a large GPU (ollama-api.md §9.4).
DEFAULT_CONTEXT_LENGTH = 4096
_GIB = 1024**3
# Ollama's default context by accelerator memory: (at least this much, context).
# A machine that can hold a long context gets one; a CPU-only one keeps 4,096.
CONTEXT_TIERS: tuple[tuple[int, int], ...] = (
    (47 * _GIB, 262_144),
    (23 * _GIB, 32_768),
)


def context_length_for_memory(accelerator_bytes: int, overhead: int = 0) -> int:
    """The default ``num_ctx`` for a machine with this much accelerator memory.

    ``overhead`` is memory to leave to others (a desktop, another server); it is
    taken off before the tiers apply. No accelerator (0 bytes) gives 4,096.
    """
    usable = accelerator_bytes - overhead
    for at_least, context in CONTEXT_TIERS:
        if usable >= at_least:
            return context
    return DEFAULT_CONTEXT_LENGTH


# llama-server's automatic slot count; Ollama's OLLAMA_NUM_PARALLEL defaults to 1.
DEFAULT_NUM_PARALLEL = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    """What an ``Exchange`` needs to know about the server it runs in.

    Attributes:
        max_body_bytes: largest JSON request body accepted; past it, 413.
        reported_version: the ``version`` that ``GET /api/version`` reports.
        default_context_length: ``num_ctx`` when neither the request nor the model's
            parameters set one (clamped to what the model was trained for).
        default_num_parallel: ``num_parallel`` (a runner's slots) when neither the
            request nor the model's parameters set one.
        upstreams: the pools of upstream servers models are routed to (an
            upstreams file; docs/scaling.md); empty: every model runs here.
        remote_hosts: hosts (``*`` patterns allowed) a remote model may name;
            a remote model whose host is not here gets 403 at use.
        registry, registry_namespace: where a model name without a host is
            pulled from and pushed to (Ollama's ``registry.ollama.ai`` and
            ``library`` by default); the model keeps its short name here.
        registry_insecure: reach that default registry over plain HTTP.
    """

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    reported_version: str = OLLAMA_API_VERSION
    default_context_length: int = DEFAULT_CONTEXT_LENGTH
    default_num_parallel: int = DEFAULT_NUM_PARALLEL
    upstreams: UpstreamTable = field(default_factory=UpstreamTable)
    remote_hosts: tuple[str, ...] = ()
    registry: str = DEFAULT_HOST
    registry_namespace: str = DEFAULT_NAMESPACE
    registry_insecure: bool = False

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1:
            raise ValueError(
                f"max_body_bytes must be positive, not {self.max_body_bytes}"
            )
        if self.default_context_length < 4:
            raise ValueError("default_context_length must be at least 4")
        if not 1 <= self.default_num_parallel <= MAX_PARALLEL:
            raise ValueError(f"default_num_parallel must be in 1..{MAX_PARALLEL}")
        parts = self.reported_version.split(".")
        if len(parts) != 3 or not all(part.isdigit() for part in parts):
            # Clients parse this as a semantic version; anything else breaks them.
            raise ValueError(
                f"reported_version must look like 1.2.3, not {self.reported_version!r}"
            )
