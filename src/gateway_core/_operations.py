"""Who answers each operation.

A handler sees one complete, type-checked ``Request`` and returns either a ``Reply``
(the answer is known at once: the version, a 501) or a ``Flow`` (the answer needs the
model store or a model: see ``_flow.py``). Operations without a handler yet answer
501, so a client can tell "not yet" from "no such endpoint".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from . import (
    _compat_anthropic,
    _compat_openai,
    _embedding,
    _generation,
    _model_ops,
    _tokenize_ops,
)
from ._flow import Flow
from ._registry import _flows as _registry_flows
from ._replies import ErrorReply, JsonReply, Reply, TextReply
from ._request import Request
from ._responses import _flows as _responses_flows
from ._routes import Operation

__all__ = ["Request", "handle"]


def _root(request: Request) -> Reply:
    # The exact sentence Ollama answers: health checks in the wild compare against it.
    return TextReply(text="Ollama is running")


def _health(request: Request) -> Reply:
    # 503 while stopping, so that a load balancer sends new work elsewhere while
    # the requests in flight finish.
    if request.shutting_down:
        return JsonReply(value={"status": "shutting down"}, status=503)
    return JsonReply(value={"status": "ok"})


def _version(request: Request) -> Reply:
    return JsonReply(value={"version": request.config.reported_version})


def _not_implemented(request: Request) -> Reply:
    return ErrorReply(
        status=501, message=f"{request.method} {request.path} is not implemented yet"
    )


_HANDLERS: Mapping[Operation, Callable[[Request], Reply | Flow]] = MappingProxyType(
    {
        Operation.ROOT: _root,
        Operation.VERSION: _version,
        Operation.HEALTH: _health,
        Operation.METRICS: _model_ops.metrics,
        Operation.PULL: _registry_flows.pull_model,
        Operation.PUSH: _registry_flows.push_model,
        Operation.LIST_MODELS: _model_ops.list_models,
        Operation.LIST_RUNNING: _model_ops.list_running,
        Operation.SHOW: _model_ops.show_model,
        Operation.CREATE: _model_ops.create_model,
        Operation.COPY: _model_ops.copy_model,
        Operation.DELETE: _model_ops.delete_model,
        Operation.BLOB_EXISTS: _model_ops.blob_exists,
        Operation.BLOB_UPLOAD: _model_ops.blob_upload,
        Operation.GENERATE: _generation.generate,
        Operation.CHAT: _generation.chat,
        Operation.EMBED: _embedding.embed,
        Operation.EMBEDDINGS: _embedding.embeddings,
        Operation.TOKENIZE: _tokenize_ops.tokenize,
        Operation.DETOKENIZE: _tokenize_ops.detokenize,
        Operation.SERVER_TOKENIZE: _tokenize_ops.server_tokenize,
        Operation.SERVER_DETOKENIZE: _tokenize_ops.server_detokenize,
        Operation.OPENAI_CHAT: _compat_openai.openai_chat,
        Operation.OPENAI_COMPLETIONS: _compat_openai.openai_completions,
        Operation.OPENAI_EMBEDDINGS: _compat_openai.openai_embeddings,
        Operation.OPENAI_LIST_MODELS: _compat_openai.openai_models,
        Operation.OPENAI_GET_MODEL: _compat_openai.openai_model,
        Operation.ANTHROPIC_MESSAGES: _compat_anthropic.anthropic_messages,
        Operation.ANTHROPIC_COUNT_TOKENS: _compat_anthropic.anthropic_count_tokens,
        Operation.RESPONSES_CREATE: _responses_flows.create_response,
        Operation.RESPONSES_GET: _responses_flows.get_response,
        Operation.RESPONSES_DELETE: _responses_flows.delete_response,
    }
)


def handle(request: Request) -> Reply | Flow:
    """Answer a request, or start the flow that will."""
    return _HANDLERS.get(request.operation, _not_implemented)(request)
