"""Ollama's model manifests, as values: what a model is made of, checked on the way in.

A model on disk is a JSON manifest (Docker image manifest v2, schema 2) naming
content-addressed blobs: one config blob and a list of layers (the GGUF weights, the
template, the system prompt, the parameters, ...). Keeping the same layout as Ollama
means a store written by one can be read by the other, and it makes every blob
verifiable by its name.

Everything read back from disk is parsed here, strictly: a manifest is data another
program may have written, and a digest in it becomes a file name, so a digest that is
not exactly ``sha256:`` and 64 lower-case hex digits is refused before anyone builds a
path from it. The functions that shape GGUF metadata for ``/api/show`` live here too,
so that the rules are tested without a file in sight.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ._json import JsonValue, dumps, loads_strict
from ._models import ModelDetails

__all__ = [
    "CONFIG_MEDIA_TYPE",
    "LICENSE_MEDIA_TYPE",
    "MANIFEST_MEDIA_TYPE",
    "MAX_SHOWN_ARRAY",
    "MESSAGES_MEDIA_TYPE",
    "MODEL_MEDIA_TYPE",
    "PARAMS_MEDIA_TYPE",
    "SYSTEM_MEDIA_TYPE",
    "TEMPLATE_MEDIA_TYPE",
    "Layer",
    "Manifest",
    "ManifestError",
    "ModelConfig",
    "blob_file_name",
    "config_from_metadata",
    "digest_of",
    "file_type_name",
    "format_parameter_count",
    "parse_messages",
    "parse_params",
    "shape_model_info",
]

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
MODEL_MEDIA_TYPE = "application/vnd.ollama.image.model"
TEMPLATE_MEDIA_TYPE = "application/vnd.ollama.image.template"
SYSTEM_MEDIA_TYPE = "application/vnd.ollama.image.system"
PARAMS_MEDIA_TYPE = "application/vnd.ollama.image.params"
MESSAGES_MEDIA_TYPE = "application/vnd.ollama.image.messages"
LICENSE_MEDIA_TYPE = "application/vnd.ollama.image.license"

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

# llama.cpp's llama_ftype values (general.file_type), named as Ollama shows them.
_FILE_TYPES: Mapping[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4",
}

# Not shown by /api/show: the name is the manifest's business and the template has
# its own field. Arrays longer than this are elided unless the client asks (verbose):
# token lists run to hundreds of thousands of entries.
_HIDDEN_INFO_KEYS = frozenset({"general.name", "tokenizer.chat_template"})
MAX_SHOWN_ARRAY = 5


class ManifestError(ValueError):
    """A manifest, config or layer blob is not what Ollama's format allows."""


def _check_digest(digest: object, what: str) -> str:
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise ManifestError(f"{what} has an invalid digest: {digest!r:.100}")
    return digest


def blob_file_name(digest: str) -> str:
    """A blob's file name in ``<root>/blobs``: ``sha256-<hex>``, as Ollama names it.

    Colons are not allowed in Windows file names, hence the dash. The digest must
    already be normalized (``sha256:`` and 64 lower-case hex digits): the result is a
    single safe path component or this raises ``ManifestError``.
    """
    return _check_digest(digest, "blob").replace(":", "-", 1)


def digest_of(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``: the name a blob with these bytes gets."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _int_field(value: JsonValue, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ManifestError(f"{what} must be a non-negative integer")
    return value


def _str_field(value: JsonValue, what: str) -> str:
    if not isinstance(value, str):
        raise ManifestError(f"{what} must be a string")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Layer:
    """One blob of a model: what it holds (media type), its digest and its size.

    ``parent`` is Ollama's ``from``: the name of the model a layer was inherited from,
    which ``/api/show`` reports as ``details.parent_model``.
    """

    media_type: str
    digest: str
    size: int
    parent: str = ""

    def __post_init__(self) -> None:
        if not self.media_type:
            raise ManifestError("a layer needs a media type")
        _check_digest(self.digest, f"layer {self.media_type}")
        if isinstance(self.size, bool) or self.size < 0:
            raise ManifestError(f"layer {self.digest} has a negative size")

    def to_json(self) -> dict[str, JsonValue]:
        value: dict[str, JsonValue] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.parent:
            value["from"] = self.parent
        return value

    @classmethod
    def from_json(cls, value: JsonValue, what: str) -> Layer:
        if not isinstance(value, dict):
            raise ManifestError(f"{what} must be an object")
        parent = value.get("from") or ""
        return cls(
            media_type=_str_field(value.get("mediaType"), f"{what} mediaType"),
            digest=_check_digest(value.get("digest"), what),
            size=_int_field(value.get("size"), f"{what} size"),
            parent=_str_field(parent, f"{what} from"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """A model: its config blob and its layers, in order."""

    config: Layer
    layers: tuple[Layer, ...]

    def __post_init__(self) -> None:
        if sum(layer.media_type == MODEL_MEDIA_TYPE for layer in self.layers) > 1:
            raise ManifestError("a manifest has at most one model (GGUF) layer")

    @property
    def is_remote(self) -> bool:
        """No model file: a remote model (its config names where it runs)."""
        return not any(lay.media_type == MODEL_MEDIA_TYPE for lay in self.layers)

    @property
    def model_layer(self) -> Layer:
        """The GGUF layer. Raises ``ManifestError`` for a remote model."""
        for layer in self.layers:
            if layer.media_type == MODEL_MEDIA_TYPE:
                return layer
        raise ManifestError("a remote model has no model file")

    @property
    def size(self) -> int:
        """Bytes of every blob, config included: what ``/api/tags`` calls ``size``."""
        return self.config.size + sum(layer.size for layer in self.layers)

    @property
    def digests(self) -> frozenset[str]:
        """Every blob this manifest keeps alive."""
        return frozenset({self.config.digest, *(lay.digest for lay in self.layers)})

    def layers_of(self, media_type: str) -> tuple[Layer, ...]:
        return tuple(lay for lay in self.layers if lay.media_type == media_type)

    def to_bytes(self) -> bytes:
        return dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_MEDIA_TYPE,
                "config": self.config.to_json(),
                "layers": [layer.to_json() for layer in self.layers],
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parse a manifest file; ``ManifestError`` says what is wrong with it."""
        value = _json_object(data, "manifest")
        if value.get("schemaVersion") != 2:
            raise ManifestError("manifest schemaVersion must be 2")
        media_type = value.get("mediaType", MANIFEST_MEDIA_TYPE)
        if media_type != MANIFEST_MEDIA_TYPE:
            raise ManifestError(f"unsupported manifest media type {media_type!r:.100}")
        layers = value.get("layers")
        if not isinstance(layers, list):
            raise ManifestError("manifest layers must be a list")
        return cls(
            config=Layer.from_json(value.get("config"), "manifest config"),
            layers=tuple(
                Layer.from_json(layer, f"manifest layer {index}")
                for index, layer in enumerate(layers)
            ),
        )


def _json_object(data: bytes, what: str) -> dict[str, JsonValue]:
    try:
        value = loads_strict(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ManifestError(f"{what} must be a JSON object")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    """The config blob: what ``/api/tags`` shows without opening the GGUF file.

    Ollama writes more keys (rootfs, os, renderer, ...); they are ignored on reading.
    """

    model_format: str = "gguf"
    model_family: str = ""
    model_families: tuple[str, ...] = ()
    model_type: str = ""
    file_type: str = ""
    parser: str = ""
    """The output parser a create chose (Ollama's config key): a family name, or
    another server's name for one, which only a known family name turns on."""
    remote_host: str = ""
    """A remote model's host (Ollama's config key), normalized; "" for a model
    with a GGUF file."""
    remote_model: str = ""
    """A remote model's name on its host."""

    def to_bytes(self) -> bytes:
        value: dict[str, JsonValue] = {
            "model_format": self.model_format,
            "model_family": self.model_family,
            "model_families": list(self.model_families),
            "model_type": self.model_type,
            "file_type": self.file_type,
        }
        if self.parser:
            value["parser"] = self.parser
        if self.remote_host:
            value["remote_host"] = self.remote_host
            value["remote_model"] = self.remote_model
        return dumps(value)

    @classmethod
    def from_bytes(cls, data: bytes) -> ModelConfig:
        value = _json_object(data, "model config")

        def text(key: str, default: str) -> str:
            found = value.get(key)
            return default if found is None else _str_field(found, f"config {key}")

        families = value.get("model_families") or []
        if not isinstance(families, list):
            raise ManifestError("config model_families must be a list")
        return cls(
            model_format=text("model_format", "gguf"),
            model_family=text("model_family", ""),
            model_families=tuple(
                _str_field(family, "config model_families") for family in families
            ),
            model_type=text("model_type", ""),
            file_type=text("file_type", ""),
            parser=text("parser", ""),
            remote_host=text("remote_host", ""),
            remote_model=text("remote_model", ""),
        )

    def details(self, *, parent_model: str = "") -> ModelDetails:
        return ModelDetails(
            parent_model=parent_model,
            format=self.model_format,
            family=self.model_family,
            families=self.model_families,
            parameter_size=self.model_type,
            quantization_level=self.file_type,
        )


def file_type_name(file_type: int) -> str:
    """Ollama's label for a GGUF ``general.file_type`` (``15`` is ``Q4_K_M``)."""
    return _FILE_TYPES.get(file_type, "unknown")


def format_parameter_count(count: int) -> str:
    """A parameter count the way Ollama's ``parameter_size`` prints it.

    ``8030261248`` is ``8.0B``, ``494032768`` is ``494.03M``, ``12000`` is ``12K``:
    one decimal for billions, two for millions, none below, and no decimals for a
    count that is a whole number of the unit.
    """
    if count < 0:
        raise ValueError(f"a parameter count cannot be negative: {count}")
    for unit, suffix, decimals in ((10**9, "B", 1), (10**6, "M", 2), (10**3, "K", 0)):
        if count >= unit:
            if count % unit == 0:
                return f"{count // unit}{suffix}"
            return f"{count / unit:.{decimals}f}{suffix}"
    return str(count)


def config_from_metadata(
    metadata: Mapping[str, JsonValue], *, parameter_count: int
) -> ModelConfig:
    """The config blob Ollama would write for a GGUF file with this metadata."""
    architecture = metadata.get("general.architecture")
    family = architecture if isinstance(architecture, str) else ""
    file_type = metadata.get("general.file_type")
    quantization = "unknown"
    if isinstance(file_type, int) and not isinstance(file_type, bool):
        quantization = file_type_name(file_type)
    return ModelConfig(
        model_family=family,
        model_families=(family,) if family else (),
        model_type=format_parameter_count(parameter_count),
        file_type=quantization,
    )


def shape_model_info(
    metadata: Mapping[str, JsonValue], *, verbose: bool
) -> dict[str, JsonValue]:
    """GGUF metadata as ``/api/show`` reports it in ``model_info``.

    ``general.name`` and ``tokenizer.chat_template`` are left out, and arrays of more
    than five elements become ``[]`` unless ``verbose``: real vocabularies would make
    every show answer megabytes long. Keys come out sorted, like Go's JSON maps.
    """
    shaped: dict[str, JsonValue] = {}
    for key in sorted(metadata):
        if key in _HIDDEN_INFO_KEYS:
            continue
        value = metadata[key]
        if isinstance(value, list) and len(value) > MAX_SHOWN_ARRAY and not verbose:
            value = []
        shaped[key] = value
    return shaped


def parse_params(data: bytes) -> dict[str, JsonValue]:
    """The params layer: a JSON object of Modelfile parameters."""
    return _json_object(data, "params layer")


def parse_messages(data: bytes) -> tuple[dict[str, JsonValue], ...]:
    """The messages layer: a JSON list of objects with a string role and content."""
    try:
        value = loads_strict(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"messages layer is not valid JSON: {exc}") from None
    if not isinstance(value, list):
        raise ManifestError("messages layer must be a JSON list")
    messages: list[dict[str, JsonValue]] = []
    for index, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ManifestError(f"message {index} needs a string role")
        if not isinstance(message.get("content", ""), str):
            raise ManifestError(f"message {index} content must be a string")
        messages.append(message)
    return tuple(messages)
