"""A ``POST /v1/responses`` body, translated into the canonical request.

The Responses API says a conversation as *items*: messages (with ``input_text`` /
``output_text`` parts), ``function_call`` and ``function_call_output`` items, and
``reasoning`` items. They are rewritten here as chat-completions messages (an
assistant turn gathers its reasoning, text and calls; a call's output becomes a
``tool`` message) and handed to the chat translation, so both OpenAI routes read
a conversation the same way. ``instructions`` is a system message of this turn
only: as OpenAI specifies, it is not carried to the next response.

Every field is honoured, accepted as inert, or refused with a 400 naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .._compat_openai_ollama import merged_options, ollama_fields
from .._compat_openai_request import (
    at_least_one,
    check_choice_has_tools,
    check_fields,
    checked_schema,
    function_tools,
    model_name,
    number_in_range,
    reasoning_effort,
    translate_messages,
)
from .._completion_request import (
    CompletionRequest,
    Kind,
    NamedTool,
    ToolChoice,
    tool_choice,
    top_logprobs,
)
from .._flow import FlowError
from .._json import JsonValue, loads_strict

__all__ = ["ResponsesCall", "responses_call"]

Message = Mapping[str, JsonValue]

_FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "text",
        "reasoning",
        "max_output_tokens",
        "temperature",
        "top_p",
        "stream",
        "store",
        "metadata",
        "parallel_tool_calls",
        "previous_response_id",
        "include",
        "top_logprobs",
        "truncation",
        "user",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
        "stream_options",
        "keep_alive",
        "options",
    }
)
_LOGPROBS = "message.output_text.logprobs"
_INCLUDABLE = frozenset({_LOGPROBS, "reasoning.encrypted_content"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponsesCall:
    """A Responses request: what to generate, and what to do with the response.

    Attributes:
        completion: the canonical request; its messages are this turn's input
            (with ``instructions`` first), without any earlier response's.
        turn: this turn's input as native messages, without ``instructions``:
            what a stored response keeps for the next turn.
        instructions: the system message of this turn, if any.
        previous: ``previous_response_id``: a stored response whose conversation
            comes before this input.
        store: keep the response for ``GET`` and ``previous_response_id``.
        metadata, tools_json, text_format, tool_choice_json, reasoning_json,
            temperature, top_p, max_output_tokens, parallel_tool_calls: echoed in
            the Response object, as OpenAI does.
    """

    completion: CompletionRequest
    turn: tuple[Message, ...]
    instructions: str | None
    previous: str | None
    store: bool
    metadata: JsonValue
    tools_json: JsonValue
    text_format: JsonValue
    tool_choice_json: JsonValue
    reasoning_json: JsonValue
    temperature: JsonValue
    top_p: JsonValue
    max_output_tokens: JsonValue
    parallel_tool_calls: bool


def responses_call(body: Mapping[str, JsonValue]) -> ResponsesCall:
    """Translate a ``/v1/responses`` body; FlowError 400 naming the field for
    anything this server cannot do as asked."""
    check_fields(body, _FIELDS)
    model_text, model = model_name(body)
    turn = _input(body.get("input"))
    instructions = _text_or_none(body, "instructions")
    messages: tuple[Message, ...] = turn
    if instructions:
        messages = ({"role": "system", "content": instructions}, *turn)
    tools = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"))
    check_choice_has_tools(choice, tools)
    native = ollama_fields(body)
    reasoning = body.get("reasoning")
    think = None
    if isinstance(reasoning, dict):
        think = reasoning_effort(reasoning.get("effort"), "reasoning")
    elif reasoning is not None:
        raise FlowError(400, "reasoning must be an object", param="reasoning")
    # Field types were checked by the route's shape (_shapes) before this runs.
    previous = body.get("previous_response_id")
    assert previous is None or isinstance(previous, str)
    store, stream = body.get("store"), body.get("stream")
    parallel = body.get("parallel_tool_calls")
    text = body.get("text")
    completion = CompletionRequest(
        kind=Kind.CHAT,
        model_text=model_text,
        model=model,
        messages=messages,
        tools=tools,
        tool_choice=choice,
        think=native.think if think is None else think,
        options=merged_options(native.options, _sampling(body)),
        keep_alive=native.keep_alive,
        format=_text_format(text),
        stream=stream is True,
        logprobs=_logprobs(body),
        truncate=_truncation(body.get("truncation")),
    )
    return ResponsesCall(
        completion=completion,
        turn=turn,
        instructions=instructions,
        previous=previous,
        store=store is not False,
        metadata=body.get("metadata"),
        tools_json=body.get("tools") or [],
        text_format=(text or {}).get("format") if isinstance(text, dict) else None,
        tool_choice_json=body.get("tool_choice") or "auto",
        reasoning_json=reasoning,
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        max_output_tokens=body.get("max_output_tokens"),
        parallel_tool_calls=parallel is not False,
    )


def _text_or_none(body: Mapping[str, JsonValue], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise FlowError(400, f"{name} must be a string", param=name)
    return value or None


def _sampling(body: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    """The sampling fields as native options (only those sent), ranges checked as
    on the chat route."""
    options: dict[str, JsonValue] = {}
    for name, low, high in (("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0)):
        value = number_in_range(body, name, low, high)
        if value is not None:
            options[name] = value
    limit = at_least_one(body, "max_output_tokens")
    if limit is not None:
        options["num_predict"] = limit
    return options


def _truncation(value: JsonValue) -> bool:
    """``disabled`` (OpenAI's default): an over-long input is a 400; ``auto``: the
    oldest items go, as the native API drops old messages."""
    if value is None or value == "disabled":
        return False
    if value == "auto":
        return True
    raise FlowError(400, 'truncation must be "auto" or "disabled"', param="truncation")


def _logprobs(body: Mapping[str, JsonValue]) -> int | None:
    include = body.get("include")
    if include is not None:
        if not isinstance(include, list) or not all(
            isinstance(item, str) for item in include
        ):
            raise FlowError(400, "include must be an array of strings", param="include")
        unknown = [item for item in include if item not in _INCLUDABLE]
        if unknown:
            raise FlowError(
                400, f"include: {unknown[0]!r} is not supported", param="include"
            )
    top = top_logprobs(body)
    asked = isinstance(include, list) and _LOGPROBS in include
    return top if asked or top > 0 else None


def _text_format(text: JsonValue) -> JsonValue:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise FlowError(400, "text must be an object", param="text")
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise FlowError(400, "text.format must be an object", param="text")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind != "json_schema":
        raise FlowError(
            400, "text.format.type must be text, json_object or json_schema",
            param="text",
        )  # fmt: skip
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise FlowError(400, "text.format.schema must be an object", param="text")
    return checked_schema(schema, param="text")


def _tools(value: JsonValue) -> tuple[Message, ...]:
    """Responses' flat function tools, in chat's nested shape."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise FlowError(400, "tools must be an array", param="tools")
    nested: list[JsonValue] = []
    for index, tool in enumerate(value):
        if not isinstance(tool, dict):
            raise FlowError(400, f"tools[{index}] must be an object", param="tools")
        if tool.get("type") != "function":
            raise FlowError(
                400,
                f'tools[{index}].type must be "function": built-in tools '
                "(web search, file search, computer use) are not supported",
                param="tools",
            )
        function = {
            key: tool[key]
            for key in ("name", "description", "parameters", "strict")
            if tool.get(key) is not None
        }
        nested.append({"type": "function", "function": function})
    return function_tools(nested)


def _tool_choice(value: JsonValue) -> ToolChoice:
    if isinstance(value, dict) and value.get("type") == "function":
        name = value.get("name")
        if not isinstance(name, str) or not name:
            raise FlowError(400, "tool_choice.name is required", param="tool_choice")
        return NamedTool(name)
    if isinstance(value, dict):
        raise FlowError(400, 'tool_choice.type must be "function"', param="tool_choice")
    return tool_choice(value)


# -- input items -----------------------------------------------------------------


_PART_TEXT = MappingProxyType(
    {"input_text": "text", "output_text": "text", "text": "text", "refusal": "refusal"}
)


def _input(value: JsonValue) -> tuple[Message, ...]:
    """The input as native messages (through the chat translation)."""
    if isinstance(value, str):
        return translate_messages([{"role": "user", "content": value}])
    if not isinstance(value, list) or not value:
        raise FlowError(
            400, "input must be a string or a non-empty array of items", param="input"
        )
    chat: list[JsonValue] = []
    assistant: dict[str, JsonValue] | None = None  # the turn being gathered
    for index, item in enumerate(value):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise FlowError(400, f"{where} must be an object", param="input")
        kind = item.get("type", "message")
        if kind == "message" and item.get("role") != "assistant":
            assistant = None
            chat.append(_message(where, item))
            continue
        if kind == "function_call_output":
            assistant = None
            chat.append(_call_output(where, item))
            continue
        if assistant is None:
            assistant = {"role": "assistant", "content": ""}
            chat.append(assistant)
        if kind == "message":
            text = _message(where, item)["content"]
            assistant["content"] = str(assistant["content"]) + str(text)
        elif kind == "function_call":
            calls = assistant.setdefault("tool_calls", [])
            assert isinstance(calls, list)
            calls.append(_function_call(where, item))
        elif kind == "reasoning":
            assistant["reasoning_content"] = _reasoning(where, item)
        else:
            raise FlowError(
                400, f"{where}.type {kind!r} is not supported", param="input"
            )
    return translate_messages(chat)


def _message(where: str, item: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise FlowError(
            400,
            f"{where}.role must be user, assistant, system or developer",
            param="input",
        )
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise FlowError(
            400, f"{where}.content must be a string or an array of parts", param="input"
        )
    texts: list[str] = []
    for number, part in enumerate(content):
        at = f"{where}.content[{number}]"
        kind = part.get("type") if isinstance(part, dict) else None
        key = _PART_TEXT.get(str(kind))
        if not isinstance(part, dict) or key is None:
            raise FlowError(
                400,
                f"{at} must be an input_text or output_text part "
                "(images and files are not supported here)",
                param="input",
            )
        text = part.get(key)
        if not isinstance(text, str):
            raise FlowError(400, f"{at}.{key} must be a string", param="input")
        texts.append(text)
    return {"role": role, "content": "".join(texts)}


def _function_call(where: str, item: Mapping[str, JsonValue]) -> JsonValue:
    name, call_id = item.get("name"), item.get("call_id")
    if not isinstance(name, str) or not name:
        raise FlowError(400, f"{where}.name is required", param="input")
    if not isinstance(call_id, str) or not call_id:
        raise FlowError(400, f"{where}.call_id is required", param="input")
    arguments = item.get("arguments", "{}")
    if not isinstance(arguments, str):
        raise FlowError(400, f"{where}.arguments must be a JSON string", param="input")
    try:
        decoded = loads_strict(arguments or "{}")
    except ValueError as exc:
        raise FlowError(
            400, f"{where}.arguments is not valid JSON: {exc}", param="input"
        ) from None
    if not isinstance(decoded, dict):
        raise FlowError(
            400, f"{where}.arguments must encode a JSON object", param="input"
        )
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments or "{}"},
    }


def _call_output(where: str, item: Mapping[str, JsonValue]) -> JsonValue:
    call_id, output = item.get("call_id"), item.get("output")
    if not isinstance(call_id, str) or not call_id:
        raise FlowError(400, f"{where}.call_id is required", param="input")
    if isinstance(output, list):
        # Output parts: their text, in order.
        output = "".join(
            str(part.get("text", "")) for part in output if isinstance(part, dict)
        )
    if not isinstance(output, str):
        raise FlowError(400, f"{where}.output must be a string", param="input")
    return {"role": "tool", "tool_call_id": call_id, "content": output}


def _reasoning(where: str, item: Mapping[str, JsonValue]) -> str:
    texts: list[str] = []
    for key in ("content", "summary"):
        parts = item.get(key) or []
        if not isinstance(parts, list):
            raise FlowError(400, f"{where}.{key} must be an array", param="input")
        texts += [str(part.get("text", "")) for part in parts if isinstance(part, dict)]
        if texts:
            break  # the full reasoning when given, else its summary
    return "".join(texts)
