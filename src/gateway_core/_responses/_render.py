"""The answer as OpenAI's Response object, or its event stream.

A stream is ``response.created`` and ``response.in_progress``; then output items,
each opened by ``response.output_item.added`` and closed by
``response.output_item.done``: a ``reasoning`` item (``response.reasoning_text.*``),
a ``message`` item with one ``output_text`` part (``response.content_part.*``,
``response.output_text.*``), and one ``function_call`` item per call
(``response.function_call_arguments.*``, whole: the parser gives out a call once it
is complete). The stream ends with ``response.completed``, or
``response.incomplete`` when ``max_output_tokens`` cut the answer. Every event
carries its ``sequence_number``. A text item stays open while the same kind of
text keeps coming, and closes when another kind starts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from .._framing import encode_sse
from .._json import JsonValue, dumps, encode_utf8
from .._logprobs import TokenLogprob, openai_logprobs
from .._passes import Ending, Metrics
from .._segments import ToolCall

__all__ = ["ResponseEcho", "ResponsesRenderer", "response_id"]


def response_id(request_id: str) -> str:
    """``resp_`` and 32 hex digits, a function of the request id (the core has no
    randomness; the adapter's request ids are unique)."""
    return "resp_" + hashlib.sha256(encode_utf8(request_id)).hexdigest()[:32]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseEcho:
    """The request's settings, which the Response object repeats."""

    model: str
    created_at: int
    instructions: str | None
    previous_response_id: str | None
    store: bool
    metadata: JsonValue
    tools: JsonValue
    tool_choice: JsonValue
    text_format: JsonValue
    reasoning: JsonValue
    temperature: JsonValue
    top_p: JsonValue
    max_output_tokens: JsonValue
    parallel_tool_calls: bool
    truncation: str
    logprobs: bool


@dataclass(slots=True)
class _Item:
    """An output item being written: its kind, id, and text so far."""

    kind: str
    item_id: str
    index: int
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)


class ResponsesRenderer:
    """One request's answer as a Response: a ``Renderer``. After ``closing`` or
    ``whole``, ``response`` is the final Response object (what is stored)."""

    def __init__(self, echo: ResponseEcho, request_id: str) -> None:
        self._echo = echo
        self._id = response_id(request_id)
        self._sequence = 0
        self._output: list[JsonValue] = []
        self._open: _Item | None = None
        self.response: dict[str, JsonValue] | None = None

    @property
    def id(self) -> str:
        return self._id

    # -- Renderer ----------------------------------------------------------------

    def opening(self, metrics: Metrics) -> bytes:
        started = self._object("in_progress", output=[], usage=None)
        return self._event("response.created", response=started) + self._event(
            "response.in_progress", response=started
        )

    def delta(
        self,
        *,
        thinking: str,
        content: str,
        calls: Sequence[ToolCall],
        logprobs: Sequence[TokenLogprob] = (),
    ) -> bytes:
        frames = b""
        if thinking:
            frames += self._text("reasoning", thinking, ())
        if content:
            frames += self._text("message", content, logprobs)
        for call in calls:
            frames += self._close()
            frames += self._call(call)
        return frames

    def closing(self, ending: Ending) -> bytes:
        frames = self._close()
        final = self._final(ending)
        kind = (
            "response.completed"
            if final["status"] == "completed"
            else ("response.incomplete")
        )
        return frames + self._event(kind, response=final)

    def whole(self, ending: Ending) -> JsonValue:
        got = ending.gathered
        thinking = "".join(got.thinking)
        if thinking:
            self._output.append(self._reasoning_item(self._new_id("rs"), thinking))
        text = "".join(got.content)
        if text or not got.calls:
            self._output.append(
                self._message_item(self._new_id("msg"), text, got.logprobs)
            )
        for call in got.calls:
            self._output.append(self._call_item(call, "completed"))
        return self._final(ending)

    # -- the Response object -------------------------------------------------------

    def _final(self, ending: Ending) -> dict[str, JsonValue]:
        cut = ending.reason == "length"
        final = self._object(
            "incomplete" if cut else "completed",
            output=list(self._output),
            usage=_usage(ending.metrics),
        )
        if cut:
            final["incomplete_details"] = {"reason": "max_output_tokens"}
        self.response = final
        return final

    def _object(
        self, status: str, *, output: list[JsonValue], usage: JsonValue
    ) -> dict[str, JsonValue]:
        echo = self._echo
        text: dict[str, JsonValue] = {
            "format": echo.text_format or {"type": "text"},
        }
        return {
            "id": self._id,
            "object": "response",
            "created_at": echo.created_at,
            "status": status,
            "error": None,
            "incomplete_details": None,
            "instructions": echo.instructions,
            "max_output_tokens": echo.max_output_tokens,
            "model": echo.model,
            "output": output,
            "parallel_tool_calls": echo.parallel_tool_calls,
            "previous_response_id": echo.previous_response_id,
            "reasoning": echo.reasoning or {"effort": None, "summary": None},
            "store": echo.store,
            "temperature": echo.temperature,
            "text": text,
            "tool_choice": echo.tool_choice,
            "tools": echo.tools,
            "top_p": echo.top_p,
            "truncation": echo.truncation,
            "usage": usage,
            "metadata": echo.metadata or {},
        }

    # -- items -----------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{self._id.removeprefix('resp_')}_{len(self._output)}"

    def _reasoning_item(self, item_id: str, text: str) -> dict[str, JsonValue]:
        return {
            "id": item_id,
            "type": "reasoning",
            "summary": [],
            "content": [{"type": "reasoning_text", "text": text}],
        }

    def _text_part(self, text: str, logprobs: Sequence[TokenLogprob]) -> JsonValue:
        part: dict[str, JsonValue] = {
            "type": "output_text",
            "text": text,
            "annotations": [],
        }
        if self._echo.logprobs:
            part["logprobs"] = _logprob_list(logprobs)
        return part

    def _message_item(
        self, item_id: str, text: str, logprobs: Sequence[TokenLogprob]
    ) -> dict[str, JsonValue]:
        return {
            "id": item_id,
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [self._text_part(text, logprobs)],
        }

    def _call_item(self, call: ToolCall, status: str) -> dict[str, JsonValue]:
        return {
            "id": "fc_" + call.id.removeprefix("call_"),
            "type": "function_call",
            "status": status,
            "call_id": call.id,
            "name": call.name,
            "arguments": call.arguments_text() if status == "completed" else "",
        }

    # -- stream events ---------------------------------------------------------------

    def _event(self, kind: str, **fields: JsonValue) -> bytes:
        body: dict[str, JsonValue] = {
            "type": kind,
            "sequence_number": self._sequence,
            **fields,
        }
        self._sequence += 1
        return encode_sse(dumps(body).decode("utf-8"), event=kind)

    def _text(self, kind: str, text: str, logprobs: Sequence[TokenLogprob]) -> bytes:
        frames = b""
        item = self._open
        if item is None or item.kind != kind:
            frames += self._close()
            item = self._open = _Item(
                kind, self._new_id("rs" if kind == "reasoning" else "msg"),
                len(self._output),
            )  # fmt: skip
            self._output.append({})  # its place; filled when it closes
            if kind == "reasoning":
                added: dict[str, JsonValue] = {
                    "id": item.item_id, "type": "reasoning", "summary": [],
                }  # fmt: skip
                frames += self._event(
                    "response.output_item.added", output_index=item.index, item=added
                )
            else:
                added = {
                    "id": item.item_id, "type": "message", "status": "in_progress",
                    "role": "assistant", "content": [],
                }  # fmt: skip
                frames += self._event(
                    "response.output_item.added", output_index=item.index, item=added
                )
                frames += self._event(
                    "response.content_part.added",
                    item_id=item.item_id,
                    output_index=item.index,
                    content_index=0,
                    part=self._text_part("", ()),
                )
        item.text.append(text)
        item.logprobs += logprobs
        if kind == "reasoning":
            return frames + self._event(
                "response.reasoning_text.delta",
                item_id=item.item_id,
                output_index=item.index,
                content_index=0,
                delta=text,
            )
        shown = _logprob_list(logprobs) if self._echo.logprobs else []
        return frames + self._event(
            "response.output_text.delta",
            item_id=item.item_id,
            output_index=item.index,
            content_index=0,
            delta=text,
            logprobs=shown,
        )

    def _close(self) -> bytes:
        item, self._open = self._open, None
        if item is None:
            return b""
        text = "".join(item.text)
        common: dict[str, JsonValue] = {
            "item_id": item.item_id,
            "output_index": item.index,
            "content_index": 0,
        }
        if item.kind == "reasoning":
            done = self._reasoning_item(item.item_id, text)
            frames = self._event("response.reasoning_text.done", **common, text=text)
        else:
            done = self._message_item(item.item_id, text, item.logprobs)
            part = self._text_part(text, item.logprobs)
            logprobs = part.get("logprobs", []) if isinstance(part, dict) else []
            frames = self._event(
                "response.output_text.done", **common, text=text, logprobs=logprobs
            )
            frames += self._event("response.content_part.done", **common, part=part)
        self._output[item.index] = done
        return frames + self._event(
            "response.output_item.done", output_index=item.index, item=done
        )

    def _call(self, call: ToolCall) -> bytes:
        index = len(self._output)
        done = self._call_item(call, "completed")
        self._output.append(done)
        item_id = str(done["id"])
        arguments = call.arguments_text()
        return (
            self._event(
                "response.output_item.added",
                output_index=index,
                item=self._call_item(call, "in_progress"),
            )
            + self._event(
                "response.function_call_arguments.delta",
                item_id=item_id,
                output_index=index,
                delta=arguments,
            )
            + self._event(
                "response.function_call_arguments.done",
                item_id=item_id,
                output_index=index,
                name=call.name,
                arguments=arguments,
            )
            + self._event("response.output_item.done", output_index=index, item=done)
        )


def _logprob_list(entries: Sequence[TokenLogprob]) -> list[JsonValue]:
    content = openai_logprobs(entries)["content"]
    assert isinstance(content, list)
    return content


def _usage(metrics: Metrics) -> JsonValue:
    prompt = metrics.prompt_count + metrics.prompt_cached
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": metrics.prompt_cached},
        "output_tokens": metrics.eval_count,
        # The runner does not count thinking tokens apart from the answer's.
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + metrics.eval_count,
    }
