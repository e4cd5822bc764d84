"""What both HTTP servers build from ``ServerSettings`` before they serve.

The trio server (``adapters.server``) and the ASGI app (``adapters.asgi``) differ in
how bytes move, not in what they serve: the same model service, access rules,
metrics registry, core configuration and request ids. Those are assembled here,
once, so that the two cannot drift apart.
"""

from __future__ import annotations

import logging
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from gateway_core import (
    AccessGate,
    AccessPolicy,
    GatewayConfig,
    KeyRing,
    KeysFileError,
    is_loopback_address,
)

from .hardware import choose_context_length, discover_devices
from .metrics import GatewayMetrics
from .model_service import ModelService, RunnerOptions
from .settings import ServerSettings

__all__ = [
    "ServerParts",
    "access_policy",
    "default_context_length",
    "gateway_config",
    "new_request_id",
    "open_model_service",
    "read_keys_file",
]

logger = logging.getLogger("adapters.server")


def new_request_id() -> str:
    """A fresh request id: 64 random bits, unique enough to find one request in the
    logs, short enough to read."""
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class ServerParts:
    """The long-lived parts one server owns (no module-level state: two servers in
    one process have their own)."""

    models: ModelService | None
    access: AccessGate
    metrics: GatewayMetrics | None

    @classmethod
    def assemble(
        cls, settings: ServerSettings, models: ModelService | None = None
    ) -> ServerParts:
        """The parts ``settings`` ask for; ``models`` is a ready model service to
        use instead of one opened on ``settings.models``.

        Raises:
            ValueError: the API keys file cannot be read or is not valid.
        """
        if models is None:
            models = open_model_service(settings)
        metrics = GatewayMetrics() if settings.metrics else None
        if metrics is not None and models is not None:
            models.observe(metrics)
        return cls(
            models=models, access=AccessGate(access_policy(settings)), metrics=metrics
        )


def open_model_service(settings: ServerSettings) -> ModelService | None:
    """The model service on ``settings.models``, or None without a store."""
    if settings.models is None:
        return None
    return ModelService.open(
        settings.models,
        keep_alive=settings.keep_alive,
        max_loaded_models=settings.max_loaded_models,
        max_queue=settings.max_queue,
        runners=RunnerOptions(
            load_timeout=settings.load_timeout,
            compile_timeout=settings.schema_compile_timeout,
            log_level=logging.getLogger("adapters").getEffectiveLevel(),
        ),
        upstreams=settings.upstreams,
        remotes=settings.remotes,
    )


def gateway_config(settings: ServerSettings) -> GatewayConfig:
    """The core's configuration; may probe the accelerator (a child process, a
    fraction of a second) when no context length is set."""
    return GatewayConfig(
        max_body_bytes=settings.max_body_bytes,
        default_context_length=default_context_length(settings),
        default_num_parallel=settings.num_parallel,
        upstreams=settings.upstreams,
        remote_hosts=settings.remotes,
        registry=settings.registry.host,
        registry_namespace=settings.registry.namespace,
        registry_insecure=settings.registry.insecure,
    )


def default_context_length(settings: ServerSettings) -> int:
    """``--context-length`` if given, else the accelerator memory's tier; the
    choice is logged once, with its reason."""
    if settings.context_length is not None:
        return settings.context_length
    context, reason = choose_context_length(discover_devices(), settings.gpu_overhead)
    logger.info("default context length %d (%s)", context, reason)
    return context


def access_policy(settings: ServerSettings) -> AccessPolicy:
    """The access rules ``settings`` ask for; reads the keys file.

    Raises:
        ValueError: the keys file cannot be read or is not valid, saying why.
    """
    keys = None
    if settings.api_keys_file is not None:
        keys = read_keys_file(settings.api_keys_file)
    loopback = is_loopback_address(settings.host)
    if not loopback and keys is None:
        logger.warning(
            "listening on %s, beyond this machine, with no API keys: anyone who can "
            "reach it can use and change every model (see docs/security.md)",
            settings.host,
        )
    return AccessPolicy(
        check_host=loopback,
        # The machine's own name is a local name too (Ollama allows it as well).
        allowed_hosts=(socket.gethostname(), *settings.allowed_hosts),
        allowed_origins=settings.origins,
        keys=keys,
    )


def read_keys_file(path: Path) -> KeyRing:
    """The key ring in ``path``.

    Raises:
        ValueError: naming the file and what is wrong with it.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the API keys file {path}: {exc}") from None
    try:
        keys = KeyRing.from_toml(text)
    except KeysFileError as exc:
        raise ValueError(f"API keys file {path}: {exc}") from None
    logger.info("API keys required: %d key(s) from %s", len(keys.keys), path)
    return keys
