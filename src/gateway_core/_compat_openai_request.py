"""OpenAI's ``/v1/chat/completions`` and ``/v1/completions`` requests, translated into
one ``CompletionRequest``.

The mapping follows Ollama's (ollama-api.md §1.7) with its gaps closed:
``max_completion_tokens``, ``tool_choice``, ``reasoning_effort`` and logprobs are
honoured, a ``num_ctx`` extension sets the context size, Ollama's own ``keep_alive``,
``options`` and ``think`` are accepted (``_compat_openai_ollama``), and
``temperature`` / ``top_p`` stay the model's unless sent. Every field of the request
is accounted for: honoured, accepted because it cannot change the answer, or refused
with a 400 naming it. A client that asks for two choices or a logit bias learns at
once that it will not get them, instead of reading an answer that silently ignored
the request; a field OpenAI does not know either is refused as OpenAI refuses it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ._compat_openai_ollama import chat_logprobs, merged_options, ollama_fields
from ._completion_request import (
    CompletionRequest,
    Kind,
    NamedTool,
    ToolChoice,
    tool_choice,
)
from ._flow import FlowError
from ._json import JsonValue, find_lone_surrogate, loads_strict
from ._names import InvalidModelName, ModelName
from ._structured import check_format

__all__ = [
    "ChatCall",
    "TextCall",
    "at_least_one",
    "chat_call",
    "check_choice_has_tools",
    "check_fields",
    "checked_schema",
    "function_tools",
    "model_name",
    "number_in_range",
    "reasoning_effort",
    "text_call",
    "translate_messages",
]

Message = Mapping[str, JsonValue]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Unsupported:
    """A field we do not implement, and the values of it that ask for nothing
    (``n: 1``, ``logit_bias: {}``), which are accepted."""

    harmless: Callable[[JsonValue], bool]
    reason: str


def _never(value: JsonValue) -> bool:
    return False


# Fields that cannot change the answer: accepted and ignored.
_INERT = frozenset(
    {
        "user",
        "store",
        "metadata",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
    }
)

_COMMON_UNSUPPORTED: Mapping[str, _Unsupported] = MappingProxyType(
    {
        "n": _Unsupported(
            harmless=lambda v: v == 1,
            reason="n must be 1: this server returns one choice per request",
        ),
        "logit_bias": _Unsupported(
            harmless=lambda v: v == {}, reason="logit_bias is not supported"
        ),
    }
)

_CHAT_UNSUPPORTED: Mapping[str, _Unsupported] = MappingProxyType(
    {
        **_COMMON_UNSUPPORTED,
        "modalities": _Unsupported(
            harmless=lambda v: v == ["text"], reason="only text output is supported"
        ),
        "audio": _Unsupported(harmless=_never, reason="audio output is not supported"),
        "prediction": _Unsupported(
            harmless=_never, reason="predicted outputs are not supported"
        ),
        "web_search_options": _Unsupported(
            harmless=_never, reason="web search is not supported"
        ),
        "verbosity": _Unsupported(
            harmless=lambda v: v == "medium", reason="verbosity is not supported"
        ),
        "functions": _Unsupported(
            harmless=_never,
            reason="functions is deprecated and not supported: use tools",
        ),
        "function_call": _Unsupported(
            harmless=_never,
            reason="function_call is deprecated and not supported: use tool_choice",
        ),
    }
)

_TEXT_UNSUPPORTED: Mapping[str, _Unsupported] = MappingProxyType(
    {
        **_COMMON_UNSUPPORTED,
        "best_of": _Unsupported(
            harmless=lambda v: v == 1, reason="best_of must be 1: it is not supported"
        ),
        "logprobs": _Unsupported(harmless=_never, reason="logprobs are not supported"),
    }
)

_SAMPLING = frozenset(
    {
        "model",
        "stream",
        "stream_options",
        "max_tokens",
        "temperature",
        "top_p",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "stop",
        "num_ctx",
        "keep_alive",
        "options",
    }
)
_CHAT_FIELDS = _SAMPLING | {
    "think",
    "logprobs",
    "top_logprobs",
    "messages",
    "max_completion_tokens",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning_effort",
    "reasoning",
}
_TEXT_FIELDS = _SAMPLING | {"prompt", "suffix", "echo"}


def check_fields(
    body: Mapping[str, JsonValue],
    known: frozenset[str],
    unsupported: Mapping[str, _Unsupported] = MappingProxyType({}),
) -> None:
    """Refuse, in the client's order, the first field that asks for something this
    server does not do. ``null`` is absent, as everywhere in this API."""
    for name, value in body.items():
        if value is None or name in known or name in _INERT:
            continue
        refusal = unsupported.get(name)
        if refusal is None:
            raise FlowError(
                400, f"Unrecognized request argument supplied: {name}", param=name
            )
        if not refusal.harmless(value):
            raise FlowError(400, refusal.reason, param=name)


def check_choice_has_tools(choice: ToolChoice, tools: tuple[Message, ...]) -> None:
    """A forced call (``required`` or a named tool) needs tools to call: 400."""
    if (choice == "required" or isinstance(choice, NamedTool)) and not tools:
        raise FlowError(
            400,
            "tool_choice asks for a tool call, but no tools were given",
            param="tool_choice",
        )


def model_name(body: Mapping[str, JsonValue]) -> tuple[str, ModelName]:
    text = body.get("model")
    if not isinstance(text, str) or not text:
        raise FlowError(400, "you must provide a model parameter", param="model")
    try:
        return text, ModelName.parse(text)
    except InvalidModelName as exc:
        raise FlowError(400, str(exc), param="model") from None


# -- what both endpoints share ------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Sampling:
    options: dict[str, JsonValue]
    stream: bool
    include_usage: bool


def number_in_range(
    body: Mapping[str, JsonValue], name: str, low: float, high: float
) -> float | int | None:
    value = body.get(name)
    if value is None:
        return None
    assert isinstance(value, int | float)
    if not low <= value <= high:
        raise FlowError(
            400, f"{name} must be between {low:g} and {high:g}, not {value}", param=name
        )
    return value


def at_least_one(body: Mapping[str, JsonValue], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    assert isinstance(value, int)
    if value < 1:
        raise FlowError(400, f"{name} must be at least 1, not {value}", param=name)
    return value


def _stop(value: JsonValue) -> list[JsonValue] | None:
    if value is None:
        return None
    texts: list[JsonValue] = [value] if isinstance(value, str) else []
    if isinstance(value, list):
        texts = value
    if not all(isinstance(text, str) and text for text in texts):
        raise FlowError(
            400, "stop must be a non-empty string or an array of them", param="stop"
        )
    return texts or None


def _sampling(body: Mapping[str, JsonValue], *, max_tokens: int | None) -> _Sampling:
    """Options in the native names; only what the client sent, so that everything
    else stays the model's (Ollama forces temperature and top_p to 1)."""
    options: dict[str, JsonValue] = {}
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    for name, low, high in (
        ("temperature", 0.0, 2.0),
        ("top_p", 0.0, 1.0),
        ("frequency_penalty", -2.0, 2.0),
        ("presence_penalty", -2.0, 2.0),
    ):
        value = number_in_range(body, name, low, high)
        if value is not None:
            options[name] = value
    seed = body.get("seed")
    if isinstance(seed, int):
        options["seed"] = seed
    stop = _stop(body.get("stop"))
    if stop is not None:
        options["stop"] = stop
    num_ctx = at_least_one(body, "num_ctx")
    if num_ctx is not None:
        options["num_ctx"] = num_ctx
    stream = body.get("stream") is True
    stream_options = body.get("stream_options")
    include_usage = False
    if isinstance(stream_options, dict):
        if not stream:
            raise FlowError(
                400,
                "stream_options is only allowed when stream is true",
                param="stream_options",
            )
        usage = stream_options.get("include_usage")
        if usage is not None and not isinstance(usage, bool):
            raise FlowError(
                400,
                "stream_options.include_usage must be a boolean",
                param="stream_options",
            )
        include_usage = usage is True
    return _Sampling(options=options, stream=stream, include_usage=include_usage)


# -- /v1/chat/completions -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatCall:
    """A chat completion request: the canonical request, and how to answer it."""

    completion: CompletionRequest
    include_usage: bool = False


def chat_call(body: Mapping[str, JsonValue]) -> ChatCall:
    """Translate a ``/v1/chat/completions`` body; FlowError 400 naming the field for
    anything this server cannot do as asked."""
    check_fields(body, _CHAT_FIELDS, _CHAT_UNSUPPORTED)
    model_text, model = model_name(body)
    native = ollama_fields(body)
    think = _think(body)
    messages = translate_messages(body.get("messages"))
    sampling = _sampling(body, max_tokens=_max_tokens(body))
    tools = function_tools(body.get("tools"))
    choice = tool_choice(body.get("tool_choice"))
    check_choice_has_tools(choice, tools)
    return ChatCall(
        completion=CompletionRequest(
            kind=Kind.CHAT,
            model_text=model_text,
            model=model,
            messages=messages,
            tools=tools,
            tool_choice=choice,
            think=native.think if think is None else think,
            options=merged_options(native.options, sampling.options),
            keep_alive=native.keep_alive,
            format=_response_format(body.get("response_format")),
            stream=sampling.stream,
            has_images=any(message.get("images") for message in messages),
            logprobs=chat_logprobs(body),
            # OpenAI answers an over-long prompt with context_length_exceeded, and
            # agents compact their history on it: never drop messages silently.
            truncate=False,
        ),
        include_usage=sampling.include_usage,
    )


def _max_tokens(body: Mapping[str, JsonValue]) -> int | None:
    newer = at_least_one(body, "max_completion_tokens")
    older = at_least_one(body, "max_tokens")
    if newer is not None and older is not None and newer != older:
        raise FlowError(
            400,
            "max_tokens and max_completion_tokens disagree: send only one",
            param="max_tokens",
        )
    return older if newer is None else newer


# OpenAI's effort levels onto the native think levels; "none" turns thinking off.
_EFFORTS: Mapping[str, bool | str] = MappingProxyType(
    {
        "none": False,
        "minimal": "low",
        "low": "low",
        "medium": "medium",
        "high": "high",
        "xhigh": "max",
        "max": "max",
    }
)


def reasoning_effort(value: JsonValue, param: str) -> bool | str | None:
    if value is None:
        return None
    if isinstance(value, str) and value in _EFFORTS:
        return _EFFORTS[value]
    raise FlowError(
        400,
        f"invalid reasoning effort: {value!r} (use none, minimal, low, medium, high "
        "or xhigh)",
        param=param,
    )


def _think(body: Mapping[str, JsonValue]) -> bool | str | None:
    """``reasoning_effort`` or ``reasoning.effort``; absent leaves the model's
    default (a thinking model thinks)."""
    think = reasoning_effort(body.get("reasoning_effort"), "reasoning_effort")
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict):
        nested = reasoning_effort(reasoning.get("effort"), "reasoning")
        if think is not None and nested is not None and think != nested:
            raise FlowError(
                400,
                "reasoning_effort and reasoning.effort disagree: send only one",
                param="reasoning_effort",
            )
        if think is None:
            think = nested
    return think


def _response_format(value: JsonValue) -> JsonValue:
    if value is None:
        return None
    assert isinstance(value, dict)
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind != "json_schema":
        raise FlowError(
            400,
            "response_format.type must be text, json_object or json_schema",
            param="response_format",
        )
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        raise FlowError(
            400,
            "response_format.json_schema must be an object",
            param="response_format",
        )
    schema = spec.get("schema")
    if schema is None:
        return "json"  # a schema-less json_schema asks for some JSON object
    if not isinstance(schema, dict):
        raise FlowError(
            400,
            "response_format.json_schema.schema must be an object",
            param="response_format",
        )
    return checked_schema(schema, param="response_format")


def checked_schema(schema: JsonValue, *, param: str) -> JsonValue:
    """``check_format`` of a schema, its 400 naming the request field it came in."""
    try:
        return check_format(schema)
    except FlowError as exc:
        raise FlowError(exc.status, exc.message, param=param) from None


def function_tools(value: JsonValue) -> tuple[Message, ...]:
    if value is None:
        return ()
    assert isinstance(value, list)
    tools: list[Message] = []
    for index, tool in enumerate(value):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise FlowError(400, f"{where} must be an object", param="tools")
        if tool.get("type") != "function":
            raise FlowError(
                400, f'{where}.type must be "function": no other kind is supported',
                param="tools",
            )  # fmt: skip
        function = tool.get("function")
        if not isinstance(function, dict):
            raise FlowError(400, f"{where}.function must be an object", param="tools")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise FlowError(400, f"{where}.function.name is required", param="tools")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise FlowError(
                400, f"{where}.function.parameters must be an object", param="tools"
            )
        tools.append({"type": "function", "function": dict(function)})
    return tuple(tools)


# -- messages -------------------------------------------------------------------------

_ROLES = MappingProxyType(
    {
        "system": "system",
        "developer": "system",
        "user": "user",
        "assistant": "assistant",
        "tool": "tool",
    }
)


def translate_messages(value: JsonValue) -> tuple[Message, ...]:
    if not isinstance(value, list) or not value:
        raise FlowError(
            400, "messages must be a non-empty array of messages", param="messages"
        )
    names_by_call: dict[str, str] = {}
    return tuple(
        _message(index, message, names_by_call) for index, message in enumerate(value)
    )


def _bad(where: str, problem: str) -> FlowError:
    return FlowError(400, f"{where} {problem}", param="messages")


def _message(
    index: int, value: JsonValue, names_by_call: dict[str, str]
) -> dict[str, JsonValue]:
    """One message in the native shape. ``names_by_call`` maps the ids of earlier
    assistant tool calls to their function names, so that a tool result without a
    ``name`` still says which tool answered (templates print it)."""
    where = f"messages[{index}]"
    if not isinstance(value, dict):
        raise _bad(where, "must be an object")
    role = _ROLES.get(str(value.get("role")))
    if role is None:
        raise _bad(
            f"{where}.role", "must be system, developer, user, assistant or tool"
        )
    content, images = _content(where, role, value.get("content"))
    message: dict[str, JsonValue] = {"role": role, "content": content}
    if images:
        message["images"] = list[JsonValue](images)
    if role == "assistant":
        calls = _assistant_calls(where, value.get("tool_calls"), names_by_call)
        if calls:
            message["tool_calls"] = calls
        for name in ("reasoning_content", "reasoning"):
            thinking = value.get(name)
            if thinking is not None:
                if not isinstance(thinking, str):
                    raise _bad(f"{where}.{name}", "must be a string")
                message["thinking"] = thinking
    elif value.get("content") is None:
        raise _bad(f"{where}.content", "is required")
    if role == "tool":
        call = value.get("tool_call_id")
        if call is not None and not isinstance(call, str):
            raise _bad(f"{where}.tool_call_id", "must be a string")
        tool = value.get("name")
        if tool is not None and not isinstance(tool, str):
            raise _bad(f"{where}.name", "must be a string")
        if call:
            message["tool_call_id"] = call
        if tool or call in names_by_call:
            message["tool_name"] = tool or names_by_call[str(call)]
    return message


def _content(where: str, role: str, value: JsonValue) -> tuple[str, list[str]]:
    """The text of a message (its text parts joined by newlines) and its images."""
    if value is None:
        return "", []
    if isinstance(value, str):
        return value, []
    if not isinstance(value, list):
        raise _bad(f"{where}.content", "must be a string or an array of content parts")
    texts: list[str] = []
    images: list[str] = []
    for number, part in enumerate(value):
        at = f"{where}.content[{number}]"
        if not isinstance(part, dict):
            raise _bad(at, "must be an object")
        kind = part.get("type")
        if kind == "text" or (kind == "refusal" and role == "assistant"):
            text = part.get(str(kind))
            if not isinstance(text, str):
                raise _bad(f"{at}.{kind}", "must be a string")
            texts.append(text)
        elif kind == "image_url" and role == "user":
            images.append(_image(at, part.get("image_url")))
        elif kind in ("input_audio", "file"):
            raise _bad(at, f"is a {kind} part, which is not supported")
        else:
            raise _bad(f"{at}.type", f"{kind!r} is not supported in a {role} message")
    return "\n".join(texts), images


def _image(where: str, value: JsonValue) -> str:
    """The base64 data of an image part: only ``data:`` URLs, since this server
    fetches nothing from the network."""
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str):
        raise _bad(f"{where}.image_url.url", "must be a string")
    if url.startswith(("http://", "https://")):
        raise _bad(
            f"{where}.image_url.url",
            "is a web address: images must be sent as data: URLs with base64 data",
        )
    header, comma, data = url.partition(",")
    if not (header.startswith("data:") and header.endswith(";base64") and comma):
        raise _bad(f"{where}.image_url.url", "must be a data: URL with base64 data")
    return data


def _assistant_calls(
    where: str, value: JsonValue, names_by_call: dict[str, str]
) -> list[JsonValue]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(f"{where}.tool_calls", "must be an array")
    calls: list[JsonValue] = []
    for number, call in enumerate(value):
        at = f"{where}.tool_calls[{number}]"
        if not isinstance(call, dict):
            raise _bad(at, "must be an object")
        function = call.get("function")
        if not isinstance(function, dict):
            raise _bad(f"{at}.function", "must be an object")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise _bad(f"{at}.function.name", "is required")
        native: dict[str, JsonValue] = {
            "function": {
                "name": name,
                "arguments": _arguments(f"{at}.function.arguments", function),
            }
        }
        call_id = call.get("id")
        if isinstance(call_id, str) and call_id:
            native["id"] = call_id
            names_by_call[call_id] = name
        calls.append(native)
    return calls


def _arguments(where: str, function: Mapping[str, JsonValue]) -> JsonValue:
    """OpenAI sends arguments as a JSON text; the native message holds the object.
    An object is accepted as it is (some clients send one)."""
    value = function.get("arguments")
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return value
    if not isinstance(value, str):
        raise _bad(where, "must be a JSON string")
    try:
        decoded = loads_strict(value)
    except ValueError as exc:
        raise _bad(where, f"is not valid JSON: {exc}") from None
    if not isinstance(decoded, dict):
        raise _bad(where, "must encode a JSON object")
    # JSON inside a string: the body's own check saw only the escaped text.
    flaw = find_lone_surrogate(decoded)
    if flaw is not None:
        raise _bad(
            where, f"holds a lone UTF-16 surrogate ({flaw.found}) at {flaw.where}"
        )
    return decoded


# -- /v1/completions ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TextCall:
    """A legacy completion request: the canonical request, and how to answer it."""

    completion: CompletionRequest
    include_usage: bool = False
    echo: str | None = None
    """The prompt, to put in front of the answer (``echo: true``)."""


def text_call(body: Mapping[str, JsonValue]) -> TextCall:
    """Translate a ``/v1/completions`` body. The prompt goes through the model's
    template, as in Ollama; ``suffix`` asks for fill-in-the-middle."""
    check_fields(body, _TEXT_FIELDS, _TEXT_UNSUPPORTED)
    model_text, model = model_name(body)
    prompt = _prompt(body.get("prompt"))
    suffix = body.get("suffix") or None
    assert suffix is None or isinstance(suffix, str)
    if not prompt and not suffix:
        raise FlowError(400, "prompt must not be empty", param="prompt")
    echo = body.get("echo") is True
    if echo and suffix:
        raise FlowError(400, "echo can't be combined with suffix", param="echo")
    sampling = _sampling(body, max_tokens=at_least_one(body, "max_tokens"))
    native = ollama_fields(body)
    return TextCall(
        completion=CompletionRequest(
            kind=Kind.GENERATE,
            model_text=model_text,
            model=model,
            prompt=prompt,
            suffix=suffix,
            options=merged_options(native.options, sampling.options),
            keep_alive=native.keep_alive,
            stream=sampling.stream,
            truncate=False,
        ),
        include_usage=sampling.include_usage,
        echo=prompt if echo else None,
    )


def _prompt(value: JsonValue) -> str:
    # The shape check lets only a string through: several prompts would be several
    # choices, and token arrays would need the model's tokenizer to mean anything.
    if value is None:
        raise FlowError(400, "prompt is required", param="prompt")
    assert isinstance(value, str)
    return value
