"""Where a model name points in a registry: ``name[:tag]`` to URLs, as Ollama does.

``ModelName.parse`` already fills in Ollama's defaults (``registry.ollama.ai``,
``library``, ``latest``); a registry addresses the model as the repository
``namespace/model`` on ``host``, so ``hf.co/{user}/{repo}:{quant}`` becomes
``https://hf.co/v2/{user}/{repo}/manifests/{quant}``, which is how Ollama reaches
Hugging Face. ``insecure`` is Ollama's switch to plain HTTP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .._names import ModelName, parse_digest

__all__ = ["RegistryReference", "registry_host_problem"]

_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def registry_host_problem(host: str) -> str | None:
    """Why ``host`` (``name[:port]``) cannot be a registry's address, or None.

    A model name may carry any host its grammar allows; only one that DNS could
    resolve can be reached: labels of 1 to 63 letters, digits and inner hyphens,
    253 characters in all, and a port from 1 to 65535.
    """
    name, colon, port = host.partition(":")
    if colon and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        return f"{port!r} is not a port"
    if not name or len(name) > 253:
        return "a host name has 1 to 253 characters"
    if not all(_LABEL.fullmatch(label) for label in name.split(".")):
        return f"{name!r} is not a host name"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryReference:
    """A model in a registry: the base URL, its repository and its tag."""

    scheme: Literal["http", "https"]
    host: str
    repository: str
    """``namespace/model``, as the registry's URL paths spell it."""
    tag: str

    @classmethod
    def of(
        cls,
        name: ModelName,
        *,
        insecure: bool = False,
        host: str | None = None,
        namespace: str | None = None,
    ) -> RegistryReference:
        """Where ``name`` is in its registry; ``host`` and ``namespace`` stand in
        for the name's own (a configured default registry)."""
        return cls(
            scheme="http" if insecure else "https",
            host=host or name.host,
            repository=f"{namespace or name.namespace}/{name.model}",
            tag=name.tag,
        )

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def manifest_url(self) -> str:
        return f"{self.base_url}/v2/{self.repository}/manifests/{self.tag}"

    def blob_url(self, digest: str) -> str:
        return f"{self.base_url}/v2/{self.repository}/blobs/{parse_digest(digest)}"

    @property
    def upload_url(self) -> str:
        """Where an upload session starts (``POST``; the slash is the spec's)."""
        return f"{self.base_url}/v2/{self.repository}/blobs/uploads/"

    def scope(self, *, push: bool) -> str:
        """The token scope a Bearer challenge is answered with, when it names none."""
        actions = "pull,push" if push else "pull"
        return f"repository:{self.repository}:{actions}"
