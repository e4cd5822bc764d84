"""What an answer is made of and how it goes out, whoever made it.

The passes (``_passes``: tokens from the local runner) and the upstream proxy
(``_upstream``: another server's stream) both end in segments (thinking, content,
tool calls). An ``Emitter`` sends them through a ``Renderer``, the client dialect's
writer: one frame per batch when streaming, gathered into one body otherwise; the
answer ends with an ``Ending`` (why it stopped, its ``Metrics``, what was gathered).
``Output`` is the native API's renderer.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ._completion_request import CompletionRequest, Kind
from ._durations import format_rfc3339
from ._flow import Step, StreamItem, StreamOpen
from ._framing import encode_ndjson
from ._json import JsonValue
from ._logprobs import TokenLogprob, native_logprobs
from ._replies import JsonReply
from ._request import Request
from ._segments import Content, Segment, Thinking, ToolCall
from ._work import Result

__all__ = ["Emitter", "Ending", "Gathered", "Metrics", "Output", "Renderer"]

_NS = 1_000_000_000


@dataclass(slots=True)
class Metrics:
    """What the answer cost. ``prompt_count`` is the prompt tokens evaluated (Ollama's
    ``prompt_eval_count``), ``prompt_cached`` those the runner's cache already held;
    together they are the prompt's length (OpenAI's ``prompt_tokens``)."""

    load: float = 0.0
    prompt_count: int = 0
    prompt_cached: int = 0
    prompt_duration: float = 0.0
    eval_count: int = 0
    eval_duration: float = 0.0
    dropped_messages: int = 0
    """Messages left out of a chat's history so that it fits the context (native
    truncation): reported, never silent."""

    def to_json(self, total: float) -> dict[str, JsonValue]:
        # Ollama omits zero metrics; clients treat absent as zero.
        values = {
            "total_duration": round(total * _NS),
            "load_duration": round(self.load * _NS),
            "prompt_eval_count": self.prompt_count,
            "prompt_eval_duration": round(self.prompt_duration * _NS),
            "eval_count": self.eval_count,
            "eval_duration": round(self.eval_duration * _NS),
            # An extension field: Ollama drops old messages without a word.
            "truncated_messages": self.dropped_messages,
        }
        return {name: value for name, value in values.items() if value}


@dataclass(slots=True)
class Gathered:
    """The whole answer so far: what a non-streaming response carries."""

    thinking: list[str] = field(default_factory=list)
    content: list[str] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    """The logprobs not sent yet: all of them for a whole answer; in a stream,
    those of tokens made since the last frame (they go with the next one, or the
    closing frames)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Ending:
    """How the answer ended, for the last object of a response."""

    reason: str
    metrics: Metrics
    gathered: Gathered
    context: Sequence[int] | None = None
    stop_sequence: str | None = None
    """The stop string that ended the answer, if one did."""


class Renderer(Protocol):
    """One dialect's way of writing an answer: the stream's frames, or one body.

    The passes produce the same thinking, content and tool calls whatever API was
    called; a renderer turns them into that API's wire format. Stream frames are
    bytes because only the dialect knows its framing (NDJSON lines, SSE events).
    """

    def opening(self, metrics: Metrics) -> bytes:
        """Frames that open a stream (b"" if the dialect has none). The prompt has
        been evaluated by then, so ``metrics.prompt_count`` is known."""
        ...

    def delta(
        self,
        *,
        thinking: str,
        content: str,
        calls: Sequence[ToolCall],
        logprobs: Sequence[TokenLogprob] = (),
    ) -> bytes:
        """Frames for one step of the answer (``logprobs``: of the tokens made since
        the last step, when the request asked for them)."""
        ...

    def closing(self, ending: Ending) -> bytes:
        """The frames that end a stream, terminator included."""
        ...

    def whole(self, ending: Ending) -> JsonValue:
        """The body of a non-streaming response."""
        ...


class Output:
    """Native response objects for one request: generate's ``response`` or chat's
    ``message``, each stamped with the model name as asked and the current time."""

    def __init__(self, completion: CompletionRequest, request: Request) -> None:
        self._completion = completion
        self._timeline = request.timeline

    def chunk(
        self,
        text: str = "",
        *,
        thinking: str = "",
        calls: Sequence[ToolCall] = (),
        done: bool = False,
        logprobs: Sequence[TokenLogprob] = (),
    ) -> dict[str, JsonValue]:
        body: dict[str, JsonValue] = {
            "model": self._completion.model_text,
            "created_at": format_rfc3339(self._timeline.now),
        }
        if self._completion.kind is Kind.GENERATE:
            body["response"] = text
            if thinking:
                body["thinking"] = thinking
        else:
            message: dict[str, JsonValue] = {"role": "assistant", "content": text}
            if thinking:
                message["thinking"] = thinking
            if calls:
                message["tool_calls"] = [call.to_native() for call in calls]
            body["message"] = message
        body["done"] = done
        if logprobs:
            body["logprobs"] = native_logprobs(logprobs)
        return body

    def final(
        self,
        reason: str,
        *,
        gathered: Gathered | None = None,
        metrics: Metrics | None = None,
        context: Sequence[int] | None = None,
    ) -> dict[str, JsonValue]:
        got = gathered or Gathered()
        body = self.chunk(
            "".join(got.content),
            thinking="".join(got.thinking),
            calls=got.calls,
            done=True,
            logprobs=got.logprobs,
        )
        body["done_reason"] = reason
        if context is not None:
            body["context"] = list(context)
        if metrics is not None:
            body.update(metrics.to_json(self._timeline.elapsed))
        return body

    # -- Renderer --------------------------------------------------------------

    def opening(self, metrics: Metrics) -> bytes:
        return b""

    def delta(
        self,
        *,
        thinking: str,
        content: str,
        calls: Sequence[ToolCall],
        logprobs: Sequence[TokenLogprob] = (),
    ) -> bytes:
        return encode_ndjson(
            self.chunk(content, thinking=thinking, calls=calls, logprobs=logprobs)
        )

    def closing(self, ending: Ending) -> bytes:
        # The last object carries no text (the stream sent it), only the logprobs
        # of tokens whose text never became a frame of its own.
        rest = Gathered(logprobs=ending.gathered.logprobs)
        return encode_ndjson(self._final(ending, gathered=rest))

    def whole(self, ending: Ending) -> JsonValue:
        return self._final(ending, gathered=ending.gathered)

    def _final(self, ending: Ending, *, gathered: Gathered | None) -> JsonValue:
        return self.final(
            ending.reason,
            gathered=gathered,
            metrics=ending.metrics,
            context=ending.context,
        )


class Emitter:
    """Segments to the client: one object per batch when streaming, else gathered."""

    def __init__(
        self,
        completion: CompletionRequest,
        out: Renderer,
        metrics: Metrics,
        *,
        show_thinking: bool = True,
        forced_call: bool = False,
    ) -> None:
        self._metrics = metrics
        self._stream = completion.stream
        self.logprobs = completion.logprobs
        """Alternatives per token the request asked for; None: no logprobs."""
        self._out = out
        self._show_thinking = show_thinking
        self._forced_call = forced_call
        self.opened = False
        self.gathered = Gathered()
        self.call_count = 0
        """The tool calls emitted so far, streamed or gathered."""

    def note(self, logprob: TokenLogprob | None) -> None:
        """A token's logprob, sent with the next frame (or the whole answer)."""
        if logprob is not None:
            self.gathered.logprobs.append(logprob)

    def emit(self, segments: Sequence[Segment]) -> Generator[Step, Result | None, None]:
        thinking, content, calls = [], [], []
        for segment in segments:
            match segment:
                case Thinking(text=text):
                    if self._show_thinking:
                        thinking.append(text)
                case Content(text=text):
                    content.append(text)
                case ToolCall():
                    calls.append(segment)
        if not (thinking or content or calls):
            return
        self.call_count += len(calls)
        self.gathered.content += content  # kept for the final check, streamed or not
        if not self._stream:
            self.gathered.thinking += thinking
            self.gathered.calls += calls
            return
        if self._forced_call:
            content = []  # the JSON becomes a tool call at the end, not text
            if not (thinking or calls):
                return
        yield from self._open()
        logprobs = self.gathered.logprobs
        if logprobs:  # a new list only when there were some: this runs per frame
            self.gathered.logprobs = []
        frames = self._out.delta(
            thinking="".join(thinking),
            content="".join(content),
            calls=calls,
            logprobs=logprobs,
        )
        if frames:
            yield StreamItem(data=frames)

    def _open(self) -> Generator[Step, Result | None, None]:
        if not self.opened:
            self.opened = True
            yield StreamOpen()
            opening = self._out.opening(self._metrics)
            if opening:
                yield StreamItem(data=opening)

    def finish(self, ending: Ending) -> Generator[Step, Result | None, None]:
        if not self._stream:
            yield JsonReply(value=self._out.whole(ending))
            return
        yield from self._open()
        yield StreamItem(data=self._out.closing(ending))
