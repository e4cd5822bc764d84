"""Hostile requests over real HTTP: every one gets an answer below 500.

A live server with the demo model installed, over loopback sockets with keep-alive
connections, as a client on the network would reach it. The quick tests replay
what a probe of the server once turned into 500s; the slow one sends 20,000
generated requests to every route: well-shaped bodies with hostile values put in
any field, and raw bodies that are barely JSON or not at all.

The only 5xx allowed is a registry route's 502 or 504 that says the registry could
not be reached: ``/api/pull`` and ``/api/push`` of a fuzzed name try the registry the
name points at, and no registry answers here (a bad gateway, not a server fault).
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import ollama
import pytest
import trio

from gateway_core._names import InvalidModelName, ModelName

from .helpers import LogWaiter
from .live import LiveServer
from .ollama_setup import install
from .runner.conftest import write_aborting_model

MODEL = "tiny"
"""The model ``served`` installs; the fuzz never deletes or overwrites it."""
SCRATCH = ("fuzz-a", "fuzz/b:v1", "Fuzz-A:latest", "h.example:5000/ns/fuzz-c:t")
"""Names the fuzz may create, copy to and delete."""
SEED = 20_240_611
CASES = 20_000
CONNECTIONS = 4
# What a 5xx generated from a server failure says, even inside a 200 stream.
_FAILURE_MARKS = (b"internal server error", b"details in the server log")
_REGISTRY_ROUTES = ("/api/pull", "/api/push")

Json = Any  # decoded JSON as the generators build it and mutate it in place


@dataclass(frozen=True, slots=True)
class Case:
    method: str
    path: str
    body: bytes | None
    label: str
    """What was made hostile, for the failure report."""


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    body: bytes


def http_client(live: LiveServer, connections: int = 1) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://{live.host}:{live.port}",
        timeout=120,
        limits=httpx.Limits(
            max_connections=connections, max_keepalive_connections=connections
        ),
    )


async def send(http: httpx.AsyncClient, case: Case) -> Outcome:
    headers = {"content-type": "application/json"} if case.body is not None else {}
    reply = await http.request(
        case.method, case.path, content=case.body, headers=headers
    )
    return Outcome(reply.status_code, reply.content)


_UNREACHABLE = (b"cannot reach the registry", b"timed out")


def is_failure(case: Case, outcome: Outcome) -> bool:
    """A 5xx (but a registry route's unreachable registry), or a failure reported
    inside a stream."""
    if (
        outcome.status in (502, 504)
        and case.path in _REGISTRY_ROUTES
        and any(mark in outcome.body for mark in _UNREACHABLE)
    ):
        return False
    return outcome.status >= 500 or any(m in outcome.body for m in _FAILURE_MARKS)


async def chat_works(http: httpx.AsyncClient) -> None:
    """The server still serves an ordinary chat."""
    reply = await http.post(
        "/api/chat",
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "Hello"}],
            "stream": False,
            "options": {"num_predict": 4, "seed": 1},
        },
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["done"] is True


# -- the cases a probe turned into 500s, as quick regression tests ---------------------


def _nested_schema(levels: int) -> Json:
    schema: Json = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def _regressions() -> list[Case]:
    deep = _nested_schema(200)
    user = {"role": "user", "content": "hi"}
    long_host = "h" * 300 + "/ns/m:t"
    bodies: list[tuple[str, str, Json | str]] = [
        # 1. lone surrogates, written as the JSON escapes they must arrive as
        ("POST", "/api/chat", '{"model": "tiny", "messages": [{"role": "user", '
         '"content": "h\\ud800i"}], "options": {"num_predict": 1}}'),
        ("POST", "/api/generate", '{"model": "tiny", "prompt": "\\udc00x"}'),
        ("POST", "/api/embed", '{"model": "tiny", "input": ["\\ud800\\u0041"]}'),
        ("POST", "/v1/completions", '{"model": "tiny", "prompt": "\\udfff"}'),
        ("POST", "/v1/messages", '{"model": "tiny", "max_tokens": 1, "messages": '
         '[{"role": "user", "content": "\\ud800"}]}'),
        # 2. a host longer than any directory name
        ("POST", "/api/show", {"model": long_host}),
        ("POST", "/api/create", {"model": long_host, "from": MODEL}),
        ("POST", "/api/copy", {"source": MODEL, "destination": long_host}),
        ("DELETE", "/api/delete", {"model": long_host}),
        ("POST", "/api/chat", {"model": long_host, "messages": [user]}),
        ("GET", "/v1/models/" + quote(long_host, safe=""), ""),
        # 4. deep nesting in a schema, and anywhere else
        ("POST", "/api/chat", {"model": MODEL, "messages": [user], "format": deep}),
        ("POST", "/v1/chat/completions", {
            "model": MODEL, "messages": [user], "response_format": {
                "type": "json_schema", "json_schema": {"name": "x", "schema": deep}}}),
        ("POST", "/v1/chat/completions", {
            "model": MODEL, "messages": [user], "tools": [
                {"type": "function", "function": {"name": "f", "parameters": deep}}]}),
        ("POST", "/v1/messages", {
            "model": MODEL, "max_tokens": 1, "messages": [user],
            "tools": [{"name": "f", "input_schema": deep}]}),
        ("POST", "/v1/messages", {
            "model": MODEL, "max_tokens": 1, "messages": [user],
            "tools": [{"name": "f", "input_schema": {
                "type": "object", "additionalProperties": _chain(120)}}]}),
        ("POST", "/api/chat", {
            "model": MODEL, "messages": [{**user, "images": _nested_list(300)}]}),
    ]  # fmt: skip
    cases = []
    for method, path, body in bodies:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        cases.append(Case(method, path, data or None, f"{method} {path}"))
    return cases


def _chain(levels: int) -> Json:
    schema: Json = {"type": "string"}
    for _ in range(levels):
        schema = {"not": schema}
    return schema


def _nested_list(levels: int) -> Json:
    value: Json = "x"
    for _ in range(levels):
        value = [value]
    return value


async def test_what_once_gave_500_gets_a_4xx(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    live, _ = served
    async with http_client(live) as http:
        for case in _regressions():
            outcome = await send(http, case)
            assert 400 <= outcome.status < 500, (case.label, outcome)
        await chat_works(http)


def _once_500s() -> list[Case]:
    """500s the fuzz below found, now 400s: a native tool call that is not an
    object used to reach the chat template (its "template error" was a 500), and a
    lone surrogate escaped inside OpenAI's tool call ``arguments`` (JSON in a
    string, which the body's check cannot see) used to reach the tokenizer."""
    tool_call_not_an_object = {
        "model": MODEL,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "", "tool_calls": [1.5]},
        ],
        "stream": False,
    }
    surrogate_in_arguments = {
        "model": MODEL,
        "max_tokens": 1,
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a": "\\ud800"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "2"},
        ],
    }
    return [
        Case("POST", "/api/chat", json.dumps(tool_call_not_an_object).encode(), ""),
        Case(
            "POST",
            "/v1/chat/completions",
            json.dumps(surrogate_in_arguments).encode(),
            "",
        ),
    ]


@pytest.mark.parametrize(
    "case", _once_500s(), ids=["native tool call", "openai arguments"]
)
async def test_the_500s_the_fuzz_found_are_400s(
    served: tuple[LiveServer, ollama.Client], case: Case
) -> None:
    live, _ = served
    async with http_client(live) as http:
        assert (await send(http, case)).status == 400


async def test_a_500_shows_no_path_of_the_machine(
    served: tuple[LiveServer, ollama.Client], tmp_path: Path, logs: LogWaiter
) -> None:
    """A damaged store used to answer with the file it could not read; now the
    client gets what failed and an id, and the log has the path."""
    live, _ = served
    store = tmp_path / "models"
    manifest = store / "manifests/registry.ollama.ai/library" / MODEL / "latest"
    config = json.loads(manifest.read_bytes())["config"]["digest"]
    blob = store / "blobs" / config.replace(":", "-")
    blob.unlink()
    blob.mkdir()  # reading it now fails with "Is a directory: '<its path>'"
    async with http_client(live) as http:
        reply = await http.post("/api/show", json={"model": MODEL})
    assert reply.status_code == 500
    message = reply.json()["error"]
    assert "model 'tiny:latest' is damaged" in message
    assert "Is a directory" in message
    assert str(tmp_path) not in message
    assert "/" not in message.replace("'<path>'", "")
    incident = message.rsplit("(error ", 1)[1].split(";")[0]
    logged = await logs.wait_for(f"error {incident}")
    assert str(blob) in logged


async def test_a_model_that_fails_to_load_shows_no_path(
    served: tuple[LiveServer, ollama.Client], tmp_path: Path, gguf: Path
) -> None:
    live, client = served
    await install(client, "broken", write_aborting_model(gguf, tmp_path / "b.gguf"))
    async with http_client(live) as http:
        reply = await http.post(
            "/api/generate", json={"model": "broken", "prompt": "hi", "stream": False}
        )
    assert reply.status_code == 500
    message = reply.json()["error"]
    assert message.startswith("model 'broken:latest' failed to load: ")
    assert "SIGABRT" in message
    assert str(tmp_path) not in message


# -- generated cases -------------------------------------------------------------------


_LONE_SURROGATES = (
    "\ud800", "h\ud800i", "\udc00x", "\ud800A", "\udfff", "\ude00\ud83d", "x\udbff",
    "\ud83d", "\ud800\ud800",
)  # fmt: skip
_ODD_TEXT = (
    "\x00", "a\x00b", "\x1b[2J\x07", "\r\n\t\x7f\x08", "\u2028\u2029\x85", "\ufeff",
    "\uffff\ufffe", "\U0001f600", "e\u0301", "%00", "%ED%A0%80", "", " ", "\\",
    "{{ .Prompt }}", "{{ range . }}{{ end }}", "{{ template \"x\" }}", "{% for %}",
    "{{", "}}", "<|im_end|>", "</s>", "<tool_call>", "${jndi:ldap://x}",
    "../../../../etc/passwd", "..\\..\\windows\\win.ini", "C:\\Windows", "~root",
    "\\\\server\\share", "/dev/zero", "NaN", "null", "true", "1e999", "-0",
    # JSON inside a string, for fields that hold JSON text (tool call arguments)
    '{"a": "\\ud800"}', '{"\\udc00": 1}', '{"a": [[[[[[[[[[1]]]]]]]]]]}', "{",
)  # fmt: skip
_NUMBERS: tuple[Json, ...] = (
    10**30, -(10**30), 2**63, 2**63 - 1, -(2**63), 2**64, 2**31, -(2**31), 2**53 + 1,
    10**300, 1e308, -1e308, 5e-324, 0, -1, -0.0, 0.5, 1.5, 1e-7, 123456789.123,
)  # fmt: skip
_WRONG_TYPES: tuple[Json, ...] = (None, True, False, [], {}, "", "1", 1, 1.5, ["a"])
_RAW_FRAGMENTS = (
    r"\ud800", r"\udc00x", r"\ud800\u0041", r"\uDFFF", r"\ud800\ud800", r"\uZZZZ",
    r"\u12", r"\x41", "\\", r"\u0000", r"\/", r"\'", "\t", "\x01", "\x7f",
)  # fmt: skip
_RAW_NUMBERS = (
    "1" * 5000, "1e999", "-1e999", "NaN", "Infinity", "-Infinity", "1.0e+", "01",
    "0x10", "+1", ".5", "1.", "--1", "1e-99999", "9" * 400 + ".5",
)  # fmt: skip
_RAW_BYTES = (
    b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xc0\xaf", b"\xff", b"\xfe\xff",
    b"\xf4\x90\x80\x80", b"\x80", b"\xe2\x82", b"\x00",
)  # fmt: skip
_ODD_NAMES = (
    "..", ".", "../m", "a/../../b", "/etc/passwd", "m/..", "ns/../m", "..%2f..%2fetc",
    "C:\\m", "\\\\h\\s\\m", "m\x00", "m:../../x", "./m", "~/m", "m:..", "a/b/c/d",
    "a//b", ":", "m:", ":t", "/", "", " m", "m\u00e9", "m\ud800", "http://h/n/m",
    "ftp://h/n/m", "file:///etc/passwd", "https://h/m", "-m", "_m", "m@sha256:00",
)  # fmt: skip
"""Names that are traversals, schemes, wrong shapes or not ASCII."""
_NAME_FIELDS = frozenset({"model", "name", "source", "destination", "from"})
_TARGET_FIELDS = {
    "/api/create": ("model", "name"),
    "/api/copy": ("destination",),
    "/api/delete": ("model", "name"),
}
"""Fields naming a model a request writes or removes: never the fuzz's MODEL."""


class Hostile:
    """Hostile values, drawn from a seeded random generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def text(self) -> str:
        if self.rng.random() < 0.1:  # long: past a tokenizer's or a log's comfort
            return self.rng.choice("x\u00e9\U0001f600") * self.rng.choice([999, 20_000])
        return self.short_text()

    def short_text(self) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.3:
            return rng.choice(["", "a", "hi "]) + rng.choice(_LONE_SURROGATES)
        if roll < 0.9:
            return rng.choice(_ODD_TEXT) * rng.choice([1, 1, 3])
        return "".join(chr(rng.randrange(0x110000)) for _ in range(8))

    def name(self) -> str:
        rng = self.rng
        match rng.randrange(8):
            case 0:
                return "h" * rng.randint(256, 400) + "/ns/m:t"
            case 1:
                return "https://" + "h" * rng.randint(256, 400) + "/ns/m"
            case 2:
                return rng.choice(
                    ["m" * rng.randint(81, 200), "m:" + "t" * rng.randint(81, 200),
                     "n" * rng.randint(81, 120) + "/m"]
                )  # fmt: skip
            case 3:  # the longest host the store can hold, and Ollama's longest
                return rng.choice(["h" * 255, "h" * 350]) + "/ns/m"
            case 4 | 5:
                return rng.choice(_ODD_NAMES)
            case 6:
                return rng.choice(
                    [MODEL, MODEL.upper() + ":LATEST", "unknown", "ns/unknown:t"]
                )
            case _:
                return rng.choice(SCRATCH)

    def deep(self) -> Json:
        rng = self.rng
        levels = rng.randint(150, 300)
        value: Json = self.leaf()
        shape = rng.choice(["list", "dict", "schema", "mixed"])
        for level in range(levels):
            match shape:
                case "list":
                    value = [value]
                case "dict":
                    value = {"a": value}
                case "schema":
                    value = {"type": "object", "properties": {"a": value}}
                case _:
                    value = [value] if level % 2 else {"x": value}
        return value

    def leaf(self) -> Json:
        return self.rng.choice([self.short_text(), self.rng.choice(_NUMBERS), None])

    def value(self, key: str | int | None = None) -> Json:
        rng = self.rng
        if key in _NAME_FIELDS and rng.random() < 0.6:
            return self.name()
        roll = rng.random()
        if roll < 0.35:
            return self.text()
        if roll < 0.55:
            return rng.choice(_NUMBERS)
        if roll < 0.7:
            # A copy: a later mutation may add to it.
            return copy.deepcopy(rng.choice(_WRONG_TYPES))
        if roll < 0.85:
            return self.deep()
        if roll < 0.9:
            return self.name()
        # Many members, each short: large, but far below the body size limit.
        if roll < 0.95:
            return [self.short_text() for _ in range(rng.choice([3, 300]))]
        return {self.short_text(): self.leaf() for _ in range(rng.choice([3, 300]))}


# Well-shaped bodies, one maker per route. Generation stays cheap: 1-4 tokens.


def _native_options(rng: random.Random) -> Json:
    options: Json = {"num_predict": rng.randint(1, 4), "seed": 1}
    extra = {"temperature": 0.5, "top_k": 20, "top_p": 0.9, "stop": ["\n\n"],
             "repeat_penalty": 1.1, "num_ctx": 2048, "min_p": 0.05}  # fmt: skip
    for key in rng.sample(sorted(extra), rng.randint(0, 3)):
        options[key] = extra[key]
    return options


_SCHEMA: Json = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "array", "items": {}}},
    "required": ["a"],
}
_TOOL: Json = {
    "type": "function",
    "function": {"name": "f", "description": "d", "parameters": _SCHEMA},
}
# The demo model sees no images and does not insert (no suffix): the bodies leave
# those out, so that they get past the capability checks to what comes after.
_TEMPLATE = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"


def _native_messages() -> Json:
    return [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": "",
            "thinking": "hmm",
            "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}],
        },
        {"role": "tool", "content": "2", "tool_name": "f"},
        {"role": "user", "content": "and?"},
    ]


def _generate(rng: random.Random) -> Json:
    body: Json = {
        "model": MODEL,
        "prompt": "hi",
        "stream": rng.random() < 0.3,
        "options": _native_options(rng),
    }
    extra: Json = {"system": "s", "template": _TEMPLATE, "context": [1, 2, 3],
                   "raw": False, "format": rng.choice(["json", _SCHEMA]),
                   "keep_alive": "5m", "think": False, "logprobs": True,
                   "top_logprobs": 2}  # fmt: skip
    for key in rng.sample(sorted(extra), rng.randint(0, 4)):
        body[key] = extra[key]
    return body


def _chat(rng: random.Random) -> Json:
    body: Json = {
        "model": MODEL,
        "messages": _native_messages(),
        "stream": rng.random() < 0.3,
        "options": _native_options(rng),
    }
    extra: Json = {"tools": [_TOOL], "format": rng.choice(["json", _SCHEMA]),
                   "keep_alive": "5m", "think": rng.choice([False, "low"]),
                   "tool_choice": "auto"}  # fmt: skip
    for key in rng.sample(sorted(extra), rng.randint(0, 3)):
        body[key] = extra[key]
    return body


def _openai_messages() -> Json:
    return [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "!"}],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "f", "arguments": '{"a": 1}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "2"},
        {"role": "user", "content": "and?"},
    ]


def _openai_chat(rng: random.Random) -> Json:
    body: Json = {
        "model": MODEL,
        "messages": _openai_messages(),
        "max_tokens": rng.randint(1, 4),
        "seed": 1,
        "stream": rng.random() < 0.3,
    }
    extra: Json = {
        "tools": [_TOOL], "tool_choice": rng.choice(["auto", "none", "required"]),
        "response_format": rng.choice([
            {"type": "json_object"},
            {"type": "json_schema", "json_schema": {"name": "x", "schema": _SCHEMA}},
        ]),
        "stream_options": {"include_usage": True}, "stop": ["\n\n"],
        "temperature": 0.5, "logprobs": True,
        "reasoning_effort": "low", "user": "u",
    }  # fmt: skip
    for key in rng.sample(sorted(extra), rng.randint(0, 4)):
        body[key] = extra[key]
    return body


def _openai_completion(rng: random.Random) -> Json:
    return {
        "model": MODEL,
        "prompt": "hi",
        "max_tokens": rng.randint(1, 4),
        "seed": 1,
        "stream": rng.random() < 0.3,
        "stop": ["\n"],
        "echo": False,
    }


def _anthropic(rng: random.Random, *, count: bool = False) -> Json:
    body: Json = {
        "model": MODEL,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "2"}
                ],
            },
        ],
        "system": rng.choice(["s", [{"type": "text", "text": "s"}]]),
        "tools": [{"name": "f", "description": "d", "input_schema": _SCHEMA}],
        "tool_choice": {"type": "auto"},
        "thinking": {"type": "disabled"},
    }
    if not count:
        body |= {
            "max_tokens": rng.randint(1, 4),
            "stream": rng.random() < 0.3,
            "stop_sequences": ["\n\n"],
            "metadata": {"user_id": "u"},
            "temperature": 0.5,
        }
    return body


def _create(rng: random.Random) -> Json:
    body: Json = {"model": rng.choice(SCRATCH), "stream": False}
    if rng.random() < 0.8:
        body["from"] = MODEL
    else:
        body["files"] = {"m.gguf": "sha256:" + "0" * 64}
    extra: Json = {
        "system": "s", "template": _TEMPLATE, "license": "MIT",
        "parameters": {"temperature": 0.5, "stop": ["x"]},
        "messages": [{"role": "user", "content": "hi"}],
    }  # fmt: skip
    for key in rng.sample(sorted(extra), rng.randint(0, 3)):
        body[key] = extra[key]
    return body


_MAKERS: dict[tuple[str, str], Callable[[random.Random], Json]] = {
    ("POST", "/api/generate"): _generate,
    ("POST", "/api/chat"): _chat,
    ("POST", "/api/embed"): lambda rng: {
        "model": MODEL, "input": ["a", "b"], "truncate": True,
        "options": {"seed": 1}, "dimensions": rng.choice([2, 4]),
    },
    ("POST", "/api/embeddings"): lambda rng: {"model": MODEL, "prompt": "hi"},
    ("POST", "/api/show"): lambda rng: {"model": MODEL, "verbose": rng.random() < 0.5},
    ("POST", "/api/create"): _create,
    ("POST", "/api/copy"): lambda rng: {
        "source": rng.choice([MODEL, *SCRATCH]), "destination": rng.choice(SCRATCH)
    },
    ("DELETE", "/api/delete"): lambda rng: {"model": rng.choice(SCRATCH)},
    ("POST", "/api/pull"): lambda rng: {"model": MODEL, "stream": False},
    ("POST", "/api/push"): lambda rng: {"model": "ns/" + MODEL, "stream": False},
    ("POST", "/v1/chat/completions"): _openai_chat,
    ("POST", "/v1/completions"): _openai_completion,
    ("POST", "/v1/embeddings"): lambda rng: {
        "model": MODEL, "input": ["a", "b"],
        "encoding_format": rng.choice(["float", "base64"]),
    },
    ("POST", "/v1/messages"): _anthropic,
    ("POST", "/v1/messages/count_tokens"): lambda rng: _anthropic(rng, count=True),
}  # fmt: skip


# -- mutations -----------------------------------------------------------------------

_RAW = "@@raw@@"
"""Stands in a string for raw text spliced into the encoded body."""

Where = tuple[str | int, ...]
"""A place in a body: the keys and indexes that lead to it."""

# Every field name the routes know, so a new field is sometimes a real one.
_FIELDS = (
    "model", "prompt", "messages", "options", "format", "tools", "stream", "system",
    "template", "keep_alive", "think", "raw", "images", "context", "suffix",
    "truncate", "dimensions", "input", "max_tokens", "response_format", "stop",
    "num_ctx", "num_predict", "temperature", "seed", "n", "logprobs", "top_logprobs",
    "tool_choice", "thinking", "output_config", "from", "files", "adapters",
    "parameters", "source", "destination", "name", "verbose", "max_completion_tokens",
    "stream_options", "stop_sequences", "metadata",
)  # fmt: skip


_SHALLOW = 12
"""How deep mutations reach: through the shapes the makers build, not into a
deep value a mutation put there (another in it would be too deep to encode)."""


def _places(value: Json, prefix: Where = ()) -> Iterator[Where]:
    """Every place in ``value`` a value sits, in document order, to _SHALLOW."""
    children: Iterator[tuple[str | int, Json]]
    if len(prefix) >= _SHALLOW:
        return
    if isinstance(value, dict):
        children = iter(value.items())
    elif isinstance(value, list):
        children = enumerate(value)
    else:
        return
    for key, child in children:
        yield (*prefix, key)
        yield from _places(child, (*prefix, key))


def _at(body: Json, where: Where) -> Json:
    for key in where:
        body = body[key]
    return body


def _label(where: Where) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in where)[1:]


def mutate(body: Json, hostile: Hostile) -> str:
    """Make one to three places in ``body`` hostile; says which."""
    rng = hostile.rng
    changed = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        places = list(_places(body))
        if not places or rng.random() < 0.15:  # a new field, under a hostile key
            objects = [n for n in [body, *(_at(body, w) for w in places)]
                       if isinstance(n, dict)]  # fmt: skip
            key = hostile.text() if rng.random() < 0.5 else rng.choice(_FIELDS)
            rng.choice(objects)[key] = hostile.value(key)
            changed.append(f"+{key!r:.40}")
            continue
        where = rng.choice(places)
        _at(body, where[:-1])[where[-1]] = hostile.value(where[-1])
        changed.append(_label(where))
    return ", ".join(changed)


def spare_the_model(path: str, body: Json) -> None:
    """Point any write or delete aimed at MODEL at a scratch name instead."""
    if not isinstance(body, dict):
        return
    for field in _TARGET_FIELDS.get(path, ()):
        value = body.get(field)
        if isinstance(value, str) and _is_model(value):
            body[field] = SCRATCH[0]


def _is_model(text: str) -> bool:
    try:
        name = ModelName.parse(text)
    except InvalidModelName:
        return False
    return name.lookup_key == ModelName.parse(MODEL).lookup_key


def encode_raw(body: Json, hostile: Hostile) -> tuple[bytes, str]:
    """The body encoded, then corrupted at the byte level; says how."""
    rng = hostile.rng
    how = rng.choice(["splice", "number", "cut", "bytes", "brackets", "bom"])
    if how in ("splice", "number"):
        places = list(_places(body))
        if places:
            where = rng.choice(places)
            _at(body, where[:-1])[where[-1]] = _RAW
        data = json.dumps(body)
        if how == "splice":
            fragment = rng.choice(_RAW_FRAGMENTS)
            return data.replace(_RAW, fragment).encode(), f"raw {fragment!r}"
        number = rng.choice(_RAW_NUMBERS)
        return data.replace(f'"{_RAW}"', number).encode(), f"raw {number[:20]}"
    data_bytes = json.dumps(body).encode()
    if how == "cut":
        return data_bytes[: rng.randrange(len(data_bytes))], "cut short"
    if how == "bytes":
        at = rng.randrange(len(data_bytes))
        piece = rng.choice(_RAW_BYTES)
        return data_bytes[:at] + piece + data_bytes[at:], f"bytes {piece!r}"
    if how == "brackets":
        levels = rng.choice([129, 300, 1000, 50_000])
        opener = rng.choice([b"[", b'{"a":'])
        closer = b"]" if opener == b"[" else b"}"
        return opener * levels + b"1" + closer * levels, f"{levels} brackets"
    return b"\xef\xbb\xbf" + data_bytes, "BOM"


def _random_bytes(rng: random.Random) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))


def _other_case(rng: random.Random, hostile: Hostile) -> Case:
    """A request without a JSON body: the listings, a model by id, blobs."""
    kind = rng.choice(["list", "model", "blob-head", "blob-post"])
    if kind == "list":
        path = rng.choice(["/", "/api/version", "/api/tags", "/api/ps", "/v1/models"])
        return Case("GET", path, None, "listing")
    if kind == "model":
        name = rng.choice([hostile.name(), hostile.text(), MODEL])
        # Cut to fit a request line (and httpx's limit on a URL).
        encoded = quote(name.encode("utf-8", "surrogatepass"), safe="/:")[:4000]
        return Case("GET", "/v1/models/" + encoded, None, "model id")
    data = _random_bytes(rng)
    digest = rng.choice(
        [
            "sha256:" + hashlib.sha256(data).hexdigest(),
            "sha256-" + "a" * 64,
            "sha256:" + "g" * 64,
            "sha256:" + "0" * 63,
            "sha512:" + "0" * 128,
            "..%2F..%2Fetc%2Fpasswd",
            "sha256:" + "0" * 64 + "%00",
            quote(hostile.text().encode("utf-8", "surrogatepass"), safe="")[:4000],
        ]
    )
    if kind == "blob-head":
        return Case("HEAD", "/api/blobs/" + digest, None, "blob digest")
    return Case("POST", "/api/blobs/" + digest, data, "blob upload")


def generate_cases(seed: int, count: int) -> Iterator[Case]:
    rng = random.Random(seed)
    hostile = Hostile(rng)
    routes = sorted(_MAKERS)
    for _ in range(count):
        roll = rng.random()
        if roll < 0.05:
            yield _other_case(rng, hostile)
            continue
        method, path = rng.choice(routes)
        # A copy: the makers share constants (the schema, the tool), and mutations
        # change a body in place.
        body = copy.deepcopy(_MAKERS[method, path](rng))
        if roll < 0.08:
            yield Case(method, path, _random_bytes(rng), "random bytes")
            continue
        if roll < 0.25:
            data, label = encode_raw(body, hostile)
        else:
            label = mutate(body, hostile)
            spare_the_model(path, body)
            data = json.dumps(body).encode()
        yield Case(method, path, data, label)


@pytest.mark.slow
async def test_twenty_thousand_hostile_requests_get_no_5xx(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    live, _ = served
    cases = generate_cases(SEED, CASES)
    failures: list[tuple[Case, Outcome | str]] = []
    statuses: Counter[int] = Counter()

    async def worker(http: httpx.AsyncClient) -> None:
        for case in cases:  # shared: each case goes to one worker
            try:
                outcome = await send(http, case)
            except httpx.HTTPError as exc:
                failures.append((case, f"{type(exc).__name__}: {exc}"))
                continue
            statuses[outcome.status] += 1
            if is_failure(case, outcome):
                failures.append((case, outcome))

    started = time.perf_counter()
    async with http_client(live, CONNECTIONS) as http:
        async with trio.open_nursery() as nursery:
            for _ in range(CONNECTIONS):
                nursery.start_soon(worker, http)
        elapsed = time.perf_counter() - started
        sent = sum(statuses.values()) + sum(isinstance(f, str) for _, f in failures)
        print(f"\n{sent} hostile requests in {elapsed:.1f} s: {dict(statuses)}")
        assert sent == CASES
        assert not failures, report(failures)
        await chat_works(http)


def report(failures: list[tuple[Case, Outcome | str]]) -> str:
    """How many failed, how many of each kind (route and answer), and a few whole."""
    kinds = Counter(
        f"{c.method} {c.path} -> "
        + (o if isinstance(o, str) else f"{o.status} {o.body[:100]!r}")
        for c, o in failures
    )
    return "\n".join(
        [f"{len(failures)} failed, by kind:"]
        + [f"  {n} x {kind}" for kind, n in kinds.most_common()]
        + ["the first few:"]
        + [
            f"  {c.method} {c.path} [{c.label}] {c.body!r:.300} -> {o!r:.300}"
            for c, o in failures[:5]
        ]
    )
