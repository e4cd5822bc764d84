"""Running the generation: one or two passes, and what their tokens become.

Each token's bytes go through a small pipeline of incremental machines, each holding
back only what the next token could change:

    bytes -> Utf8Decoder -> StopScanner -> the family's parser -> segments

The family's parser (``_families``: thinking tags then marked calls for most, a
channel machine for harmony) is chosen once, from the model, when the answer is set
up. A pass the token limit ends tells the parser so: a call it was writing is still
a call, with the arguments so far.

and the segments (thinking, content, tool calls) become response objects: streamed one
per token that produced something, or gathered into one. ``PassPlan`` decides whether
a first, free pass runs until the thinking ends before a constrained one
(``_two_pass.py``); a constrained answer is checked against its schema at the end.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ._completion_request import CompletionRequest, Kind
from ._durations import format_rfc3339
from ._families import PLAIN_FAMILY, Family, OutputParser, ParserSetup
from ._flow import (
    MORE,
    Flow,
    FlowError,
    Step,
    StreamItem,
    StreamOpen,
    perform,
    succeeded,
)
from ._framing import encode_ndjson
from ._json import JsonValue
from ._logprobs import TokenLogprob, native_logprobs
from ._options import SamplingOptions
from ._replies import JsonReply
from ._request import Request
from ._segments import Content, Segment, Thinking, ToolCall
from ._stops import StopScanner, Utf8Decoder
from ._structured import check_answer
from ._tool_calls import Toolbox, call_id, cut_call
from ._two_pass import Event, PassPlan, Phase
from ._work import (
    Generate,
    GenerationDone,
    Piece,
    PromptEvaluated,
    Result,
    Tokenize,
    Tokens,
    ToolCallConstraint,
)

__all__ = [
    "Ending",
    "Gathered",
    "Metrics",
    "Output",
    "Renderer",
    "Shape",
    "run_passes",
]

_NS = 1_000_000_000
# num_predict of -1 means "until the model stops"; Ollama still bounds it, so that a
# model that never emits an end token cannot run forever.
_UNBOUNDED_FACTOR = 10


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Shape:
    """What the output of this request is made of.

    Attributes:
        family: the model's family: which parser reads its output.
        thinking: parse thinking (the model has the capability).
        show_thinking: return the thinking (``think`` is not false); when false the
            thinking is still parsed, so that it never leaks into the content.
        prompt: the rendered prompt, or its end: where the output starts (inside
            thinking, inside a harmony header).
        tools: the offered tools whose calls the parser reads, if any.
        tool_names: the tools a forced call may name.
        forced_call: the output is one constrained ``{"name", "arguments"}`` object
            (``tool_choice`` required or named), returned as a tool call.
        format: the constraint (``"json"``, a schema) or None.
        tool_calls: the lazy constraint on the tool calls of free text, if any.
        prefill: the start of the answer the prompt ends with (a trailing assistant
            message, continued): the answer has begun, so there is no thinking pass,
            and the constraint and the final check take it as the answer's start.
    """

    family: Family = PLAIN_FAMILY
    thinking: bool = False
    show_thinking: bool = True
    prompt: str = ""
    tools: Toolbox | None = None
    tool_names: tuple[str, ...] = ()
    forced_call: bool = False
    format: JsonValue = None
    tool_calls: ToolCallConstraint | None = None
    prefill: str = ""


class _Pipeline:
    """One pass's token bytes to segments."""

    def __init__(
        self, shape: Shape, *, stops: Sequence[str], free: bool, id_seed: str
    ) -> None:
        self._decoder = Utf8Decoder()
        # Stop strings could cut a constrained answer in two; they apply to free text.
        self._scanner = StopScanner(stops if free else ())
        # A constrained answer is the format's JSON, never the family's markup.
        self._parser: OutputParser | None = None
        if free:
            setup = ParserSetup(
                thinking=shape.thinking,
                prompt=shape.prompt,
                tools=shape.tools,
                id_seed=id_seed,
            )
            self._parser = shape.family.parser(setup)
        self.stopped = False

    @property
    def done_thinking(self) -> bool:
        return self._parser is None or self._parser.done_thinking

    @property
    def stop_sequence(self) -> str | None:
        """The stop string that ended this pass, if one did."""
        return self._scanner.matched

    def answer_opening(self) -> str | None:
        """What pass 2 writes after this pass's tokens (``OutputParser``)."""
        return None if self._parser is None else self._parser.answer_opening()

    def feed(self, data: bytes) -> list[Segment]:
        text, self.stopped = self._scanner.feed(self._decoder.feed(data))
        return self._split(text)

    def finish(self, *, cut: bool = False) -> list[Segment]:
        """Release everything held back; the output is over (``cut``: by the token
        limit, so a call being written still counts)."""
        parts: list[Segment] = []
        if not self._scanner.stopped:
            text, self.stopped = self._scanner.feed(self._decoder.flush())
            if not self.stopped:
                text += self._scanner.flush()
            parts = self._split(text)
        if self._parser is None:
            return parts
        return parts + self._parser.finish(cut=cut)

    def _split(self, text: str) -> list[Segment]:
        if not text:
            return []
        if self._parser is None:
            return [Content(text=text)]
        return self._parser.feed(text)


class _Emitter:
    """Segments to the client: one object per batch when streaming, else gathered."""

    def __init__(
        self,
        completion: CompletionRequest,
        out: Renderer,
        shape: Shape,
        metrics: Metrics,
    ) -> None:
        self._metrics = metrics
        self._stream = completion.stream
        self.logprobs = completion.logprobs
        """Alternatives per token the request asked for; None: no logprobs."""
        self._out = out
        self._shape = shape
        self.opened = False
        self.gathered = Gathered()

    def note(self, logprob: TokenLogprob | None) -> None:
        """A token's logprob, sent with the next frame (or the whole answer)."""
        if logprob is not None:
            self.gathered.logprobs.append(logprob)

    def emit(self, segments: Sequence[Segment]) -> Generator[Step, Result | None, None]:
        thinking, content, calls = [], [], []
        for segment in segments:
            match segment:
                case Thinking(text=text):
                    if self._shape.show_thinking:
                        thinking.append(text)
                case Content(text=text):
                    content.append(text)
                case ToolCall():
                    calls.append(segment)
        if not (thinking or content or calls):
            return
        self.gathered.content += content  # kept for the final check, streamed or not
        if not self._stream:
            self.gathered.thinking += thinking
            self.gathered.calls += calls
            return
        if self._shape.forced_call:
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


def run_passes(
    completion: CompletionRequest,
    request: Request,
    out: Renderer,
    shape: Shape,
    sampling: SamplingOptions,
    prompt: tuple[int, ...],
    context_length: int,
    metrics: Metrics,
) -> Flow:
    """Generate the answer (one pass, or think-then-constrain) and send it."""
    limit = sampling.num_predict
    if limit <= 0:
        limit = _UNBOUNDED_FACTOR * context_length
    # think: false asks for no thinking, so the constraint applies from the start
    # (the parser still runs, so stray tags never reach the content).
    plan = PassPlan(
        format=shape.format,
        thinking=shape.thinking and shape.show_thinking and not shape.prefill,
    )
    begun: tuple[int, ...] = ()  # the prefill's tokens, for the constraint
    if shape.prefill and shape.format is not None:
        tokenized = yield from perform(
            Tokenize(text=shape.prefill, add_bos=False), Tokens
        )
        begun = tokenized.ids
    emitter = _Emitter(completion, out, shape, metrics)
    generated: list[int] = []
    pass_prompt = prompt
    constrained_from = 0  # where in the emitted content the constrained answer starts
    while True:
        outcome = yield from _one_pass(
            plan, emitter, shape, sampling, pass_prompt, generated, limit, metrics,
            request.request_id, begun,
        )  # fmt: skip
        phase = plan.on(outcome.event)
        if phase is not Phase.CONSTRAINED:
            break
        constrained_from = len("".join(emitter.gathered.content))
        if len(generated) >= limit:
            # num_predict counts both passes: none left for the answer.
            outcome = _PassOutcome(event=Event.LENGTH)
            plan.on(Event.LENGTH)
            break
        if outcome.opening is not None:
            # Continue exactly where the thinking ended: the model's own tokens,
            # already in the runner's cache, so pass 2 evaluates almost nothing.
            # The family says what must follow for the answer to begin: nothing
            # after a closing tag, the closing tag for a model that stopped inside
            # its thinking, harmony's final-channel header. (Without any thinking,
            # pass 2 answers from the prompt.)
            pass_prompt += outcome.kept
            if outcome.opening:
                opening = yield from perform(
                    Tokenize(text=outcome.opening, add_bos=False), Tokens
                )
                pass_prompt += opening.ids
    reason = "length" if outcome.event is Event.LENGTH else "stop"
    # A prefilled answer began in the prompt: the format judges it whole.
    answer = shape.prefill + "".join(emitter.gathered.content)[constrained_from:]
    if shape.format is not None and reason != "length":
        check_answer(answer, shape.format)
    if shape.forced_call:
        emitter.gathered.content = []
        # A call the limit cut is still the call the client asked for: it comes
        # with the arguments so far, and done_reason says it is cut.
        found = (
            _forced_call(answer, request.request_id)
            if reason != "length"
            else _cut_forced_call(answer, shape.tool_names, request.request_id)
        )
        if found is not None:
            if completion.stream:
                yield from emitter.emit([found])
            else:
                emitter.gathered.calls = [found]
    context = None
    if completion.kind is Kind.GENERATE and not completion.raw:
        # What the model has seen and said, as it will continue: the last pass's
        # prompt (original prompt, kept thinking) and that pass's tokens.
        context = pass_prompt + outcome.tokens
    ending = Ending(
        reason=reason,
        metrics=metrics,
        gathered=emitter.gathered,
        context=context,
        stop_sequence=outcome.stop_sequence,
    )
    yield from emitter.finish(ending)


@dataclass(frozen=True, slots=True, kw_only=True)
class _PassOutcome:
    event: Event
    kept: tuple[int, ...] = ()
    """The tokens of this pass that pass 2 continues after."""
    opening: str | None = None
    """What pass 2 writes after ``kept`` (None: it answers from the prompt)."""
    tokens: tuple[int, ...] = ()
    """Every token this pass generated."""
    stop_sequence: str | None = None
    """The stop string that ended this pass, if one did."""


def _one_pass(
    plan: PassPlan,
    emitter: _Emitter,
    shape: Shape,
    sampling: SamplingOptions,
    prompt: tuple[int, ...],
    generated: list[int],
    limit: int,
    metrics: Metrics,
    id_seed: str,
    begun: tuple[int, ...] = (),
) -> Generator[Step, Result | None, _PassOutcome]:
    """Run one pass to its end and say how it ended (``begun``: the tokens of a
    prefilled answer, which a constraint accepts first)."""
    free = plan.constraint is None
    pipeline = _Pipeline(shape, stops=sampling.stop, free=free, id_seed=id_seed)
    tokens: list[int] = []
    result = yield Generate(
        prompt=prompt,
        sampling=sampling,
        format=plan.constraint,
        tool_calls=shape.tool_calls if free else None,
        limit=limit - len(generated),
        logprobs=emitter.logprobs,
        constraint_prefix=begun if plan.constraint is not None else (),
    )
    while True:
        try:
            step = succeeded(result)
        except FlowError:
            plan.on(Event.FAILED)
            raise
        match step:
            case PromptEvaluated(count=count, duration=duration, cached=cached):
                if not generated:
                    metrics.prompt_count = count
                    metrics.prompt_cached = cached
                metrics.prompt_duration += duration
            case Piece(token=token, data=data, duration=duration, logprob=logprob):
                emitter.note(logprob)
                generated.append(token)
                tokens.append(token)
                metrics.eval_count += 1
                metrics.eval_duration += duration
                segments = pipeline.feed(data)
                if plan.ends_with_thinking and pipeline.done_thinking:
                    # Thinking is over: keep its last words, drop whatever content
                    # came with them, and let pass 2 answer.
                    thinking = [s for s in segments if isinstance(s, Thinking)]
                    yield from emitter.emit(thinking)
                    return _PassOutcome(
                        event=Event.THOUGHT,
                        kept=tuple(tokens),
                        opening=pipeline.answer_opening(),
                    )
                yield from emitter.emit(segments)
                if pipeline.stopped:
                    break
                if len(generated) >= limit:
                    yield from emitter.emit(pipeline.finish(cut=True))
                    return _PassOutcome(event=Event.LENGTH, tokens=tuple(tokens))
            case GenerationDone(reason=reason):
                if reason == "length":
                    yield from emitter.emit(pipeline.finish(cut=True))
                    return _PassOutcome(event=Event.LENGTH, tokens=tuple(tokens))
                break
            case other:
                raise TypeError(f"core bug: {other!r} during a generation")
        result = yield MORE
    opening = pipeline.answer_opening()  # asked before finishing: where it stopped
    segments = pipeline.finish()
    if plan.ends_with_thinking:
        # Stopped inside its thinking: what it thought is kept, and the answer comes
        # from pass 2.
        thinking = [s for s in segments if isinstance(s, Thinking)]
        yield from emitter.emit(thinking)
        return _PassOutcome(
            event=Event.STOPPED,
            kept=tuple(tokens),
            opening=opening,
            tokens=tuple(tokens),
        )
    yield from emitter.emit(segments)
    return _PassOutcome(
        event=Event.STOPPED,
        tokens=tuple(tokens),
        stop_sequence=pipeline.stop_sequence,
    )


def _forced_call(answer: str, request_id: str) -> ToolCall:
    # check_answer has validated it against the call schema; a failure here is a
    # constraint engine that let something through, and earns a clear error.
    try:
        value = json.loads(answer)
    except ValueError:
        raise FlowError(500, "the forced tool call is not valid JSON") from None
    arguments = value.get("arguments") if isinstance(value, dict) else None
    name = value.get("name") if isinstance(value, dict) else None
    if not isinstance(name, str) or not isinstance(arguments, dict):
        raise FlowError(500, "the forced tool call has no name or arguments")
    return ToolCall(
        index=0,
        id=call_id(request_id, 0),
        name=name,
        arguments=arguments,
    )


def _cut_forced_call(
    answer: str, names: Sequence[str], request_id: str
) -> ToolCall | None:
    found = cut_call(answer, names)
    if found is None:
        return None
    return ToolCall(
        index=0,
        id=call_id(request_id, 0),
        name=found.name,
        arguments=found.arguments,
        partial=found.partial,
    )
