"""Anthropic's Messages API as a translation layer over the native core.

``POST /v1/messages`` becomes one ``CompletionRequest``
(``_compat_anthropic_request.py``), served by the same flow as ``/api/chat``;
``MessagesRenderer`` (``_compat_anthropic_output.py``) writes the answer as
Anthropic's message body or event stream. ``POST /v1/messages/count_tokens``
renders the same prompt and counts it with the model's own tokenizer. Nothing here
runs a model, and nothing elsewhere knows Anthropic's shapes (ollama-api.md §1.8,
§2.4).
"""

from __future__ import annotations

from ._acquire import acquire
from ._compat_anthropic_output import MessagesRenderer
from ._compat_anthropic_request import messages_request
from ._flow import Flow, perform
from ._generation import (
    _chat_messages,
    _check_capabilities,
    _render,
    _tokenize,
    _with_defaults,
    relaxed,
    serve_completion,
)
from ._model_ops import body_of, lookup
from ._options import resolve_options
from ._replies import JsonReply
from ._request import Request
from ._work import RunnerReady

__all__ = ["anthropic_count_tokens", "anthropic_messages"]


def anthropic_messages(request: Request) -> Flow:
    """``POST /v1/messages``: the native generation, written in Anthropic's shapes."""
    # Thinking is relaxed for this API, as in the reference (the request says so,
    # and the flow drops it once it knows the model can't think).
    completion = messages_request(body_of(request), notes=request.notes)
    yield from serve_completion(
        completion,
        request,
        renderer=lambda translated: MessagesRenderer(translated, request),
    )


def anthropic_count_tokens(request: Request) -> Flow:
    """``POST /v1/messages/count_tokens``: the prompt ``/v1/messages`` would give
    the model, rendered with its template and counted with its tokenizer."""
    completion = messages_request(body_of(request), notes=request.notes, counting=True)
    record = yield from lookup(completion.model, completion.model_text)
    completion = relaxed(completion, record)
    _check_capabilities(completion, record)
    completion = _with_defaults(completion, record)
    options = resolve_options(record.parameters)
    yield from perform(
        acquire(record, options.load, request.config, keep_alive=None), RunnerReady
    )
    messages = _chat_messages(completion, record)
    text = _render(completion, record, messages, request.timeline.now)
    tokens = yield from _tokenize(text, record)
    yield JsonReply(value={"input_tokens": len(tokens)})
