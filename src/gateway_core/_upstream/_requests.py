"""The canonical request, written in an upstream's dialect.

Whatever API the client called, the request is a ``CompletionRequest`` by now; this
writes it as the upstream's own request: Ollama's ``/api/chat`` or
``/api/generate`` body (for Ollama and gateway-core upstreams), or an OpenAI chat
completion (vLLM, SGLang, llama-server...). The upstream is always asked to stream,
whether the client streams or not: the answer is read with the same decoders either
way, and the client's dialect is written from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .._completion_request import CompletionRequest, Kind, NamedTool
from .._forced import chosen_tools, is_forced
from .._json import JsonValue, dumps
from .._structured import tool_call_schema
from ._effects import UpstreamRequest
from ._table import Dialect, Pool, UpstreamKind

__all__ = ["upstream_request", "upstream_requests"]

# Ollama options OpenAI-compatible servers take under the same meaning, by the
# name they use. top_k, min_p and repeat_penalty are extensions that vLLM,
# SGLang, llama-server and llama-cpp-python's server all accept.
_OPENAI_OPTIONS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "seed": "seed",
    "stop": "stop",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "repeat_penalty": "repeat_penalty",
}


def upstream_requests(
    completion: CompletionRequest, pool: Pool
) -> dict[Dialect, UpstreamRequest]:
    """``completion`` as each upstream of ``pool`` asks for it (one request per
    dialect)."""
    return {
        up.dialect: upstream_request(completion, *up.dialect) for up in pool.upstreams
    }


def upstream_request(
    completion: CompletionRequest,
    kind: UpstreamKind,
    renamed: str | None = None,
    schema_format: str = "json_schema",
) -> UpstreamRequest:
    """``completion`` in ``kind``'s dialect, for the model ``renamed`` (the name
    the client used when None)."""
    model = renamed or completion.model_text
    if kind is UpstreamKind.OPENAI:
        body = _openai_body(completion, model, schema_format)
        return UpstreamRequest(path="/v1/chat/completions", body=dumps(body), sse=True)
    native = _native_body(completion, model, kind is UpstreamKind.GATEWAY)
    path = "/api/chat" if completion.kind is Kind.CHAT else "/api/generate"
    return UpstreamRequest(path=path, body=dumps(native), sse=False)


def _native_body(
    completion: CompletionRequest, model: str, extensions: bool
) -> dict[str, JsonValue]:
    body: dict[str, JsonValue] = {"model": model, "stream": True}
    if completion.kind is Kind.CHAT:
        body["messages"] = [dict(m) for m in completion.messages]
        if completion.tools:
            body["tools"] = [dict(t) for t in completion.tools]
    else:
        body["prompt"] = completion.prompt
        for name in ("system", "template", "suffix"):
            value = getattr(completion, name)
            if value is not None:
                body[name] = value
        if completion.raw:
            body["raw"] = True
        if completion.context:
            body["context"] = list(completion.context)
    if completion.think is not None:
        body["think"] = completion.think
    if completion.options:
        body["options"] = dict(completion.options)
    if completion.format is not None:
        body["format"] = completion.format
    if completion.logprobs is not None:
        body["logprobs"] = True
        body["top_logprobs"] = completion.logprobs
    if extensions and completion.tool_choice is not None:
        # gateway-core's native API takes OpenAI's tool_choice as an extension.
        body["tool_choice"] = _tool_choice(completion)
    elif is_forced(completion):
        # Ollama's API has no tool_choice: the call is forced as the local runner
        # forces it, by structured output in the call's schema; the proxy reads
        # the JSON back as the call.
        body.pop("tools", None)
        body["format"] = tool_call_schema(chosen_tools(completion))
    return body


def _openai_body(
    completion: CompletionRequest, model: str, schema_format: str
) -> dict[str, JsonValue]:
    body: dict[str, JsonValue] = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": _openai_messages(completion),
    }
    if completion.tools:
        body["tools"] = [_openai_tool(t) for t in completion.tools]
        if completion.tool_choice is not None:
            body["tool_choice"] = _tool_choice(completion)
    options = completion.options or {}
    for name, openai_name in _OPENAI_OPTIONS.items():
        if options.get(name) is not None:
            body[openai_name] = options[name]
    predict = options.get("num_predict")
    if isinstance(predict, int) and not isinstance(predict, bool) and predict > 0:
        body["max_tokens"] = predict
    if completion.format == "json":
        body["response_format"] = {"type": "json_object"}
    elif isinstance(completion.format, dict) and schema_format == "json_object":
        body["response_format"] = {"type": "json_object", "schema": completion.format}
    elif isinstance(completion.format, dict):
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": completion.format},
        }
    if isinstance(completion.think, str):
        body["reasoning_effort"] = completion.think
    if completion.logprobs is not None:
        body["logprobs"] = True
        if completion.logprobs:
            body["top_logprobs"] = completion.logprobs
    return body


def _tool_choice(completion: CompletionRequest) -> JsonValue:
    choice = completion.tool_choice
    if isinstance(choice, NamedTool):
        return {"type": "function", "function": {"name": choice.name}}
    return choice


def _openai_tool(tool: Mapping[str, JsonValue]) -> JsonValue:
    """A native tool (already OpenAI's shape, ``type`` optional) as OpenAI's."""
    return {"type": "function", **{k: v for k, v in tool.items() if k != "type"}}


def _openai_messages(completion: CompletionRequest) -> list[JsonValue]:
    if completion.kind is Kind.GENERATE:
        messages: list[JsonValue] = []
        if completion.system:
            messages.append({"role": "system", "content": completion.system})
        messages.append({"role": "user", "content": completion.prompt})
        return messages
    return _openai_chat(completion.messages)


def _openai_chat(messages: Sequence[Mapping[str, JsonValue]]) -> list[JsonValue]:
    """Native messages as OpenAI's. A tool result names its call by id; when the
    client gave none (Ollama's results name the tool only), the id is the one of
    the latest call of that tool, as the calls were answered in order."""
    written: list[JsonValue] = []
    pending: list[tuple[str, str]] = []  # (tool name, call id) not answered yet
    for number, message in enumerate(messages):
        role = message.get("role")
        content = message.get("content")
        text = content if isinstance(content, str) else ""
        out: dict[str, JsonValue] = {"role": role, "content": text}
        images = message.get("images")
        if isinstance(images, list) and images:
            parts: list[JsonValue] = [{"type": "text", "text": text}] if text else []
            parts += [
                {
                    "type": "image_url",
                    "image_url": {"url": f"data:image/png;base64,{image}"},
                }
                for image in images
                if isinstance(image, str)
            ]
            out["content"] = parts
        calls = message.get("tool_calls")
        if role == "assistant" and isinstance(calls, list) and calls:
            written_calls: list[JsonValue] = []
            for index, call in enumerate(calls):
                written_call = _openai_call(call, f"call_{number}_{index}")
                if written_call is not None:
                    written_calls.append(written_call)
                    pending.append(_call_key(written_call))
            out["tool_calls"] = written_calls
        if role == "tool":
            out["tool_call_id"] = _answered(message, pending)
        written.append(out)
    return written


def _openai_call(call: JsonValue, fallback_id: str) -> dict[str, JsonValue] | None:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        return None
    function = call["function"]
    assert isinstance(function, dict)
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        arguments = dumps(arguments if arguments is not None else {}).decode()
    call_id = call.get("id")
    return {
        "id": call_id if isinstance(call_id, str) and call_id else fallback_id,
        "type": "function",
        "function": {"name": function.get("name"), "arguments": arguments},
    }


def _call_key(call: Mapping[str, JsonValue]) -> tuple[str, str]:
    function = call["function"]
    assert isinstance(function, dict)
    return str(function.get("name")), str(call["id"])


def _answered(message: Mapping[str, JsonValue], pending: list[tuple[str, str]]) -> str:
    given = message.get("tool_call_id")
    name = message.get("tool_name")
    for index, (tool, call_id) in enumerate(pending):
        if call_id == given or (given is None and (name is None or tool == name)):
            del pending[index]
            return call_id
    return given if isinstance(given, str) else "call_unanswered"
