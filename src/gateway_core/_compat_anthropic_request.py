"""Anthropic's Messages API request, translated into the canonical one.

Every check that needs no model is done here, with the reference's messages where it
has them (ollama-api.md §1.8); what Anthropic's fields become natively is listed in
docs/compatibility.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import jsonschema
import jsonschema.exceptions

from ._completion_request import CompletionRequest, Kind, NamedTool, ToolChoice
from ._flow import FlowError
from ._json import JsonValue
from ._names import InvalidModelName, ModelName

__all__ = ["messages_request"]

Body = Mapping[str, JsonValue]
Message = dict[str, JsonValue]

# Fields that only steer Anthropic's own service (billing, routing, caching, speed
# tiers): the answer means the same without them, so they are accepted and dropped.
_SERVICE_FIELDS = frozenset(
    {
        "metadata",
        "service_tier",
        "inference_geo",
        "speed",
        "cache_control",
        "diagnostics",
    }
)
# Server-side context editing: without it the model sees the whole history, which
# costs context but never changes what a turn means. Dropped with a note.
_NOTED_FIELDS = frozenset({"context_management"})
_MESSAGES_FIELDS = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
    }
)
# Anthropic's efforts as native think levels; xhigh sits between high and max.
_EFFORTS = {
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "max",
}
_TOOL_CHOICES: dict[str, ToolChoice] = {
    "auto": "auto",
    "any": "required",
    "none": "none",
}
_BLOCK_SEPARATOR = "\n\n"


# -- the request --------------------------------------------------------------------


def messages_request(
    body: Body, *, notes: list[str] | None = None, counting: bool = False
) -> CompletionRequest:
    """A Messages API body as the canonical request, every check that needs no
    model done here, in the order the reference does them (§1.8).

    ``counting`` is for ``count_tokens``: ``max_tokens`` is not required, and the
    sampling fields, which change the answer but not the prompt, are not read
    (a client may send the body it is about to send to ``/v1/messages``). Fields
    dropped for a reason worth logging go into ``notes``.

    Raises:
        FlowError: 400 naming the field at fault.
    """
    _check_fields(body, notes)
    model_text = body.get("model")
    if not isinstance(model_text, str) or not model_text:
        raise FlowError(400, "model is required", param="model")
    try:
        model = ModelName.parse(model_text)
    except InvalidModelName:
        raise FlowError(400, "invalid model name", param="model") from None
    options: dict[str, JsonValue] = {}
    if not counting:
        options = _sampling(body)
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise FlowError(400, "messages is required", param="messages")
    tools = _tools(body.get("tools"))
    messages = _system(body.get("system")) + _conversation(raw_messages)
    if not any(m["role"] != "system" for m in messages):
        raise FlowError(400, "messages have no content to answer", param="messages")
    think, fmt = _output(body.get("thinking"), body.get("output_config"))
    return CompletionRequest(
        kind=Kind.CHAT,
        relax_thinking=True,
        model_text=model_text,
        model=model,
        messages=tuple(messages),
        tools=tuple(tools),
        tool_choice=_tool_choice(body.get("tool_choice")),
        think=think,
        format=fmt,
        options=options,
        stream=body.get("stream") is True,
        # Anthropic answers a prompt that does not fit with an error, and agents
        # rely on it to compact their history; silently dropping turns would hide it.
        truncate=False,
        has_images=any(m.get("images") for m in messages),
    )


def _check_fields(body: Body, notes: list[str] | None) -> None:
    for name, value in body.items():
        if name in _MESSAGES_FIELDS or name in _SERVICE_FIELDS or value is None:
            continue
        if name in _NOTED_FIELDS:
            if notes is not None:
                notes.append(f"ignoring {name}: this server keeps the whole history")
            continue
        raise FlowError(
            400, f"field '{name}' is not supported by this server", param=name
        )


def _sampling(body: Body) -> dict[str, JsonValue]:
    max_tokens = body.get("max_tokens")
    if (
        not isinstance(max_tokens, int)
        or isinstance(max_tokens, bool)
        or max_tokens < 1
    ):
        raise FlowError(
            400, "max_tokens is required and must be positive", param="max_tokens"
        )
    options: dict[str, JsonValue] = {"num_predict": max_tokens}
    for name in ("temperature", "top_p", "top_k"):
        value = body.get(name)
        if value is not None:
            options[name] = value
    stops = body.get("stop_sequences")
    if stops is not None:
        assert isinstance(stops, list)  # the shape check saw to it
        if not all(isinstance(stop, str) for stop in stops):
            raise FlowError(
                400,
                "stop_sequences must be an array of strings",
                param="stop_sequences",
            )
        if stops:
            options["stop"] = stops
    return options


def _system(value: JsonValue) -> list[Message]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [{"role": "system", "content": value}]
    assert isinstance(value, list)
    texts = []
    for index, block in enumerate(value):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise FlowError(
                400, f"system[{index}] must be a text block", param="system"
            )
        texts.append(_string(block, "text", f"system[{index}]", param="system"))
    text = _BLOCK_SEPARATOR.join(t for t in texts if t)
    return [{"role": "system", "content": text}] if text else []


def _string(
    block: Mapping[str, JsonValue], name: str, where: str, *, param: str
) -> str:
    value = block.get(name)
    if not isinstance(value, str):
        raise FlowError(400, f"{where}.{name} must be a string", param=param)
    return value


@dataclass(slots=True)
class _Turn:
    """One Anthropic message's blocks, sorted into what native messages carry."""

    texts: list[str] = dataclasses.field(default_factory=list)
    images: list[JsonValue] = dataclasses.field(default_factory=list)
    calls: list[JsonValue] = dataclasses.field(default_factory=list)
    thinking: list[str] = dataclasses.field(default_factory=list)
    results: list[Message] = dataclasses.field(default_factory=list)

    def message(self, role: str) -> Message | None:
        if not (self.texts or self.images or self.calls or self.thinking):
            return None
        message: Message = {"role": role, "content": _BLOCK_SEPARATOR.join(self.texts)}
        if self.thinking:
            message["thinking"] = _BLOCK_SEPARATOR.join(self.thinking)
        if self.images:
            message["images"] = self.images
        if self.calls:
            message["tool_calls"] = self.calls
        return message


def _conversation(raw: Sequence[JsonValue]) -> list[Message]:
    """Anthropic's messages as native ones. A user turn's tool results come first,
    each its own ``tool`` message, then what the user wrote (the order templates
    expect: results right after the call they answer)."""
    names: dict[str, str] = {}  # tool_use id -> tool name, for the results
    messages: list[Message] = []
    for index, value in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(value, dict):
            raise FlowError(400, f"{where} must be an object", param="messages")
        role = value.get("role")
        if role not in ("user", "assistant"):
            raise FlowError(
                400, f'{where}.role must be "user" or "assistant"', param="messages"
            )
        content = value.get("content")
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
            continue
        if not isinstance(content, list):
            raise FlowError(
                400,
                f"{where}.content must be a string or an array of blocks",
                param="messages",
            )
        turn = _Turn()
        for number, block in enumerate(content):
            _block(turn, role, block, f"{where}.content[{number}]", names)
        messages += turn.results
        message = turn.message(role)
        if message is not None:
            messages.append(message)
    return messages


def _block(
    turn: _Turn, role: str, block: JsonValue, where: str, names: dict[str, str]
) -> None:
    if not isinstance(block, dict):
        raise FlowError(400, f"{where} must be an object", param="messages")
    kind = block.get("type")
    allowed = {
        "text": ("user", "assistant"),
        "image": ("user",),
        "tool_result": ("user",),
        "tool_use": ("assistant",),
        "thinking": ("assistant",),
        "redacted_thinking": ("assistant",),
    }.get(kind if isinstance(kind, str) else "")
    if allowed is None:
        raise FlowError(
            400, f"{where}: blocks of type {kind!r} are not supported", param="messages"
        )
    if role not in allowed:
        raise FlowError(
            400,
            f"{where}: {kind} blocks belong in {allowed[0]} messages",
            param="messages",
        )
    match kind:
        case "text":
            turn.texts.append(_string(block, "text", where, param="messages"))
        case "image":
            turn.images.append(_image(block, where))
        case "tool_use":
            turn.calls.append(_tool_use(block, where, names))
        case "tool_result":
            turn.results.append(_tool_result(block, where, names))
        case "thinking":
            turn.thinking.append(_string(block, "thinking", where, param="messages"))
        case _:
            pass  # redacted thinking is encrypted for Anthropic's models only


def _image(block: Mapping[str, JsonValue], where: str) -> str:
    source = block.get("source")
    if not isinstance(source, dict):
        raise FlowError(400, f"{where}.source must be an object", param="messages")
    if source.get("type") != "base64":
        raise FlowError(
            400,
            f"invalid image source type: {source.get('type')}. "
            "Only base64 images are supported.",
            param="messages",
        )
    return _string(source, "data", f"{where}.source", param="messages")


def _tool_use(
    block: Mapping[str, JsonValue], where: str, names: dict[str, str]
) -> JsonValue:
    call_id = block.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise FlowError(
            400, "tool_use block missing required 'id' field", param="messages"
        )
    name = block.get("name")
    if not isinstance(name, str) or not name:
        raise FlowError(
            400, "tool_use block missing required 'name' field", param="messages"
        )
    arguments = block.get("input")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise FlowError(400, f"{where}.input must be an object", param="messages")
    names[call_id] = name
    return {"id": call_id, "function": {"name": name, "arguments": arguments}}


def _tool_result(
    block: Mapping[str, JsonValue], where: str, names: dict[str, str]
) -> Message:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise FlowError(
            400, f"{where}.tool_use_id must be a non-empty string", param="messages"
        )
    content = block.get("content")
    texts: list[str] = []
    images: list[JsonValue] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for number, part in enumerate(content):
            inner = f"{where}.content[{number}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if not isinstance(part, dict) or kind not in ("text", "image"):
                raise FlowError(
                    400,
                    f"{inner}: a tool result holds text and image blocks only",
                    param="messages",
                )
            if kind == "text":
                texts.append(_string(part, "text", inner, param="messages"))
            else:
                images.append(_image(part, inner))
    elif content is not None:
        raise FlowError(
            400,
            f"{where}.content must be a string or an array of blocks",
            param="messages",
        )
    message: Message = {
        "role": "tool",
        "content": _BLOCK_SEPARATOR.join(texts),
        "tool_call_id": call_id,
    }
    if call_id in names:
        message["tool_name"] = names[call_id]
    if images:
        message["images"] = images
    return message


def _tools(value: JsonValue) -> list[Message]:
    if value is None:
        return []
    assert isinstance(value, list)
    tools: list[Message] = []
    seen: set[str] = set()
    for index, tool in enumerate(value):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise FlowError(400, f"{where} must be an object", param="tools")
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise FlowError(
                400,
                f'tool type "{kind}" is not supported: only tools defined by '
                "name, description and input_schema are",
                param="tools",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise FlowError(400, f"{where}.name is required", param="tools")
        if name in seen:
            raise FlowError(400, f'tool names must be unique: "{name}"', param="tools")
        seen.add(name)
        description = tool.get("description")
        if description is not None and not isinstance(description, str):
            raise FlowError(400, f"{where}.description must be a string", param="tools")
        function: Message = {"name": name}
        if description:
            function["description"] = description
        function["parameters"] = _input_schema(name, tool.get("input_schema"))
        tools.append({"type": "function", "function": function})
    return tools


def _input_schema(name: str, schema: JsonValue) -> JsonValue:
    if not isinstance(schema, dict):
        raise FlowError(
            400,
            f'invalid input_schema for tool "{name}": it must be a JSON Schema object',
            param="tools",
        )
    if schema.get("type", "object") != "object":
        raise FlowError(
            400,
            f'invalid input_schema for tool "{name}": its type must be "object"',
            param="tools",
        )
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise FlowError(
            400, f'invalid input_schema for tool "{name}": {exc.message}', param="tools"
        ) from None
    return schema


def _tool_choice(value: JsonValue) -> ToolChoice:
    if value is None:
        return None
    assert isinstance(value, dict)
    kind = value.get("type")
    if kind == "tool":
        name = value.get("name")
        if not isinstance(name, str) or not name:
            raise FlowError(
                400, 'tool_choice of type "tool" needs a name', param="tool_choice"
            )
        return NamedTool(name)
    if isinstance(kind, str) and kind in _TOOL_CHOICES:
        return _TOOL_CHOICES[kind]
    raise FlowError(
        400,
        'tool_choice.type must be "auto", "any", "tool" or "none"',
        param="tool_choice",
    )


def _output(
    thinking: JsonValue, config: JsonValue
) -> tuple[bool | str | None, JsonValue]:
    """``think`` from ``thinking`` and ``output_config.effort``, and the format from
    ``output_config.format``."""
    effort: str | None = None
    fmt: JsonValue = None
    if config is not None:
        assert isinstance(config, dict)
        for name in config:
            if name not in ("effort", "format"):
                raise FlowError(
                    400,
                    f"output_config.{name} is not supported by this server",
                    param="output_config",
                )
        effort = _effort(config.get("effort"))
        fmt = _format(config.get("format"))
    if thinking is None:
        return effort, fmt
    assert isinstance(thinking, dict)
    match thinking.get("type"):
        case "disabled":
            return False, fmt
        case "enabled":
            return effort or True, fmt
        case "adaptive" | "between_tools":
            return effort, fmt  # the model's own default, or the effort asked for
    raise FlowError(
        400,
        'thinking.type must be "enabled", "disabled" or "adaptive"',
        param="thinking",
    )


def _effort(value: JsonValue) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and value in _EFFORTS:
        return _EFFORTS[value]
    raise FlowError(
        400,
        'output_config.effort must be "low", "medium", "high", "xhigh" or "max"',
        param="output_config",
    )


def _format(value: JsonValue) -> JsonValue:
    if value is None:
        return None
    if (
        isinstance(value, dict)
        and value.get("type") == "json_schema"
        and isinstance(value.get("schema"), dict)
    ):
        return value["schema"]
    raise FlowError(
        400,
        'output_config.format must be {"type": "json_schema", "schema": {...}}',
        param="output_config",
    )
