"""The answer in Anthropic's shapes: one message body, or its event stream (§2.4).

A stream is ``message_start``; then content blocks, each ``content_block_start``,
deltas and ``content_block_stop`` with its own index; then ``message_delta`` with
the stop reason and usage, and ``message_stop``. Thinking and text blocks stay open
while the same kind of text keeps coming and close when another kind starts; a tool
call is a whole block of its own, its arguments in one ``input_json_delta``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ._completion_request import CompletionRequest
from ._framing import encode_sse
from ._json import JsonValue, dumps, encode_utf8
from ._logprobs import TokenLogprob
from ._passes import Ending, Metrics
from ._request import Request
from ._segments import ToolCall

__all__ = ["MessagesRenderer", "message_id", "stop_reason", "tool_use_id"]

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}


def message_id(request_id: str) -> str:
    """``msg_`` and 24 hex digits, a function of the request id: the core has no
    randomness, and the adapter's request ids are already unique."""
    return "msg_" + hashlib.sha256(encode_utf8(request_id)).hexdigest()[:24]


def tool_use_id(call: ToolCall) -> str:
    """The call's id in Anthropic's ``toolu_`` spelling. The native id is derived
    from the request id and the call's index, so this one is too, and the same call
    has the same suffix in every dialect."""
    return "toolu_" + call.id.removeprefix("call_")


def stop_reason(reason: str, *, called: bool, sequence: str | None = None) -> str:
    """A native ``done_reason`` as Anthropic's ``stop_reason``: a tool call makes it
    ``tool_use``, unless the token limit ended the answer: then it is
    ``max_tokens`` as Anthropic says it, and a call the limit cut is a ``tool_use``
    block with the input read so far. ``sequence``: one of the request's
    ``stop_sequences`` ended it."""
    if reason == "length":
        return "max_tokens"
    if called:
        return "tool_use"
    if sequence is not None:
        return "stop_sequence"
    return _STOP_REASONS.get(reason, "end_turn")


def _event(kind: str, value: dict[str, JsonValue]) -> bytes:
    return encode_sse(dumps({"type": kind, **value}).decode("utf-8"), event=kind)


class MessagesRenderer:
    """One request's answer as Anthropic's ``message``: a ``Renderer``."""

    def __init__(self, completion: CompletionRequest, request: Request) -> None:
        self._model = completion.model_text
        self._id = message_id(request.request_id)
        requested = (completion.options or {}).get("stop")
        self._stops = (
            frozenset(s for s in requested if isinstance(s, str))
            if isinstance(requested, list)
            else frozenset()
        )
        """The request's ``stop_sequences``: the only stops Anthropic names (a
        model's own stop strings, from its parameters, end the turn)."""
        self._index = 0
        self._open: str | None = None
        """The kind of the text block being streamed ("thinking", "text"), if any."""
        self._called = False

    def opening(self, metrics: Metrics) -> bytes:
        message = self._message([], stop=None, metrics=metrics, output=0)
        return _event("message_start", {"message": message})

    def delta(
        self,
        *,
        thinking: str,
        content: str,
        calls: Sequence[ToolCall],
        logprobs: Sequence[TokenLogprob] = (),
    ) -> bytes:
        frames: list[bytes] = []
        if thinking:
            frames += self._text("thinking", thinking)
        if content:
            frames += self._text("text", content)
        for call in calls:
            frames += self._close()
            frames.append(
                self._block_event(
                    "content_block_start",
                    content_block={
                        "type": "tool_use",
                        "id": tool_use_id(call),
                        "name": call.name,
                        "input": {},
                    },
                )
            )
            frames.append(
                self._block_event(
                    "content_block_delta",
                    delta={
                        "type": "input_json_delta",
                        "partial_json": call.arguments_text(),
                    },
                )
            )
            frames.append(self._block_event("content_block_stop"))
            self._index += 1
            self._called = True
        return b"".join(frames)

    def _sequence(self, ending: Ending, *, called: bool) -> str | None:
        """The requested stop sequence that ended the answer (None after a call:
        the turn ended for the tool, whatever text stopped it)."""
        matched = ending.stop_sequence
        return matched if matched in self._stops and not called else None

    def closing(self, ending: Ending) -> bytes:
        sequence = self._sequence(ending, called=self._called)
        frames = self._close()
        metrics = ending.metrics
        frames.append(
            _event(
                "message_delta",
                {
                    "delta": {
                        "stop_reason": stop_reason(
                            ending.reason, called=self._called, sequence=sequence
                        ),
                        "stop_sequence": sequence,
                    },
                    "usage": _usage(metrics, metrics.eval_count),
                },
            )
        )
        frames.append(_event("message_stop", {}))
        return b"".join(frames)

    def whole(self, ending: Ending) -> JsonValue:
        gathered = ending.gathered
        content: list[JsonValue] = []
        thinking = "".join(gathered.thinking)
        if thinking:
            content.append(_thinking_block(thinking))
        text = "".join(gathered.content)
        if text:
            content.append({"type": "text", "text": text})
        for call in gathered.calls:
            content.append(
                {
                    "type": "tool_use",
                    "id": tool_use_id(call),
                    "name": call.name,
                    "input": dict(call.arguments),
                }
            )
        called = bool(gathered.calls)
        sequence = self._sequence(ending, called=called)
        return self._message(
            content,
            stop=stop_reason(ending.reason, called=called, sequence=sequence),
            sequence=sequence,
            metrics=ending.metrics,
            output=ending.metrics.eval_count,
        )

    def _message(
        self,
        content: list[JsonValue],
        *,
        stop: str | None,
        metrics: Metrics,
        output: int,
        sequence: str | None = None,
    ) -> dict[str, JsonValue]:
        return {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": sequence,
            "usage": _usage(metrics, output),
        }

    def _text(self, kind: str, text: str) -> list[bytes]:
        frames: list[bytes] = []
        if self._open != kind:
            frames += self._close()
            block: dict[str, JsonValue] = (
                _thinking_block("")
                if kind == "thinking"
                else {"type": "text", "text": ""}
            )
            frames.append(self._block_event("content_block_start", content_block=block))
            self._open = kind
        delta: dict[str, JsonValue] = (
            {"type": "thinking_delta", "thinking": text}
            if kind == "thinking"
            else {"type": "text_delta", "text": text}
        )
        frames.append(self._block_event("content_block_delta", delta=delta))
        return frames

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        self._open = None
        frame = self._block_event("content_block_stop")
        self._index += 1
        return [frame]

    def _block_event(self, kind: str, **fields: JsonValue) -> bytes:
        return _event(kind, {"index": self._index, **fields})


def _thinking_block(text: str) -> dict[str, JsonValue]:
    # Anthropic signs its own models' thinking; there is nothing to sign here, and
    # an empty signature keeps clients that read the field from failing.
    return {"type": "thinking", "thinking": text, "signature": ""}


def _usage(metrics: Metrics, output: int) -> dict[str, JsonValue]:
    """Anthropic's usage: ``input_tokens`` are those evaluated, and the prompt's
    tokens the runner's cache held are ``cache_read_input_tokens``, as its API
    counts prompt caching."""
    return {
        "input_tokens": metrics.prompt_count,
        "cache_read_input_tokens": metrics.prompt_cached,
        "output_tokens": output,
    }
