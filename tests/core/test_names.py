"""Model names follow Ollama's rules, and no name can point outside the model store."""

from __future__ import annotations

import posixpath
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_core._names import (
    DEFAULT_HOST,
    DEFAULT_NAMESPACE,
    DEFAULT_TAG,
    InvalidDigest,
    InvalidModelName,
    ModelName,
    parse_digest,
)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("llama3.2", (DEFAULT_HOST, DEFAULT_NAMESPACE, "llama3.2", DEFAULT_TAG)),
        ("llama3.2:1b", (DEFAULT_HOST, DEFAULT_NAMESPACE, "llama3.2", "1b")),
        ("Llama3:8B-Q4_0", (DEFAULT_HOST, DEFAULT_NAMESPACE, "Llama3", "8B-Q4_0")),
        ("jmorgan/m:v1", (DEFAULT_HOST, "jmorgan", "m", "v1")),
        ("hf.co/bartowski/Qwen-GGUF:Q8_0", ("hf.co", "bartowski", "Qwen-GGUF", "Q8_0")),
        ("localhost:5000/ns/m", ("localhost:5000", "ns", "m", DEFAULT_TAG)),
        ("localhost:5000/ns/m:t", ("localhost:5000", "ns", "m", "t")),
        ("https://example.com/ns/m:t", ("example.com", "ns", "m", "t")),
        ("http://example.com/ns/m", ("example.com", "ns", "m", DEFAULT_TAG)),
        ("_x/_y:_z", (DEFAULT_HOST, "_x", "_y", "_z")),
        (
            "a" * 80 + ":" + "b" * 80,
            (DEFAULT_HOST, DEFAULT_NAMESPACE, "a" * 80, "b" * 80),
        ),
    ],
)
def test_parse_fills_in_the_default_parts(
    text: str, parts: tuple[str, str, str, str]
) -> None:
    name = ModelName.parse(text)
    assert (name.host, name.namespace, name.model, name.tag) == parts
    assert name.path_parts == parts


@pytest.mark.parametrize(
    ("text", "display", "full"),
    [
        ("llama3.2", "llama3.2:latest", "registry.ollama.ai/library/llama3.2:latest"),
        ("library/m:t", "m:t", "registry.ollama.ai/library/m:t"),
        (
            "registry.ollama.ai/library/m",
            "m:latest",
            "registry.ollama.ai/library/m:latest",
        ),
        ("ns/m:t", "ns/m:t", "registry.ollama.ai/ns/m:t"),
        # With a host of its own, the namespace stays even when it is the default.
        ("h.io/library/m", "h.io/library/m:latest", "h.io/library/m:latest"),
        # Defaults are dropped only when spelled exactly, so display parses back.
        ("Library/m", "Library/m:latest", "registry.ollama.ai/Library/m:latest"),
    ],
)
def test_display_drops_default_host_and_namespace(
    text: str, display: str, full: str
) -> None:
    name = ModelName.parse(text)
    assert name.display == display
    assert str(name) == display
    assert name.full == full


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "the model is empty"),
        ("m:", "the tag is empty"),
        (":t", "the model is empty"),
        ("/m", "the namespace is empty"),
        ("//m", "the host is empty"),
        ("a/b/c/d", "at most three"),
        ("..", "must start with a letter"),
        ("../../etc/passwd", "at most three"),
        ("../m", "the namespace must start"),
        ("-m", "the model must start"),
        (".hidden", "the model must start"),
        ("ns.x/m", "the namespace may only contain letters, digits, '_' and '-'"),
        ("m:t:u", "the model may only contain"),
        ("m@sha256:abc", "the model may only contain"),
        ("m\\x", "the model may only contain"),
        ("m x", "the model may only contain"),
        ("m\x00", "the model may only contain"),
        ("modèle", "the model may only contain"),
        ("C:\\m", "the tag must start"),
        ("ftp://h/n/m", "with a scheme"),
        ("https://h/m", "with a scheme"),
        ("a" * 81, "the model is longer than 80"),
        ("m:" + "t" * 81, "the tag is longer than 80"),
        ("h" * 351 + "/n/m", "the host is longer than 350"),
        ("x" * 10_000, "longer than"),
    ],
)
def test_invalid_names_say_which_rule_they_break(text: str, reason: str) -> None:
    with pytest.raises(InvalidModelName, match="invalid model name") as info:
        ModelName.parse(text)
    assert reason in str(info.value)
    assert len(str(info.value)) < 300  # a hostile name does not flood the log


def test_error_messages_escape_control_characters() -> None:
    with pytest.raises(InvalidModelName) as info:
        ModelName.parse("m\nInjected: yes")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "parts",
    [
        {"model": ".."},
        {"model": ""},
        {"model": "a/b"},
        {"namespace": "..", "model": "m"},
        {"namespace": "a.b", "model": "m"},
        {"host": "", "model": "m"},
        {"host": "a/b", "model": "m"},
        {"tag": "a:b", "model": "m"},
    ],
)
def test_a_name_with_an_invalid_part_cannot_be_built(parts: dict[str, str]) -> None:
    with pytest.raises(InvalidModelName):
        ModelName(**parts)


def test_lookup_key_ignores_letter_case_and_nothing_else() -> None:
    upper = ModelName.parse("NS/Llama3:Q4")
    lower = ModelName.parse("ns/llama3:q4")
    assert upper != lower
    assert upper.lookup_key == lower.lookup_key
    assert ModelName.parse("ns/llama3:q5").lookup_key != lower.lookup_key
    assert ModelName.parse("llama3").lookup_key == ModelName.parse("LLAMA3").lookup_key


def test_names_are_hashable_values() -> None:
    assert {ModelName.parse("m"), ModelName.parse("m:latest")} == {ModelName(model="m")}


_ALNUM = string.ascii_letters + string.digits + "_"


def _part(rest: str, max_size: int) -> st.SearchStrategy[str]:
    return st.builds(
        str.__add__,
        st.sampled_from(_ALNUM),
        st.text(alphabet=_ALNUM + rest, max_size=max_size - 1),
    )


names = st.builds(
    ModelName,
    host=st.sampled_from([DEFAULT_HOST, "hf.co", "localhost:11434"])
    | _part(".-:", 255),  # longer hosts are valid for Ollama but cannot be stored
    namespace=st.sampled_from([DEFAULT_NAMESPACE]) | _part("-", 80),
    model=_part(".-", 80),
    tag=st.sampled_from([DEFAULT_TAG]) | _part(".-", 80),
)


@given(names)
def test_display_and_full_parse_back_to_the_same_name(name: ModelName) -> None:
    assert ModelName.parse(name.display) == name
    assert ModelName.parse(name.full) == name


def _assert_safe(name: ModelName) -> None:
    for part in name.path_parts:
        assert part not in ("", ".", "..")
        assert not set(part) & set("/\\\x00")
        assert part.isascii()
        assert part.isprintable()
    root = "/store/manifests"
    joined = posixpath.normpath(posixpath.join(root, *name.path_parts))
    assert joined.startswith(root + "/")
    assert joined.count("/") == root.count("/") + 4


hostile = st.lists(
    st.sampled_from([*"./\\:@ _-aZ9\x00\n%~", "..", "://", "é"]), max_size=40
).map("".join)
hostile_joined = st.lists(
    st.sampled_from(["..", ".", "", "a", "_", "%2e", "C:", "~", "\\.."]), max_size=6
).map("/".join)


@given(st.one_of(st.text(max_size=60), hostile, hostile_joined))
def test_no_text_parses_to_an_unsafe_path(text: str) -> None:
    try:
        name = ModelName.parse(text)
    except InvalidModelName:
        return
    _assert_safe(name)


@given(names)
def test_every_valid_name_has_safe_path_parts(name: ModelName) -> None:
    _assert_safe(name)


HEX = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "text",
    [
        f"sha256:{HEX}",
        f"sha256-{HEX}",
        f"sha256:{HEX.upper()}",
        f"sha256-{HEX.upper()}",
    ],
)
def test_digests_normalize_to_the_wire_form(text: str) -> None:
    assert parse_digest(text) == f"sha256:{HEX}"


@pytest.mark.parametrize(
    "text",
    [
        "",
        HEX,
        f"sha256:{HEX[:-1]}",
        f"sha256:{HEX}0",
        f"sha256:{HEX[:-1]}g",
        f"sha512:{HEX}",
        f"SHA256:{HEX}",
        f"sha256_{HEX}",
        f" sha256:{HEX}",
        f"sha256:{HEX}\n",
        f"sha256:../../{HEX[6:]}",
    ],
)
def test_other_digests_are_refused(text: str) -> None:
    with pytest.raises(InvalidDigest, match="expected sha256:<64 hex digits>"):
        parse_digest(text)
