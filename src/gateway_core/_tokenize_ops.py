"""``/api/tokenize`` and ``/api/detokenize``, and llama-server's ``/tokenize`` and
``/detokenize`` shapes as aliases.

Users count tokens and build prompts with them. Both run on the model's own
runner (loaded for the purpose if it is not, with ``load_duration`` saying what
that cost), so the ids are exactly the ones a generation would see: tokenizing a
prompt from ``_debug_render_only`` gives ``prompt_eval_count`` tokens.

Native request: ``model``, ``content`` (tokenize) or ``tokens`` (detokenize),
``add_special`` (default true: the BOS the model adds to a whole prompt),
``with_pieces`` (each token's text too: its bytes, as an array, when they are not
whole UTF-8 characters), ``keep_alive``, ``options``. The native
answer adds ``model`` and the durations; llama-server's is ``{"tokens": ...}`` and
``{"content": ...}`` alone.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping

from ._acquire import acquire
from ._durations import keep_alive_seconds
from ._flow import Flow, FlowError, Step, perform
from ._json import JsonValue
from ._model_ops import body_of, lookup, parse_name, requested_name
from ._options import resolve_options
from ._replies import JsonReply
from ._request import Request
from ._work import Detokenize, Result, RunnerReady, Text, Tokenize, Tokens

__all__ = ["detokenize", "server_detokenize", "server_tokenize", "tokenize"]

_NS = 1_000_000_000
MAX_DETOKENIZE = 1 << 20
"""Token ids one request may send: far more than any context, few enough that a
hostile list cannot hold the runner for long."""


def tokenize(request: Request) -> Flow:
    """``POST /api/tokenize``: ``{model, tokens, [pieces], durations}``."""
    body = body_of(request)
    ready = yield from _runner(body, request)
    ids, pieces = yield from _tokenized(body)
    answer: dict[str, JsonValue] = {
        "model": requested_name(body),
        "tokens": list(ids),
    }
    if pieces is not None:
        answer["pieces"] = list(pieces)
    answer.update(_durations(request, ready))
    yield JsonReply(value=answer)


def detokenize(request: Request) -> Flow:
    """``POST /api/detokenize``: ``{model, content, durations}``."""
    body = body_of(request)
    ready = yield from _runner(body, request)
    text = yield from _detokenized(body)
    answer: dict[str, JsonValue] = {"model": requested_name(body), "content": text}
    answer.update(_durations(request, ready))
    yield JsonReply(value=answer)


def server_tokenize(request: Request) -> Flow:
    """``POST /tokenize`` (llama-server): ``{tokens}``, each ``{id, piece}`` with
    ``with_pieces``."""
    body = body_of(request)
    yield from _runner(body, request)
    ids, pieces = yield from _tokenized(body)
    tokens: list[JsonValue] = list(ids)
    if pieces is not None:
        tokens = [{"id": i, "piece": p} for i, p in zip(ids, pieces, strict=True)]
    yield JsonReply(value={"tokens": tokens})


def server_detokenize(request: Request) -> Flow:
    """``POST /detokenize`` (llama-server): ``{content}``."""
    body = body_of(request)
    yield from _runner(body, request)
    text = yield from _detokenized(body)
    yield JsonReply(value={"content": text})


def _runner(
    body: Mapping[str, JsonValue], request: Request
) -> Generator[Step, Result | None, RunnerReady]:
    as_given = requested_name(body)
    if not as_given:
        raise FlowError(400, "model is required", param="model")
    record = yield from lookup(
        parse_name(as_given, invalid="invalid model name"), as_given
    )
    options = body.get("options")
    if options is not None and not isinstance(options, dict):
        raise FlowError(400, "options must be an object", param="options")
    resolved = resolve_options(record.parameters, options)
    wanted = acquire(
        record,
        resolved.load,
        request.config,
        keep_alive=keep_alive_seconds(body.get("keep_alive")),
        embedding=record.is_embedding,
    )
    return (yield from perform(wanted, RunnerReady))


def _flag(body: Mapping[str, JsonValue], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise FlowError(400, f"{name} must be a boolean", param=name)
    return value


def _tokenized(
    body: Mapping[str, JsonValue],
) -> Generator[
    Step, Result | None, tuple[tuple[int, ...], tuple[JsonValue, ...] | None]
]:
    content = body.get("content")
    if not isinstance(content, str):
        raise FlowError(400, "content must be a string", param="content")
    add_special = _flag(body, "add_special", True)
    with_pieces = _flag(body, "with_pieces", False)
    found = yield from perform(Tokenize(text=content, add_bos=add_special), Tokens)
    if not with_pieces:
        return found.ids, None
    pieces: list[JsonValue] = []
    for token in found.ids:
        piece = yield from perform(Detokenize(ids=(token,)), Text)
        pieces.append(_piece(piece))
    return found.ids, tuple(pieces)


def _piece(text: Text) -> JsonValue:
    """A token's text, or (as llama-server gives it) its bytes when they are not
    whole UTF-8 characters: a token may hold half of one."""
    try:
        return text.data.decode("utf-8") if text.data else text.text
    except UnicodeDecodeError:
        return list(text.data)


def _detokenized(body: Mapping[str, JsonValue]) -> Generator[Step, Result | None, str]:
    tokens = body.get("tokens")
    if not isinstance(tokens, list) or not all(
        isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in tokens
    ):
        raise FlowError(400, "tokens must be an array of token ids", param="tokens")
    if len(tokens) > MAX_DETOKENIZE:
        raise FlowError(
            400, f"at most {MAX_DETOKENIZE} tokens per request", param="tokens"
        )
    ids = tuple(t for t in tokens if isinstance(t, int))
    text = yield from perform(Detokenize(ids=ids), Text)
    return text.text


def _durations(request: Request, ready: RunnerReady) -> dict[str, JsonValue]:
    return {
        "total_duration": round(request.timeline.elapsed * _NS),
        "load_duration": round(ready.load_duration * _NS),
    }
