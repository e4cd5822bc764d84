"""Anthropic's Messages API through the Exchange, with a scripted store and runner:
the translation of requests into the canonical one, the exact bytes of the event
stream, the message body, and errors in Anthropic's envelope.

Tokens are characters (``ord``), so the prompt the model saw can be read back from
the Generate effect, and ``count_tokens`` is the rendered prompt's length.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import pytest

from gateway_core import (
    AcquireRunner,
    CheckSchema,
    GatewayConfig,
    Generate,
    GenerationDone,
    LookupModel,
    ModelFound,
    Piece,
    PromptEvaluated,
    Result,
    RunnerReady,
    SchemaSupported,
    Tokenize,
    TokenizerInfo,
    Tokens,
    WorkEffect,
    WorkFailed,
)
from gateway_core._compat_anthropic_output import (
    MessagesRenderer,
    message_id,
    stop_reason,
)
from gateway_core._compat_anthropic_request import messages_request
from gateway_core._completion_request import NamedTool
from gateway_core._flow import FlowError, Timeline
from gateway_core._json import JsonValue
from gateway_core._passes import Metrics
from gateway_core._request import Request
from gateway_core._routes import Operation

from .helpers import CHATML, NOW, THINKING_TOOLS, Transcript, model_record, run

MODELS = {
    "thinker": model_record("thinker", THINKING_TOOLS),
    "plain": model_record("plain", CHATML),  # neither thinking nor tools
    # A stop string of the model's own (a Modelfile parameter), not the client's.
    "stopper": dataclasses.replace(
        model_record("stopper", CHATML), parameters={"stop": ["<|end|>"]}
    ),
}
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
THINK_TEXT_CALL = [
    b"<think>",
    b"Let me",
    b" see</think>",
    b"Hello",
    b"<tool_call>",
    b'{"name": "get_weather", "arguments": {"city": "Paris"}}',
    b"</tool_call>",
]


class World:
    """The store holds MODELS; the runner says ``free`` to an unconstrained pass and
    ``constrained`` to one with a format, then stops (or ends with ``end``)."""

    def __init__(
        self,
        free: Sequence[bytes] = (b"Hi", b" there"),
        *,
        constrained: Sequence[bytes] = (),
        end: Result | None = None,
    ) -> None:
        self.scripts = {False: free, True: constrained}
        self.end = end or GenerationDone(reason="stop")
        self.generations: list[Generate] = []
        self.tokenized: list[str] = []

    def __call__(self, effect: WorkEffect) -> Sequence[Result]:
        match effect:
            case LookupModel(name=name):
                record = MODELS.get(name.model)
                if record is None:
                    return [WorkFailed(status=404, message="no such model")]
                return [ModelFound(record=record)]
            case AcquireRunner():
                info = TokenizerInfo(context_length=4096, add_bos=False, add_eos=False)
                return [RunnerReady(load_duration=0.0, tokenizer=info)]
            case CheckSchema():
                return [SchemaSupported()]
            case Tokenize(text=text):
                self.tokenized.append(text)
                return [Tokens(ids=tuple(map(ord, text)))]
            case Generate(format=fmt, call_forms=forms):
                self.generations.append(effect)
                script = self.scripts[fmt is not None or forms is not None]
                results: list[Result] = [PromptEvaluated(count=5, duration=0.0)]
                results += [
                    Piece(token=900 + i, data=data, duration=0.0)
                    for i, data in enumerate(script)
                ]
                results.append(self.end)
                return results
        raise AssertionError(effect)

    @property
    def prompt(self) -> str:
        return "".join(map(chr, self.generations[0].prompt))


def post(world: World, path: str = "/v1/messages", /, **fields: object) -> Transcript:
    body: dict[str, object] = {
        "model": "thinker",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Hi"}],
        **fields,
    }
    return run("POST", path, json.dumps(body).encode(), world=world)


def events(t: Transcript) -> list[tuple[str, dict[str, Any]]]:
    """The stream's (event, data) pairs, checking that each event names its type."""
    found = []
    for frame in t.body.decode().split("\n\n"):
        if not frame:
            continue
        name, data = frame.split("\n")
        assert name.startswith("event: "), frame
        assert data.startswith("data: "), frame
        value = json.loads(data.removeprefix("data: "))
        assert value["type"] == name.removeprefix("event: ")
        found.append((value["type"], value))
    return found


def error_of(t: Transcript) -> tuple[int, str, str]:
    body = t.json()
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["request_id"] == "req_test"
    return t.status, body["error"]["type"], body["error"]["message"]


MSG_ID = "msg_f5414c4d18a3199ab9781ba1"


def test_message_ids_are_msg_and_24_hex_digits_of_the_request_id() -> None:
    assert message_id("req_test") == MSG_ID
    assert message_id("req_other") != MSG_ID


# -- the stream, byte for byte ------------------------------------------------------


GOLDEN_STREAM = (
    "event: message_start\n"
    'data: {"type":"message_start","message":{"id":"' + MSG_ID + '",'
    '"type":"message","role":"assistant","model":"thinker","content":[],'
    '"stop_reason":null,"stop_sequence":null,'
    '"usage":{"input_tokens":5,"cache_read_input_tokens":0,"output_tokens":0}}}\n\n'
    "event: content_block_start\n"
    'data: {"type":"content_block_start","index":0,'
    '"content_block":{"type":"thinking","thinking":"","signature":""}}\n\n'
    "event: content_block_delta\n"
    'data: {"type":"content_block_delta","index":0,'
    '"delta":{"type":"thinking_delta","thinking":"Let me"}}\n\n'
    "event: content_block_delta\n"
    'data: {"type":"content_block_delta","index":0,'
    '"delta":{"type":"thinking_delta","thinking":" see"}}\n\n'
    "event: content_block_stop\n"
    'data: {"type":"content_block_stop","index":0}\n\n'
    "event: content_block_start\n"
    'data: {"type":"content_block_start","index":1,'
    '"content_block":{"type":"text","text":""}}\n\n'
    "event: content_block_delta\n"
    'data: {"type":"content_block_delta","index":1,'
    '"delta":{"type":"text_delta","text":"Hello"}}\n\n'
    "event: content_block_stop\n"
    'data: {"type":"content_block_stop","index":1}\n\n'
    "event: content_block_start\n"
    'data: {"type":"content_block_start","index":2,"content_block":'
    '{"type":"tool_use","id":"toolu_ygauk0jh","name":"get_weather","input":{}}}\n\n'
    "event: content_block_delta\n"
    'data: {"type":"content_block_delta","index":2,'
    '"delta":{"type":"input_json_delta","partial_json":"{\\"city\\":\\"Paris\\"}"}}'
    "\n\n"
    "event: content_block_stop\n"
    'data: {"type":"content_block_stop","index":2}\n\n'
    "event: message_delta\n"
    'data: {"type":"message_delta","delta":{"stop_reason":"tool_use",'
    '"stop_sequence":null},"usage":{"input_tokens":5,"cache_read_input_tokens":0,"output_tokens":7}}\n\n'
    "event: message_stop\n"
    'data: {"type":"message_stop"}\n\n'
).encode()


def test_a_stream_of_thinking_text_and_a_tool_call_is_anthropics_event_sequence() -> (
    None
):
    t = post(World(THINK_TEXT_CALL), stream=True, tools=[WEATHER])
    assert t.status == 200
    assert t.header("content-type") == "text/event-stream"
    assert t.body == GOLDEN_STREAM


def test_the_whole_message_carries_the_same_blocks_and_usage() -> None:
    t = post(World(THINK_TEXT_CALL), tools=[WEATHER])
    assert t.status == 200
    assert t.header("content-type") == "application/json; charset=utf-8"
    assert (
        t.body
        == (
            '{"id":"' + MSG_ID + '","type":"message","role":"assistant",'
            '"model":"thinker","content":['
            '{"type":"thinking","thinking":"Let me see","signature":""},'
            '{"type":"text","text":"Hello"},'
            '{"type":"tool_use","id":"toolu_ygauk0jh","name":"get_weather",'
            '"input":{"city":"Paris"}}],'
            '"stop_reason":"tool_use","stop_sequence":null,'
            '"usage":{"input_tokens":5,"cache_read_input_tokens":0,"output_tokens":7}}'
        ).encode()
    )


# -- stop sequences ------------------------------------------------------------------

STOPPED_MID_ANSWER = [b"Hello", b" wor", b"ld END", b" never seen"]


def test_a_requested_stop_sequence_is_named_in_the_whole_message() -> None:
    t = post(World(STOPPED_MID_ANSWER), stop_sequences=["STOP", "END"])
    body: Any = t.json()
    assert body["content"] == [{"type": "text", "text": "Hello world "}]
    assert (body["stop_reason"], body["stop_sequence"]) == ("stop_sequence", "END")


def test_a_requested_stop_sequence_is_named_in_the_streams_message_delta() -> None:
    t = post(World(STOPPED_MID_ANSWER), stream=True, stop_sequences=["END"])
    found = events(t)
    deltas = [value for kind, value in found if kind == "message_delta"]
    assert [d["delta"] for d in deltas] == [
        {"stop_reason": "stop_sequence", "stop_sequence": "END"}
    ]
    text = "".join(
        value["delta"]["text"]
        for kind, value in found
        if kind == "content_block_delta" and value["delta"]["type"] == "text_delta"
    )
    assert text == "Hello world "


def test_without_a_stop_sequence_the_turn_ends_with_end_turn() -> None:
    t = post(World(STOPPED_MID_ANSWER), stop_sequences=["nowhere"])
    body: Any = t.json()
    assert body["content"] == [{"type": "text", "text": "Hello world END never seen"}]
    assert (body["stop_reason"], body["stop_sequence"]) == ("end_turn", None)


def test_the_models_own_stop_string_ends_the_turn_without_being_named() -> None:
    # (A request's stop_sequences replace the model's, as options do in Ollama.)
    world = World([b"Hi", b"<|end|>", b"more"])
    body: Any = post(world, model="stopper").json()
    assert body["content"] == [{"type": "text", "text": "Hi"}]
    assert (body["stop_reason"], body["stop_sequence"]) == ("end_turn", None)


def test_thinking_after_text_opens_a_new_block_instead_of_being_dropped() -> None:
    completion = messages_request(
        {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]}
    )
    request = Request(
        operation=Operation.ANTHROPIC_MESSAGES,
        method="POST",
        path="/v1/messages",
        param=None,
        body={},
        config=GatewayConfig(),
        request_id="r",
        timeline=Timeline(NOW),
    )
    out = MessagesRenderer(completion, request)
    frames = out.opening(Metrics(prompt_count=3))
    frames += out.delta(thinking="", content="One", calls=())
    frames += out.delta(thinking="hmm", content="Two", calls=())
    frames += out.delta(thinking="", content=" more", calls=())
    found = [
        json.loads(line.removeprefix(b"data: "))
        for line in frames.split(b"\n")
        if line.startswith(b"data: ")
    ]
    shown = [
        (e["type"], e["index"], e.get("content_block", e.get("delta", {})).get("type"))
        for e in found[1:]
    ]
    # The reference drops thinking that comes after text; here it is a block.
    assert shown == [
        ("content_block_start", 0, "text"),
        ("content_block_delta", 0, "text_delta"),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, "thinking"),
        ("content_block_delta", 1, "thinking_delta"),
        ("content_block_stop", 1, None),
        ("content_block_start", 2, "text"),
        ("content_block_delta", 2, "text_delta"),
        ("content_block_delta", 2, "text_delta"),
    ]


def test_an_answer_with_nothing_to_say_is_still_a_complete_stream() -> None:
    t = post(World([]), stream=True)
    assert [kind for kind, _ in events(t)] == [
        "message_start",
        "message_delta",
        "message_stop",
    ]


@pytest.mark.parametrize(
    ("end", "expected"),
    [
        (GenerationDone(reason="stop"), "end_turn"),
        (GenerationDone(reason="length"), "max_tokens"),
    ],
)
def test_stop_reasons_map_to_anthropics(end: Result, expected: str) -> None:
    streamed = post(World(end=end), stream=True)
    delta = [e for kind, e in events(streamed) if kind == "message_delta"]
    assert delta[0]["delta"]["stop_reason"] == expected
    whole = post(World(end=end)).json()
    assert isinstance(whole, dict)
    assert whole["stop_reason"] == expected


def test_stop_reason_is_tool_use_whenever_there_is_a_call_not_cut() -> None:
    # The token limit is max_tokens whatever came before it: a cut call is still
    # a tool_use block, and the client must know it is cut.
    assert stop_reason("length", called=True) == "max_tokens"
    assert stop_reason("stop", called=True) == "tool_use"
    assert stop_reason("stop", called=False) == "end_turn"


def test_max_tokens_stops_the_answer_as_num_predict() -> None:
    world = World([b"a", b"b", b"c", b"d"])
    body = post(world, max_tokens=2).json()
    assert isinstance(body, dict)
    assert body["content"] == [{"type": "text", "text": "ab"}]
    assert body["stop_reason"] == "max_tokens"
    assert world.generations[0].sampling.num_predict == 2


def test_a_failure_after_the_first_byte_ends_the_stream_with_an_error_event() -> None:
    world = World([b"Hi"], end=WorkFailed(status=500, message="runner crashed"))
    t = post(world, stream=True)
    assert t.status == 200
    found = events(t)
    assert [kind for kind, _ in found][:4] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "error",
    ]
    assert found[-1] == (
        "error",
        {"type": "error", "error": {"type": "api_error", "message": "runner crashed"}},
    )


def test_a_forced_tool_call_is_a_tool_use_block() -> None:
    world = World(
        [b"never"],
        constrained=[
            b'<tool_call>\n{"name": "get_weather", ',
            b'"arguments": {"city": "Oslo"}}\n</tool_call>',
        ],
    )
    t = post(
        world,
        stream=True,
        tools=[WEATHER],
        tool_choice={"type": "any"},
        thinking={"type": "disabled"},
    )
    found = events(t)
    starts = [e["content_block"] for kind, e in found if kind == "content_block_start"]
    assert starts == [
        {"type": "tool_use", "id": starts[0]["id"], "name": "get_weather", "input": {}}
    ]
    assert starts[0]["id"].startswith("toolu_")
    deltas = [e["delta"] for kind, e in found if kind == "content_block_delta"]
    assert deltas == [{"type": "input_json_delta", "partial_json": '{"city":"Oslo"}'}]
    assert found[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert world.generations[-1].call_forms is not None


# -- errors, in Anthropic's envelope ------------------------------------------------


def test_an_unknown_model_is_a_404_not_found_error() -> None:
    assert error_of(post(World(), model="nobody")) == (
        404,
        "not_found_error",
        "model 'nobody' not found",
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model": ""}, "model is required"),
        ({"max_tokens": 0}, "max_tokens is required and must be positive"),
        ({"max_tokens": None}, "max_tokens is required and must be positive"),
        ({"messages": []}, "messages is required"),
        ({"n": 2}, "field 'n' is not supported by this server"),
        ({"mcp_servers": [{}]}, "field 'mcp_servers' is not supported by this server"),
        (
            {
                "tools": [
                    {"name": "f", "input_schema": {"type": "object", "required": 3}}
                ]
            },
            "invalid input_schema for tool \"f\": 3 is not of type 'array'",
        ),
        (
            {"tools": [{"name": "f", "input_schema": "nope"}]},
            'invalid input_schema for tool "f": it must be a JSON Schema object',
        ),
        (
            {"tools": [{"type": "bash_20250124", "name": "bash"}]},
            'tool type "bash_20250124" is not supported: only tools defined by '
            "name, description and input_schema are",
        ),
        (
            {"tool_choice": {"type": "sometimes"}},
            'tool_choice.type must be "auto", "any", "tool" or "none"',
        ),
        (
            {"thinking": {"type": "maybe"}},
            'thinking.type must be "enabled", "disabled" or "adaptive"',
        ),
        (
            {"output_config": {"effort": "extreme"}},
            'output_config.effort must be "low", "medium", "high", "xhigh" or "max"',
        ),
        ({"stop_sequences": ["ok", 3]}, "stop_sequences must be an array of strings"),
        (
            {"messages": [{"role": "system", "content": "x"}]},
            'messages[0].role must be "user" or "assistant"',
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {"type": "url", "url": "h"}}
                        ],
                    }
                ]
            },
            "invalid image source type: url. Only base64 images are supported.",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "name": "f"}],
                    }
                ]
            },
            "tool_use block missing required 'id' field",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "document"}]}]},
            "messages[0].content[0]: blocks of type 'document' are not supported",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "redacted_thinking"}]}
                ]
            },
            "messages[0].content[0]: redacted_thinking blocks belong in assistant "
            "messages",
        ),
        (
            {"messages": [{"role": "user", "content": []}]},
            "messages have no content to answer",
        ),
    ],
)
def test_bad_requests_are_400_invalid_request_errors(
    fields: dict[str, object], message: str
) -> None:
    world = World()
    assert error_of(post(world, **fields)) == (400, "invalid_request_error", message)
    assert world.generations == []


def test_a_field_of_the_wrong_type_is_refused_before_translation() -> None:
    status, kind, message = error_of(post(World(), max_tokens="many"))
    assert (status, kind) == (400, "invalid_request_error")
    assert "max_tokens" in message


def test_tools_on_a_model_without_tools_are_refused_in_ollamas_words() -> None:
    status, kind, message = error_of(post(World(), model="plain", tools=[WEATHER]))
    assert (status, kind) == (400, "invalid_request_error")
    assert message == "registry.ollama.ai/library/plain:latest does not support tools"


# -- thinking -----------------------------------------------------------------------


def test_thinking_asked_of_a_model_that_cannot_think_is_dropped_not_refused() -> None:
    world = World()
    t = post(world, model="plain", thinking={"type": "enabled", "budget_tokens": 2000})
    assert t.status == 200, t.body
    body = t.json()
    assert isinstance(body, dict)
    assert body["content"] == [{"type": "text", "text": "Hi there"}]
    # The native API refuses the same request: the relaxation is this dialect's.
    native = {"model": "plain", "messages": [{"role": "user", "content": "Hi"}]}
    native["think"] = True  # type: ignore[assignment]
    refused = run("POST", "/api/chat", json.dumps(native).encode(), world=World())
    assert refused.status == 400


def test_thinking_disabled_hides_the_thinking_of_a_thinking_model() -> None:
    world = World([b"<think>", b"secret</think>", b"Answer"])
    body = post(world, thinking={"type": "disabled"}).json()
    assert isinstance(body, dict)
    assert body["content"] == [{"type": "text", "text": "Answer"}]


# -- the translation ----------------------------------------------------------------


def translate(**fields: object) -> Any:
    body: dict[str, Any] = {
        "model": "thinker",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Hi"}],
        **fields,
    }
    return messages_request(body)


def test_sampling_fields_become_native_options() -> None:
    completion = translate(
        temperature=0.2, top_p=0.5, top_k=7, stop_sequences=["END", "STOP"]
    )
    assert completion.options == {
        "num_predict": 64,
        "temperature": 0.2,
        "top_p": 0.5,
        "top_k": 7,
        "stop": ["END", "STOP"],
    }
    assert completion.stream is False
    assert completion.truncate is False


def test_system_as_a_string_or_text_blocks_becomes_the_first_message() -> None:
    assert translate(system="Be brief.").messages[0] == {
        "role": "system",
        "content": "Be brief.",
    }
    blocks = [
        {"type": "text", "text": "You are a helper."},
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
    ]
    assert translate(system=blocks).messages[0] == {
        "role": "system",
        "content": "You are a helper.\n\nBe brief.",
    }


def test_tool_use_and_tool_result_blocks_become_a_native_tool_exchange() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "I should ask.", "signature": "x"},
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Thanks."},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "22°C"}],
                },
                {"type": "image", "source": {"type": "base64", "data": "aW1n"}},
            ],
        },
    ]
    completion = translate(messages=messages)
    assert list(completion.messages) == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "thinking": "I should ask.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                }
            ],
        },
        {
            "role": "tool",
            "content": "22°C",
            "tool_call_id": "toolu_1",
            "tool_name": "get_weather",
        },
        {"role": "user", "content": "Thanks.", "images": ["aW1n"]},
    ]
    assert completion.has_images


def test_tools_become_native_function_tools() -> None:
    completion = translate(tools=[WEATHER])
    assert completion.tools == (
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": WEATHER["input_schema"],
            },
        },
    )


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any", "disable_parallel_tool_use": True}, "required"),
        ({"type": "tool", "name": "get_weather"}, NamedTool("get_weather")),
        ({"type": "none"}, "none"),
    ],
)
def test_tool_choice_maps_to_the_canonical_one(
    choice: dict[str, object], expected: str
) -> None:
    assert translate(tools=[WEATHER], tool_choice=choice).tool_choice == expected


@pytest.mark.parametrize(
    ("thinking", "config", "expected"),
    [
        (None, None, None),
        ({"type": "enabled", "budget_tokens": 1024}, None, True),
        ({"type": "disabled"}, {"effort": "high"}, False),
        ({"type": "enabled"}, {"effort": "low"}, "low"),
        ({"type": "adaptive"}, None, None),
        ({"type": "adaptive"}, {"effort": "xhigh"}, "high"),
        (None, {"effort": "max"}, "max"),
    ],
)
def test_thinking_and_effort_map_to_think(
    thinking: object, config: object, expected: object
) -> None:
    assert translate(thinking=thinking, output_config=config).think == expected


def test_output_config_format_is_structured_output() -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    completion = translate(
        output_config={"format": {"type": "json_schema", "schema": schema}}
    )
    assert completion.format == schema


def test_service_fields_are_accepted_and_context_management_leaves_a_note() -> None:
    notes: list[str] = []
    messages_request(
        {
            "model": "thinker",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "Hi"}],
            "metadata": {"user_id": "u"},
            "service_tier": "auto",
            "context_management": {"edits": []},
        },
        notes=notes,
    )
    assert notes == ["ignoring context_management: this server keeps the whole history"]


def test_count_tokens_needs_no_max_tokens_and_reads_no_sampling_fields() -> None:
    body: dict[str, JsonValue] = {
        "model": "thinker",
        "messages": [{"role": "user", "content": "Hi"}],
    }
    assert messages_request(body, counting=True).options == {}
    same = messages_request({**body, "max_tokens": 0, "top_k": 3}, counting=True)
    assert same.options == {}
    with pytest.raises(FlowError, match="field 'n' is not supported"):
        messages_request({**body, "n": 3}, counting=True)


# -- count_tokens -------------------------------------------------------------------


def test_count_tokens_counts_the_prompt_messages_would_render() -> None:
    world = World()
    counted = post(
        world,
        "/v1/messages/count_tokens",
        system="Be brief.",
        max_tokens=None,
        tools=[WEATHER],
    )
    assert counted.status == 200, counted.body
    assert counted.json() == {"input_tokens": len(world.tokenized[-1])}
    assert world.generations == []
    # The same request to /v1/messages gives the model exactly that prompt.
    answered = World()
    post(answered, system="Be brief.", tools=[WEATHER])
    assert answered.prompt == world.tokenized[-1]
    assert "<|im_start|>system\nBe brief.<|im_end|>" in answered.prompt


def test_count_tokens_for_an_unknown_model_is_a_404() -> None:
    t = post(World(), "/v1/messages/count_tokens", model="nobody", max_tokens=None)
    assert error_of(t) == (404, "not_found_error", "model 'nobody' not found")
