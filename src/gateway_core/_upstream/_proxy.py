"""A completion served by an upstream: the flow, from the canonical request to the
client's dialect.

The generation flow hands over here when the model is routed to a pool (the
upstreams file) or is a remote model. What the client wrote was translated into a
``CompletionRequest`` by its dialect's layer; this asks the adapter to send it
(``ProxyCompletion``), reads the upstream's stream back into segments
(``StreamReader``), and writes them with the client's ``Renderer``, exactly as the
local passes do: the client cannot tell which served it, and every reply carries
the model name the client used.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence

from .._answer import Emitter, Ending, Metrics, Output, Renderer
from .._completion_request import CompletionRequest, Kind
from .._families import FAMILIES, OutputParser, ParserSetup
from .._flow import MORE, Flow, FlowError, expect, succeeded
from .._forced import deliver_forced_call, is_forced
from .._json import JsonValue, dumps
from .._models import ModelRecord
from .._prompt import chat_messages
from .._request import Request
from .._segments import Content, Segment
from .._structured import check_format
from .._tool_calls import Toolbox
from ._effects import ProxyCompletion, UpstreamBytes, UpstreamEnded, UpstreamOpened
from ._requests import upstream_requests
from ._streams import StreamReader, UpstreamStreamError
from ._table import Policy, Pool, UpstreamKind

__all__ = ["proxy_completion", "session_key", "with_model_defaults"]

# Without a parser named for the pool, calls the upstream wrote as text (it did
# not parse them itself) are read in the most common text form, <tool_call> JSON.
_DEFAULT_PARSER = "hermes"


def proxy_completion(
    completion: CompletionRequest,
    request: Request,
    renderer: Renderer | None,
    pool: Pool,
) -> Flow:
    """Serve ``completion`` from an upstream of ``pool``."""
    if completion.raw_conflict:
        raise FlowError(400, "raw mode does not support template, system, or context")
    fmt = check_format(completion.format)
    forced = is_forced(completion)
    if forced and fmt is not None:
        raise FlowError(400, "a forced tool call and a format can't be combined")
    if completion.tool_choice == "none":
        completion = dataclasses.replace(completion, tools=())
    out = renderer if renderer is not None else Output(completion, request)
    effect = ProxyCompletion(
        model=completion.model_text,
        pool=pool,
        requests=upstream_requests(completion, pool),
        session=session_key(request, completion, pool),
    )
    opened = expect((yield effect), UpstreamOpened)
    reader = StreamReader(
        sse=opened.kind is UpstreamKind.OPENAI, id_seed=request.request_id
    )
    # An Ollama upstream forces a call by structured output: its answer is the
    # call's JSON, held back and delivered as the call at the end.
    by_format = forced and opened.kind is UpstreamKind.OLLAMA
    parser = None if by_format else _text_parser(completion, pool, request.request_id)
    metrics = Metrics()
    emitter = Emitter(
        completion,
        out,
        metrics,
        show_thinking=completion.think is not False,
        forced_call=by_format,
    )
    while True:
        result = succeeded((yield MORE))
        if isinstance(result, UpstreamEnded):
            break
        assert isinstance(result, UpstreamBytes)
        try:
            segments = reader.feed(result.data)
        except UpstreamStreamError as exc:
            raise FlowError(502, str(exc)) from None
        yield from emitter.emit(_parsed(parser, segments))
    try:
        segments = reader.close()
    except UpstreamStreamError as exc:
        raise FlowError(502, str(exc)) from None
    cut = reader.done_reason == "length"
    tail = _parsed(parser, segments) + (
        [] if parser is None else parser.finish(cut=cut)
    )
    yield from emitter.emit(tail)
    if by_format:
        answer = "".join(emitter.gathered.content)
        try:
            yield from deliver_forced_call(
                emitter, completion, answer, cut=cut, request_id=request.request_id
            )
        except FlowError as exc:
            raise FlowError(502, f"the upstream's forced call: {exc.message}") from None
    metrics.prompt_count = reader.prompt_count
    metrics.prompt_duration = reader.prompt_duration
    metrics.eval_count = reader.eval_count
    metrics.eval_duration = reader.eval_duration
    reason = reader.done_reason or "stop"
    yield from emitter.finish(
        Ending(reason=reason, metrics=metrics, gathered=emitter.gathered)
    )


def _text_parser(
    completion: CompletionRequest, pool: Pool, seed: str
) -> OutputParser | None:
    """The parser for the text the upstream returns, if calls or thinking may
    hide in it: the pool's family, or the default one when tools were offered."""
    name = pool.parser
    if name == "none" or (not name and not completion.tools):
        return None
    family = FAMILIES[name or _DEFAULT_PARSER]
    setup = ParserSetup(
        thinking=bool(name) and completion.think is not False,
        prompt="",
        tools=Toolbox.of(completion.tools) if completion.tools else None,
        id_seed=seed,
    )
    return family.parser(setup)


def _parsed(parser: OutputParser | None, segments: Sequence[Segment]) -> list[Segment]:
    if parser is None:
        return list(segments)
    parsed: list[Segment] = []
    for segment in segments:
        if isinstance(segment, Content):
            parsed += parser.feed(segment.text)
        else:
            parsed.append(segment)
    return parsed


def session_key(
    request: Request, completion: CompletionRequest, pool: Pool
) -> str | None:
    """What keeps a conversation on one upstream, for a pool with the session
    policy: the ``X-Session-Id`` header, else OpenAI's ``user`` (Anthropic's
    ``metadata.user_id``), else the chat's opening (``_opening``; a generate's
    system and prompt), which stays the same as the conversation grows."""
    if pool.policy is not Policy.SESSION:
        return None
    if request.session_id:
        return request.session_id
    body = request.body or {}
    user = body.get("user")
    metadata = body.get("metadata")
    if not isinstance(user, str) and isinstance(metadata, dict):
        user = metadata.get("user_id")
    if isinstance(user, str) and user:
        return f"user:{user}"
    first: JsonValue
    if completion.kind is Kind.CHAT:
        first = _opening(completion.messages, pool.session_messages)
    else:
        first = [completion.system, completion.prompt]
    return "start:" + hashlib.sha256(dumps(first)).hexdigest()


def _opening(
    messages: Sequence[Mapping[str, JsonValue]], count: int
) -> list[JsonValue]:
    """The conversation's opening: its first ``count`` messages other than
    system ones, with the system messages before them (an app's system prompt
    alone would send every conversation to one upstream)."""
    opening: list[JsonValue] = []
    for message in messages:
        if message.get("role") != "system":
            if count == 0:
                break
            count -= 1
        opening.append(dict(message))
    return opening


def with_model_defaults(
    completion: CompletionRequest, record: ModelRecord
) -> CompletionRequest:
    """A remote model's own defaults under the request, as the local path applies
    them (``_prompt``): its parameters under the request's options, its system
    prompt unless the request gives one, its messages before the chat's."""
    changes: dict[str, object] = {}
    if record.parameters:
        changes["options"] = {**record.parameters, **(completion.options or {})}
    if completion.kind is Kind.GENERATE:
        if not completion.system and record.system:
            changes["system"] = record.system
    elif record.system or record.messages:
        changes["messages"] = tuple(
            chat_messages(
                completion.messages,
                system=record.system,
                modelfile_messages=record.messages,
            )
        )
    return dataclasses.replace(completion, **changes) if changes else completion  # type: ignore[arg-type]
