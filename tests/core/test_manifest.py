"""Manifests, configs and model_info shaping: Ollama's format, parsed strictly.

A manifest is read from disk and its digests become file names, so most of these
tests feed it hostile or broken input and check that it is refused.
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_core._json import JsonValue
from gateway_core._manifest import (
    CONFIG_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    MODEL_MEDIA_TYPE,
    SYSTEM_MEDIA_TYPE,
    TEMPLATE_MEDIA_TYPE,
    Layer,
    Manifest,
    ManifestError,
    ModelConfig,
    blob_file_name,
    config_from_metadata,
    digest_of,
    file_type_name,
    format_parameter_count,
    parse_messages,
    parse_params,
    shape_model_info,
)
from gateway_core._models import ModelDetails

HEX = "0123456789abcdef" * 4
DIGEST = f"sha256:{HEX}"
OTHER = "sha256:" + "ab" * 32


def model_layer(digest: str = DIGEST, size: int = 10) -> Layer:
    return Layer(media_type=MODEL_MEDIA_TYPE, digest=digest, size=size)


def manifest_json(**changes: JsonValue) -> bytes:
    value: dict[str, JsonValue] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": OTHER, "size": 3},
        "layers": [{"mediaType": MODEL_MEDIA_TYPE, "digest": DIGEST, "size": 10}],
    }
    value.update(changes)
    return json.dumps(value).encode()


def test_manifest_round_trips_and_matches_ollamas_shape() -> None:
    manifest = Manifest(
        config=Layer(media_type=CONFIG_MEDIA_TYPE, digest=OTHER, size=3),
        layers=(
            Layer(media_type=MODEL_MEDIA_TYPE, digest=DIGEST, size=10, parent="b:1"),
            Layer(media_type=SYSTEM_MEDIA_TYPE, digest=OTHER, size=5),
        ),
    )
    data = manifest.to_bytes()
    assert Manifest.from_bytes(data) == manifest
    value = json.loads(data)
    assert value["schemaVersion"] == 2
    assert value["mediaType"] == MANIFEST_MEDIA_TYPE
    assert value["config"] == {
        "mediaType": CONFIG_MEDIA_TYPE,
        "digest": OTHER,
        "size": 3,
    }
    assert value["layers"][0]["from"] == "b:1"
    assert "from" not in value["layers"][1]
    assert manifest.size == 18
    assert manifest.digests == {DIGEST, OTHER}
    assert manifest.model_layer.digest == DIGEST
    assert manifest.layers_of(SYSTEM_MEDIA_TYPE) == (manifest.layers[1],)
    assert manifest.layers_of(TEMPLATE_MEDIA_TYPE) == ()


def test_manifest_without_media_type_or_from_is_accepted() -> None:
    raw = json.loads(manifest_json())
    del raw["mediaType"]
    raw["layers"][0]["from"] = None
    manifest = Manifest.from_bytes(json.dumps(raw).encode())
    assert manifest.model_layer.parent == ""


HOSTILE_DIGESTS = [
    "sha256:../../../etc/passwd",
    "sha256-" + HEX,  # the file-name form is not the manifest form
    "sha256:" + HEX.upper(),
    "sha256:" + HEX[:-1],
    "sha256:" + HEX + "0",
    "sha256:" + HEX + "\n",
    "sha512:" + HEX,
    "/" + HEX,
    "",
    None,
    12,
]


@pytest.mark.parametrize("digest", HOSTILE_DIGESTS)
def test_manifest_with_a_bad_layer_digest_is_refused(digest: JsonValue) -> None:
    layers: JsonValue = [{"mediaType": MODEL_MEDIA_TYPE, "digest": digest, "size": 1}]
    with pytest.raises(ManifestError, match="invalid digest"):
        Manifest.from_bytes(manifest_json(layers=layers))


@pytest.mark.parametrize("digest", HOSTILE_DIGESTS)
def test_manifest_with_a_bad_config_digest_is_refused(digest: JsonValue) -> None:
    config: JsonValue = {"mediaType": CONFIG_MEDIA_TYPE, "digest": digest, "size": 1}
    with pytest.raises(ManifestError, match="invalid digest"):
        Manifest.from_bytes(manifest_json(config=config))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not valid JSON"),
        (b"\xff", "not valid JSON"),
        (b"[1]", "must be a JSON object"),
        (b'{"schemaVersion": NaN}', "not valid JSON"),
        (manifest_json(schemaVersion=1), "schemaVersion must be 2"),
        (manifest_json(mediaType="text/plain"), "unsupported manifest media type"),
        (manifest_json(layers={}), "layers must be a list"),
        (manifest_json(config=None), "config must be an object"),
        (
            manifest_json(
                layers=[
                    {"mediaType": MODEL_MEDIA_TYPE, "digest": DIGEST, "size": 1},
                    {"mediaType": MODEL_MEDIA_TYPE, "digest": OTHER, "size": 1},
                ]
            ),
            "at most one model",
        ),
        (
            manifest_json(layers=[{"mediaType": MODEL_MEDIA_TYPE, "digest": DIGEST}]),
            "size must be a non-negative integer",
        ),
        (
            manifest_json(
                layers=[{"mediaType": MODEL_MEDIA_TYPE, "digest": DIGEST, "size": -1}]
            ),
            "size must be a non-negative integer",
        ),
        (
            manifest_json(
                layers=[{"mediaType": MODEL_MEDIA_TYPE, "digest": DIGEST, "size": True}]
            ),
            "size must be a non-negative integer",
        ),
        (
            manifest_json(layers=[{"mediaType": 3, "digest": DIGEST, "size": 1}]),
            "mediaType must be a string",
        ),
    ],
)
def test_broken_manifests_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        Manifest.from_bytes(data)


def test_layer_checks_itself() -> None:
    with pytest.raises(ManifestError):
        Layer(media_type="", digest=DIGEST, size=1)
    with pytest.raises(ManifestError):
        Layer(media_type=MODEL_MEDIA_TYPE, digest=DIGEST, size=-1)
    with pytest.raises(ManifestError):
        Layer(media_type=MODEL_MEDIA_TYPE, digest="sha256:/etc", size=1)


def test_blob_file_name_is_ollamas() -> None:
    assert blob_file_name(DIGEST) == f"sha256-{HEX}"


@given(st.text())
def test_blob_file_name_accepts_only_normalized_digests(text: str) -> None:
    if re.fullmatch(r"sha256:[0-9a-f]{64}", text):
        assert blob_file_name(text) == "sha256-" + text[7:]
    else:
        with pytest.raises(ManifestError):
            blob_file_name(text)


@given(st.binary())
def test_digest_of_names_a_valid_blob(data: bytes) -> None:
    digest = digest_of(data)
    assert re.fullmatch(r"sha256-[0-9a-f]{64}", blob_file_name(digest))


def test_digest_of_is_sha256() -> None:
    assert digest_of(b"") == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_config_round_trips_and_gives_details() -> None:
    config = ModelConfig(
        model_family="llama",
        model_families=("llama", "clip"),
        model_type="8.0B",
        file_type="Q4_K_M",
    )
    assert ModelConfig.from_bytes(config.to_bytes()) == config
    assert config.details(parent_model="base:latest") == ModelDetails(
        parent_model="base:latest",
        format="gguf",
        family="llama",
        families=("llama", "clip"),
        parameter_size="8.0B",
        quantization_level="Q4_K_M",
    )


def test_config_written_by_ollama_is_read() -> None:
    data = json.dumps(
        {
            "model_format": "gguf",
            "model_family": "qwen2",
            "model_families": None,
            "model_type": "494.03M",
            "file_type": "Q4_K_M",
            "rootfs": {"type": "layers", "diff_ids": []},
            "architecture": "amd64",
            "os": "linux",
        }
    ).encode()
    config = ModelConfig.from_bytes(data)
    assert config.model_family == "qwen2"
    assert config.model_families == ()
    assert config.model_type == "494.03M"


@pytest.mark.parametrize(
    "data",
    [b"null", b'{"model_family": 3}', b'{"model_families": "llama"}', b"{"],
)
def test_bad_config_is_refused(data: bytes) -> None:
    with pytest.raises(ManifestError):
        ModelConfig.from_bytes(data)


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0"),
        (999, "999"),
        (1000, "1K"),
        (108_224, "108K"),
        (1_000_000, "1M"),
        (12_345_678, "12.35M"),
        (494_032_768, "494.03M"),
        (8_000_000_000, "8B"),
        (8_030_261_248, "8.0B"),
        (3_212_749_824, "3.2B"),
        (70_553_706_496, "70.6B"),
    ],
)
def test_parameter_counts_print_like_ollama(count: int, text: str) -> None:
    assert format_parameter_count(count) == text


def test_negative_parameter_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_parameter_count(-1)


def test_file_type_names() -> None:
    assert file_type_name(0) == "F32"
    assert file_type_name(1) == "F16"
    assert file_type_name(15) == "Q4_K_M"
    assert file_type_name(32) == "BF16"
    assert file_type_name(4) == "unknown"  # removed from llama.cpp long ago
    assert file_type_name(10_000) == "unknown"


def test_config_from_metadata() -> None:
    metadata: dict[str, JsonValue] = {
        "general.architecture": "qwen3",
        "general.file_type": 7,
    }
    assert config_from_metadata(metadata, parameter_count=600_000_000) == ModelConfig(
        model_family="qwen3",
        model_families=("qwen3",),
        model_type="600M",
        file_type="Q8_0",
    )
    bare = config_from_metadata({"general.file_type": True}, parameter_count=5)
    assert bare == ModelConfig(model_type="5", file_type="unknown")


def test_model_info_hides_name_and_template_and_elides_long_arrays() -> None:
    metadata: dict[str, JsonValue] = {
        "tokenizer.ggml.tokens": ["a", "b", "c", "d", "e", "f"],
        "general.name": "secret",
        "tokenizer.chat_template": "{{ x }}",
        "llama.short": [1, 2, 3, 4, 5],
        "general.architecture": "llama",
    }
    shown = shape_model_info(metadata, verbose=False)
    assert shown == {
        "general.architecture": "llama",
        "llama.short": [1, 2, 3, 4, 5],
        "tokenizer.ggml.tokens": [],
    }
    assert list(shown) == sorted(shown)
    verbose = shape_model_info(metadata, verbose=True)
    assert verbose["tokenizer.ggml.tokens"] == ["a", "b", "c", "d", "e", "f"]
    assert "general.name" not in verbose
    assert "tokenizer.chat_template" not in verbose
    assert metadata["tokenizer.ggml.tokens"] == ["a", "b", "c", "d", "e", "f"]


def test_params_and_messages_layers() -> None:
    assert parse_params(b'{"stop": ["a", "b"], "temperature": 0.5}') == {
        "stop": ["a", "b"],
        "temperature": 0.5,
    }
    messages = parse_messages(b'[{"role": "user", "content": "hi"}, {"role": "x"}]')
    assert messages == ({"role": "user", "content": "hi"}, {"role": "x"})


@pytest.mark.parametrize(
    "data",
    [b"{}", b"[1]", b'[{"content": "x"}]', b'[{"role": "u", "content": 3}]', b"[", b""],
)
def test_bad_messages_layer_is_refused(data: bytes) -> None:
    with pytest.raises(ManifestError):
        parse_messages(data)


@pytest.mark.parametrize("data", [b"[]", b"1", b"{", b"\xfe"])
def test_bad_params_layer_is_refused(data: bytes) -> None:
    with pytest.raises(ManifestError):
        parse_params(data)
