"""The upstreams file and remote hosts: parsed, checked, routed."""

from __future__ import annotations

import pytest

from gateway_core import (
    Policy,
    UpstreamConfigError,
    UpstreamKind,
    UpstreamTable,
    normalize_remote_host,
)
from gateway_core._upstream._table import remote_host_allowed

GOOD = """
[[pool]]
name = "chat"
models = ["llama3*", "qwen3:8b"]
policy = "session"
parser = "qwen3"
health_interval = 2
timeouts = { connect = 1, first_byte = 30, idle = 10 }

[[pool.upstream]]
name = "gpu-1"
kind = "openai"
url = "http://10.0.0.5:8000/v1/"
api_key_env = "GPU1_KEY"
model = "Qwen/Qwen3-8B"

[[pool.upstream]]
name = "box"
kind = "ollama"
url = "http://box.lan:11434"
"""


def test_a_file_is_read_into_pools() -> None:
    table = UpstreamTable.from_toml(GOOD)
    (pool,) = table.pools
    assert pool.policy is Policy.SESSION
    assert pool.parser == "qwen3"
    assert pool.timeouts.first_byte == 30
    assert pool.health_interval == 2
    gpu, box = pool.upstreams
    assert gpu.kind is UpstreamKind.OPENAI
    assert gpu.url == "http://10.0.0.5:8000/v1"
    assert gpu.api_key_env == "GPU1_KEY"
    assert gpu.model == "Qwen/Qwen3-8B"
    assert box.model is None
    assert box.host == "box.lan"
    assert table.hosts == {"10.0.0.5", "box.lan"}


@pytest.mark.parametrize(
    ("model", "routed"),
    [("llama3.2", True), ("LLAMA3:8b", True), ("qwen3:8b", True), ("qwen3", False)],
)
def test_models_route_by_name_or_pattern(model: str, routed: bool) -> None:
    table = UpstreamTable.from_toml(GOOD)
    assert (table.route(model) is not None) is routed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[pool]", "not valid TOML"),
        ("x = 1", "unknown top-level key 'x'"),
        ('[[pool]]\nmodels=["a"]', "'name' must be a non-empty string"),
        ('[[pool]]\nname="p"\nmodels=[]', "'models' must be a non-empty list"),
        ('[[pool]]\nname="p"\nmodels=["a"]', "needs at least one upstream"),
        (
            '[[pool]]\nname="p"\nmodels=["a"]\n[[pool.upstream]]\nname="u"\n'
            'kind="vllm"\nurl="http://h"',
            "kind must be 'ollama', 'openai' or 'gateway'",
        ),
        (
            '[[pool]]\nname="p"\nmodels=["a"]\n[[pool.upstream]]\nname="u"\n'
            'kind="openai"\nurl="ftp://h"',
            "url must be an http:// or https:// URL with a host",
        ),
        (
            '[[pool]]\nname="p"\nmodels=["a"]\n[[pool.upstream]]\nname="u"\n'
            'kind="openai"\nurl="http://me:pw@h"',
            "must not hold credentials",
        ),
        (
            '[[pool]]\nname="p"\nmodels=["a"]\npolicy="random"\n[[pool.upstream]]\n'
            'name="u"\nkind="openai"\nurl="http://h"',
            "policy must be 'least-busy' or 'session'",
        ),
        (
            '[[pool]]\nname="p"\nmodels=["a"]\ncooldown=0\n[[pool.upstream]]\n'
            'name="u"\nkind="openai"\nurl="http://h"',
            "cooldown must be a positive number",
        ),
        (
            '[[pool]]\nname="p"\nmodels=["a"]\n[[pool.upstream]]\nname="u"\n'
            'kind="openai"\nurl="http://h"\napi_key_env="not a name"',
            "api_key_env must name an environment variable",
        ),
        (
            '[[pool]]\nname="p"\nmodels=["a"]\n[[pool.upstream]]\nname="u"\n'
            'kind="openai"\nurl="http://h"\n[[pool.upstream]]\nname="u"\n'
            'kind="openai"\nurl="http://h"',
            "two upstreams are named 'u'",
        ),
        (
            '[[pool]]\nname="p"\nmodels=["a"]\nparser="klingon"\n[[pool.upstream]]\n'
            'name="u"\nkind="openai"\nurl="http://h"',
            "parser must be 'none' or one of",
        ),
    ],
)
def test_a_bad_file_says_where(text: str, message: str) -> None:
    with pytest.raises(UpstreamConfigError, match=message):
        UpstreamTable.from_toml(text)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("ollama.com", "https://ollama.com:443"),
        ("box.lan", "http://box.lan:11434"),
        ("http://box.lan:8080/", "http://box.lan:8080"),
        ("/prefix", "http://localhost:11434/prefix"),
        ("https://[::1]", "https://[::1]:443"),
    ],
)
def test_remote_hosts_are_normalized_as_ollama_does(given: str, stored: str) -> None:
    assert normalize_remote_host(given) == stored


@pytest.mark.parametrize("bad", ["", "ftp://h", "http://u:p@h", "http://h:99999"])
def test_a_bad_remote_host_is_refused(bad: str) -> None:
    with pytest.raises(UpstreamConfigError):
        normalize_remote_host(bad)


def test_the_remote_allow_list_matches_hosts_not_urls() -> None:
    allowed = ("box.lan", "*.corp.example", "::1")
    assert remote_host_allowed("http://BOX.lan:11434", allowed)
    assert remote_host_allowed("http://a.corp.example:1", allowed)
    assert remote_host_allowed("http://[::1]:11434", allowed)
    assert not remote_host_allowed("http://box.lan.evil:11434", allowed)
    assert not remote_host_allowed("http://127.0.0.1:11434", allowed)
    assert not remote_host_allowed("http://box.lan:1", ())
