"""Where a model name points in a registry: ``name[:tag]`` to URLs, as Ollama does.

``ModelName.parse`` already fills in Ollama's defaults (``registry.ollama.ai``,
``library``, ``latest``); a registry addresses the model as the repository
``namespace/model`` on ``host``, so ``hf.co/{user}/{repo}:{quant}`` becomes
``https://hf.co/v2/{user}/{repo}/manifests/{quant}``, which is how Ollama reaches
Hugging Face. ``insecure`` is Ollama's switch to plain HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .._names import ModelName, parse_digest

__all__ = ["RegistryReference"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryReference:
    """A model in a registry: the base URL, its repository and its tag."""

    scheme: Literal["http", "https"]
    host: str
    repository: str
    """``namespace/model``, as the registry's URL paths spell it."""
    tag: str

    @classmethod
    def of(cls, name: ModelName, *, insecure: bool = False) -> RegistryReference:
        return cls(
            scheme="http" if insecure else "https",
            host=name.host,
            repository=f"{name.namespace}/{name.model}",
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
