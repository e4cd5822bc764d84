"""``/api/generate`` and ``/api/chat``: from a checked request to streamed tokens.

The flow, in the reference's order (ollama-api.md §1.4, §1.5, §7):

1. look the model up (404 in Ollama's words if it is not installed);
2. an empty request with ``keep_alive: 0`` unloads the model, and ends there;
3. the model must be able to do what is asked (complete, tools, insert, thinking);
4. options: the model's parameters, then the request's; a wrong type is a 400;
5. hold a runner (loading it if needed); an empty request ends here with ``load``;
6. render and tokenize the prompt, shortening the history to fit the context;
7. generate, one token per result: decode UTF-8, cut at stop strings, count
   ``num_predict``; stream each piece or collect them; finish with the metrics.

Stopping early (a stop string, ``num_predict``) is just not asking for more: the
adapter closes the generation when the exchange finishes.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass

from ._catalog import capabilities
from ._completion_request import (
    CompletionRequest,
    Kind,
    chat_request,
    generate_request,
)
from ._durations import format_rfc3339
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
from ._json import JsonValue
from ._model_ops import body_of, lookup
from ._models import ModelRecord
from ._options import Options, SamplingOptions, effective_num_ctx, resolve_options
from ._prompt import chat_messages, generate_messages, truncated_histories
from ._replies import JsonReply
from ._request import Request
from ._stops import StopScanner, Utf8Decoder
from ._templates import ChatTemplate, TemplateError, TemplateRaised
from ._work import (
    AcquireRunner,
    Generate,
    GenerationDone,
    Piece,
    PromptEvaluated,
    Result,
    RunnerReady,
    Tokenize,
    Tokens,
    Unloaded,
    UnloadModel,
)

__all__ = ["chat", "generate"]

_NS = 1_000_000_000
# num_predict of -1 means "until the model stops"; Ollama still bounds it, so that a
# model that never emits an end token cannot run forever.
_UNBOUNDED_FACTOR = 10


def generate(request: Request) -> Flow:
    yield from _serve(generate_request(body_of(request)), request)


def chat(request: Request) -> Flow:
    yield from _serve(chat_request(body_of(request)), request)


@dataclass(slots=True)
class _Metrics:
    load: float = 0.0
    prompt_count: int = 0
    prompt_duration: float = 0.0
    eval_count: int = 0
    eval_duration: float = 0.0

    def to_json(self, total: float) -> dict[str, JsonValue]:
        # Ollama omits zero metrics; clients treat absent as zero.
        values = {
            "total_duration": round(total * _NS),
            "load_duration": round(self.load * _NS),
            "prompt_eval_count": self.prompt_count,
            "prompt_eval_duration": round(self.prompt_duration * _NS),
            "eval_count": self.eval_count,
            "eval_duration": round(self.eval_duration * _NS),
        }
        return {name: value for name, value in values.items() if value}


class _Output:
    """Native response objects for one request: generate's ``response`` or chat's
    ``message``, each stamped with the model name as asked and the current time."""

    def __init__(self, completion: CompletionRequest, request: Request) -> None:
        self._completion = completion
        self._timeline = request.timeline

    def chunk(self, text: str, *, done: bool = False) -> dict[str, JsonValue]:
        body: dict[str, JsonValue] = {
            "model": self._completion.model_text,
            "created_at": format_rfc3339(self._timeline.now),
        }
        if self._completion.kind is Kind.GENERATE:
            body["response"] = text
        else:
            body["message"] = {"role": "assistant", "content": text}
        body["done"] = done
        return body

    def final(
        self,
        reason: str,
        *,
        text: str = "",
        metrics: _Metrics | None = None,
        context: Sequence[int] | None = None,
    ) -> dict[str, JsonValue]:
        body = self.chunk(text, done=True)
        body["done_reason"] = reason
        if context is not None:
            body["context"] = list(context)
        if metrics is not None:
            body.update(metrics.to_json(self._timeline.elapsed))
        return body


def _serve(completion: CompletionRequest, request: Request) -> Flow:
    out = _Output(completion, request)
    record = yield from lookup(completion.model, completion.model_text)
    if completion.is_empty and completion.keep_alive == 0:
        yield from perform(UnloadModel(model=record), Unloaded)
        yield JsonReply(value=out.final("unload"))
        return
    if completion.raw_conflict:
        raise FlowError(400, "raw mode does not support template, system, or context")
    if completion.format is not None:
        # Structured output arrives with its own issue; until then, say so rather
        # than hand back text that ignores the schema.
        raise FlowError(501, "'format' (structured output) is not supported yet")
    _check_capabilities(completion, record)
    if completion.debug_render_only:
        yield JsonReply(value=_debug_render(completion, record, out, request))
        return
    options = resolve_options(record.parameters, completion.options)
    if options.ignored:
        request.notes.append(
            "ignoring unknown options: " + ", ".join(sorted(options.ignored))
        )
    context_length = effective_num_ctx(
        options.load,
        default=request.config.default_context_length,
        train=record.context_length,
    )
    acquire = AcquireRunner(
        model=record,
        load=options.load,
        context_length=context_length,
        keep_alive=completion.keep_alive,
    )
    ready = yield from perform(acquire, RunnerReady)
    metrics = _Metrics(load=ready.load_duration)
    if completion.is_empty:
        yield JsonReply(value=out.final("load", metrics=metrics))
        return
    prompt = yield from _prompt_tokens(
        completion, record, request, options, ready.context_length
    )
    yield from _run(completion, out, options, prompt, ready.context_length, metrics)


def _debug_render(
    completion: CompletionRequest, record: ModelRecord, out: _Output, request: Request
) -> dict[str, JsonValue]:
    """``_debug_render_only``: the prompt the model would see, and no generation.
    Rendered in full: trimming a long history needs the tokenizer, hence the model."""
    now = request.timeline.now
    if completion.kind is Kind.CHAT:
        messages = chat_messages(
            completion.messages,
            system=record.system,
            modelfile_messages=record.messages,
        )
        text = _render(completion, record, messages, now)
    else:
        text = _generate_text(completion, record, now)
    body = out.chunk("", done=True)
    body["_debug_info"] = {"rendered_template": text, "image_count": 0}
    return body


def _check_capabilities(completion: CompletionRequest, record: ModelRecord) -> None:
    found = capabilities(record)
    if "completion" not in found:
        raise FlowError(
            400, f'"{completion.model_text}" does not support {_verb(completion)}'
        )
    full = completion.model.full
    if completion.tools and "tools" not in found:
        raise FlowError(400, f"{full} does not support tools")
    if completion.suffix and "insert" not in found:
        raise FlowError(400, f"{full} does not support insert")
    if completion.has_images and "vision" not in found:
        raise FlowError(400, f"{full} does not support vision")
    if completion.think not in (None, False) and "thinking" not in found:
        raise FlowError(400, f'"{completion.model_text}" does not support thinking')


def _verb(completion: CompletionRequest) -> str:
    return "generate" if completion.kind is Kind.GENERATE else "chat"


# -- the prompt ---------------------------------------------------------------------


def _prompt_tokens(
    completion: CompletionRequest,
    record: ModelRecord,
    request: Request,
    options: Options,
    context_length: int,
) -> Generator[Step, Result | None, tuple[int, ...]]:
    """Render and tokenize the prompt so that it fits the context with room left for
    the answer, or fail."""
    now = request.timeline.now
    budget = context_length - _answer_room(context_length, options.sampling)
    if completion.kind is Kind.CHAT:
        messages = _chat_messages(completion, record)
        histories = truncated_histories(messages) if completion.truncate else [messages]
        tokens: tuple[int, ...] = ()
        for history in histories:
            tokens = yield from _tokenize(
                _render(completion, record, history, now), record
            )
            if len(tokens) <= budget:
                break
    else:
        text = _generate_text(completion, record, now)
        if completion.context:
            # A continuation: the old tokens already begin with whatever the
            # model starts a sequence with.
            text = text.removeprefix(record.bos_token) if record.bos_token else text
            tokens = yield from _tokenize(text, record, add_bos=False)
            tokens = completion.context + tokens
        else:
            tokens = yield from _tokenize(text, record, add_bos=completion.raw or None)
    if not tokens:
        raise FlowError(400, "the prompt is empty once the template is applied")
    if len(tokens) <= budget:
        return tokens
    if not completion.truncate:
        raise FlowError(400, "the input length exceeds the context length")
    request.notes.append(
        f"truncating a prompt of {len(tokens)} tokens to {budget}, "
        f"leaving room to answer in num_ctx {context_length}"
    )
    return _truncate(tokens, budget, options.sampling.num_keep)


def _chat_messages(
    completion: CompletionRequest, record: ModelRecord
) -> list[dict[str, JsonValue]]:
    return chat_messages(
        completion.messages, system=record.system, modelfile_messages=record.messages
    )


def _answer_room(context_length: int, sampling: SamplingOptions) -> int:
    """Context kept free for the answer: ``num_predict`` tokens when it asks for
    fewer than a quarter of the context, else a quarter.

    Ollama lets the prompt fill the context and shifts it during generation; this
    runner does not shift, so the room to answer is kept up front instead. A quarter
    bounds what a long answer can cost the prompt.
    """
    quarter = max(1, context_length // 4)
    if sampling.num_predict > 0:
        return min(sampling.num_predict, quarter)
    return quarter


def _truncate(tokens: tuple[int, ...], budget: int, num_keep: int) -> tuple[int, ...]:
    """``budget`` tokens: the first ``num_keep`` (-1: as many as possible) and the
    rest from the end, which always keeps at least the final token, the one the
    answer follows."""
    keep = budget - 1 if num_keep < 0 else min(num_keep, budget - 1)
    tail = budget - keep
    return tokens[:keep] + tokens[len(tokens) - tail :]


def _tokenize(
    text: str, record: ModelRecord, *, add_bos: bool | None = None
) -> Generator[Step, Result | None, tuple[int, ...]]:
    """Tokenize with the held runner. ``add_bos`` None decides from the text: chat
    templates usually write the BOS token themselves, and adding another would give
    the model a prompt it was never trained on."""
    if add_bos is None:
        add_bos = not (record.bos_token and text.startswith(record.bos_token))
    found = yield from perform(Tokenize(text=text, add_bos=add_bos), Tokens)
    return found.ids


def _template(
    completion: CompletionRequest, record: ModelRecord
) -> ChatTemplate | None:
    source = completion.template or record.template
    if source is None:
        return None
    try:
        return ChatTemplate.compile(source)
    except TemplateError as exc:
        raise _template_failure(completion, exc) from None


def _template_failure(completion: CompletionRequest, exc: TemplateError) -> FlowError:
    # A template the client sent is the client's problem, and so is a conversation
    # the model's template refuses (raise_exception: "roles must alternate"); a
    # model template that breaks on its own is ours.
    status = 400 if completion.template or isinstance(exc, TemplateRaised) else 500
    return FlowError(status, f"template error: {exc}")


def _render(
    completion: CompletionRequest,
    record: ModelRecord,
    messages: Sequence[dict[str, JsonValue]],
    now: float,
    extra: dict[str, JsonValue] | None = None,
) -> str:
    template = _template(completion, record)
    if template is None:
        # No template at all: the conversation as plain text, one message a line.
        return "".join(f"{m.get('content') or ''}\n" for m in messages)
    think = completion.think
    try:
        return template.render(
            messages=messages,
            tools=completion.tools or None,
            enable_thinking=None if think is None else think is not False,
            reasoning_effort=think if isinstance(think, str) else None,
            bos_token=record.bos_token,
            eos_token=record.eos_token,
            now=now,
            extra=extra or {},
        )
    except TemplateError as exc:
        raise _template_failure(completion, exc) from None


def _generate_text(
    completion: CompletionRequest, record: ModelRecord, now: float
) -> str:
    if completion.raw:
        return completion.prompt
    messages = generate_messages(
        completion.prompt,
        system=completion.system,
        modelfile_system=record.system,
        modelfile_messages=record.messages,
        has_context=completion.context is not None,
    )
    extra: dict[str, JsonValue] = {}
    if completion.template or completion.suffix:
        # Fill-in-the-middle templates, and templates sent with the request, read
        # the prompt parts directly.
        extra = {
            "prompt": completion.prompt,
            "suffix": completion.suffix or "",
            "system": completion.system or record.system or "",
        }
    return _render(completion, record, messages, now, extra)


# -- generation ---------------------------------------------------------------------


def _run(
    completion: CompletionRequest,
    out: _Output,
    options: Options,
    prompt: tuple[int, ...],
    context_length: int,
    metrics: _Metrics,
) -> Flow:
    sampling = options.sampling
    limit = sampling.num_predict
    if limit <= 0:
        limit = _UNBOUNDED_FACTOR * context_length
    decoder, scanner = Utf8Decoder(), StopScanner(sampling.stop)
    generated: list[int] = []
    collected: list[str] = []
    opened = False

    def emit(text: str) -> Generator[Step, Result | None, None]:
        nonlocal opened
        if not text:
            return
        if not completion.stream:
            collected.append(text)
            return
        if not opened:
            opened = True
            yield StreamOpen()
        yield StreamItem(value=out.chunk(text))

    result = yield Generate(prompt=prompt, sampling=sampling)
    reason: str | None = None
    while reason is None:
        match succeeded(result):
            case PromptEvaluated(count=count, duration=duration):
                metrics.prompt_count, metrics.prompt_duration = count, duration
            case Piece(token=token, data=data, duration=duration):
                generated.append(token)
                metrics.eval_count += 1
                metrics.eval_duration += duration
                text, stopped = scanner.feed(decoder.feed(data))
                yield from emit(text)
                if stopped:
                    reason = "stop"
                elif len(generated) >= limit:
                    reason = "length"
            case GenerationDone(reason=done_reason):
                reason = done_reason
            case other:
                raise TypeError(f"core bug: {other!r} during a generation")
        if reason is None:
            result = yield MORE
    if not scanner.stopped:
        text, stopped = scanner.feed(decoder.flush())
        yield from emit(text if stopped else text + scanner.flush())
        if stopped:
            reason = "stop"  # the stop string was completed by the last bytes
    context = None
    if completion.kind is Kind.GENERATE and not completion.raw:
        context = prompt + tuple(generated)
    final = out.final(reason, text="".join(collected), metrics=metrics, context=context)
    if completion.stream:
        if not opened:
            yield StreamOpen()
        yield StreamItem(value=final)
    else:
        yield JsonReply(value=final)
