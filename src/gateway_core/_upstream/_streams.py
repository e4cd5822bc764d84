"""An upstream's answer, read back into thinking, content and tool calls.

The upstream always streams: NDJSON objects (Ollama's ``/api/chat`` and
``/api/generate``) or SSE chunks (OpenAI's chat completions). ``StreamReader``
takes its bytes as they come, with the core's own incremental decoders, and gives
segments, the reason it stopped and its token counts. Bounded: a line or event over
``MAX_LINE_BYTES``, or an answer over ``MAX_ANSWER_BYTES``, is an error, not memory.

Thinking and tool calls the upstream returns structured (``message.thinking``,
``reasoning_content``, ``tool_calls``) are taken as they are; OpenAI's calls come in
fragments, joined here, and a call whose arguments the token limit cut comes out as
a cut call (``ToolCall.partial``), as the local path gives it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from .._errors import GatewayError
from .._framing import FramingError, NdjsonDecoder, SseDecoder
from .._json import JsonValue
from .._segments import Content, Segment, Thinking, ToolCall
from .._tool_calls import call_id

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_LINE_BYTES",
    "StreamReader",
    "UpstreamStreamError",
    "error_text",
]

MAX_LINE_BYTES = 4 * 1024 * 1024
MAX_ANSWER_BYTES = 256 * 1024 * 1024


class UpstreamStreamError(GatewayError):
    """The upstream's answer is an error, or not an answer: the message says which."""


@dataclass(slots=True)
class _OpenCall:
    """An OpenAI tool call whose fragments are still arriving."""

    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class StreamReader:
    """One upstream answer, fed as bytes."""

    def __init__(self, *, sse: bool, id_seed: str) -> None:
        self._sse = SseDecoder(max_event_bytes=MAX_LINE_BYTES) if sse else None
        self._ndjson = None if sse else NdjsonDecoder(max_line_bytes=MAX_LINE_BYTES)
        self._seed = id_seed
        self._received = 0
        self._calls = 0
        self._open_calls: dict[int, _OpenCall] = {}
        self.done_reason: str | None = None
        """``stop`` or ``length`` once the upstream said it is done."""
        self.prompt_count = 0
        self.eval_count = 0
        self.prompt_duration = 0.0
        self.eval_duration = 0.0

    def feed(self, data: bytes) -> list[Segment]:
        """The segments ``data`` completes.

        Raises:
            UpstreamStreamError: the upstream sent an error, or bytes that are not
                its dialect's stream.
        """
        self._received += len(data)
        if self._received > MAX_ANSWER_BYTES:
            raise UpstreamStreamError(
                f"the upstream's answer is over {MAX_ANSWER_BYTES} bytes"
            )
        segments: list[Segment] = []
        try:
            if self._sse is not None:
                for event in self._sse.feed(data):
                    segments += self._openai_event(event.data)
            else:
                assert self._ndjson is not None
                for value in self._ndjson.feed(data):
                    segments += self._native_object(value)
        except FramingError as exc:
            raise UpstreamStreamError(
                f"the upstream's stream is broken: {exc}"
            ) from None
        return segments

    def close(self) -> list[Segment]:
        """The stream ended: what it still held (calls not closed by a finish
        reason).

        Raises:
            UpstreamStreamError: it ended before the answer did.
        """
        try:
            rest = self._sse.close() if self._sse is not None else []
            if self._ndjson is not None:
                for value in self._ndjson.close():
                    self._native_object(value)
        except FramingError as exc:
            raise UpstreamStreamError(
                f"the upstream's stream is broken: {exc}"
            ) from None
        segments: list[Segment] = []
        for event in rest:
            segments += self._openai_event(event.data)
        segments += self._close_calls()
        if self.done_reason is None:
            raise UpstreamStreamError("the upstream ended its answer early")
        return segments

    # -- Ollama's NDJSON -----------------------------------------------------------

    def _native_object(self, value: JsonValue) -> list[Segment]:
        if not isinstance(value, dict):
            raise UpstreamStreamError("the upstream sent a line that is not an object")
        if "error" in value:
            raise UpstreamStreamError(f"the upstream failed: {error_text(value)}")
        segments: list[Segment] = []
        message = value.get("message")
        source: Mapping[str, JsonValue] = message if isinstance(message, dict) else {}
        thinking = source.get("thinking", value.get("thinking"))
        content = source.get("content", value.get("response"))
        if isinstance(thinking, str) and thinking:
            segments.append(Thinking(text=thinking))
        if isinstance(content, str) and content:
            segments.append(Content(text=content))
        calls = source.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                found = self._native_call(call)
                if found is not None:
                    segments.append(found)
        if value.get("done") is True:
            self._native_done(value)
        return segments

    def _native_call(self, call: JsonValue) -> ToolCall | None:
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            return None
        function = call["function"]
        assert isinstance(function, dict)
        name, arguments = function.get("name"), function.get("arguments")
        if not isinstance(name, str) or not name:
            return None
        if isinstance(arguments, str):  # some servers send OpenAI's text here
            return self._call(call.get("id"), name, arguments, cut=False)
        given = call.get("id")
        return self._new_call(
            given, name, arguments if isinstance(arguments, dict) else {}
        )

    def _native_done(self, value: Mapping[str, JsonValue]) -> None:
        self.done_reason = "length" if value.get("done_reason") == "length" else "stop"
        self.prompt_count = _count(value.get("prompt_eval_count"))
        self.eval_count = _count(value.get("eval_count"))
        self.prompt_duration = _count(value.get("prompt_eval_duration")) / 1e9
        self.eval_duration = _count(value.get("eval_duration")) / 1e9

    # -- OpenAI's SSE --------------------------------------------------------------

    def _openai_event(self, data: str) -> list[Segment]:
        if data.strip() == "[DONE]":
            if self.done_reason is None:
                self.done_reason = "stop"
            return []
        try:
            value = json.loads(data)
        except ValueError:
            raise UpstreamStreamError(
                "the upstream sent an event that is not JSON"
            ) from None
        if not isinstance(value, dict):
            raise UpstreamStreamError(
                "the upstream sent an event that is not an object"
            )
        if "error" in value:
            raise UpstreamStreamError(f"the upstream failed: {error_text(value)}")
        usage = value.get("usage")
        if isinstance(usage, dict):
            self.prompt_count = _count(usage.get("prompt_tokens"))
            self.eval_count = _count(usage.get("completion_tokens"))
        choices = value.get("choices")
        if not isinstance(choices, list) or not choices:
            return []
        choice = choices[0]
        if not isinstance(choice, dict):
            return []
        segments: list[Segment] = []
        delta = choice.get("delta")
        source: Mapping[str, JsonValue] = delta if isinstance(delta, dict) else {}
        thinking = source.get("reasoning_content", source.get("reasoning"))
        if isinstance(thinking, str) and thinking:
            segments.append(Thinking(text=thinking))
        content = source.get("content", choice.get("text"))
        if isinstance(content, str) and content:
            segments.append(Content(text=content))
        fragments = source.get("tool_calls")
        if isinstance(fragments, list):
            for fragment in fragments:
                self._openai_fragment(fragment)
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            self.done_reason = "length" if reason == "length" else "stop"
            segments += self._close_calls()
        return segments

    def _openai_fragment(self, fragment: JsonValue) -> None:
        if not isinstance(fragment, dict):
            return
        index = fragment.get("index", 0)
        key = index if isinstance(index, int) else 0
        call = self._open_calls.setdefault(key, _OpenCall())
        if isinstance(fragment.get("id"), str) and fragment["id"]:
            call.id = str(fragment["id"])
        function = fragment.get("function")
        if isinstance(function, dict):
            if isinstance(function.get("name"), str):
                call.name += str(function["name"])
            if isinstance(function.get("arguments"), str):
                call.arguments.append(str(function["arguments"]))

    def _close_calls(self) -> list[Segment]:
        cut = self.done_reason == "length"
        calls = [
            self._call(c.id, c.name, "".join(c.arguments), cut=cut)
            for _, c in sorted(self._open_calls.items())
            if c.name
        ]
        self._open_calls.clear()
        return [call for call in calls if call is not None]

    # -- calls ---------------------------------------------------------------------

    def _call(
        self, given_id: JsonValue, name: str, text: str, *, cut: bool
    ) -> ToolCall:
        """A call from its arguments text; text that is not a JSON object is kept
        as the cut call's text (it is what the model wrote)."""
        try:
            arguments = json.loads(text) if text.strip() else {}
        except ValueError:
            arguments = None
        if isinstance(arguments, dict):
            return self._new_call(given_id, name, arguments)
        return self._new_call(given_id, name, {}, partial=text if cut or text else None)

    def _new_call(
        self,
        given_id: JsonValue,
        name: str,
        arguments: Mapping[str, JsonValue],
        partial: str | None = None,
    ) -> ToolCall:
        index = self._calls
        self._calls += 1
        identity = given_id if isinstance(given_id, str) and given_id else None
        return ToolCall(
            index=index,
            id=identity or call_id(self._seed, index),
            name=name,
            arguments=arguments,
            partial=partial,
        )


def _count(value: JsonValue) -> int:
    return (
        value
        if isinstance(value, int) and not isinstance(value, bool) and value > 0
        else 0
    )


def error_text(value: Mapping[str, JsonValue]) -> str:
    """The message of an error object, Ollama's (``error``: text) or OpenAI's
    (``error.message``), bounded."""
    error = value.get("error")
    if isinstance(error, dict):
        error = error.get("message", error)
    return str(error)[:500]
