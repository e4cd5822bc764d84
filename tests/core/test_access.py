"""Access control from the request head: the Host check, CORS and API keys.

Pure: a gate, a head, and the exchange's answer. The same rules over real sockets
and with the official clients are in tests/adapters/test_access_live.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_core import (
    AccessGate,
    AccessPolicy,
    Admitted,
    CopyModel,
    Exchange,
    KeyRing,
    KeysFileError,
    ListModels,
    ListRunning,
    LookupModel,
    ModelFound,
    ModelList,
    Preflight,
    Refused,
    RequestHead,
    Result,
    RunningList,
    RunningModel,
    StoreDone,
    WorkEffect,
    WorkFailed,
    hash_api_key,
)
from gateway_core._access import host_allowed, origin_allowed

from .helpers import CONFIG, Transcript, drain, model_record, run

ALICE = "gk-alice-secret"
BOB = "gk-bob-secret"
KEYS_TOML = f"""
[[key]]
name = "alice"
sha256 = "{hash_api_key(ALICE)}"

[[key]]
name = "bob"
sha256 = "sha256:{hash_api_key(BOB).upper()}"
models = ["tiny", "team/*"]
max_concurrent = 2
"""
KEYS = KeyRing.from_toml(KEYS_TOML)
TINY, OTHER = model_record("tiny"), model_record("other")


def world(effect: WorkEffect) -> Sequence[Result]:
    match effect:
        case LookupModel(name=name):
            record = {"tiny": TINY, "other": OTHER}.get(name.model)
            if record is None:
                return [WorkFailed(status=404, message="no such model")]
            return [ModelFound(record=record)]
        case ListModels():
            return [ModelList(records=(TINY, OTHER))]
        case ListRunning():
            running = tuple(
                RunningModel(record=r, expires_at=0.0, context_length=8)
                for r in (TINY, OTHER)
            )
            return [RunningList(models=running)]
        case CopyModel():
            return [StoreDone()]
    raise AssertionError(f"unexpected {effect!r}")


def call(
    method: str,
    path: str,
    headers: tuple[tuple[str, str], ...] = (),
    *,
    policy: AccessPolicy,
    body: object | None = None,
    gate: AccessGate | None = None,
) -> Transcript:
    data = None if body is None else json.dumps(body).encode()
    return run(
        method,
        path,
        data,
        headers=headers,
        world=world,
        access=gate or AccessGate(policy),
    )


LOOPBACK = AccessPolicy(check_host=True)
WITH_KEYS = AccessPolicy(keys=KEYS)


# -- the Host check ------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:11434",
        "LOCALHOST.:80",
        "127.0.0.1:11434",
        "127.8.9.1",
        "[::1]:11434",
        "0.0.0.0:11434",
        "192.168.1.20:11434",
        "10.0.0.5",
        "app.localhost:3000",
        "printer.local",
        "service.internal:8080",
        "",
    ],
)
def test_a_host_naming_this_machine_passes(host: str) -> None:
    assert host_allowed(host)
    headers = (("host", host),) if host else ()
    assert call("GET", "/api/version", headers, policy=LOOPBACK).status == 200


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:11434", "localhost.evil.example", "8.8.8.8:11434"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/version"),
        ("GET", "/api/tags"),
        ("POST", "/api/chat"),
        ("POST", "/api/create"),
        ("POST", "/api/copy"),
        ("DELETE", "/api/delete"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/messages"),
        ("GET", "/"),
        ("GET", "/no/such/path"),
    ],
)
def test_a_foreign_host_gets_403_before_anything_else(
    host: str, method: str, path: str
) -> None:
    transcript = call(
        method, path, (("host", host),), policy=LOOPBACK, body={"model": "tiny"}
    )
    assert transcript.status == 403
    assert transcript.work == ()
    assert not transcript.read_body
    assert "Host" in json.dumps(transcript.json())


def test_the_host_error_wears_each_dialects_envelope() -> None:
    foreign = (("host", "evil.example"),)
    native = call("POST", "/api/chat", foreign, policy=LOOPBACK).json()
    openai = call("POST", "/v1/chat/completions", foreign, policy=LOOPBACK).json()
    anthropic = call("POST", "/v1/messages", foreign, policy=LOOPBACK).json()
    assert isinstance(native, dict)
    assert isinstance(native["error"], str)
    assert isinstance(openai, dict)
    assert openai["error"]["type"] == "permission_error"
    assert isinstance(anthropic, dict)
    assert anthropic["error"]["type"] == "permission_error"


def test_allowed_hosts_extend_the_check_and_a_star_ends_it() -> None:
    headers = (("host", "gpu-box.example:11434"),)
    listed = AccessPolicy(check_host=True, allowed_hosts=("*.example",))
    assert call("GET", "/api/version", headers, policy=listed).status == 200
    anything = AccessPolicy(check_host=True, allowed_hosts=("*",))
    assert call("GET", "/api/version", headers, policy=anything).status == 200


def test_without_a_loopback_listener_the_host_is_not_checked() -> None:
    headers = (("host", "evil.example"),)
    assert call("GET", "/api/version", headers, policy=AccessPolicy()).status == 200


# -- CORS ----------------------------------------------------------------------------


def _preflight(origin: str, path: str = "/api/chat") -> tuple[tuple[str, str], ...]:
    return (
        ("host", "localhost:11434"),
        ("origin", origin),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "content-type, x-stainless-os"),
    )


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost:3000",
        "https://localhost",
        "http://127.0.0.1:8080",
        "http://[::1]:5173",
        "http://0.0.0.0:3000",
        "app://obsidian.md",
        "tauri://localhost",
        "vscode-webview://abc123",
        "chrome-extension://abcdefghijklmnop",
        "file://",
    ],
)
def test_a_preflight_from_a_local_origin_gets_204(origin: str) -> None:
    transcript = call("OPTIONS", "/api/chat", _preflight(origin), policy=LOOPBACK)
    assert transcript.status == 204
    assert transcript.body == b""
    assert transcript.header("access-control-allow-origin") == origin
    methods = transcript.header("access-control-allow-methods") or ""
    assert "POST" in methods
    assert "DELETE" in methods
    allowed = transcript.header("access-control-allow-headers") or ""
    assert "content-type" in allowed
    assert "authorization" in allowed
    assert "x-stainless-os" in allowed
    assert transcript.work == ()


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "https://localhost.evil.example", "null"]
)
def test_a_foreign_origin_is_refused_preflight_or_not(origin: str) -> None:
    preflight = call("OPTIONS", "/api/chat", _preflight(origin), policy=LOOPBACK)
    assert preflight.status == 403
    # A "simple" request, which a browser sends without asking first.
    simple = call(
        "POST",
        "/api/copy",
        (("host", "localhost"), ("origin", origin), ("content-type", "text/plain")),
        policy=LOOPBACK,
        body={"source": "tiny", "destination": "x"},
    )
    assert simple.status == 403
    assert simple.work == ()
    assert not simple.read_body


def test_an_allowed_origin_reads_every_answer_errors_included() -> None:
    origin = (("origin", "http://localhost:3000"),)
    for transcript in (
        call("GET", "/api/tags", origin, policy=LOOPBACK),
        call("GET", "/api/nothing", origin, policy=LOOPBACK),
        call("GET", "/api/tags", origin, policy=WITH_KEYS),  # 401, no key
    ):
        assert (
            transcript.header("access-control-allow-origin") == "http://localhost:3000"
        )
        assert transcript.header("vary") == "Origin"
    assert (
        call("GET", "/api/tags", (), policy=LOOPBACK).header(
            "access-control-allow-origin"
        )
        is None
    )


def test_operators_add_origins() -> None:
    policy = AccessPolicy(allowed_origins=("https://*.example.com",))
    headers = _preflight("https://chat.example.com")
    assert call("OPTIONS", "/api/chat", headers, policy=policy).status == 204
    assert not origin_allowed("https://example.com.evil", policy.allowed_origins)


def test_options_without_a_preflight_is_still_405() -> None:
    transcript = call("OPTIONS", "/api/chat", (), policy=LOOPBACK)
    assert transcript.status == 405


# -- API keys ------------------------------------------------------------------------


def _bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


@pytest.mark.parametrize(
    "headers",
    [(), _bearer("wrong"), (("authorization", "Basic abc"),), (("x-api-key", "no"),)],
)
def test_a_missing_or_wrong_key_is_401(headers: tuple[tuple[str, str], ...]) -> None:
    transcript = call("GET", "/api/tags", headers, policy=WITH_KEYS)
    assert transcript.status == 401
    assert transcript.work == ()
    assert transcript.header("www-authenticate") == 'Bearer realm="gateway-core"'


def test_the_401_wears_each_dialects_envelope() -> None:
    openai = call("POST", "/v1/chat/completions", policy=WITH_KEYS).json()
    anthropic = call("POST", "/v1/messages", policy=WITH_KEYS).json()
    assert isinstance(openai, dict)
    assert openai["error"]["type"] == "authentication_error"
    assert isinstance(anthropic, dict)
    assert anthropic["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    "headers",
    [
        _bearer(ALICE),
        (("authorization", f"bearer  {ALICE} "),),
        (("x-api-key", ALICE),),
    ],
)
def test_a_valid_key_passes_however_it_is_sent(
    headers: tuple[tuple[str, str], ...],
) -> None:
    assert call("GET", "/api/tags", headers, policy=WITH_KEYS).status == 200


def test_the_root_and_health_need_no_key() -> None:
    assert call("GET", "/", policy=WITH_KEYS).status == 200
    assert call("HEAD", "/", policy=WITH_KEYS).status == 200
    assert call("GET", "/api/version", policy=WITH_KEYS).status == 401


def test_a_key_limited_to_models_gets_403_on_others_and_sees_only_its_own() -> None:
    bob = _bearer(BOB)
    chat = {"model": "other", "messages": []}
    assert (
        call("POST", "/api/show", bob, policy=WITH_KEYS, body={"model": "tiny"}).status
        == 200
    )
    refused = call("POST", "/api/chat", bob, policy=WITH_KEYS, body=chat)
    assert refused.status == 403
    assert "other" in json.dumps(refused.json())
    # Copying to a name outside its patterns is refused before the store is touched.
    copy = {"source": "tiny", "destination": "mine"}
    refused_copy = call("POST", "/api/copy", bob, policy=WITH_KEYS, body=copy)
    assert refused_copy.status == 403
    assert all(not isinstance(w, CopyModel) for w in refused_copy.work)
    tags = call("GET", "/api/tags", bob, policy=WITH_KEYS).json()
    assert isinstance(tags, dict)
    assert [m["name"] for m in tags["models"]] == ["tiny:latest"]
    running = call("GET", "/api/ps", bob, policy=WITH_KEYS).json()
    assert isinstance(running, dict)
    assert [m["name"] for m in running["models"]] == ["tiny:latest"]
    listed = call("GET", "/v1/models", bob, policy=WITH_KEYS).json()
    assert isinstance(listed, dict)
    assert [m["id"] for m in listed["data"]] == ["tiny:latest"]
    # Alice has no model list: she sees everything.
    alice_tags = call("GET", "/api/tags", _bearer(ALICE), policy=WITH_KEYS).json()
    assert isinstance(alice_tags, dict)
    assert len(alice_tags["models"]) == 2


def _open(gate: AccessGate, key: str) -> Exchange:
    head = RequestHead(method="POST", target="/api/chat", headers=_bearer(key))
    return Exchange(head, config=CONFIG, request_id="r", access=gate)


def test_a_keys_concurrency_limit_gives_429_with_retry_after_until_one_ends() -> None:
    gate = AccessGate(WITH_KEYS)
    first, second = _open(gate, BOB), _open(gate, BOB)
    assert gate.in_flight("bob") == 2
    third = call("GET", "/api/tags", _bearer(BOB), policy=WITH_KEYS, gate=gate)
    assert third.status == 429
    assert third.header("retry-after") == "1"
    # Other keys are not held back by bob's.
    assert (
        call("GET", "/api/tags", _bearer(ALICE), policy=WITH_KEYS, gate=gate).status
        == 200
    )
    first.abort("client left")  # an aborted request frees its place
    first.abort("again")  # and only once
    assert gate.in_flight("bob") == 1
    second.end_body()  # "{}"-less body: a 400, finished once drained
    drain(second)
    assert gate.in_flight("bob") == 0
    assert (
        call("GET", "/api/tags", _bearer(BOB), policy=WITH_KEYS, gate=gate).status
        == 200
    )
    assert gate.in_flight("bob") == 0


def test_the_gate_answers_are_values() -> None:
    gate = AccessGate(WITH_KEYS)
    head = RequestHead(method="GET", target="/api/tags", headers=_bearer(ALICE))
    decision = gate.admit(head)
    assert isinstance(decision, Admitted)
    assert decision.key is not None
    assert decision.key.name == "alice"
    decision.release()
    decision.release()
    assert gate.in_flight("alice") == 0
    preflight = AccessGate().admit(
        RequestHead(
            method="OPTIONS", target="/x", headers=_preflight("http://localhost")
        )
    )
    assert isinstance(preflight, Preflight)
    refused = AccessGate(LOOPBACK).admit(
        RequestHead(method="GET", target="/", headers=(("host", "evil.example"),))
    )
    assert isinstance(refused, Refused)
    assert refused.status == 403


# -- the keys file -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", r"no \[\[key\]\] entries"),
        ("[[key]]\nname = 'a'\n", "sha256 is required"),
        ("[[key]]\nsha256 = 'abc'\n", "64 hexadecimal digits"),
        (f"[[key]]\nsha256 = '{'0' * 64}'\nmodels = 'demo'\n", "models must be a list"),
        (f"[[key]]\nsha256 = '{'0' * 64}'\nmax_concurrent = 0\n", "max_concurrent"),
        (f"[[key]]\nsha256 = '{'0' * 64}'\nkey = 'plain'\n", "unknown fields"),
        (
            f"[[key]]\nsha256 = '{'0' * 64}'\n[[key]]\nsha256 = '{'0' * 64}'\n",
            "same key",
        ),
        ("[[key]\n", "not valid TOML"),
        ("[other]\n", "unknown top-level"),
    ],
)
def test_a_bad_keys_file_is_refused_saying_why(text: str, says: str) -> None:
    with pytest.raises(KeysFileError, match=says):
        KeyRing.from_toml(text)


def test_model_patterns_allow_every_tag_unless_one_is_named() -> None:
    ring = KeyRing.from_toml(
        f"[[key]]\nsha256 = '{'0' * 64}'\nmodels = ['demo', 'qwen*', 'x:q4']\n"
    )
    (key,) = ring.keys
    for allowed in (
        "demo",
        "demo:latest",
        "DEMO:v2",
        "library/demo",
        "qwen3:8b",
        "x:q4",
    ):
        assert key.allows_model(allowed), allowed
    for refused in ("demos", "x", "x:latest", "other/demo", "registry.example/a/demo"):
        assert not key.allows_model(refused), refused


@given(secret=st.text(min_size=1, max_size=40))
def test_a_key_is_found_by_itself_and_by_nothing_else(secret: str) -> None:
    ring = KeyRing.from_toml(
        f"[[key]]\nname = 'k'\nsha256 = '{hash_api_key(secret)}'\n"
    )
    found = ring.find(secret)
    assert found is not None
    assert found.name == "k"
    assert ring.find(secret + "x") is None
