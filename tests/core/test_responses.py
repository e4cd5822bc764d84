"""OpenAI's Responses API through the Exchange: request items translated into the
native conversation, the event stream, the Response object, stored responses and
``previous_response_id``, and 400s for what cannot be done as asked. Tokens are
characters, so the prompt the model saw is read back from the Generate effect."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from gateway_core import (
    AcquireRunner,
    CheckSchema,
    DropResponse,
    Generate,
    GenerationDone,
    LoadResponse,
    LookupModel,
    ModelFound,
    Piece,
    PromptEvaluated,
    ResponseDropped,
    ResponseLoaded,
    ResponseStore,
    Result,
    RunnerReady,
    SaveResponse,
    SchemaSupported,
    StoredResponse,
    Tokenize,
    TokenizerInfo,
    Tokens,
    WorkEffect,
)
from gateway_core._responses._input import responses_call

from .helpers import CHATML, THINKING_TOOLS, Transcript, model_record, run

# A template that shows every message's role, content, thinking and calls.
SHOWS_ALL = (
    "{% for m in messages %}[{{ m.role }}]{{ m.content }}"
    "{% if m.thinking %}(thought: {{ m.thinking }}){% endif %}"
    "{% for c in m.tool_calls or [] %}(call {{ c.function.name }} "
    "{{ c.function.arguments | tojson }}){% endfor %}"
    "{% if m.tool_name %}(from {{ m.tool_name }}){% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}[assistant]{% endif %}"
    "{# <think></think> tools <tool_call> #}"
)
TEMPLATES = {"chatml": CHATML, "thinker": THINKING_TOOLS, "shows": SHOWS_ALL}
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


class World:
    """One model per template; the runner says ``script``; the store is real."""

    def __init__(self, script: Sequence[bytes] = (b"Hi", b" there")) -> None:
        self.script = script
        self.store = ResponseStore()
        self.prompts: list[str] = []

    def __call__(self, effect: WorkEffect) -> Sequence[Result]:
        match effect:
            case LookupModel(name=name):
                record = model_record(name.model, TEMPLATES[name.model])
                return [ModelFound(record=record)]
            case AcquireRunner():
                info = TokenizerInfo(context_length=4096, add_bos=False, add_eos=False)
                return [RunnerReady(load_duration=0.0, tokenizer=info)]
            case CheckSchema():
                return [SchemaSupported()]
            case Tokenize(text=text):
                return [Tokens(ids=tuple(map(ord, text)))]
            case Generate():
                self.prompts.append("".join(map(chr, effect.prompt)))
                results: list[Result] = [PromptEvaluated(count=5, duration=0.0)]
                results += [
                    Piece(token=900 + i, data=data, duration=0.0)
                    for i, data in enumerate(self.script)
                ]
                return [*results, GenerationDone(reason="stop")]
            case LoadResponse(response_id=response_id):
                return [ResponseLoaded(stored=self.store.get(response_id))]
            case SaveResponse(response_id=response_id, stored=stored):
                return [ResponseDropped(found=self.store.put(response_id, stored))]
            case DropResponse(response_id=response_id):
                return [ResponseDropped(found=self.store.drop(response_id))]
        raise AssertionError(effect)


def create(world: World, request_id: str = "req_test", **fields: Any) -> Transcript:
    body = {"model": "chatml", "input": "Hi", **fields}
    return run(
        "POST",
        "/v1/responses",
        json.dumps(body).encode(),
        world=world,
        request_id=request_id,
    )


def events(t: Transcript) -> list[dict[str, Any]]:
    found = []
    for frame in t.body.decode().split("\n\n"):
        if not frame:
            continue
        name, data = frame.split("\n")
        value = json.loads(data.removeprefix("data: "))
        assert name == f"event: {value['type']}"
        found.append(value)
    return found


# -- the Response object and its stream ------------------------------------------


def test_a_whole_response_has_its_message_and_usage() -> None:
    t = create(World(), max_output_tokens=50, metadata={"k": "v"})
    assert t.status == 200
    body: Any = t.json()
    assert body["object"] == "response"
    assert body["id"].startswith("resp_")
    assert body["status"] == "completed"
    assert body["metadata"] == {"k": "v"}
    assert body["max_output_tokens"] == 50
    (message,) = body["output"]
    assert message["type"] == "message"
    assert message["content"] == [
        {"type": "output_text", "text": "Hi there", "annotations": []}
    ]
    assert body["usage"]["output_tokens"] == 2
    assert body["usage"]["total_tokens"] == 7


def test_the_stream_is_the_responses_event_sequence() -> None:
    script = [b"<think>", b"hmm</think>", b"Sure", b"<tool_call>",
              b'{"name": "get_weather", "arguments": {"city": "Oslo"}}',
              b"</tool_call>"]  # fmt: skip
    t = create(World(script), model="thinker", stream=True, tools=[WEATHER])
    found = events(t)
    assert [e["sequence_number"] for e in found] == list(range(len(found)))
    assert [e["type"] for e in found] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",  # reasoning
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.output_item.done",
        "response.output_item.added",  # message
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",  # function call
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = found[-1]["response"]
    kinds = [item["type"] for item in final["output"]]
    assert kinds == ["reasoning", "message", "function_call"]
    call = final["output"][2]
    assert (call["name"], json.loads(call["arguments"])) == (
        "get_weather",
        {"city": "Oslo"},
    )
    assert final["output"][0]["content"] == [{"type": "reasoning_text", "text": "hmm"}]


def test_a_cut_answer_is_incomplete() -> None:
    world = World()
    world.script = [b"a"] * 5
    t = create(world, stream=True, max_output_tokens=3)
    last = events(t)[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


# -- stored responses -------------------------------------------------------------


def test_previous_response_id_continues_the_whole_conversation() -> None:
    world = World([b"Paris."])
    asked = [{"role": "user", "content": [{"type": "input_text", "text": "Capital?"}]}]
    first: Any = create(
        world, "req_1", model="shows", instructions="Be brief.", input=asked
    ).json()
    second: Any = create(
        world, "req_2", model="shows", input="And of Italy?",
        previous_response_id=first["id"],
    ).json()  # fmt: skip
    create(
        world, "req_3", model="shows", input="Thanks", previous_response_id=second["id"]
    )
    # The client sent only the new input; the model saw the whole history.
    # Instructions belong to their own turn, as OpenAI specifies.
    assert world.prompts == [
        "[system]Be brief.\n[user]Capital?\n[assistant]",
        "[user]Capital?\n[assistant]Paris.\n[user]And of Italy?\n[assistant]",
        "[user]Capital?\n[assistant]Paris.\n[user]And of Italy?\n[assistant]Paris.\n"
        "[user]Thanks\n[assistant]",
    ]


def test_a_call_and_its_output_round_trip_through_previous_response_id() -> None:
    script = [b"<tool_call>", b'{"name": "get_weather", "arguments": {"city": "Oslo"}}',
              b"</tool_call>"]  # fmt: skip
    world = World(script)
    first: Any = create(world, "req_1", model="shows", tools=[WEATHER]).json()
    (call,) = first["output"]
    assert call["type"] == "function_call"
    output = {
        "type": "function_call_output",
        "call_id": call["call_id"],
        "output": "9C",
    }
    world.script = [b"Cold."]
    create(world, "req_2", model="shows", tools=[WEATHER], input=[output],
           previous_response_id=first["id"])  # fmt: skip
    assert world.prompts[1] == (
        '[user]Hi\n[assistant](call get_weather {"city": "Oslo"})\n'
        "[tool]9C(from get_weather)\n[assistant]"
    )


def test_items_sent_whole_render_the_same_conversation() -> None:
    world = World([b"ok"])
    items = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"type": "reasoning", "summary": [], "content": [
            {"type": "reasoning_text", "text": "use the tool"}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather",
         "arguments": '{"city": "Oslo"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "9C"},
    ]  # fmt: skip
    create(world, model="shows", input=items, tools=[WEATHER])
    assert world.prompts == [
        "[user]Weather in Oslo?\n"
        '[assistant](thought: use the tool)(call get_weather {"city": "Oslo"})\n'
        "[tool]9C(from get_weather)\n[assistant]"
    ]


def test_get_and_delete_a_stored_response() -> None:
    world = World()
    created: Any = create(world).json()
    path = f"/v1/responses/{created['id']}"
    got = run("GET", path, world=world)
    assert got.json() == created
    deleted = run("DELETE", path, world=world)
    assert deleted.json() == {
        "id": created["id"],
        "object": "response",
        "deleted": True,
    }
    gone = run("GET", path, world=world)
    assert gone.status == 404
    assert "not found" in gone.json()["error"]["message"]  # type: ignore[index]


def test_store_false_keeps_nothing() -> None:
    world = World()
    create(world, store=False)
    assert len(world.store) == 0


def test_an_unknown_previous_response_is_a_404_in_openais_envelope() -> None:
    t = create(World(), previous_response_id="resp_gone")
    body: Any = t.json()
    assert t.status == 404
    assert body["error"]["param"] == "previous_response_id"
    assert "resp_gone" in body["error"]["message"]


def test_the_store_is_bounded_by_count_and_bytes() -> None:
    small = StoredResponse(response={"a": 1}, conversation=())
    store = ResponseStore(max_count=2, max_bytes=10_000)
    for name in ("r1", "r2", "r3"):
        assert store.put(name, small)
    assert store.get("r1") is None  # the least recently used went
    assert store.get("r2") is not None  # and r2 is now the most recent
    store.put("r4", small)
    assert (store.get("r3"), len(store)) == (None, 2)
    big = StoredResponse(response={"t": "x" * 6000}, conversation=())
    tight = ResponseStore(max_count=10, max_bytes=10_000)
    assert tight.put("b1", big)
    assert tight.put("b2", big)  # evicts b1: two do not fit
    assert tight.get("b1") is None
    assert tight.bytes <= 10_000
    huge = StoredResponse(response={"t": "x" * 20_000}, conversation=())
    assert not tight.put("h", huge)
    assert tight.get("b2") is not None


# -- what cannot be done as asked ---------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"frequency_penalty": 1}, "frequency_penalty", "Unrecognized"),
        ({"input": []}, "input", "non-empty"),
        ({"input": [{"type": "image_generation_call"}]}, "input", "not supported"),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f",
                     "arguments": "{nope"}]}, "input", "not valid JSON"),
        ({"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
         "input", "input_text"),
        ({"tools": [{"type": "web_search"}]}, "tools", "not supported"),
        ({"tool_choice": "required"}, "tool_choice", "no tools"),
        ({"truncation": "sometimes"}, "truncation", "auto"),
        ({"include": ["file_search_call.results"]}, "include", "not supported"),
        ({"text": {"format": {"type": "xml"}}}, "text", "json_schema"),
        ({"top_logprobs": 30}, "top_logprobs", "between 0 and 20"),
        ({"reasoning": {"effort": "huge"}}, "reasoning", "invalid reasoning"),
        ({"max_output_tokens": 0}, "max_output_tokens", "at least 1"),
    ],
)  # fmt: skip
def test_what_cannot_be_done_is_a_400_naming_the_field(
    fields: dict[str, Any], param: str, words: str
) -> None:
    world = World()
    t = create(world, **fields)
    body: Any = t.json()
    assert t.status == 400, body
    assert body["error"]["param"] == param
    assert words in body["error"]["message"]
    assert world.prompts == []


def test_the_fields_map_onto_the_canonical_request() -> None:
    schema: Any = {"type": "object", "properties": {"a": {"type": "integer"}}}
    call = responses_call(
        {
            "model": "m",
            "input": "x",
            "text": {"format": {"type": "json_schema", "name": "a", "schema": schema}},
            "reasoning": {"effort": "minimal"},
            "temperature": 0.5,
            "max_output_tokens": 9,
            "tool_choice": {"type": "function", "name": "get_weather"},
            "tools": [WEATHER],
            "include": ["message.output_text.logprobs"],
            "top_logprobs": 2,
            "truncation": "auto",
            "options": {"num_ctx": 8192},
        }
    )
    completion = call.completion
    assert completion.format == schema
    assert completion.think == "low"
    assert completion.options == {"num_ctx": 8192, "temperature": 0.5, "num_predict": 9}
    assert completion.tool_choice is not None
    assert completion.logprobs == 2
    assert completion.truncate is True
    function: Any = completion.tools[0]["function"]
    assert function["name"] == "get_weather"


def test_a_streamed_response_is_stored() -> None:
    world = World([b"Hi"])
    t = create(world, stream=True)
    found = events(t)
    final = found[-1]["response"]
    assert found[-1]["type"] == "response.completed"
    stored = world.store.get(final["id"])
    assert stored is not None
    assert stored.response == final
    assert [type(w) for w in t.work][-1] is SaveResponse
