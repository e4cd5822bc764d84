"""One canonical completion request, and the native API's translation into it.

``/api/generate`` and ``/api/chat`` (and, with the compatibility issue, OpenAI's and
Anthropic's endpoints) all become a ``CompletionRequest``; the generation flow serves
that and never looks at the body again. Everything that can be checked without the
model is checked here, in Ollama's order and words (ollama-api.md §1.4, §1.5).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ._durations import keep_alive_seconds
from ._flow import FlowError
from ._json import JsonValue
from ._logprobs import MAX_TOP_LOGPROBS
from ._names import InvalidModelName, ModelName

__all__ = [
    "CompletionRequest",
    "Kind",
    "NamedTool",
    "ToolChoice",
    "chat_request",
    "generate_request",
    "parse_think",
    "requested_logprobs",
    "tool_choice",
    "top_logprobs",
]

Message = Mapping[str, JsonValue]

_ROLES = frozenset({"system", "user", "assistant", "tool"})
_THINK_LEVELS = frozenset({"low", "medium", "high", "max"})


class Kind(enum.Enum):
    GENERATE = "generate"
    CHAT = "chat"


@dataclass(frozen=True, slots=True)
class NamedTool:
    """``tool_choice`` naming one function: the answer must be a call of it."""

    name: str


ToolChoice = Literal["auto", "none", "required"] | NamedTool | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CompletionRequest:
    """What the client asked for, checked and typed.

    Attributes:
        kind: generate (one prompt) or chat (a conversation).
        model_text: the model name as the client wrote it, for messages.
        model: the parsed name.
        prompt: generate's prompt; "" means "just load the model".
        messages: chat's messages, roles lower-cased; () means "just load".
        system, template, suffix, raw, context: generate's overrides.
        tools: the tool definitions offered to the model, if any.
        think: None (the model's default), a bool, or an effort level.
        options: the request's ``options`` object, checked against the model later.
        format: the ``format`` field (structured output), refused by the flow for
            now; kept so that the refusal comes in the reference's order.
        raw_conflict: raw mode was combined with template, system or context (a 400
            the flow raises after the unload shortcut, as Ollama does).
        debug_render_only: answer with the rendered prompt instead of generating.
        tool_choice: None or "auto" (the model decides), "none" (no tools offered),
            "required" (a call of one of the tools, forced by constrained decoding)
            or a ``NamedTool`` (a call of that one; a value of its own, so that a
            tool called "none" is not the keyword). The native API has no such field
            but accepts it as an extension; the compatibility layers set it.
        relax_thinking: asking a model that cannot think to think drops the
            request's ``think`` instead of failing (Anthropic's API: coding agents
            ask every model to think).
        keep_alive: seconds (``math.inf`` for forever), None to keep the current.
        stream: stream NDJSON (True) or answer with one object (False).
        truncate: shorten a prompt that is too long instead of failing.
        logprobs: report each token's logprob with this many alternatives (0 to
            20); None: no logprobs.
    """

    kind: Kind
    model_text: str
    model: ModelName
    prompt: str = ""
    messages: tuple[Message, ...] = ()
    system: str | None = None
    template: str | None = None
    suffix: str | None = None
    raw: bool = False
    context: tuple[int, ...] | None = None
    tools: tuple[Message, ...] = ()
    think: bool | str | None = None
    options: Mapping[str, JsonValue] | None = None
    format: JsonValue = None
    raw_conflict: bool = False
    debug_render_only: bool = False
    tool_choice: ToolChoice = None
    relax_thinking: bool = False
    keep_alive: float | None = None
    stream: bool = True
    truncate: bool = True
    has_images: bool = False
    logprobs: int | None = None

    @property
    def is_empty(self) -> bool:
        """Nothing to generate from: the request only loads (or unloads) the model."""
        if self.kind is Kind.GENERATE:
            return not self.prompt and not self.suffix
        return not self.messages


def _text(body: Mapping[str, JsonValue], name: str) -> str | None:
    value = body.get(name)
    return value if isinstance(value, str) else None


def _flag(body: Mapping[str, JsonValue], name: str, default: bool) -> bool:
    value = body.get(name)
    return value if isinstance(value, bool) else default


@dataclass(frozen=True, slots=True, kw_only=True)
class _Shared:
    think: bool | str | None
    options: Mapping[str, JsonValue] | None
    format: JsonValue
    keep_alive: float | None
    stream: bool
    truncate: bool
    debug_render_only: bool
    logprobs: int | None


def _common(body: Mapping[str, JsonValue]) -> _Shared:
    """The checks both endpoints share, in the reference's order."""
    logprobs = requested_logprobs(body, flag="logprobs")
    options = body.get("options")
    return _Shared(
        think=parse_think(body.get("think")),
        options=options if isinstance(options, dict) else None,
        format=None if body.get("format") == "" else body.get("format"),
        keep_alive=keep_alive_seconds(body.get("keep_alive")),
        stream=_flag(body, "stream", True),
        truncate=_flag(body, "truncate", True),
        debug_render_only=_flag(body, "_debug_render_only", False),
        logprobs=logprobs,
    )


def requested_logprobs(body: Mapping[str, JsonValue], *, flag: str) -> int | None:
    """The alternatives asked for per token, or None when logprobs are off.

    ``flag`` is the boolean that turns them on (``logprobs`` on the native API and
    OpenAI's chat); ``top_logprobs`` (0 to 20) says how many alternatives. Asking
    for alternatives turns logprobs on, as the client evidently wants them.

    Raises:
        FlowError: ``top_logprobs`` is out of range (400).
    """
    count = top_logprobs(body)
    if body.get(flag) is True or count > 0:
        return count
    return None


def top_logprobs(body: Mapping[str, JsonValue]) -> int:
    """``top_logprobs``: 0 to 20 (0 when absent); 400 otherwise."""
    top = body.get("top_logprobs")
    if top is not None and (
        not isinstance(top, int)
        or isinstance(top, bool)
        or not 0 <= top <= MAX_TOP_LOGPROBS
    ):
        raise FlowError(
            400,
            f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}",
            param="top_logprobs",
        )
    return top if isinstance(top, int) else 0


def parse_think(value: JsonValue) -> bool | str | None:
    """The ``think`` field: absent (None), a bool, or an effort level; 400 else."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value in _THINK_LEVELS:
        return value
    raise FlowError(
        400,
        f"invalid think value: {value!r} (use true, false, "
        '"low", "medium", "high" or "max")',
        param="think",
    )


def _name(text: str) -> ModelName:
    try:
        return ModelName.parse(text)
    except InvalidModelName:
        raise FlowError(400, "invalid model name") from None


def generate_request(body: Mapping[str, JsonValue]) -> CompletionRequest:
    model_text = _text(body, "model") or ""
    if not model_text:
        # Ollama's quirk, kept: generate says 404 where chat says 400.
        raise FlowError(404, "model '' not found")
    model = _name(model_text)
    common = _common(body)
    raw = _flag(body, "raw", False)
    context = body.get("context")
    overridden = body.get("template") or body.get("system") or context not in (None, [])
    images = body.get("images")
    return CompletionRequest(
        kind=Kind.GENERATE,
        model_text=model_text,
        model=model,
        prompt=_text(body, "prompt") or "",
        system=_text(body, "system"),
        template=_text(body, "template") or None,
        suffix=_text(body, "suffix") or None,
        raw=raw,
        raw_conflict=raw and bool(overridden),
        context=_context(context),
        has_images=isinstance(images, list) and bool(images),
        think=common.think,
        options=common.options,
        format=common.format,
        keep_alive=common.keep_alive,
        stream=common.stream,
        truncate=common.truncate,
        debug_render_only=common.debug_render_only,
        logprobs=common.logprobs,
    )


def _context(value: JsonValue) -> tuple[int, ...] | None:
    if value is None:
        return None
    assert isinstance(value, list)
    if not all(
        isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value
    ):
        raise FlowError(400, "context must be an array of token ids", param="context")
    return tuple(t for t in value if isinstance(t, int))


def chat_request(body: Mapping[str, JsonValue]) -> CompletionRequest:
    model_text = _text(body, "model") or ""
    if not model_text:
        raise FlowError(400, "model is required")
    model = _name(model_text)
    common = _common(body)
    raw_messages = body.get("messages") or []
    assert isinstance(raw_messages, list)
    messages = tuple(_message(index, m) for index, m in enumerate(raw_messages))
    tools = body.get("tools") or []
    assert isinstance(tools, list)
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise FlowError(400, f"tools[{index}] must be an object", param="tools")
    return CompletionRequest(
        kind=Kind.CHAT,
        tool_choice=tool_choice(body.get("tool_choice")),
        model_text=model_text,
        model=model,
        messages=messages,
        tools=tuple(tool for tool in tools if isinstance(tool, dict)),
        has_images=any(m.get("images") for m in messages),
        think=common.think,
        options=common.options,
        format=common.format,
        keep_alive=common.keep_alive,
        stream=common.stream,
        truncate=common.truncate,
        debug_render_only=common.debug_render_only,
        logprobs=common.logprobs,
    )


def tool_choice(value: JsonValue) -> ToolChoice:
    """``tool_choice`` (an extension on the native API, OpenAI's field on /v1):
    ``"auto"``, ``"none"``, ``"required"``, or ``{"function": {"name": ...}}``
    (also with OpenAI's ``"type": "function"``) for one named tool."""
    if value is None:
        return None
    if value == "auto":
        return "auto"
    if value == "none":
        return "none"
    if value == "required":
        return "required"
    if isinstance(value, dict):
        function = value.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return NamedTool(str(function["name"]))
    raise FlowError(
        400,
        'tool_choice must be "auto", "none", "required" or '
        '{"type": "function", "function": {"name": ...}}',
        param="tool_choice",
    )


def _message(index: int, value: JsonValue) -> Message:
    where = f"messages[{index}]"
    if not isinstance(value, dict):
        raise FlowError(400, f"{where} must be an object", param="messages")
    role = value.get("role")
    if not isinstance(role, str) or role.lower() not in _ROLES:
        raise FlowError(
            400,
            f"{where}.role must be one of system, user, assistant, tool",
            param="messages",
        )
    content = value.get("content")
    if content is not None and not isinstance(content, str):
        raise FlowError(400, f"{where}.content must be a string", param="messages")
    for name in ("thinking", "tool_name", "tool_call_id"):
        if value.get(name) is not None and not isinstance(value.get(name), str):
            raise FlowError(400, f"{where}.{name} must be a string", param="messages")
    for name in ("images", "tool_calls"):
        if value.get(name) is not None and not isinstance(value.get(name), list):
            raise FlowError(400, f"{where}.{name} must be an array", param="messages")
    calls = value.get("tool_calls")
    for number, call in enumerate(calls if isinstance(calls, list) else ()):
        _check_tool_call(f"{where}.tool_calls[{number}]", call)
    message = dict(value)
    message["role"] = role.lower()
    message["content"] = content or ""
    return message


def _check_tool_call(where: str, call: JsonValue) -> None:
    """An earlier turn's call, as Ollama's ``api.ToolCall`` decodes it: the chat
    template reads ``function.name`` and ``function.arguments``, so anything else
    would fail there, as a template error, instead of here, as the client's."""
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict):
        raise FlowError(
            400, f"{where} must be an object with a function object", param="messages"
        )
    if not isinstance(function.get("name"), str):
        raise FlowError(
            400, f"{where}.function.name must be a string", param="messages"
        )
    arguments = function.get("arguments")
    if arguments is not None and not isinstance(arguments, dict):
        raise FlowError(
            400, f"{where}.function.arguments must be an object", param="messages"
        )
