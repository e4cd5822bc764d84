"""The proxy flow, driven by scripted upstream answers: what the client gets in
each dialect, remote models, the allow-list, session keys, failures."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from gateway_core import (
    GatewayConfig,
    LookupModel,
    ModelFound,
    ProxyCompletion,
    Result,
    UpstreamBytes,
    UpstreamEnded,
    UpstreamKind,
    UpstreamOpened,
    UpstreamTable,
    WorkEffect,
    WorkFailed,
)

from ..helpers import model_record, run

TABLE = UpstreamTable.from_toml(
    '[[pool]]\nname = "p"\nmodels = ["routed*"]\npolicy = "session"\n'
    '[[pool.upstream]]\nname = "a"\nkind = "ollama"\nurl = "http://a:1"\n'
    'model = "there"\n'
    '[[pool.upstream]]\nname = "b"\nkind = "openai"\nurl = "http://b:1/v1"\n'
)
CONFIG = GatewayConfig(upstreams=TABLE, remote_hosts=("box.lan",))

NATIVE_ANSWER = (
    b'{"message":{"role":"assistant","content":"","thinking":"hm"}}\n'
    b'{"message":{"role":"assistant","content":"Hello"}}\n'
    b'{"message":{"role":"assistant","content":"","tool_calls":[{"function":'
    b'{"name":"get_weather","arguments":{"city":"Paris"}}}]}}\n'
    b'{"message":{"role":"assistant","content":""},"done":true,'
    b'"done_reason":"stop","prompt_eval_count":5,"eval_count":4}\n'
)
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


class Upstream:
    """Answers ``ProxyCompletion`` as an Ollama upstream would, in pieces of
    ``split`` bytes, and notes what it was asked."""

    def __init__(self, answer: bytes = NATIVE_ANSWER, split: int = 7) -> None:
        self.answer, self.split = answer, split
        self.asked: list[ProxyCompletion] = []

    def __call__(self, effect: WorkEffect) -> Sequence[Result]:
        match effect:
            case ProxyCompletion():
                self.asked.append(effect)
                pieces = [
                    self.answer[i : i + self.split]
                    for i in range(0, len(self.answer), self.split)
                ]
                return [
                    UpstreamOpened(upstream="p/a", kind=UpstreamKind.OLLAMA),
                    *(UpstreamBytes(data=piece) for piece in pieces),
                    UpstreamEnded(),
                ]
            case LookupModel():
                remote = dataclasses.replace(
                    model_record("far"),
                    remote_host="http://box.lan:11434",
                    remote_model="qwen3",
                    system="Be brief.",
                    parameters={"temperature": 0.1},
                )
                return [ModelFound(record=remote)]
        raise AssertionError(effect)


def post(path: str, body: dict[str, Any], world: Any, **more: Any) -> Any:
    return run(
        "POST", path, json.dumps(body).encode(), config=CONFIG, world=world, **more
    )


def test_a_routed_chat_in_each_dialect_carries_the_local_name() -> None:
    upstream = Upstream()
    chat = {"model": "routed-x", "messages": [{"role": "user", "content": "Hi"}]}
    whole = post("/api/chat", {**chat, "stream": False, "tools": TOOLS}, upstream)
    body = whole.json()
    assert body["model"] == "routed-x"
    assert body["message"]["content"] == "Hello"
    assert body["message"]["thinking"] == "hm"
    (call,) = body["message"]["tool_calls"]
    assert call["function"]["arguments"] == {"city": "Paris"}
    assert (body["prompt_eval_count"], body["eval_count"]) == (5, 4)
    openai = post("/v1/chat/completions", {**chat, "tools": TOOLS}, upstream).json()
    assert openai["model"] == "routed-x"
    assert openai["choices"][0]["finish_reason"] == "tool_calls"
    claude = post("/v1/messages", {**chat, "max_tokens": 9}, upstream).json()
    assert claude["model"] == "routed-x"
    assert [block["type"] for block in claude["content"]] == [
        "thinking",
        "text",
        "tool_use",
    ]
    # Each dialect of the pool was written once, with the upstream's own names.
    asked = upstream.asked[0]
    there = json.loads(
        asked.requests[(UpstreamKind.OLLAMA, "there", "json_schema")].body
    )
    assert there["model"] == "there"
    same = json.loads(asked.requests[(UpstreamKind.OPENAI, None, "json_schema")].body)
    assert same["model"] == "routed-x"


def test_a_stream_splits_the_same_whatever_the_reads() -> None:
    chat = {"model": "routed-x", "messages": [{"role": "user", "content": "Hi"}]}
    bodies = {
        split: post("/api/chat", chat, Upstream(split=split)).body
        for split in (1, 13, len(NATIVE_ANSWER))
    }

    def contents(body: bytes) -> str:
        lines = [json.loads(line) for line in body.splitlines()]
        return "".join(line["message"]["content"] for line in lines)

    assert {contents(body) for body in bodies.values()} == {"Hello"}


def test_session_keys_come_from_the_header_the_user_or_the_first_messages() -> None:
    upstream = Upstream()
    chat = {"model": "routed", "messages": [{"role": "user", "content": "Hi"}]}
    post("/api/chat", chat, upstream, headers=(("x-session-id", "s1"),))
    post("/v1/chat/completions", {**chat, "user": "ann"}, upstream)
    post("/api/chat", chat, upstream)
    more = [
        {"role": "assistant", "content": "Yo"},
        {"role": "user", "content": "More"},
    ]
    longer = {**chat, "messages": [*chat["messages"], *more]}
    post("/api/chat", longer, upstream)
    keys = [effect.session for effect in upstream.asked]
    assert keys[:2] == ["s1", "user:ann"]
    # A conversation keeps its key as it grows: its first messages stay.
    assert keys[2] is not None
    assert keys[2] == keys[3]


def test_a_remote_model_gets_its_defaults_and_the_allow_list() -> None:
    upstream = Upstream()
    chat = {"model": "far", "messages": [{"role": "user", "content": "Hi"}]}
    answer = post("/api/chat", {**chat, "stream": False}, upstream)
    assert answer.json()["model"] == "far"
    (asked,) = upstream.asked
    ((dialect, request),) = asked.requests.items()
    assert dialect == (UpstreamKind.OLLAMA, "qwen3", "json_schema")
    sent = json.loads(request.body)
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["options"] == {"temperature": 0.1}
    refused = run(
        "POST",
        "/api/chat",
        json.dumps(chat).encode(),
        config=GatewayConfig(),
        world=upstream,
    )
    assert refused.status == 403
    assert "GATEWAY_REMOTES" in refused.json()["error"]  # type: ignore[index]
    assert len(upstream.asked) == 1  # nothing was sent for the refused one


def test_failures_before_and_after_the_answer_starts() -> None:
    chat = {"model": "routed", "messages": [{"role": "user", "content": "Hi"}]}

    def none_available(effect: WorkEffect) -> Sequence[Result]:
        return [WorkFailed(status=503, message="no upstream of pool p is available")]

    before = post("/v1/chat/completions", chat, none_available)
    assert before.status == 503
    assert before.json()["error"]["message"].startswith("no upstream")

    def cut(effect: WorkEffect) -> Sequence[Result]:
        return [
            UpstreamOpened(upstream="p/a", kind=UpstreamKind.OLLAMA),
            # Two whole lines: the stream has started when the upstream fails.
            UpstreamBytes(data=b"".join(NATIVE_ANSWER.splitlines(True)[:2])),
            WorkFailed(status=502, message="upstream p/a failed mid-answer"),
        ]

    after = post("/api/chat", chat, cut)
    assert after.status == 200
    assert b'"Hello"' in after.body
    last = json.loads(after.body.splitlines()[-1])
    assert last["error"] == "upstream p/a failed mid-answer"

    def broken(effect: WorkEffect) -> Sequence[Result]:
        return [
            UpstreamOpened(upstream="p/a", kind=UpstreamKind.OLLAMA),
            UpstreamBytes(data=b'{"error": "model is overloaded"}\n'),
            UpstreamEnded(),
        ]

    failed = post("/api/chat", {**chat, "stream": False}, broken)
    assert failed.status == 502
    assert "model is overloaded" in failed.json()["error"]
