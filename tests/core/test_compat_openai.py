"""OpenAI's endpoints through the Exchange, with a scripted store and runner: the
request mapping (what each field becomes, and what is refused), the exact bytes of
the streams and bodies, embeddings as floats and base64, and the models list."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from gateway_core import (
    AcquireRunner,
    Embed,
    Embedded,
    ListModels,
    LookupModel,
    ModelFound,
    ModelList,
    ModelRecord,
    Result,
    RunnerReady,
    TokenizerInfo,
    WorkEffect,
    WorkFailed,
)
from gateway_core._compat_openai_request import chat_call, text_call
from gateway_core._completion_request import Kind, NamedTool
from gateway_core._flow import FlowError

from .helpers import NOW, Transcript, run
from .test_two_pass import RECORD, Runner

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
            },
        },
    }
]
HI = [{"role": "user", "content": "Hi"}]
BAD_SCHEMA = {"name": "x", "schema": {"type": 3}}
# Thinking, content, then a tool call: the answer every golden test scripts.
SCRIPT = [
    b"<think>hmm</think>",
    b"Hi",
    b'<tool_call>{"name": "get_weather", "arguments": {"city": "Tokyo"}}</tool_call>',
]
CALL_ID = "call_ygauk0jh"  # call_id("req_test", 0): ids derive from the request id


def post(path: str, body: Mapping[str, object], world: Any = None) -> Transcript:
    return run("POST", path, json.dumps(body).encode(), world=world or Runner())


def chat(runner: Runner | None = None, **fields: object) -> Transcript:
    body = {"model": "thinker", "messages": HI, **fields}
    return post("/v1/chat/completions", body, runner)


def error(t: Transcript) -> tuple[int, str, str | None]:
    body = t.json()
    assert isinstance(body, dict), t.body
    assert body["error"]["code"] is None
    return t.status, body["error"]["message"], body["error"]["param"]


# -- golden bytes -------------------------------------------------------------------


# The stream of SCRIPT with include_usage: the role chunk, thinking in both names,
# content, the whole call, the finish chunk, usage, [DONE].
CHAT_STREAM = rb"""data: {"id":"chatcmpl-req_test","object":"chat.completion.chunk","created":1700000000,"model":"thinker","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-req_test","object":"chat.completion.chunk","created":1700000000,"model":"thinker","choices":[{"index":0,"delta":{"reasoning":"hmm","reasoning_content":"hmm"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-req_test","object":"chat.completion.chunk","created":1700000000,"model":"thinker","choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-req_test","object":"chat.completion.chunk","created":1700000000,"model":"thinker","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_ygauk0jh","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Tokyo\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-req_test","object":"chat.completion.chunk","created":1700000000,"model":"thinker","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}

data: {"id":"chatcmpl-req_test","object":"chat.completion.chunk","created":1700000000,"model":"thinker","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8,"prompt_tokens_details":{"cached_tokens":0}}}

data: [DONE]

"""  # noqa: E501


def test_a_streamed_chat_answer_is_exactly_these_events() -> None:
    t = chat(
        Runner(free=SCRIPT),
        tools=TOOLS,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert t.status == 200
    assert t.header("content-type") == "text/event-stream"
    assert t.body == CHAT_STREAM


def test_without_include_usage_chunks_have_no_usage_key_and_no_usage_chunk() -> None:
    t = chat(Runner(free=[b"Hello", b" there"]), stream=True, think=None)
    events = [json.loads(line[6:]) for line in t.body.split(b"\n\n")[:-2]]
    assert t.body.endswith(b"data: [DONE]\n\n")
    assert all("usage" not in event for event in events)
    assert [e["choices"][0]["delta"] for e in events] == [
        {"role": "assistant", "content": ""},
        {"content": "Hello"},
        {"content": " there"},
        {},
    ]
    assert [e["choices"][0]["finish_reason"] for e in events] == [None] * 3 + ["stop"]


def test_a_whole_chat_answer_is_exactly_this_body() -> None:
    t = chat(Runner(free=SCRIPT), tools=TOOLS)
    assert t.status == 200
    assert t.header("content-type") == "application/json; charset=utf-8"
    assert t.body == (
        b'{"id":"chatcmpl-req_test","object":"chat.completion","created":1700000000,'
        b'"model":"thinker","choices":[{"index":0,"message":{"role":"assistant",'
        b'"content":"Hi","reasoning":"hmm","reasoning_content":"hmm","tool_calls":'
        b'[{"index":0,"id":"' + CALL_ID.encode() + b'","type":"function","function":'
        b'{"name":"get_weather","arguments":"{\\"city\\":\\"Tokyo\\"}"}}]},'
        b'"logprobs":null,"finish_reason":"tool_calls"}],'
        b'"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8,"prompt_tokens_details":{"cached_tokens":0}}}'
    )


def test_length_stays_length_even_with_a_call_and_stop_without_one() -> None:
    cut = chat(Runner(free=[b"a", b"b", b"c"]), max_completion_tokens=2).json()
    assert isinstance(cut, dict)
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["choices"][0]["message"]["content"] == "ab"
    done = chat(Runner(free=[b"a"])).json()
    assert isinstance(done, dict)
    assert done["choices"][0]["finish_reason"] == "stop"


def test_an_error_mid_stream_is_an_error_event_then_done() -> None:
    failure = WorkFailed(status=500, message="decode failed")
    t = chat(Runner(free=[b"Hi", failure]), stream=True)
    assert t.status == 200
    events = t.body.split(b"\n\n")
    assert events[-3:] == [
        b'data: {"error":{"message":"decode failed","type":"api_error",'
        b'"param":null,"code":null}}',
        b"data: [DONE]",
        b"",
    ]
    assert b'"finish_reason":"stop"' not in t.body


TEXT_STREAM = rb"""data: {"id":"cmpl-req_test","object":"text_completion","created":1700000000,"model":"thinker","choices":[{"text":"upon","index":0,"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"cmpl-req_test","object":"text_completion","created":1700000000,"model":"thinker","choices":[{"text":"","index":0,"logprobs":null,"finish_reason":"stop"}],"usage":null}

data: {"id":"cmpl-req_test","object":"text_completion","created":1700000000,"model":"thinker","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7,"prompt_tokens_details":{"cached_tokens":0}}}

data: [DONE]

"""  # noqa: E501


def test_a_streamed_text_completion_is_exactly_these_events() -> None:
    """Thinking has no place in a text completion: it is parsed out and dropped
    (with the whitespace after it, as everywhere)."""
    body = {
        "model": "thinker",
        "prompt": "Once",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    t = post("/v1/completions", body, Runner(free=[b"<think>x</think>", b" upon"]))
    assert t.body == TEXT_STREAM


def test_a_whole_text_completion_and_echo() -> None:
    body = {"model": "thinker", "prompt": "Once", "echo": True}
    t = post("/v1/completions", body, Runner(free=[b" upon"]))
    assert t.json() == {
        "id": "cmpl-req_test",
        "object": "text_completion",
        "created": 1700000000,
        "model": "thinker",
        "choices": [
            {"text": "Once upon", "index": 0, "logprobs": None, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": 5,
            "completion_tokens": 1,
            "total_tokens": 6,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }
    streamed = post(
        "/v1/completions", {**body, "stream": True}, Runner(free=[b" upon"])
    )
    texts = [
        json.loads(e[6:])["choices"][0]["text"]
        for e in streamed.body.split(b"\n\n")[:-2]
    ]
    assert texts == ["Once", " upon", ""]


# -- errors -------------------------------------------------------------------------


def test_an_unsupported_field_is_this_exact_400() -> None:
    runner = Runner()
    t = chat(runner, n=2)
    assert t.status == 400
    assert t.body == (
        b'{"error":{"message":"n must be 1: this server returns one choice per '
        b'request","type":"invalid_request_error","param":"n","code":null}}'
    )
    assert runner.generations == []


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"logit_bias": {"50256": -100}}, "logit_bias", "not supported"),
        ({"top_logprobs": 2}, "top_logprobs", "logprobs must be set to true"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "between 0 and 20"),
        ({"options": [1]}, "options", "must be an object"),
        ({"think": "deep"}, "think", "invalid think value"),
        ({"keep_alive": "soon"}, "keep_alive", "keep_alive"),
        ({"functions": [{"name": "f"}]}, "functions", "use tools"),
        ({"audio": {"voice": "alloy"}}, "audio", "not supported"),
        ({"top_k": 5}, "top_k", "Unrecognized request argument supplied: top_k"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "stream"),
        ({"temperature": 2.5}, "temperature", "between 0 and 2"),
        ({"top_p": 1.5}, "top_p", "between 0 and 1"),
        ({"presence_penalty": -3}, "presence_penalty", "between -2 and 2"),
        ({"max_tokens": 0}, "max_tokens", "at least 1"),
        ({"max_tokens": 5, "max_completion_tokens": 6}, "max_tokens", "disagree"),
        ({"num_ctx": 0}, "num_ctx", "at least 1"),
        ({"stop": ["a", ""]}, "stop", "non-empty"),
        ({"reasoning_effort": "huge"}, "reasoning_effort", "invalid reasoning"),
        ({"response_format": {"type": "xml"}}, "response_format", "json_schema"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": 3}}},
            "response_format",
            "must be an object",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": BAD_SCHEMA}},
            "response_format",
            "invalid JSON schema",
        ),
        ({"tool_choice": "required"}, "tool_choice", "no tools were given"),
        ({"tools": [{"type": "custom", "custom": {}}]}, "tools", '"function"'),
        ({"messages": []}, "messages", "non-empty"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "messages", "role"),
        ({"messages": [{"role": "user"}]}, "messages", "content is required"),
        ({"model": ""}, "model", "model parameter"),
    ],
)  # fmt: skip
def test_what_cannot_be_done_as_asked_is_a_400_naming_the_field(
    fields: dict[str, object], param: str, words: str
) -> None:
    runner = Runner()
    status, message, got_param = error(chat(runner, **fields))
    assert (status, got_param) == (400, param)
    assert words in message
    assert runner.generations == []


def test_harmless_values_of_unsupported_fields_and_inert_fields_are_accepted() -> None:
    t = chat(
        Runner(free=[b"ok"]),
        n=1,
        logit_bias={},
        logprobs=False,
        user="u",
        metadata={"a": "b"},
        store=False,
        parallel_tool_calls=True,
        service_tier=None,
    )
    assert t.status == 200, t.body


def test_bad_tool_call_arguments_in_history_are_a_400() -> None:
    messages = [
        *HI,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": '},
                }
            ],
        },
    ]
    status, message, param = error(chat(messages=messages, tools=TOOLS))
    assert (status, param) == (400, "messages")
    assert message.startswith(
        "messages[1].tool_calls[0].function.arguments is not valid JSON: "
    )


def test_an_image_url_on_the_web_is_refused() -> None:
    parts = [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    status, message, _ = error(chat(messages=[{"role": "user", "content": parts}]))
    assert status == 400
    assert "data: URLs" in message


def test_an_unknown_model_is_a_404_not_found_error() -> None:
    def missing(effect: WorkEffect) -> Sequence[Result]:
        assert isinstance(effect, LookupModel)
        return [WorkFailed(status=404, message="no")]

    t = chat(missing)  # type: ignore[arg-type]
    body = t.json()
    assert t.status == 404
    assert body == {
        "error": {
            "message": "model 'thinker' not found",
            "type": "not_found_error",
            "param": None,
            "code": None,
        }
    }


def test_completions_refuse_what_they_cannot_do() -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({"best_of": 3}, "best_of"),
        ({"logprobs": 2}, "logprobs"),
        ({"n": 2}, "n"),
        ({"prompt": ""}, "prompt"),
        ({"echo": True, "suffix": "end"}, "echo"),
        ({"messages": HI}, "messages"),
    ]
    for fields, param in cases:
        body = {"model": "thinker", "prompt": "x", **fields}
        status, _, got = error(post("/v1/completions", body))
        assert (status, got) == (400, param), fields


# -- request mapping ----------------------------------------------------------------


def translate(**fields: Any) -> Any:
    body: dict[str, Any] = {"model": "thinker", "messages": HI, **fields}
    return chat_call(body).completion


def test_only_the_sampling_fields_sent_become_options() -> None:
    assert translate().options is None  # no default temperature or top_p
    assert translate(
        max_completion_tokens=9,
        temperature=0,
        top_p=0.5,
        seed=3,
        frequency_penalty=1,
        presence_penalty=-1,
        stop="END",
        num_ctx=8192,
    ).options == {
        "num_predict": 9,
        "temperature": 0,
        "top_p": 0.5,
        "frequency_penalty": 1,
        "presence_penalty": -1,
        "seed": 3,
        "stop": ["END"],
        "num_ctx": 8192,
    }
    assert translate(max_tokens=4).options == {"num_predict": 4}


def test_ollamas_own_fields_are_extensions_under_the_openai_ones() -> None:
    found = translate(
        keep_alive="10m",
        options={"num_ctx": 8192, "temperature": 0.1, "repeat_penalty": 1.0},
        temperature=0.7,
        think=True,
    )
    # OpenAI's temperature wins over the options'; the rest of the options count.
    assert found.options == {"num_ctx": 8192, "temperature": 0.7, "repeat_penalty": 1.0}
    assert found.keep_alive == 600.0
    assert found.think is True
    # reasoning_effort is OpenAI's own: it wins over think.
    assert translate(think=True, reasoning_effort="none").think is False
    text = text_call(
        {"model": "thinker", "prompt": "x", "keep_alive": 0, "options": {"top_k": 3}}
    ).completion
    assert (text.keep_alive, text.options) == (0.0, {"top_k": 3})


@pytest.mark.parametrize(
    ("fields", "asked"),
    [
        ({}, None),
        ({"logprobs": False}, None),
        ({"logprobs": True}, 0),
        ({"logprobs": True, "top_logprobs": 3}, 3),
    ],
)
def test_logprobs_fields_map_onto_the_generations(
    fields: dict[str, Any], asked: int | None
) -> None:
    assert translate(**fields).logprobs == asked


@pytest.mark.parametrize(
    ("fields", "think"),
    [
        ({}, None),
        ({"reasoning_effort": "none"}, False),
        ({"reasoning_effort": "minimal"}, "low"),
        ({"reasoning_effort": "medium"}, "medium"),
        ({"reasoning_effort": "xhigh"}, "max"),
        ({"reasoning": {"effort": "high", "summary": "auto"}}, "high"),
    ],
)
def test_reasoning_effort_becomes_think(fields: dict[str, Any], think: object) -> None:
    assert translate(**fields).think == think


def test_tool_choice_and_response_format_map_onto_the_canonical_fields() -> None:
    assert translate(tools=TOOLS, tool_choice="required").tool_choice == "required"
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert translate(tools=TOOLS, tool_choice=named).tool_choice == NamedTool(
        "get_weather"
    )
    assert translate(tool_choice="none").tool_choice == "none"
    assert translate(response_format={"type": "json_object"}).format == "json"
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    spec = {"name": "x", "strict": True, "schema": schema}
    found = translate(response_format={"type": "json_schema", "json_schema": spec})
    assert found.format == schema
    assert translate(response_format={"type": "text"}).format is None


PNG = "data:image/png;base64,QUJD"


def test_messages_become_native_messages() -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is"},
                {"type": "image_url", "image_url": {"url": PNG}},
                {"type": "text", "text": "this?"},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "Let me look.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "cold"},
    ]  # fmt: skip
    completion = translate(messages=messages)
    assert completion.kind is Kind.CHAT
    assert completion.has_images
    assert list(completion.messages) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is\nthis?", "images": ["QUJD"]},
        {
            "role": "assistant",
            "content": "",
            "thinking": "Let me look.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "function": {"name": "get_weather", "arguments": {"city": "Oslo"}},
                }
            ],
        },
        {
            "role": "tool",
            "content": "cold",
            "tool_call_id": "call_1",
            "tool_name": "get_weather",
        },
    ]


def test_a_completion_request_is_a_generate_request() -> None:
    call = text_call({"model": "m", "prompt": "def f(", "suffix": "return x"})
    assert call.completion.kind is Kind.GENERATE
    assert (call.completion.prompt, call.completion.suffix) == ("def f(", "return x")
    assert call.completion.options is None
    assert not call.completion.stream
    with pytest.raises(FlowError) as caught:
        text_call({"model": "m"})
    assert caught.value.param == "prompt"


# -- embeddings ---------------------------------------------------------------------

EMBEDDER = ModelRecord(
    name="tiny:latest",
    digest="ab" * 32,
    size=1,
    modified_at=NOW - 50,
    model_file="/m",
    model_digest="sha256:" + "cd" * 32,
)


def embedder(effect: WorkEffect) -> Sequence[Result]:
    match effect:
        case LookupModel(name=name):
            if name.model != "tiny":
                return [WorkFailed(status=404, message="gone")]
            return [ModelFound(record=EMBEDDER)]
        case AcquireRunner():
            info = TokenizerInfo(context_length=64, add_bos=False, add_eos=False)
            return [RunnerReady(load_duration=0.0, tokenizer=info)]
        case Embed(texts=texts):
            return [
                Embedded(
                    vectors=tuple((3.0, 4.0, 0.1 * len(t)) for t in texts),
                    token_counts=tuple(len(t) for t in texts),
                    duration=0.0,
                )
            ]
    raise AssertionError(effect)


def embed(**fields: object) -> Transcript:
    return post("/v1/embeddings", {"model": "tiny", **fields}, embedder)


def test_embeddings_as_floats_and_as_base64_are_the_same_vectors() -> None:
    floats = embed(input=["ab", "abcd"]).json()
    assert isinstance(floats, dict)
    assert floats["object"] == "list"
    assert floats["model"] == "tiny"
    assert floats["usage"] == {"prompt_tokens": 6, "total_tokens": 6}
    assert [d["index"] for d in floats["data"]] == [0, 1]
    assert {d["object"] for d in floats["data"]} == {"embedding"}
    encoded = embed(input=["ab", "abcd"], encoding_format="base64").json()
    assert isinstance(encoded, dict)
    for plain, packed in zip(floats["data"], encoded["data"], strict=True):
        raw = base64.b64decode(packed["embedding"])
        decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
        assert decoded == pytest.approx(plain["embedding"], rel=1e-6)
        assert abs(sum(x * x for x in plain["embedding"]) - 1) < 1e-9


def test_embedding_dimensions_cut_and_renormalize() -> None:
    body = embed(input="abc", dimensions=2).json()
    assert isinstance(body, dict)
    assert body["data"][0]["embedding"] == pytest.approx([0.6, 0.8])


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": []}, "input"),
        ({"input": [1, 2, 3]}, "input"),
        ({}, "input"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x", "truncate": False}, "truncate"),
    ],
)
def test_embedding_requests_that_cannot_be_served_are_400s(
    fields: dict[str, object], param: str
) -> None:
    status, _, got = error(embed(**fields))
    assert (status, got) == (400, param)


def test_an_empty_string_is_one_input_to_embed() -> None:
    body = embed(input="").json()
    assert isinstance(body, dict)
    assert len(body["data"]) == 1


def test_an_unknown_embedding_model_is_a_404() -> None:
    t = post("/v1/embeddings", {"model": "nope", "input": "x"}, embedder)
    body = t.json()
    assert isinstance(body, dict)
    assert (t.status, body["error"]["type"]) == (404, "not_found_error")


# -- models -------------------------------------------------------------------------


def store(effect: WorkEffect) -> Sequence[Result]:
    other = ModelRecord(
        name="team/coder:7b",
        digest="ef" * 32,
        size=1,
        modified_at=NOW,
        model_file="/n",
        model_digest="sha256:" + "01" * 32,
    )
    match effect:
        case ListModels():
            return [ModelList(records=(EMBEDDER, other))]
        case LookupModel(name=name):
            if name.model == "tiny":
                return [ModelFound(record=EMBEDDER)]
            return [WorkFailed(status=404, message="gone")]
    raise AssertionError(effect)


def test_the_models_list_newest_first_and_one_model() -> None:
    listed = run("GET", "/v1/models", world=store)
    assert listed.json() == {
        "object": "list",
        "data": [
            {
                "id": "team/coder:7b",
                "object": "model",
                "created": 1700000000,
                "owned_by": "team",
            },
            {
                "id": "tiny:latest",
                "object": "model",
                "created": 1699999950,
                "owned_by": "library",
            },
        ],
    }
    one = run("GET", "/v1/models/tiny", world=store)
    assert one.json() == {
        "id": "tiny",
        "object": "model",
        "created": 1699999950,
        "owned_by": "library",
    }


def test_an_empty_store_lists_an_empty_array_not_null() -> None:
    assert run("GET", "/v1/models").json() == {"object": "list", "data": []}


@pytest.mark.parametrize(
    ("path", "name"), [("nope", "nope"), ("a/b/c/d", "a/b/c/d"), ("b%20d!", "b d!")]
)
def test_an_unknown_or_impossible_model_is_a_404(path: str, name: str) -> None:
    t = run("GET", f"/v1/models/{path}", world=store)
    assert t.status == 404
    body = t.json()
    assert isinstance(body, dict)
    assert body["error"]["type"] == "not_found_error"
    assert name in body["error"]["message"]


def test_the_record_used_for_the_chat_tests_thinks_and_calls_tools() -> None:
    # The goldens above depend on it: a model without these would answer 400.
    from gateway_core._catalog import capabilities

    assert {"tools", "thinking"} <= set(capabilities(RECORD))
