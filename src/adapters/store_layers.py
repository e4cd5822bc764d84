"""What ``/api/create`` changes in a model's layers: new blobs in place of old ones.

A create from a GGUF file first gets that file's layers (``gguf_layers``: the blob
checked to be a model, and a config blob from its metadata).

A create starts from a base model's layers (or a new GGUF file's, or none for a
remote model) and replaces some: the template, the system prompt, the parameters
(merged over the base's), the messages, the license, and the config blob when a
parser is chosen. ``LayerEditor`` does that, writing each new blob through the
store and noting what it did in Ollama's progress words.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from gateway_core._json import JsonValue, dumps
from gateway_core._manifest import (
    CONFIG_MEDIA_TYPE,
    LICENSE_MEDIA_TYPE,
    MAX_SHOWN_ARRAY,
    MESSAGES_MEDIA_TYPE,
    MODEL_MEDIA_TYPE,
    PARAMS_MEDIA_TYPE,
    SYSTEM_MEDIA_TYPE,
    TEMPLATE_MEDIA_TYPE,
    Layer,
    ManifestError,
    ModelConfig,
    config_from_metadata,
    parse_params,
)
from gateway_core._names import InvalidDigest, ModelName, parse_digest

from .gguf_info import GgufError, GgufInfo, read_gguf
from .store_files import StoreError

__all__ = ["LayerEditor", "checked_digest", "damaged", "gguf_layers"]


def checked_digest(text: str) -> str:
    """``text`` as a digest, or the 400 that says what is wrong with it."""
    try:
        return parse_digest(text)
    except InvalidDigest as exc:
        raise StoreError(400, str(exc)) from None


def gguf_layers(
    files: Mapping[str, str],
    *,
    blob_path: Callable[[str], Path],
    put: Callable[[bytes], str],
    note: Callable[[str], None],
) -> tuple[GgufInfo, Layer, list[Layer]]:
    """The GGUF file a create names (``files``: one name and its blob's digest),
    read, and the config and model layers it makes; ``put`` writes the config blob,
    ``note`` adds a progress status.

    Raises:
        StoreError(400): not exactly one file, a bad name or digest, a blob not
            uploaded, or one that is not a usable GGUF model.
    """
    if len(files) != 1:
        raise StoreError(400, f"expected one GGUF file in files, got {len(files)}")
    ((file_name, digest_text),) = files.items()
    parts = file_name.replace("\\", "/").split("/")
    if not file_name or file_name.startswith("/") or ".." in parts:
        raise StoreError(400, f"invalid file path {file_name!r:.100}")
    if not digest_text:
        raise StoreError(400, f"file {file_name!r:.100} has an empty digest")
    digest = checked_digest(digest_text)
    path = blob_path(digest)
    if not path.is_file():
        raise StoreError(400, f'blob "{digest}" not found: upload it first')
    note("parsing GGUF")
    try:
        info = read_gguf(path, max_array=MAX_SHOWN_ARRAY)
    except GgufError as exc:
        raise StoreError(
            400, f"file {file_name!r:.100} is not a usable GGUF model: {exc}"
        ) from None
    note(f"using existing layer {digest}")
    config = config_from_metadata(info.metadata, parameter_count=info.parameter_count)
    config_data = config.to_bytes()
    config_layer = Layer(
        media_type=CONFIG_MEDIA_TYPE, digest=put(config_data), size=len(config_data)
    )
    model = Layer(media_type=MODEL_MEDIA_TYPE, digest=digest, size=path.stat().st_size)
    return info, config_layer, [model]


def damaged(name: ModelName, problem: str) -> StoreError:
    """The 500 for a model whose files are not what its manifest says."""
    return StoreError(
        500,
        f"model '{name.display}' is damaged: {problem}; delete it and create it again",
    )


class LayerEditor:
    """Layer changes for one create of ``name``.

    ``put`` writes a blob (and notes it in the statuses) and returns its digest;
    ``read`` reads the blob of a digest this model uses.
    """

    def __init__(
        self,
        name: ModelName,
        *,
        put: Callable[[bytes], str],
        read: Callable[[str], bytes],
    ) -> None:
        self._name = name
        self._put = put
        self._read = read

    def remote_config(self, host: str, model: str) -> Layer:
        """The config layer of a remote model: where it runs, and no file."""
        data = ModelConfig(
            model_format="", remote_host=host, remote_model=model
        ).to_bytes()
        return Layer(
            media_type=CONFIG_MEDIA_TYPE, digest=self._put(data), size=len(data)
        )

    def with_parser(self, config: Layer, parser: str) -> Layer:
        """``config`` with its ``parser`` set (a new config blob)."""
        try:
            current = ModelConfig.from_bytes(self._read(config.digest))
        except ManifestError as exc:
            raise damaged(self._name, f"its config is invalid ({exc})") from None
        data = dataclasses.replace(current, parser=parser).to_bytes()
        return Layer(
            media_type=CONFIG_MEDIA_TYPE, digest=self._put(data), size=len(data)
        )

    def apply(
        self,
        layers: list[Layer],
        *,
        template: str | None,
        system: str | None,
        parameters: Mapping[str, JsonValue] | None,
        messages: Sequence[Mapping[str, JsonValue]] | None,
        license: Sequence[str] | None,
    ) -> list[Layer]:
        """``layers`` with what the create gives in place of the base's (None
        keeps the base's; an empty text or list removes it). Parameters are merged
        over the base's."""
        old_params = self._base_params(layers)
        texts = {TEMPLATE_MEDIA_TYPE: template, SYSTEM_MEDIA_TYPE: system}
        for media_type, text in texts.items():
            if text is not None:
                layers = self._replace(layers, media_type, [text.encode()])
        if parameters is not None:
            merged = {**old_params, **parameters}
            layers = self._replace(
                layers, PARAMS_MEDIA_TYPE, [dumps(merged)] if merged else []
            )
        if messages is not None:
            blobs = [dumps([dict(m) for m in messages])] if messages else []
            layers = self._replace(layers, MESSAGES_MEDIA_TYPE, blobs)
        if license is not None:
            blobs = [text.encode() for text in license]
            layers = self._replace(layers, LICENSE_MEDIA_TYPE, blobs)
        return layers

    def _base_params(self, layers: list[Layer]) -> dict[str, JsonValue]:
        params = [lay for lay in layers if lay.media_type == PARAMS_MEDIA_TYPE]
        if not params:
            return {}
        try:
            return parse_params(self._read(params[-1].digest))
        except ManifestError as exc:
            raise damaged(self._name, str(exc)) from None

    def _replace(
        self, layers: list[Layer], media_type: str, blobs: list[bytes]
    ) -> list[Layer]:
        """``layers`` with those of ``media_type`` replaced by new ones, in place
        of the first (or at the end)."""
        new = [
            Layer(media_type=media_type, digest=self._put(data), size=len(data))
            for data in blobs
        ]
        kept = [lay for lay in layers if lay.media_type != media_type]
        where = next(
            (i for i, lay in enumerate(layers) if lay.media_type == media_type),
            len(layers),
        )
        where -= sum(lay.media_type == media_type for lay in layers[:where])
        return kept[:where] + new + kept[where:]
