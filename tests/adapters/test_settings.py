"""Settings: the ``HOST:PORT`` syntax, sizes, seconds, and flag > variable > default."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from gateway_core_adapters.settings import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    OPTIONS,
    DefaultRegistry,
    ServerSettings,
    default_models_dir,
    parse_bytes,
    parse_host,
    parse_registry,
    parse_seconds,
    resolve_settings,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.org", ("example.org", 11434)),
        ("localhost:8080", ("localhost", 8080)),
        ("0.0.0.0:11434", ("0.0.0.0", 11434)),
        (":9000", ("127.0.0.1", 9000)),
        ("[::1]:8080", ("::1", 8080)),
        ("[::]", ("::", 11434)),
        ("http://127.0.0.1:18080", ("127.0.0.1", 18080)),
        ("HTTP://localhost/", ("localhost", 11434)),
        (" 127.0.0.1:0 ", ("127.0.0.1", 0)),
        # A bare number is a port, as Ollama reads OLLAMA_HOST=18412.
        ("18412", ("127.0.0.1", 18412)),
        ("http://8080", ("127.0.0.1", 8080)),
    ],
)
def test_parse_host_accepts(text: str, expected: tuple[str, int]) -> None:
    assert parse_host(text) == expected


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "it is empty"),
        ("http://", "it is empty"),
        ("https://example.org", "only plain http://"),
        ("::1", "in brackets"),
        ("::1:8080", "in brackets"),
        ("[::1", "missing ']'"),
        ("[nonsense]:80", "not an IPv6 address"),
        ("[::1]8080", "after ']'"),
        ("host:port", "not a number"),
        ("host:-1", "not a number"),
        ("host:70000", "out of range"),
        ("99999", "out of range"),
        ("bad host:80", "not a host name"),
        ("host/path", "not a host name"),
    ],
)
def test_parse_host_rejects_with_a_clear_message(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match="invalid address") as error:
        parse_host(text)
    assert complaint in str(error.value)
    assert "HOST:PORT" in str(error.value)  # the message shows what is accepted


def test_seconds_and_sizes() -> None:
    assert parse_seconds("2.5") == 2.5
    assert parse_seconds("inf") == math.inf
    assert parse_bytes("65536") == 65536
    assert parse_bytes("64KiB") == 64 * 1024
    assert parse_bytes("8m") == 8 * 1024 * 1024
    for bad in ("0", "-1", "nan", "soon"):
        with pytest.raises(ValueError, match="seconds"):
            parse_seconds(bad)
    for bad in ("0", "1.5M", "lots", "-3"):
        with pytest.raises(ValueError, match="size"):
            parse_bytes(bad)


def test_defaults_match_ollama() -> None:
    home = Path("/home/someone")
    settings = resolve_settings({}, {}, home=home)
    assert (settings.host, settings.port) == (DEFAULT_HOST, DEFAULT_PORT)
    assert (settings.host, settings.port) == ("127.0.0.1", 11434)
    assert settings.keep_alive_timeout == 5.0
    assert (settings.keep_alive, settings.max_queue) == (300.0, 512)
    assert settings.context_length is None  # chosen at start, from the hardware
    assert settings == ServerSettings(models=default_models_dir({}, home))


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="the XDG rules")
def test_the_model_store_defaults_to_the_users_data_directory() -> None:
    home = Path("/home/someone")
    assert default_models_dir({}, home) == Path(
        "/home/someone/.local/share/gateway-core/models"
    )
    xdg = {"XDG_DATA_HOME": "/data"}
    assert default_models_dir(xdg, home) == Path("/data/gateway-core/models")
    flagged = resolve_settings({"models": "/srv/m"}, xdg, home=home)
    assert flagged.models == Path("/srv/m")


def test_model_settings_come_from_their_variables() -> None:
    settings = resolve_settings(
        {},
        {
            "GATEWAY_MODELS": "/srv/models",
            "GATEWAY_KEEP_ALIVE": "10m",
            "GATEWAY_MAX_LOADED_MODELS": "2",
            "GATEWAY_MAX_QUEUE": "7",
            "GATEWAY_CONTEXT_LENGTH": "2048",
        },
    )
    assert settings.models == Path("/srv/models")
    assert settings.keep_alive == 600.0
    assert (settings.max_loaded_models, settings.max_queue) == (2, 7)
    assert settings.context_length == 2048
    assert resolve_settings({}, {"GATEWAY_KEEP_ALIVE": "-1"}).keep_alive == math.inf
    with pytest.raises(ValueError, match="GATEWAY_MAX_QUEUE"):
        resolve_settings({}, {"GATEWAY_MAX_QUEUE": "0"})


def test_a_flag_wins_over_its_variable_which_wins_over_the_default() -> None:
    environ = {
        "GATEWAY_HOST": "0.0.0.0:9000",
        "GATEWAY_BODY_TIMEOUT": "12",
        "GATEWAY_MAX_BODY_BYTES": "1MiB",
        "GATEWAY_SEND_TIMEOUT": "",  # empty counts as unset
    }
    flags = {"host": ":7000", "body_timeout": None, "header_timeout": "3"}
    settings = resolve_settings(flags, environ)
    assert (settings.host, settings.port) == ("127.0.0.1", 7000)
    assert settings.body_timeout == 12.0
    assert settings.header_timeout == 3.0
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.send_timeout == ServerSettings().send_timeout


def test_errors_name_where_the_bad_value_came_from() -> None:
    with pytest.raises(ValueError, match=r"^GATEWAY_HOST: invalid address"):
        resolve_settings({}, {"GATEWAY_HOST": "::1"})
    with pytest.raises(ValueError, match=r"^--keep-alive-timeout: 'x'"):
        resolve_settings({"keep_alive_timeout": "x"}, {})


def test_shutdown_timeout_may_be_zero_but_not_negative() -> None:
    assert resolve_settings({"shutdown_timeout": "0"}, {}).shutdown_timeout == 0.0
    with pytest.raises(ValueError, match="--shutdown-timeout"):
        resolve_settings({"shutdown_timeout": "-1"}, {})


def test_invalid_settings_cannot_exist() -> None:
    with pytest.raises(ValueError, match="port"):
        ServerSettings(port=65536)
    with pytest.raises(ValueError, match="header_timeout"):
        ServerSettings(header_timeout=0)
    with pytest.raises(ValueError, match="byte limits"):
        ServerSettings(max_header_bytes=0)


def test_every_option_has_a_gateway_variable_and_a_settings_field() -> None:
    fields = set(ServerSettings.__dataclass_fields__) - {"port"}
    assert {option.name for option in OPTIONS} == fields
    for option in OPTIONS:
        assert option.env == "GATEWAY_" + option.name.upper()
        assert option.flag == "--" + option.name.replace("_", "-")


def test_origins_come_from_the_flag_the_variable_and_ollamas_variable() -> None:
    environ = {
        "GATEWAY_ORIGINS": "https://a.example, https://*.b.example",
        "OLLAMA_ORIGINS": "app://c,",
        "GATEWAY_ALLOWED_HOSTS": "gpu-box.lan",
        "GATEWAY_API_KEYS_FILE": "/etc/gateway/keys.toml",
    }
    settings = resolve_settings({}, environ, home=Path("/home/u"))
    assert settings.origins == ("https://a.example", "https://*.b.example", "app://c")
    assert settings.allowed_hosts == ("gpu-box.lan",)
    assert settings.api_keys_file == Path("/etc/gateway/keys.toml")
    flagged = resolve_settings({"origins": "https://d.example"}, environ)
    assert flagged.origins == ("https://d.example", "app://c")
    assert resolve_settings({}, {}).origins == ()


def test_ollama_host_is_honoured_when_gateway_host_is_unset() -> None:
    home = Path("/home/u")
    only_ollama = resolve_settings({}, {"OLLAMA_HOST": "0.0.0.0:8080"}, home=home)
    assert (only_ollama.host, only_ollama.port) == ("0.0.0.0", 8080)
    both = {"OLLAMA_HOST": "0.0.0.0:8080", "GATEWAY_HOST": ":9000"}
    ours = resolve_settings({}, both, home=home)
    assert (ours.host, ours.port) == ("127.0.0.1", 9000)
    flag = resolve_settings({"host": "7000"}, both, home=home)
    assert (flag.host, flag.port) == ("127.0.0.1", 7000)
    with pytest.raises(ValueError, match="OLLAMA_HOST"):
        resolve_settings({}, {"OLLAMA_HOST": "https://x"}, home=home)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mirror.internal", DefaultRegistry("mirror.internal", "library", False)),
        ("https://mirror.internal/team", DefaultRegistry("mirror.internal", "team")),
        ("http://127.0.0.1:5000/", DefaultRegistry("127.0.0.1:5000", "library", True)),
    ],
)
def test_the_default_registry_setting(text: str, expected: DefaultRegistry) -> None:
    assert parse_registry(text) == expected


@pytest.mark.parametrize("bad", ["", "bad_host!", "h:99999", "h/../x"])
def test_a_bad_default_registry_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid registry"):
        parse_registry(bad)


def test_the_default_registry_comes_from_the_environment() -> None:
    settings = resolve_settings({}, {"GATEWAY_REGISTRY": "http://10.0.0.2:5000/ours"})
    assert settings.registry == DefaultRegistry("10.0.0.2:5000", "ours", True)
