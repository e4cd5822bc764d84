"""``POST /v1/responses``, ``GET /v1/responses/{id}``, ``DELETE /v1/responses/{id}``.

Creating a response runs the same generation flow as every other API, with the
Responses renderer. When ``store`` is not false, the response is saved before its
last frame goes out (the ``response.completed`` event, or the whole body), so a
client that reads it and at once sends ``previous_response_id`` finds it. A
stored response keeps the conversation as native messages, ending with its own
answer; the next turn's messages are that conversation, then its new input, and
the model sees the whole history while the client sends only what is new.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence

from .._flow import Flow, FlowError, StreamItem, perform
from .._generation import serve_completion
from .._json import JsonValue
from .._model_ops import body_of
from .._replies import JsonReply
from .._request import Request
from ._effects import (
    DropResponse,
    LoadResponse,
    ResponseDropped,
    ResponseLoaded,
    SaveResponse,
)
from ._input import ResponsesCall, responses_call
from ._render import ResponseEcho, ResponsesRenderer
from ._store import StoredResponse

__all__ = ["create_response", "delete_response", "get_response"]

Message = Mapping[str, JsonValue]


def create_response(request: Request) -> Flow:
    call = responses_call(body_of(request))
    history: tuple[JsonValue, ...] = ()
    if call.previous is not None:
        loaded = yield from perform(
            LoadResponse(response_id=call.previous), ResponseLoaded
        )
        if loaded.stored is None:
            raise FlowError(
                404,
                f"Previous response with id '{call.previous}' not found.",
                param="previous_response_id",
            )
        history = loaded.stored.conversation
    turn = _named_results(call.turn, history)
    system: tuple[Message, ...] = ()
    if call.instructions:
        system = ({"role": "system", "content": call.instructions},)
    messages = (*system, *(_message(m) for m in history), *turn)
    completion = dataclasses.replace(call.completion, messages=messages)
    renderer = ResponsesRenderer(_echo(call, request), request.request_id)
    inner = serve_completion(completion, request, renderer=lambda _: renderer)
    saved = not call.store
    sent = None
    try:
        while True:
            try:
                step = inner.send(sent)
            except StopIteration:
                return
            if (
                not saved
                and renderer.response is not None
                and (isinstance(step, StreamItem | JsonReply))
            ):
                saved = True
                stored = StoredResponse(
                    response=renderer.response,
                    conversation=(
                        *history,
                        *(dict(message) for message in turn),
                        _answer(renderer.response),
                    ),
                )
                yield from perform(
                    SaveResponse(response_id=renderer.id, stored=stored),
                    ResponseDropped,
                )
            sent = yield step
    finally:
        inner.close()


def get_response(request: Request) -> Flow:
    response_id = request.param or ""
    loaded = yield from perform(LoadResponse(response_id=response_id), ResponseLoaded)
    if loaded.stored is None:
        raise _not_found(response_id)
    yield JsonReply(value=loaded.stored.response)


def delete_response(request: Request) -> Flow:
    response_id = request.param or ""
    dropped = yield from perform(DropResponse(response_id=response_id), ResponseDropped)
    if not dropped.found:
        raise _not_found(response_id)
    yield JsonReply(value={"id": response_id, "object": "response", "deleted": True})


def _not_found(response_id: str) -> FlowError:
    return FlowError(404, f"Response with id '{response_id}' not found.")


def _echo(call: ResponsesCall, request: Request) -> ResponseEcho:
    completion = call.completion
    return ResponseEcho(
        model=completion.model_text,
        created_at=int(request.timeline.now),
        instructions=call.instructions,
        previous_response_id=call.previous,
        store=call.store,
        metadata=call.metadata,
        tools=call.tools_json,
        tool_choice=call.tool_choice_json,
        text_format=call.text_format,
        reasoning=call.reasoning_json,
        temperature=call.temperature,
        top_p=call.top_p,
        max_output_tokens=call.max_output_tokens,
        parallel_tool_calls=call.parallel_tool_calls,
        truncation="auto" if completion.truncate else "disabled",
        logprobs=completion.logprobs is not None,
    )


def _message(value: JsonValue) -> Message:
    assert isinstance(value, dict)  # the store keeps what this module put there
    return value


def _named_results(
    turn: Sequence[Message], history: Sequence[JsonValue]
) -> tuple[Message, ...]:
    """The turn, its tool results named after calls made in earlier turns (the
    chat translation names only those whose call is in the same request)."""
    names: dict[str, str] = {}
    for earlier in history:
        calls = earlier.get("tool_calls") if isinstance(earlier, dict) else None
        for call in calls if isinstance(calls, list) else []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(call, dict) and isinstance(function, dict):
                names[str(call.get("id"))] = str(function.get("name"))
    named: list[Message] = []
    for message in turn:
        call_id = message.get("tool_call_id")
        if (
            message.get("role") == "tool"
            and "tool_name" not in message
            and isinstance(call_id, str)
            and call_id in names
        ):
            message = {**message, "tool_name": names[call_id]}
        named.append(message)
    return tuple(named)


def _answer(response: Mapping[str, JsonValue]) -> JsonValue:
    """The response's output as one native assistant message, for the next turn."""
    text: list[str] = []
    thinking: list[str] = []
    calls: list[JsonValue] = []
    output = response.get("output")
    for item in output if isinstance(output, list) else []:
        if not isinstance(item, dict):
            continue
        parts = item.get("content")
        parts = parts if isinstance(parts, list) else []
        match item.get("type"):
            case "message":
                text += [str(p.get("text", "")) for p in parts if isinstance(p, dict)]
            case "reasoning":
                thinking += [
                    str(p.get("text", "")) for p in parts if isinstance(p, dict)
                ]
            case "function_call":
                calls.append(
                    {
                        "id": item.get("call_id"),
                        "function": {
                            "name": item.get("name"),
                            "arguments": _arguments(item.get("arguments")),
                        },
                    }
                )
    message: dict[str, JsonValue] = {"role": "assistant", "content": "".join(text)}
    if thinking:
        message["thinking"] = "".join(thinking)
    if calls:
        message["tool_calls"] = calls
    return message


def _arguments(text: JsonValue) -> JsonValue:
    """A call's arguments as an object (a call the token limit cut may not parse:
    then what it holds is lost, not the conversation)."""
    try:
        value = json.loads(str(text or "{}"))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
