"""The canonical request in each upstream dialect, and their answers read back,
whatever the split of the bytes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_core._completion_request import chat_request, generate_request
from gateway_core._json import JsonValue
from gateway_core._segments import Content, Segment, Thinking, ToolCall, merge_segments
from gateway_core._upstream._requests import upstream_request
from gateway_core._upstream._streams import StreamReader, UpstreamStreamError
from gateway_core._upstream._table import UpstreamKind

TOOLS: list[JsonValue] = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
]

NATIVE = b"".join(
    json.dumps(obj).encode() + b"\n"
    for obj in [
        {
            "model": "m",
            "message": {"role": "assistant", "content": "", "thinking": "hm"},
        },
        {"model": "m", "message": {"role": "assistant", "content": "Hi "}},
        {
            "model": "m",
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "function": {
                            "name": "get_weather",
                            "arguments": {"city": "Paris"},
                        }
                    }
                ],
            },
        },
        {
            "model": "m",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 7,
            "eval_count": 3,
            "eval_duration": 2_000_000_000,
        },
    ]
)

OPENAI = (
    b"".join(
        b"data: " + json.dumps(obj).encode() + b"\n\n"
        for obj in [
            {"choices": [{"index": 0, "delta": {"reasoning_content": "hm"}}]},
            {"choices": [{"index": 0, "delta": {"content": "Hi "}}]},
            {
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "call_1",
                                    "function": {
                                        "name": "get_weather",
                                        "arguments": '{"ci',
                                    },
                                }
                            ]
                        },
                    }
                ]
            },
            {
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {"index": 0, "function": {"arguments": 'ty": "Paris"}'}}
                            ]
                        },
                    }
                ]
            },
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
            {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}},
        ]
    )
    + b"data: [DONE]\n\n"
)


def read(
    data: bytes, cuts: list[int], *, sse: bool
) -> tuple[list[Segment], StreamReader]:
    reader = StreamReader(sse=sse, id_seed="r")
    segments: list[Segment] = []
    points = sorted({c % (len(data) + 1) for c in cuts})
    start = 0
    for point in [*points, len(data)]:
        segments += reader.feed(data[start:point]) if point > start else []
        start = max(start, point)
    segments += reader.close()
    return merge_segments(segments), reader


@pytest.mark.parametrize(("data", "sse"), [(NATIVE, False), (OPENAI, True)])
@given(cuts=st.lists(st.integers(min_value=0), max_size=12))
def test_answers_read_the_same_however_split(
    data: bytes, sse: bool, cuts: list[int]
) -> None:
    segments, reader = read(data, cuts, sse=sse)
    assert segments[:2] == [Thinking(text="hm"), Content(text="Hi ")]
    (call,) = segments[2:]
    assert isinstance(call, ToolCall)
    assert (call.name, dict(call.arguments), call.index) == (
        "get_weather",
        {"city": "Paris"},
        0,
    )
    assert (reader.done_reason, reader.prompt_count, reader.eval_count) == (
        "stop",
        7,
        3,
    )


def test_a_call_the_token_limit_cut_keeps_its_text() -> None:
    data = (
        b'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c",'
        b'"function":{"name":"f","arguments":"{\\"a\\": 1"}}]}}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    segments, reader = read(data, [], sse=True)
    (call,) = segments
    assert isinstance(call, ToolCall)
    assert call.partial == '{"a": 1'
    assert reader.done_reason == "length"


@pytest.mark.parametrize(
    ("data", "sse", "message"),
    [
        (b'{"error": "model not found"}\n', False, "model not found"),
        (b'data: {"error": {"message": "overloaded"}}\n\n', True, "overloaded"),
        (b"not json\n", False, "stream is broken"),
        (b'{"message": {"content": "x"}}\n', False, "ended its answer early"),
        (b"data: [1]\n\n", True, "not an object"),
    ],
)
def test_errors_and_broken_streams_are_errors(
    data: bytes, sse: bool, message: str
) -> None:
    reader = StreamReader(sse=sse, id_seed="r")

    def read_all() -> None:
        reader.feed(data)
        reader.close()

    with pytest.raises(UpstreamStreamError, match=message):
        read_all()


def test_a_line_past_the_bound_is_an_error_not_memory() -> None:
    reader = StreamReader(sse=False, id_seed="r")
    for _ in range(3):
        reader.feed(b"x" * 1024 * 1024)  # 3 MiB: under the bound, held
    with pytest.raises(UpstreamStreamError, match="broken"):
        reader.feed(b"x" * 2 * 1024 * 1024)


CHAT: dict[str, JsonValue] = {
    "model": "local",
    "messages": [
        {"role": "user", "content": "Weather?", "images": ["aGk="]},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "P"}}}
            ],
        },
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    ],
    "tools": TOOLS,
    "tool_choice": "required",
    "format": {"type": "object"},
    "think": "high",
    "options": {"temperature": 0.2, "num_predict": 9, "top_k": 5, "stop": ["x"]},
}


def test_a_chat_in_openai_dialect() -> None:
    wire = upstream_request(chat_request(CHAT), UpstreamKind.OPENAI, "remote-name")
    body = json.loads(wire.body)
    assert wire.path == "/v1/chat/completions"
    assert wire.sse
    assert body["model"] == "remote-name"
    assert body["stream"] is True
    user, assistant, tool = body["messages"]
    assert user["content"][1]["image_url"]["url"].startswith("data:image/")
    call = assistant["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"city": "P"}
    assert tool["tool_call_id"] == call["id"]
    assert body["tool_choice"] == "required"
    assert body["tools"][0]["type"] == "function"
    assert (body["temperature"], body["max_tokens"], body["top_k"]) == (0.2, 9, 5)
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert body["reasoning_effort"] == "high"


def test_a_chat_in_native_dialect_keeps_its_fields() -> None:
    for kind, extension in ((UpstreamKind.OLLAMA, False), (UpstreamKind.GATEWAY, True)):
        wire = upstream_request(chat_request(CHAT), kind)
        body = json.loads(wire.body)
        assert wire.path == "/api/chat"
        assert not wire.sse
        assert body["model"] == "local"
        assert body["messages"] == CHAT["messages"]
        assert body["options"] == CHAT["options"]
        assert body["think"] == "high"
        assert ("tool_choice" in body) is extension


def test_a_generate_in_both_dialects() -> None:
    completion = generate_request({"model": "m", "prompt": "Hi", "system": "Be brief"})
    native = json.loads(upstream_request(completion, UpstreamKind.OLLAMA).body)
    assert (native["prompt"], native["system"]) == ("Hi", "Be brief")
    openai = json.loads(upstream_request(completion, UpstreamKind.OPENAI).body)
    assert openai["messages"] == [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "Hi"},
    ]


def test_a_forced_call_to_ollama_is_forced_by_its_schema() -> None:
    """Ollama's API has no tool_choice: the call's schema goes as ``format``, the
    tools are not offered, and the JSON answer becomes the call."""
    forced = chat_request({**CHAT, "format": None})
    native = json.loads(upstream_request(forced, UpstreamKind.OLLAMA).body)
    assert "tools" not in native
    assert "tool_choice" not in native
    assert native["format"]["properties"]["name"] == {"const": "get_weather"}
    extended = json.loads(upstream_request(forced, UpstreamKind.GATEWAY).body)
    assert extended["tool_choice"] == "required"
    assert extended["tools"] == TOOLS
    assert "format" not in extended
