"""Thinking, tool calls and structured output through the Exchange, with a scripted
runner: the two-pass machine's every transition, the parsers on the output, and the
answers' shapes.

The runner here says what each test scripts, per pass: a free pass (no format) and a
constrained pass (a format) can say different things, as a real constrained runner
would.
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
    Exchange,
    GatewayConfig,
    Generate,
    GenerationDone,
    LookupModel,
    ModelFound,
    Piece,
    PromptEvaluated,
    RequestHead,
    Result,
    RunnerReady,
    SchemaSupported,
    Tokenize,
    TokenizerInfo,
    Tokens,
    Wait,
    WorkEffect,
    WorkFailed,
)
from gateway_core._call_forms import Value
from gateway_core._json import JsonValue
from gateway_core._two_pass import TRANSITIONS, Event, PassPlan, Phase

from .helpers import NOW, THINKING_TOOLS, Transcript, model_record, run

TEMPLATE = THINKING_TOOLS
RECORD = model_record("thinker", TEMPLATE)
SCHEMA = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
}
Script = Sequence[bytes | Result]


class Runner:
    """Answers ``free`` pieces to an unconstrained pass, ``constrained`` pieces to
    one with a format; each script ends with GenerationDone(stop) unless it ends
    with a result of its own."""

    def __init__(self, free: Script = (), constrained: Script = ()) -> None:
        self.scripts = {False: free, True: constrained}
        self.generations: list[Generate] = []

    def __call__(self, effect: WorkEffect) -> Sequence[Result]:
        match effect:
            case LookupModel():
                return [ModelFound(record=RECORD)]
            case AcquireRunner():
                info = TokenizerInfo(context_length=4096, add_bos=False, add_eos=False)
                return [RunnerReady(load_duration=0.0, tokenizer=info)]
            case CheckSchema():
                return [SchemaSupported()]
            case Tokenize(text=text):
                return [Tokens(ids=tuple(map(ord, text)))]
            case Generate(format=fmt, call_forms=forms):
                self.generations.append(effect)
                script = self.scripts[fmt is not None or forms is not None]
                results: list[Result] = [PromptEvaluated(count=5, duration=0.0)]
                for i, item in enumerate(script):
                    if isinstance(item, bytes):
                        results.append(Piece(token=900 + i, data=item, duration=0.0))
                    else:
                        results.append(item)
                if not script or isinstance(script[-1], bytes):
                    results.append(GenerationDone(reason="stop"))
                return results
        raise AssertionError(effect)


def chat(runner: Runner, **fields: object) -> Transcript:
    body: dict[str, object] = {
        "model": "thinker",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": False,
        **fields,
    }
    return run("POST", "/api/chat", json.dumps(body).encode(), world=runner)


def message(t: Transcript) -> dict[str, Any]:
    body = t.json()
    assert isinstance(body, dict), t.body
    found = body["message"]
    assert isinstance(found, dict)
    return found


def test_think_then_constrain_runs_two_passes() -> None:
    runner = Runner(
        free=[b"<think>", b"Let me", b" see</think>", b"junk never shown"],
        constrained=[b'{"ok"', b": true}"],
    )
    t = chat(runner, format=SCHEMA)
    assert t.status == 200, t.body
    first, second = runner.generations
    assert (first.format, second.format) == (None, SCHEMA)
    # Pass 2 continues after the thinking, with the model's own tokens.
    assert second.prompt == (*first.prompt, 900, 901, 902)
    assert message(t) == {
        "role": "assistant",
        "content": '{"ok": true}',
        "thinking": "Let me see",
    }


def test_think_false_constrains_from_the_first_token() -> None:
    runner = Runner(constrained=[b'{"ok": false}'])
    t = chat(runner, format=SCHEMA, think=False)
    assert [g.format for g in runner.generations] == [SCHEMA]
    assert message(t)["content"] == '{"ok": false}'


def test_a_model_that_stops_inside_its_thinking_still_answers() -> None:
    runner = Runner(free=[b"<think>", b"hmm"], constrained=[b'{"ok": true}'])
    t = chat(runner, format="json")
    first, second = runner.generations
    closing = tuple(map(ord, "</think>\n\n"))
    assert second.prompt == (*first.prompt, 900, 901, *closing)
    assert message(t) == {
        "role": "assistant",
        "content": '{"ok": true}',
        "thinking": "hmm",
    }


def test_length_in_pass_1_ends_the_request_with_no_second_pass() -> None:
    runner = Runner(free=[b"<think>", b"a", b"b", b"c"])
    t = chat(runner, format=SCHEMA, options={"num_predict": 3})
    assert len(runner.generations) == 1
    body = t.json()
    assert isinstance(body, dict)
    assert body["done_reason"] == "length"
    assert message(t)["content"] == ""


def test_an_error_in_either_pass_becomes_the_answer() -> None:
    failure = WorkFailed(status=500, message="decode failed")
    for runner in (
        Runner(free=[b"<think>", failure]),
        Runner(free=[b"<think>x</think>"], constrained=[b"{", failure]),
    ):
        t = chat(runner, format=SCHEMA)
        assert (t.status, t.json()) == (500, {"error": "decode failed"})


def test_an_unenforceable_schema_is_a_400_from_the_runner() -> None:
    refused = WorkFailed(status=400, message="the schema uses 'not', unsupported")
    t = chat(Runner(constrained=[refused]), format=SCHEMA, think=False)
    assert (t.status, t.json()) == (400, {"error": refused.message})


def test_an_answer_the_schema_rejects_is_an_error_not_a_wrong_answer() -> None:
    t = chat(Runner(constrained=[b'{"ok": "yes"}']), format=SCHEMA, think=False)
    assert t.status == 500
    assert "does not match the schema" in str(t.json())


def test_a_bad_format_is_a_400_before_any_work() -> None:
    for fmt, message_text in [
        ("xml", 'invalid format: "xml"'),
        ({"type": 12}, "invalid JSON schema in format"),
    ]:
        runner = Runner()
        t = chat(runner, format=fmt)
        assert t.status == 400
        assert message_text in str(t.json())
        assert runner.generations == []


def test_streaming_two_passes_is_one_continuous_stream() -> None:
    runner = Runner(
        free=[b"<think>idea", b"</think>"], constrained=[b'{"ok": ', b"true}"]
    )
    t = chat(runner, format=SCHEMA, stream=True)
    lines = [json.loads(line) for line in t.body.splitlines()]
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]
    thinking = "".join(line["message"].get("thinking", "") for line in lines)
    content = "".join(line["message"]["content"] for line in lines)
    assert (thinking, content) == ("idea", '{"ok": true}')


def test_thinking_is_parsed_out_and_hidden_when_think_is_false() -> None:
    runner = Runner(free=[b"<think>secret</think>", b"Answer"])
    shown = chat(runner)
    assert message(shown) == {
        "role": "assistant",
        "content": "Answer",
        "thinking": "secret",
    }
    hidden = chat(Runner(free=[b"<think>secret</think>", b"Answer"]), think=False)
    assert message(hidden) == {"role": "assistant", "content": "Answer"}


def test_tool_calls_come_back_with_ids_and_bad_ones_as_content() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather"}}]
    runner = Runner(
        free=[
            b'<tool_call>{"name": "get_weather", ',
            b'"arguments": {"city": "Tokyo"}}</tool_call>',
        ]
    )
    t = chat(runner, tools=tools, think=False)
    (call,) = message(t)["tool_calls"]
    assert call["function"] == {
        "index": 0,
        "name": "get_weather",
        "arguments": {"city": "Tokyo"},
    }
    assert call["id"].startswith("call_")
    broken = chat(Runner(free=[b"<tool_call>{not json</tool_call>"]), tools=tools)
    assert message(broken)["content"] == "<tool_call>{not json</tool_call>"


def test_a_forced_tool_call_is_constrained_and_returned_as_a_call() -> None:
    parameters: dict[str, JsonValue] = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
    }
    tools = [
        {"type": "function", "function": {"name": "add", "parameters": parameters}}
    ]
    # The model's template writes calls in <tool_call> tags: so does the forced one.
    written = b'<tool_call>\n{"name":"add","arguments":{"a":2}}\n</tool_call>'
    runner = Runner(constrained=[written])
    choice = {"type": "function", "function": {"name": "add"}}
    t = chat(runner, tools=tools, tool_choice=choice, think=False)
    (generation,) = runner.generations
    assert generation.format is None
    assert generation.call_forms is not None
    assert generation.call_forms.names == ("add",)
    (form,) = generation.call_forms.forms
    assert Value(parameters) in form
    found = message(t)
    assert found["content"] == ""
    (call,) = found["tool_calls"]
    assert call["function"] == {"index": 0, "name": "add", "arguments": {"a": 2}}


def test_tool_choice_none_offers_no_tools_and_parses_none() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather"}}]
    text = b'<tool_call>{"name": "get_weather", "arguments": {}}</tool_call>'
    t = chat(Runner(free=[text]), tools=tools, tool_choice="none", think=False)
    assert message(t) == {"role": "assistant", "content": text.decode()}


def test_a_named_tool_that_was_not_offered_is_a_400() -> None:
    tools = [{"type": "function", "function": {"name": "add"}}]
    choice = {"function": {"name": "sub"}}
    t = chat(Runner(), tools=tools, tool_choice=choice)
    assert (t.status, t.json()) == (
        400,
        {"error": "tool_choice names no offered tool: sub"},
    )


def test_a_cancellation_between_the_passes_ends_everything() -> None:
    runner = Runner(free=[b"<think>x</think>"], constrained=[b"{}"])
    body = {"model": "thinker", "messages": [], "format": "json", "stream": True}
    body["messages"] = [{"role": "user", "content": "Hi"}]
    data = json.dumps(body).encode()
    exchange = Exchange(
        RequestHead(
            method="POST",
            target="/api/chat",
            headers=(("content-length", str(len(data))),),
        ),
        config=GatewayConfig(),
        request_id="r",
    )
    exchange.receive_body(data)
    exchange.end_body()
    generations = 0
    results: list[Result] = []
    while True:
        effect = exchange.next_effect()
        if effect is Wait.NEED_RESULT:
            exchange.receive_result(results.pop(0), now=NOW)
        elif isinstance(effect, Generate):
            generations += 1
            if generations == 2:
                break  # pass 2 handed out; the client leaves before it runs
            results = list(runner(effect))
        elif isinstance(effect, LookupModel | AcquireRunner | Tokenize):
            results = list(runner(effect))
        else:
            assert not isinstance(effect, Wait), effect  # response bytes: sent
    exchange.abort("client disconnected")
    assert exchange.next_effect() is Wait.FINISHED
    assert exchange.outstanding is None


FAIL = WorkFailed(status=500, message="x")
JSON = b'{"ok": true}'
SCENARIOS: list[tuple[Runner, dict[str, object]]] = [
    (Runner(free=[b"<think>a</think>"], constrained=[JSON]), {"format": SCHEMA}),
    (Runner(free=[b"<think>a"], constrained=[JSON]), {"format": SCHEMA}),
    (
        Runner(free=[b"<think>", b"a", b"b"]),
        {"format": SCHEMA, "options": {"num_predict": 2}},
    ),
    (Runner(free=[b"<think>", FAIL]), {"format": SCHEMA}),
    (
        Runner(free=[b"<think>a</think>"], constrained=[b"{", b" ", b" "]),
        {"format": SCHEMA, "options": {"num_predict": 3}},
    ),
    (Runner(free=[b"<think>a</think>"], constrained=[FAIL]), {"format": SCHEMA}),
    (Runner(free=[b"plain"]), {}),
    (Runner(free=[b"a", b"b", b"c"]), {"options": {"num_predict": 2}}),
    (Runner(free=[FAIL]), {}),
]


def test_the_scenarios_walk_every_transition_of_the_two_pass_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    walked: set[tuple[Phase, Event]] = set()
    original = PassPlan.on

    def recording(plan: PassPlan, event: Event) -> Phase:
        walked.add((plan.phase, event))
        return original(plan, event)

    monkeypatch.setattr(PassPlan, "on", recording)
    for runner, fields in SCENARIOS:
        chat(runner, **fields)
    assert walked == set(TRANSITIONS)


@pytest.mark.parametrize("path", ["/api/generate", "/api/chat"])
def test_generate_also_thinks_then_constrains(path: str) -> None:
    runner = Runner(free=[b"<think>x</think>"], constrained=[b'{"ok": true}'])
    body: dict[str, object] = {"model": "thinker", "format": SCHEMA, "stream": False}
    if path == "/api/generate":
        body["prompt"] = "Hi"
    else:
        body["messages"] = [{"role": "user", "content": "Hi"}]
    t = run("POST", path, json.dumps(body).encode(), world=runner)
    assert len(runner.generations) == 2, t.body


def test_a_forced_call_cut_short_by_the_limit_is_still_the_call() -> None:
    """The tool its name begins to name, the arguments as far as they got, and
    done_reason saying it was cut: a client that required a call gets one."""
    tools = [{"type": "function", "function": {"name": "add"}}]
    runner = Runner(constrained=[b'<tool_call>\n{"na', b'me":"a'])
    t = chat(
        runner, tools=tools, tool_choice="required", think=False,
        options={"num_predict": 2},
    )  # fmt: skip
    assert t.status == 200
    body = t.json()
    assert isinstance(body, dict)
    assert body["done_reason"] == "length"
    calls = message(t)["tool_calls"]
    assert isinstance(calls, list)
    assert [call["function"] for call in calls] == [
        {"index": 0, "name": "add", "arguments": {}}
    ]


def test_num_predict_counts_both_passes() -> None:
    runner = Runner(free=[b"<think>", b"a", b"</think>"], constrained=[JSON])
    t = chat(runner, format=SCHEMA, options={"num_predict": 3})
    assert len(runner.generations) == 1  # nothing left for a second pass
    body = t.json()
    assert isinstance(body, dict)
    assert (body["done_reason"], body["eval_count"]) == ("length", 3)


def test_a_prompt_that_opens_thinking_continues_after_the_models_close() -> None:
    opened = dataclasses.replace(RECORD, template=TEMPLATE + "<think>\n")

    class Opened(Runner):
        def __call__(self, effect: WorkEffect) -> Sequence[Result]:
            if isinstance(effect, LookupModel):
                return [ModelFound(record=opened)]
            return super().__call__(effect)

    runner = Opened(free=[b"</think>"], constrained=[JSON])
    t = chat(runner, format=SCHEMA)
    assert t.status == 200, t.body
    first, second = runner.generations
    # Empty thinking, but closed by the model: pass 2 goes on after its tag
    # instead of answering inside the open thinking block.
    assert second.prompt == (*first.prompt, 900)


def test_generate_context_is_what_the_model_saw_and_said_last() -> None:
    # Stopped inside its thinking: pass 2's prompt has the closing tag the flow
    # wrote for it, and the context must too.
    runner = Runner(free=[b"<think>x"], constrained=[JSON])
    body = {"model": "thinker", "prompt": "Hi", "format": SCHEMA, "stream": False}
    t = run("POST", "/api/generate", json.dumps(body).encode(), world=runner)
    answer = t.json()
    assert isinstance(answer, dict)
    first, second = runner.generations
    assert len(second.prompt) > len(first.prompt) + 1
    assert answer["context"] == [*second.prompt, 900]


def test_a_tool_named_like_a_keyword_can_still_be_forced() -> None:
    tools = [
        {"type": "function", "function": {"name": "none"}},
        {"type": "function", "function": {"name": "other"}},
    ]
    runner = Runner(constrained=[b'<tool_call>{"name":"none","arguments":{}}'])
    choice = {"type": "function", "function": {"name": "none"}}
    t = chat(runner, tools=tools, tool_choice=choice, think=False)
    (generation,) = runner.generations
    assert generation.call_forms is not None
    assert generation.call_forms.names == ("none",)  # that tool, not the keyword
    (call,) = message(t)["tool_calls"]
    assert call["function"]["name"] == "none"
