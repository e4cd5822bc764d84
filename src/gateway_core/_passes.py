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

from collections.abc import Generator, Sequence
from dataclasses import dataclass

from ._answer import Emitter, Ending, Gathered, Metrics, Output, Renderer
from ._call_forms import CallForms
from ._completion_request import CompletionRequest, Kind
from ._families import PLAIN_FAMILY, Family, OutputParser, ParserSetup
from ._flow import (
    MORE,
    Flow,
    FlowError,
    Step,
    perform,
    succeeded,
)
from ._forced import deliver_forced_call, deliver_forced_form
from ._json import JsonValue
from ._options import SamplingOptions
from ._request import Request
from ._segments import Content, Segment, Thinking
from ._stops import StopScanner, Utf8Decoder
from ._structured import check_answer
from ._tool_calls import Toolbox
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


# num_predict of -1 means "until the model stops"; Ollama still bounds it, so that a
# model that never emits an end token cannot run forever.
_UNBOUNDED_FACTOR = 10


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
        forced_call: the output is one constrained call (``tool_choice`` required
            or named), returned as a tool call: in the family's markup
            (``call_forms``), else a ``{"name", "arguments"}`` object (``format``).
        call_forms: the forms of the forced call in the family's markup, if it has
            any; the family's parser reads the answer.
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
    forced_call: bool = False
    call_forms: CallForms | None = None
    format: JsonValue = None
    tool_calls: ToolCallConstraint | None = None
    prefill: str = ""


class _Pipeline:
    """One pass's token bytes to segments."""

    def __init__(
        self,
        shape: Shape,
        *,
        stops: Sequence[str],
        free: bool,
        forms: bool = False,
        id_seed: str,
    ) -> None:
        self._decoder = Utf8Decoder()
        # Stop strings could cut a constrained answer in two; they apply to free text.
        self._scanner = StopScanner(stops if free else ())
        # A constrained answer is the format's JSON, never the family's markup,
        # unless it is a forced call in that markup (``forms``): the parser reads
        # it, outside any thinking (the constraint allows none). Before a forced
        # call (its thinking pass) no call is read: the forced one is the call.
        self._parser: OutputParser | None = None
        if free or forms:
            setup = ParserSetup(
                thinking=shape.thinking and free,
                prompt=shape.prompt,
                tools=shape.tools if forms or not shape.forced_call else None,
                id_seed=id_seed,
            )
            self._parser = shape.family.parser(setup)
        self._written: list[str] | None = [] if forms else None
        self.stopped = False

    def prime(self, prefill: str) -> list[Segment]:
        """Read ``prefill``, the start of the answer the prompt already holds, as
        the model's own text: a forced call may have begun there."""
        return self._split(prefill)

    @property
    def written(self) -> str:
        """The text of a forced call's pass, as the model wrote it."""
        return "".join(self._written or ())

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
        if self._written is not None:
            self._written.append(text)
        if self._parser is None:
            return [Content(text=text)]
        return self._parser.feed(text)


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
        format=shape.format if shape.call_forms is None else shape.call_forms,
        thinking=shape.thinking and shape.show_thinking and not shape.prefill,
    )
    begun: tuple[int, ...] = ()  # the prefill's tokens, for the constraint
    if shape.prefill and (shape.format is not None or shape.call_forms is not None):
        tokenized = yield from perform(
            Tokenize(text=shape.prefill, add_bos=False), Tokens
        )
        begun = tokenized.ids
    emitter = Emitter(
        completion,
        out,
        metrics,
        show_thinking=shape.show_thinking,
        forced_call=shape.forced_call,
    )
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
        opening_text = outcome.opening
        if shape.call_forms is not None:
            opening_text = shape.family.forced_opening(opening_text)
        if opening_text is not None:
            # Continue exactly where the thinking ended: the model's own tokens,
            # already in the runner's cache, so pass 2 evaluates almost nothing.
            # The family says what must follow for the answer to begin: nothing
            # after a closing tag, the closing tag for a model that stopped inside
            # its thinking, harmony's final-channel header. (Without any thinking,
            # pass 2 answers from the prompt.)
            pass_prompt += outcome.kept
            if opening_text:
                opening = yield from perform(
                    Tokenize(text=opening_text, add_bos=False), Tokens
                )
                pass_prompt += opening.ids
    reason = "length" if outcome.event is Event.LENGTH else "stop"
    # A prefilled answer began in the prompt: the format judges it whole.
    answer = shape.prefill + "".join(emitter.gathered.content)[constrained_from:]
    if shape.format is not None and reason != "length":
        check_answer(answer, shape.format)
    if shape.call_forms is not None:
        yield from deliver_forced_form(
            emitter,
            shape.call_forms,
            outcome.written,
            cut=reason == "length",
            request_id=request.request_id,
        )
    elif shape.forced_call:
        yield from deliver_forced_call(
            emitter,
            completion,
            answer,
            cut=reason == "length",
            request_id=request.request_id,
        )
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
    written: str = ""
    """The text of a forced call's pass (``Shape.call_forms``)."""


def _one_pass(
    plan: PassPlan,
    emitter: Emitter,
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
    constraint = plan.constraint
    forms: CallForms | None = None
    fmt: JsonValue = None
    if isinstance(constraint, CallForms):
        forms = constraint
    else:
        fmt = constraint
    free = constraint is None
    pipeline = _Pipeline(
        shape, stops=sampling.stop, free=free, forms=forms is not None, id_seed=id_seed
    )
    tokens: list[int] = []
    result = yield Generate(
        prompt=prompt,
        sampling=sampling,
        format=fmt,
        tool_calls=shape.tool_calls if free else None,
        call_forms=forms,
        limit=limit - len(generated),
        logprobs=emitter.logprobs,
        constraint_prefix=begun if constraint is not None else (),
    )
    if forms is not None and shape.prefill:
        yield from emitter.emit(pipeline.prime(shape.prefill))
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
                    return _PassOutcome(
                        event=Event.LENGTH,
                        tokens=tuple(tokens),
                        written=pipeline.written,
                    )
            case GenerationDone(reason=reason):
                if reason == "length":
                    yield from emitter.emit(pipeline.finish(cut=True))
                    return _PassOutcome(
                        event=Event.LENGTH,
                        tokens=tuple(tokens),
                        written=pipeline.written,
                    )
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
        written=pipeline.written,
    )
