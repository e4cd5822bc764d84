"""What the core knows about an installed model: plain values the store fills in.

The model store (an adapter: it reads manifests and GGUF files) turns a name into a
``ModelRecord``; the core decides everything else from it: capabilities, the prompt,
the options, the answer to ``/api/show`` and ``/api/tags``. Nothing here touches a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ._json import JsonValue

__all__ = ["ModelDetails", "ModelRecord"]

_EMPTY: Mapping[str, JsonValue] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelDetails:
    """The ``details`` object of ``/api/tags``, ``/api/show`` and ``/api/ps``."""

    parent_model: str = ""
    format: str = "gguf"
    family: str = ""
    families: tuple[str, ...] = ()
    parameter_size: str = ""
    quantization_level: str = ""

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "parent_model": self.parent_model,
            "format": self.format,
            "family": self.family,
            "families": list(self.families),
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRecord:
    """One installed model, as its manifest and GGUF file describe it.

    Attributes:
        name: the display name it is installed under (``demo:latest``).
        digest: hex sha256 of the manifest (what ``/api/tags`` calls ``digest``).
        size: total bytes of all its layers.
        modified_at: when the manifest was written, in unix seconds.
        model_file: where the GGUF file is: opaque to the core, used by the runner.
        model_digest: ``sha256:<hex>`` of the GGUF layer. Two names for the same file
            share one runner.
        template: the chat template: the manifest's template layer if it has one, else
            the GGUF ``tokenizer.chat_template``, else None.
        system: the Modelfile system prompt, if any.
        parameters: Modelfile parameters (option name -> value), already validated.
        messages: Modelfile messages, prepended to every chat.
        license: license texts.
        details: format, family, size class and quantization.
        model_info: GGUF metadata as ``/api/show`` reports it (long arrays elided).
        context_length: the training context (``<arch>.context_length``), 0 if unknown.
        embedding_length: width of the embeddings, 0 if unknown.
        bos_token, eos_token: the texts of the special tokens, for templates.
        is_embedding: the GGUF declares a pooling type: an embedding model.
    """

    name: str
    digest: str
    size: int
    modified_at: float
    model_file: str
    model_digest: str
    template: str | None = None
    system: str | None = None
    parameters: Mapping[str, JsonValue] = field(default_factory=lambda: _EMPTY)
    messages: tuple[Mapping[str, JsonValue], ...] = ()
    license: tuple[str, ...] = ()
    details: ModelDetails = field(default_factory=ModelDetails)
    model_info: Mapping[str, JsonValue] = field(default_factory=lambda: _EMPTY)
    context_length: int = 0
    embedding_length: int = 0
    bos_token: str = ""
    eos_token: str = ""
    is_embedding: bool = False
    template_source: str = ""
    """Where ``template`` came from: ``modelfile`` (the template layer), ``gguf``
    (the GGUF's own Jinja chat template), or "" (none)."""
    parser: str = ""
    """The output parser its create chose (a family name; docs/compatibility.md),
    "" to recognise the family from the template and architecture."""
    remote_host: str = ""
    """A remote model's host (normalized URL): it runs there, not here; "" for
    a model with a GGUF file."""
    remote_model: str = ""
    """A remote model's name on its host."""
    go_template: str | None = None
    """The template layer when it is an Ollama Go template that the GGUF's Jinja
    template stands in for (what ``/api/show`` shows as ``template``, as Ollama)."""
