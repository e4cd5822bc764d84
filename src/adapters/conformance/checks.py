"""The protocol checks: what any server of these APIs must do, whatever its model says.

Every check holds for Ollama itself as well as for this gateway: statuses and error
envelopes, the framing of streams in the three dialects (read by the core's own
NDJSON and SSE decoders), whole-answer envelopes, model management round trips,
structured output that validates, tool-call shapes when a call is forced, and a
client hanging up mid-stream. None looks at what the words are.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import jsonschema

from .kit import Failed, Skipped, Target, check, expect, expect_status, json_object

__all__: list[str] = []  # the checks register themselves in kit.CHECKS

SHORT = {"num_predict": 8, "seed": 7, "temperature": 0}
HELLO = [{"role": "user", "content": "Say hello."}]
NO_SUCH_MODEL = "conformance-no-such-model:latest"
SCHEMA = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"enum": ["Paris", "Oslo"]}},
        "required": ["city"],
    },
}


def _error_text(body: dict[str, Any], what: str) -> None:
    expect(isinstance(body.get("error"), str), f"{what}: no {{'error': str}}: {body}")


def _openai_error(body: dict[str, Any], what: str) -> None:
    error = body.get("error")
    expect(isinstance(error, dict), f"{what}: no OpenAI error object: {body}")
    assert isinstance(error, dict)
    expect(isinstance(error.get("message"), str), f"{what}: error without message")
    expect(isinstance(error.get("type"), str), f"{what}: error without type")


def _anthropic_error(body: dict[str, Any], what: str) -> None:
    expect(body.get("type") == "error", f"{what}: type is not 'error': {body}")
    error = body.get("error")
    expect(isinstance(error, dict), f"{what}: no Anthropic error object")
    assert isinstance(error, dict)
    expect(isinstance(error.get("type"), str), f"{what}: error without type")
    expect(isinstance(error.get("message"), str), f"{what}: error without message")


# -- basics ---------------------------------------------------------------------------


@check("basics")
def root_says_it_is_running(target: Target) -> None:
    """``GET /`` is 200 ``Ollama is running``: clients probe it."""
    reply = target.client.get("/")
    expect_status(reply, 200, "GET /")
    expect(reply.text == "Ollama is running", f"GET /: {reply.text[:80]!r}")


@check("basics")
def version_is_a_string(target: Target) -> None:
    """``GET /api/version`` is ``{"version": str}``."""
    reply = target.client.get("/api/version")
    expect_status(reply, 200, "GET /api/version")
    expect(isinstance(json_object(reply).get("version"), str), "no version string")


@check("basics")
def tags_list_models_with_their_fields(target: Target) -> None:
    """``GET /api/tags`` lists models with name, model, size, digest, details."""
    reply = target.client.get("/api/tags")
    expect_status(reply, 200, "GET /api/tags")
    models = json_object(reply).get("models")
    expect(isinstance(models, list), "GET /api/tags: no models list")
    assert isinstance(models, list)
    for entry in models:
        for name, kind in (
            ("name", str),
            ("model", str),
            ("size", int),
            ("digest", str),
        ):
            expect(isinstance(entry.get(name), kind), f"model entry {name}: {entry}")
        expect(
            isinstance(entry.get("details"), dict), f"model without details: {entry}"
        )


@check("basics")
def ps_lists_running_models(target: Target) -> None:
    """``GET /api/ps`` is ``{"models": [...]}``."""
    reply = target.client.get("/api/ps")
    expect_status(reply, 200, "GET /api/ps")
    expect(isinstance(json_object(reply).get("models"), list), "no models list")


@check("basics")
def openai_lists_models(target: Target) -> None:
    """``GET /v1/models`` is an OpenAI list of model objects."""
    reply = target.client.get("/v1/models")
    expect_status(reply, 200, "GET /v1/models")
    body = json_object(reply)
    expect(body.get("object") == "list", f"GET /v1/models: {body}")
    for entry in body.get("data", []):
        expect(entry.get("object") == "model", f"not a model object: {entry}")
        expect(isinstance(entry.get("id"), str), f"model without id: {entry}")


# -- errors ---------------------------------------------------------------------------


@check("errors")
def an_unknown_path_is_404(target: Target) -> None:
    """An unknown path is a 404 (Ollama's body there is plain text, so only the
    status is checked)."""
    reply = target.client.get("/api/conformance-no-such-endpoint")
    expect_status(reply, 404, "GET /api/conformance-no-such-endpoint")


@check("errors")
def bad_json_is_a_400_with_an_error(target: Target) -> None:
    """A body that is not JSON is a 400 ``{"error": str}``."""
    reply = target.client.post("/api/chat", content=b"{not json")
    expect_status(reply, 400, "POST /api/chat with bad JSON")
    _error_text(json_object(reply), "POST /api/chat with bad JSON")


@check("errors")
def an_unknown_model_is_a_404_in_every_dialect(target: Target) -> None:
    """A model that is not installed: 404 in the envelope of each API."""
    reply = target.post("/api/chat", {"model": NO_SUCH_MODEL, "messages": HELLO})
    expect_status(reply, 404, "native chat, unknown model")
    _error_text(json_object(reply), "native chat, unknown model")
    reply = target.post(
        "/v1/chat/completions", {"model": NO_SUCH_MODEL, "messages": HELLO}
    )
    expect_status(reply, 404, "OpenAI chat, unknown model")
    _openai_error(json_object(reply), "OpenAI chat, unknown model")
    body = {"model": NO_SUCH_MODEL, "max_tokens": 8, "messages": HELLO}
    reply = target.post("/v1/messages", body, **{"anthropic-version": "2023-06-01"})
    expect_status(reply, 404, "Anthropic messages, unknown model")
    _anthropic_error(json_object(reply), "Anthropic messages, unknown model")
    reply = target.post("/api/show", {"model": NO_SUCH_MODEL})
    expect_status(reply, 404, "show, unknown model")


@check("errors")
def a_bad_field_is_a_400_in_every_dialect(target: Target) -> None:
    """A field of the wrong type: 400 in the envelope of each API."""
    model = target.the_model()
    reply = target.post("/api/chat", {"model": model, "messages": "not a list"})
    expect_status(reply, 400, "native chat, messages not a list")
    _error_text(json_object(reply), "native chat, messages not a list")
    reply = target.post("/v1/chat/completions", {"model": model, "messages": "no"})
    expect_status(reply, 400, "OpenAI chat, messages not a list")
    _openai_error(json_object(reply), "OpenAI chat, messages not a list")
    body = {"model": model, "max_tokens": "eight", "messages": HELLO}
    reply = target.post("/v1/messages", body, **{"anthropic-version": "2023-06-01"})
    expect_status(reply, 400, "Anthropic messages, max_tokens not a number")
    _anthropic_error(json_object(reply), "Anthropic messages, bad max_tokens")


# -- streams and whole answers --------------------------------------------------------


def _ndjson_stream(values: list[Any], what: str) -> dict[str, Any]:
    expect(values, f"{what}: an empty stream")
    expect(all(isinstance(v, dict) for v in values), f"{what}: a line is no object")
    expect("error" not in values[-1], f"{what}: ended with an error: {values[-1]}")
    expect(values[-1].get("done") is True, f"{what}: last line not done: {values[-1]}")
    expect(
        all(v.get("done") is False for v in values[:-1]),
        f"{what}: a line before the last says done",
    )
    final: dict[str, Any] = values[-1]
    expect(isinstance(final.get("done_reason"), str), f"{what}: no done_reason")
    expect(isinstance(final.get("eval_count"), int), f"{what}: no eval_count")
    return final


@check("streams")
def native_streams_are_ndjson_ending_with_done(target: Target) -> None:
    """``/api/generate`` and ``/api/chat`` stream NDJSON objects; only the last
    says ``done``, with ``done_reason`` and the counts."""
    model = target.the_model()
    values = target.ndjson(
        "/api/generate", {"model": model, "prompt": "Hello", "options": SHORT}
    )
    _ndjson_stream(values, "/api/generate")
    expect(
        all(isinstance(v.get("response"), str) for v in values),
        "/api/generate: a line without response",
    )
    values = target.ndjson(
        "/api/chat", {"model": model, "messages": HELLO, "options": SHORT}
    )
    _ndjson_stream(values, "/api/chat")
    for value in values:
        message = value.get("message")
        expect(isinstance(message, dict), f"/api/chat: line without message: {value}")
        expect(message.get("role") == "assistant", f"/api/chat: role {message}")


@check("streams")
def native_whole_answers_are_one_object(target: Target) -> None:
    """``"stream": false`` gives one object, ``done`` and its counts."""
    model = target.the_model()
    body = {"model": model, "prompt": "Hello", "options": SHORT, "stream": False}
    reply = target.post("/api/generate", body)
    expect_status(reply, 200, "/api/generate, whole")
    answer = json_object(reply)
    expect(answer.get("done") is True, f"/api/generate, whole: {answer}")
    expect(isinstance(answer.get("response"), str), "/api/generate: no response")
    expect(isinstance(answer.get("eval_count"), int), "/api/generate: no eval_count")


@check("streams")
def openai_streams_are_sse_chunks_ending_with_done(target: Target) -> None:
    """OpenAI chat streams ``chat.completion.chunk`` events with one id, a
    ``finish_reason``, then ``data: [DONE]``."""
    body = {
        "model": target.the_model(),
        "messages": HELLO,
        "max_tokens": 8,
        "seed": 7,
        "stream": True,
    }
    events = target.sse("/v1/chat/completions", body)
    expect(events, "an empty stream")
    expect(events[-1].data == "[DONE]", f"last event: {events[-1].data[:80]!r}")
    chunks = [json.loads(event.data) for event in events[:-1]]
    expect(chunks, "no chunk before [DONE]")
    for chunk in chunks:
        expect("error" not in chunk, f"an error event: {chunk}")
        expect(chunk.get("object") == "chat.completion.chunk", f"chunk: {chunk}")
    expect(len({c.get("id") for c in chunks}) == 1, "chunks with different ids")
    reasons = [c["choices"][0].get("finish_reason") for c in chunks if c["choices"]]
    expect(reasons[-1] in ("stop", "length"), f"finish_reason {reasons[-1]!r}")


@check("streams")
def openai_whole_completions_have_usage(target: Target) -> None:
    """A whole OpenAI chat completion has its choice, role and usage."""
    body = {"model": target.the_model(), "messages": HELLO, "max_tokens": 8}
    reply = target.post("/v1/chat/completions", body)
    expect_status(reply, 200, "/v1/chat/completions")
    answer = json_object(reply)
    expect(answer.get("object") == "chat.completion", f"object: {answer}")
    (choice,) = answer["choices"]
    expect(choice["message"]["role"] == "assistant", f"role: {choice}")
    usage = answer.get("usage") or {}
    expect(
        usage.get("total_tokens")
        == usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0),
        f"usage does not add up: {usage}",
    )


@check("streams")
def anthropic_streams_come_in_order(target: Target) -> None:
    """Anthropic streams: ``message_start``, blocks opened, delta'd and closed in
    order, ``message_delta`` with a stop reason, ``message_stop``; each event's
    data names its own type."""
    body = {
        "model": target.the_model(),
        "max_tokens": 8,
        "messages": HELLO,
        "stream": True,
    }
    events = target.sse("/v1/messages", body, **{"anthropic-version": "2023-06-01"})
    kinds = [event.event for event in events if event.event != "ping"]
    for event in events:
        data = json.loads(event.data)
        expect(data.get("type") == event.event, f"event {event.event}: data {data}")
    expect(kinds[:1] == ["message_start"], f"first event: {kinds[:1]}")
    expect(kinds[-2:] == ["message_delta", "message_stop"], f"last: {kinds[-2:]}")
    open_block: int | None = None
    for event in events:
        data = json.loads(event.data)
        if event.event == "content_block_start":
            expect(open_block is None, "a block opened inside another")
            open_block = data["index"]
        elif event.event == "content_block_delta":
            expect(data["index"] == open_block, "a delta outside its block")
        elif event.event == "content_block_stop":
            expect(data["index"] == open_block, "a block closed that was not open")
            open_block = None
    expect(open_block is None, "a block never closed")


@check("streams")
def anthropic_whole_messages_have_usage(target: Target) -> None:
    """A whole Anthropic message: role, content blocks, stop reason, usage."""
    body = {"model": target.the_model(), "max_tokens": 8, "messages": HELLO}
    reply = target.post("/v1/messages", body, **{"anthropic-version": "2023-06-01"})
    expect_status(reply, 200, "/v1/messages")
    message = json_object(reply)
    expect(message.get("type") == "message", f"type: {message}")
    expect(message.get("role") == "assistant", f"role: {message}")
    expect(isinstance(message.get("content"), list), "content is not a list")
    expect(message.get("stop_reason") in ("end_turn", "max_tokens"), f"{message}")
    usage = message.get("usage") or {}
    expect(isinstance(usage.get("input_tokens"), int), f"usage: {usage}")
    expect(isinstance(usage.get("output_tokens"), int), f"usage: {usage}")


# -- work -----------------------------------------------------------------------------


@check("work")
def structured_output_validates(target: Target) -> None:
    """``format`` with a JSON schema: the answer parses and validates."""
    body = {
        "model": target.the_model(),
        "messages": [{"role": "user", "content": "Is the sky blue? Answer in JSON."}],
        "format": SCHEMA,
        "stream": False,
        "think": False,
        "options": {"num_predict": 256, "seed": 7, "temperature": 0},
    }
    reply = target.post("/api/chat", body)
    expect_status(reply, 200, "/api/chat with format")
    content = json_object(reply)["message"]["content"]
    try:
        jsonschema.validate(json.loads(content), SCHEMA)
    except (ValueError, jsonschema.ValidationError) as exc:
        raise Failed(f"the answer {content[:120]!r} does not validate: {exc}") from None


@check("work")
def a_forced_openai_tool_call_has_its_shape(target: Target) -> None:
    """``tool_choice: required``: tool calls with an id, the tool's name and JSON
    arguments, and ``finish_reason: tool_calls``."""
    body = {
        "model": target.the_model(),
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [{"type": "function", "function": WEATHER}],
        "tool_choice": "required",
        "reasoning_effort": "none",  # the budget is for the call, not for thinking
        "max_tokens": 256,
        "seed": 1,
        "temperature": 0,  # reproducible: the same answer on every run
    }
    reply = target.post("/v1/chat/completions", body)
    expect_status(reply, 200, "/v1/chat/completions with tools")
    (choice,) = json_object(reply)["choices"]
    calls = choice["message"].get("tool_calls")
    if not calls:
        raise Skipped("no tool call: the server does not enforce tool_choice")
    expect(choice["finish_reason"] == "tool_calls", f"finish: {choice}")
    for call in calls:
        expect(isinstance(call.get("id"), str), f"call without id: {call}")
        expect(call.get("type") == "function", f"call type: {call}")
        expect(call["function"]["name"] == "get_weather", f"name: {call}")
        arguments = json.loads(call["function"]["arguments"])
        expect(isinstance(arguments, dict), f"arguments: {arguments!r}")


@check("work")
def a_forced_anthropic_tool_use_has_its_shape(target: Target) -> None:
    """``tool_choice: any``: a ``tool_use`` block with an id, the tool's name and
    an input object, and ``stop_reason: tool_use``."""
    tool = {
        "name": WEATHER["name"],
        "description": WEATHER["description"],
        "input_schema": WEATHER["parameters"],
    }
    body = {
        "model": target.the_model(),
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Weather in Oslo?"}],
        "tools": [tool],
        "tool_choice": {"type": "any"},
        "thinking": {"type": "disabled"},  # the budget is for the call
        "temperature": 0,  # reproducible: the same answer on every run
    }
    reply = target.post("/v1/messages", body, **{"anthropic-version": "2023-06-01"})
    expect_status(reply, 200, "/v1/messages with tools")
    message = json_object(reply)
    uses = [block for block in message["content"] if block["type"] == "tool_use"]
    if not uses:
        raise Skipped("no tool_use block: the server does not enforce tool_choice")
    expect(message["stop_reason"] == "tool_use", f"stop_reason: {message}")
    for use in uses:
        expect(isinstance(use.get("id"), str), f"tool_use without id: {use}")
        expect(use.get("name") == "get_weather", f"name: {use}")
        expect(isinstance(use.get("input"), dict), f"input: {use}")


@check("work")
def embeddings_have_one_vector_per_input(target: Target) -> None:
    """``/api/embed`` and ``/v1/embeddings``: one vector per input, of one length."""
    model = target.the_model()
    reply = target.post("/api/embed", {"model": model, "input": ["one", "two"]})
    if reply.status_code in (400, 501):
        raise Skipped(f"the model does not embed: {reply.text[:120]}")
    expect_status(reply, 200, "/api/embed")
    vectors = json_object(reply).get("embeddings")
    expect(isinstance(vectors, list) and len(vectors) == 2, f"embeddings: {vectors}")
    assert isinstance(vectors, list)
    expect(len(vectors[0]) == len(vectors[1]) > 0, "vectors of different lengths")
    expect(all(isinstance(x, float) for x in vectors[0]), "a vector of non-floats")
    reply = target.post("/v1/embeddings", {"model": model, "input": ["one", "two"]})
    expect_status(reply, 200, "/v1/embeddings")
    data = json_object(reply).get("data")
    expect(isinstance(data, list), "/v1/embeddings: no data")
    assert isinstance(data, list)
    expect([item.get("index") for item in data] == [0, 1], f"indexes: {data}")


@check("work")
def a_client_hanging_up_mid_stream_frees_the_model(target: Target) -> None:
    """A client that leaves mid-stream does not keep the model generating: the
    next request is answered (on a one-slot server it would wait behind 100,000
    tokens otherwise)."""
    model = target.the_model()
    body = {"model": model, "prompt": "Go on", "options": {"num_predict": 100_000}}
    with target.stream("/api/generate", body) as reply:
        expect_status(reply, 200, "/api/generate, streaming")
        for _ in reply.iter_raw():
            break  # one chunk, then hang up
    after = {"model": model, "prompt": "Hi", "options": SHORT, "stream": False}
    reply = target.post("/api/generate", after)
    expect_status(reply, 200, "/api/generate after a hang-up")
    expect(json_object(reply).get("done") is True, "the next answer did not finish")


# -- models ---------------------------------------------------------------------------


@check("models")
def show_describes_a_model(target: Target) -> None:
    """``/api/show``: details and model_info objects."""
    reply = target.post("/api/show", {"model": target.the_model()})
    expect_status(reply, 200, "/api/show")
    shown = json_object(reply)
    expect(isinstance(shown.get("details"), dict), f"no details: {list(shown)}")
    expect(isinstance(shown.get("model_info"), dict), f"no model_info: {list(shown)}")


@check("models")
def copy_then_delete_round_trips(target: Target) -> None:
    """Copy a model to a new name, see it listed and shown, delete it, see it
    gone; deleting it again is a 404."""
    if not target.write:
        raise Skipped("read-only run: no copy or delete")
    model = target.the_model()
    copy = f"conformance-copy-{secrets.token_hex(4)}:latest"
    reply = target.post("/api/copy", {"source": model, "destination": copy})
    expect_status(reply, 200, "/api/copy")
    try:
        names = {
            m["name"] for m in json_object(target.client.get("/api/tags"))["models"]
        }
        expect(copy in names, f"{copy} not listed after the copy")
        expect_status(target.post("/api/show", {"model": copy}), 200, "show the copy")
    finally:
        reply = target.client.request("DELETE", "/api/delete", json={"model": copy})
    expect_status(reply, 200, "/api/delete")
    names = {m["name"] for m in json_object(target.client.get("/api/tags"))["models"]}
    expect(copy not in names, f"{copy} still listed after the delete")
    reply = target.client.request("DELETE", "/api/delete", json={"model": copy})
    expect_status(reply, 404, "/api/delete of a deleted model")
