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

import dataclasses
from collections.abc import Callable, Generator, Sequence
from typing import Protocol

from ._acquire import acquire
from ._catalog import capabilities
from ._completion_request import (
    CompletionRequest,
    Kind,
    chat_request,
    generate_request,
)
from ._families import Family, family_for
from ._flow import (
    Flow,
    FlowError,
    Step,
    perform,
)
from ._forced import chosen_tools, is_forced, tool_names
from ._json import JsonValue
from ._model_ops import body_of, lookup
from ._models import ModelRecord
from ._options import Options, SamplingOptions, resolve_options
from ._passes import Metrics, Output, Renderer, Shape, run_passes
from ._prompt import chat_messages, generate_messages, truncated_histories
from ._replies import JsonReply
from ._request import Request
from ._structured import check_format, tool_call_schema
from ._templates import ChatTemplate, TemplateError, TemplateRaised, TemplateTooCostly
from ._thinking import strip_thinking
from ._tool_calls import Toolbox
from ._upstream._proxy import proxy_completion, with_model_defaults
from ._upstream._table import Pool, remote_host_allowed, remote_pool
from ._work import (
    CheckSchema,
    Result,
    RunnerReady,
    SchemaSupported,
    Tokenize,
    Tokens,
    ToolCallConstraint,
    Unloaded,
    UnloadModel,
)

__all__ = ["chat", "generate", "serve_completion"]


def generate(request: Request) -> Flow:
    yield from serve_completion(generate_request(body_of(request)), request)


def chat(request: Request) -> Flow:
    yield from serve_completion(chat_request(body_of(request)), request)


def serve_completion(
    completion: CompletionRequest,
    request: Request,
    renderer: Callable[[CompletionRequest], Renderer] | None = None,
) -> Flow:
    """The generation flow for a translated request; ``renderer`` writes the answer
    in the caller's dialect (native objects when None). The compatibility layers
    enter here with their own translation and renderer."""
    out = Output(completion, request)
    pool = _routed(completion, request)
    record: ModelRecord | None = None
    if pool is None:
        record = yield from lookup(completion.model, completion.model_text)
    elsewhere = pool is not None or (record is not None and bool(record.remote_host))
    if completion.is_empty and elsewhere:
        # Loading or unloading a model that runs elsewhere: nothing to do here.
        reason = "unload" if completion.keep_alive == 0 else "load"
        yield JsonReply(value=out.final(reason))
        return
    if record is not None and record.remote_host:
        completion = with_model_defaults(completion, record)
        pool = _remote_pool(record, request)
    if pool is not None:
        dialect = None if renderer is None else renderer(completion)
        yield from proxy_completion(completion, request, dialect, pool)
        return
    assert record is not None  # not routed, so looked up
    if completion.is_empty and completion.keep_alive == 0:
        yield from perform(UnloadModel(model=record), Unloaded)
        yield JsonReply(value=out.final("unload"))
        return
    if completion.raw_conflict:
        raise FlowError(400, "raw mode does not support template, system, or context")
    fmt = check_format(completion.format)
    completion = relaxed(completion, record)
    _check_capabilities(completion, record)
    completion = _with_defaults(completion, record)
    if completion.debug_render_only:
        yield JsonReply(value=_debug_render(completion, record, out, request))
        return
    forced = is_forced(completion)
    if forced:
        if fmt is not None:
            raise FlowError(400, "a forced tool call and a format can't be combined")
        fmt = check_format(tool_call_schema(chosen_tools(completion)))
    if isinstance(fmt, dict):
        # Before any model work: a schema the engine cannot enforce is a 400.
        yield from perform(CheckSchema(schema=fmt), SchemaSupported)
    tool_calls = yield from _lazy_tool_calls(completion, record, forced)
    options = resolve_options(record.parameters, completion.options)
    if options.ignored_note is not None:
        request.notes.append(options.ignored_note)
    wanted = acquire(
        record, options.load, request.config, keep_alive=completion.keep_alive
    )
    ready = yield from perform(wanted, RunnerReady)
    metrics = Metrics(load=ready.load_duration)
    if completion.is_empty:
        yield JsonReply(value=out.final("load", metrics=metrics))
        return
    rendered = yield from _prompt_tokens(
        completion, record, request, options, ready.context_length
    )
    shape = _shape(
        completion, record, fmt, rendered.text, forced=forced, tool_calls=tool_calls
    )
    if rendered.prefill:
        shape = dataclasses.replace(shape, prefill=rendered.prefill)
    metrics.dropped_messages = rendered.dropped
    prompt = rendered.tokens
    yield from run_passes(
        completion,
        request,
        out if renderer is None else renderer(completion),
        shape,
        options.sampling,
        prompt,
        ready.context_length,
        metrics,
    )


def _routed(completion: CompletionRequest, request: Request) -> Pool | None:
    """The upstream pool the model is routed to by the upstreams file, if any: by
    the name as the client wrote it, or in full (``model:latest``)."""
    table = request.config.upstreams
    return table.route(completion.model_text) or table.route(completion.model.display)


def _remote_pool(record: ModelRecord, request: Request) -> Pool:
    """The pool of one a remote model runs in; 403 when its host is not on the
    allow-list (the one check between a model file and a connection)."""
    if not remote_host_allowed(record.remote_host, request.config.remote_hosts):
        raise FlowError(
            403,
            f"this server cannot run the remote model '{record.name}': its host "
            f"{record.remote_host} is not in GATEWAY_REMOTES",
        )
    return remote_pool(record.remote_host, record.remote_model, record.parser)


def _with_defaults(
    completion: CompletionRequest, record: ModelRecord
) -> CompletionRequest:
    """What the request means once the model is known: a thinking model thinks
    unless told not to (Ollama's default), and ``tool_choice: none`` offers no
    tools at all."""
    changes: dict[str, object] = {}
    if completion.think is None and "thinking" in capabilities(record):
        changes["think"] = True
    if completion.tool_choice == "none":
        changes["tools"] = ()
    return dataclasses.replace(completion, **changes) if changes else completion  # type: ignore[arg-type]


def _family(completion: CompletionRequest, record: ModelRecord) -> Family:
    """The model's family, from the template this request renders with."""
    return family_for(
        completion.template or record.template,
        record.details.family,
        parser=record.parser,
    )


def _shape(
    completion: CompletionRequest,
    record: ModelRecord,
    fmt: JsonValue,
    prompt: str,
    *,
    forced: bool,
    tool_calls: ToolCallConstraint | None,
) -> Shape:
    """What this answer is made of, and how it is constrained. A forced call is
    written in the family's own markup when it has one (its parser then reads it, so
    it knows every offered tool); else it is the JSON call ``fmt`` holds."""
    family = _family(completion, record)
    toolbox = Toolbox.of(completion.tools)
    forms = None
    if forced:
        forms = family.forced_forms(toolbox, tool_names(chosen_tools(completion)))
    offered = bool(completion.tools) and (not forced or forms is not None)
    return Shape(
        family=family,
        thinking="thinking" in capabilities(record),
        show_thinking=completion.think is not False,
        # Only the prompt's end says where the output starts.
        prompt=prompt[-_PROMPT_END:],
        tools=toolbox if offered else None,
        forced_call=forced,
        call_forms=forms,
        format=fmt if forms is None else None,
        tool_calls=tool_calls,
    )


_PROMPT_END = 1024


def _lazy_tool_calls(
    completion: CompletionRequest, record: ModelRecord, forced: bool
) -> Generator[Step, Result | None, ToolCallConstraint | None]:
    """With tools offered and no call forced, the calls the model opens in a format
    the parser knows are constrained to the offered tools (the text around them
    stays free), when the engine can enforce their schemas and the family's calls
    are JSON framed by a marker (or bare JSON). When it cannot (a tool's
    parameters use a keyword it does not support, or the family writes XML or
    channels), the calls stay free and the parser takes what comes, as without the
    constraint: a tool the engine cannot check must not make every request that
    offers it fail."""
    if forced or not completion.tools or completion.format is not None:
        return None
    markers = _family(completion, record).lazy_markers
    if markers is None:
        return None
    try:
        schema = check_format(tool_call_schema(completion.tools))
    except FlowError:
        return None
    assert isinstance(schema, dict)
    verdict = yield CheckSchema(schema=schema)
    if not isinstance(verdict, SchemaSupported):
        return None
    marker, closing = markers
    return ToolCallConstraint(marker=marker, closing=closing, call_schema=schema)


def _debug_render(
    completion: CompletionRequest, record: ModelRecord, out: Output, request: Request
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


def relaxed(completion: CompletionRequest, record: ModelRecord) -> CompletionRequest:
    """The request without ``think`` when it allows that and the model cannot think."""
    if (
        completion.relax_thinking
        and completion.think not in (None, False)
        and "thinking" not in capabilities(record)
    ):
        return dataclasses.replace(completion, think=None)
    return completion


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
) -> Generator[Step, Result | None, _Prompt]:
    """Render and tokenize the prompt so that it fits the context with room left for
    the answer, or fail (a 400 with OpenAI's ``context_length_exceeded`` code when
    the request does not allow truncation)."""
    now = request.timeline.now
    budget = context_length - _answer_room(context_length, options.sampling)
    text = prefill = ""
    dropped = 0
    if completion.kind is Kind.CHAT:
        messages = _chat_messages(completion, record)
        histories = truncated_histories(messages) if completion.truncate else [messages]
        tokens: tuple[int, ...] = ()
        for history in histories:
            text, prefill = _render_prompt(completion, record, history, now)
            tokens = yield from _tokenize(text, record)
            dropped = len(messages) - len(history)
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
        return _Prompt(tokens=tokens, text=text, prefill=prefill, dropped=dropped)
    if not completion.truncate:
        room = context_length - budget
        raise FlowError(
            400,
            f"the input length exceeds the context length: the prompt is "
            f"{len(tokens)} tokens, and the context of {context_length} holds "
            f"{budget} once {room} are kept for the answer",
            code="context_length_exceeded",
        )
    request.notes.append(
        f"truncating a prompt of {len(tokens)} tokens to {budget}, "
        f"leaving room to answer in num_ctx {context_length}"
    )
    cut = _truncate(tokens, budget, options.sampling.num_keep)
    return _Prompt(tokens=cut, text=text, prefill=prefill, dropped=dropped)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _Prompt:
    """The prompt as the model gets it."""

    tokens: tuple[int, ...]
    text: str
    """The text rendered last (its end says where the output starts)."""
    prefill: str
    """The prefilled answer the text ends with; "" when none is continued."""
    dropped: int
    """Messages left out, oldest first, so that the conversation fits."""


def _chat_messages(
    completion: CompletionRequest, record: ModelRecord
) -> list[dict[str, JsonValue]]:
    messages = chat_messages(
        completion.messages, system=record.system, modelfile_messages=record.messages
    )
    if "thinking" in capabilities(record):
        _strip_old_thinking(messages)
    return messages


def _strip_old_thinking(messages: list[dict[str, JsonValue]]) -> None:
    """Drop ``<think>`` spans from assistant turns before the last user message
    (§3.4): old reasoning costs context and templates leave it out of the history
    they were trained on. Later turns, and ``thinking`` fields, are left alone."""
    last_user = max(
        (i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1
    )
    for message in messages[:last_user]:
        content = message.get("content")
        if message.get("role") == "assistant" and isinstance(content, str):
            message["content"] = strip_thinking(content)


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
    # the model's template refuses (raise_exception: "roles must alternate") or is
    # too costly to render (a budget is a property of the input); a model template
    # that breaks on its own is ours.
    blamed = isinstance(exc, TemplateRaised | TemplateTooCostly)
    status = 400 if completion.template or blamed else 500
    return FlowError(status, f"template error: {exc}")


def _render(
    completion: CompletionRequest,
    record: ModelRecord,
    messages: Sequence[dict[str, JsonValue]],
    now: float,
    extra: dict[str, JsonValue] | None = None,
) -> str:
    return _render_prompt(completion, record, messages, now, extra)[0]


def _render_prompt(
    completion: CompletionRequest,
    record: ModelRecord,
    messages: Sequence[dict[str, JsonValue]],
    now: float,
    extra: dict[str, JsonValue] | None = None,
) -> tuple[str, str]:
    """The prompt for ``messages``, and the prefilled answer it ends with ("" when
    the last turn is closed and a new one opens)."""
    template = _template(completion, record)
    if template is None:
        # No template at all: the conversation as plain text, one message a line.
        return "".join(f"{m.get('content') or ''}\n" for m in messages), ""
    think = completion.think

    def render(history: Sequence[dict[str, JsonValue]], *, open_turn: bool) -> str:
        assert template is not None
        return template.render(
            messages=history,
            tools=completion.tools or None,
            add_generation_prompt=open_turn,
            enable_thinking=None if think is None else think is not False,
            reasoning_effort=think if isinstance(think, str) else None,
            bos_token=record.bos_token,
            eos_token=record.eos_token,
            now=now,
            extra=extra or {},
        )

    try:
        prefill = _prefill(messages)
        if prefill is not None:
            continued = _continued(render, messages, prefill)
            if continued is not None:
                return continued, prefill
        return render(messages, open_turn=True), ""
    except TemplateError as exc:
        raise _template_failure(completion, exc) from None


_PREFILL_MARK = "\ue000gateway-prefill\ue000"
"""Stands in for a prefilled answer while its turn is rendered, to find where the
template puts the content (a private-use character: no client text has it by
accident, and no template changes it)."""


def _prefill(messages: Sequence[dict[str, JsonValue]]) -> str | None:
    """The start of an answer to continue: a trailing assistant message with text
    and no tool calls (Anthropic's prefill, llama-server's and Ollama's too)."""
    if not messages:
        return None
    last = messages[-1]
    content = last.get("content")
    if last.get("role") != "assistant" or last.get("tool_calls"):
        return None
    return content if isinstance(content, str) and content else None


class _RenderTurn(Protocol):
    def __call__(
        self, history: Sequence[dict[str, JsonValue]], *, open_turn: bool
    ) -> str: ...


def _continued(
    render: _RenderTurn,
    messages: Sequence[dict[str, JsonValue]],
    prefill: str,
) -> str | None:
    """The prompt that leaves the last assistant turn open after ``prefill``: the
    conversation rendered with a mark in place of the answer, cut at the mark. None
    when the template does not show the mark once (it rewrites or drops the last
    answer): then the message is history and a new turn opens, as before."""
    marked = [*messages[:-1], {**messages[-1], "content": _PREFILL_MARK}]
    text = render(marked, open_turn=False)
    if text.count(_PREFILL_MARK) != 1:
        return None
    return text[: text.index(_PREFILL_MARK)] + prefill


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
