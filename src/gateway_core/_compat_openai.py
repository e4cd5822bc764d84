"""OpenAI's API as a translation layer over the native core.

Each endpoint translates its request into the canonical one (``CompletionRequest``,
``EmbedRequest``, a store lookup), runs the same flow the native API runs, and
writes the answer in OpenAI's shapes. Nothing here generates, embeds or looks at a
file; nothing here knows the other dialects. The request mapping lives in
``_compat_openai_request``, the answers' shapes in ``_compat_openai_render``.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping, Sequence

from ._compat_openai_render import ChatRenderer, TextRenderer
from ._compat_openai_request import chat_call, check_fields, model_name, text_call
from ._embedding import EmbedRequest, embed_vectors
from ._flow import Flow, FlowError, perform
from ._generation import serve_completion
from ._json import JsonValue
from ._model_ops import body_of, lookup
from ._models import ModelRecord
from ._names import InvalidModelName, ModelName
from ._replies import JsonReply
from ._request import Request
from ._work import ListModels, ModelList

__all__ = [
    "openai_chat",
    "openai_completions",
    "openai_embeddings",
    "openai_model",
    "openai_models",
]


def openai_chat(request: Request) -> Flow:
    """``POST /v1/chat/completions``. The answer's ``created`` is when generation
    starts, the same in every chunk."""
    call = chat_call(body_of(request))
    yield from serve_completion(
        call.completion,
        request,
        renderer=lambda completion: ChatRenderer(
            response_id="chatcmpl-" + request.request_id,
            created=int(request.timeline.now),
            model=completion.model_text,
            include_usage=call.include_usage,
            logprobs=completion.logprobs is not None,
        ),
    )


def openai_completions(request: Request) -> Flow:
    """``POST /v1/completions``."""
    call = text_call(body_of(request))
    yield from serve_completion(
        call.completion,
        request,
        renderer=lambda completion: TextRenderer(
            response_id="cmpl-" + request.request_id,
            created=int(request.timeline.now),
            model=completion.model_text,
            include_usage=call.include_usage,
            echo=call.echo,
        ),
    )


# -- /v1/embeddings -------------------------------------------------------------------

_EMBEDDING_FIELDS = frozenset({"model", "input", "dimensions", "encoding_format"})


def openai_embeddings(request: Request) -> Flow:
    """``POST /v1/embeddings``: normalized vectors, as floats or as base64 of
    little-endian float32, the layout OpenAI's clients decode."""
    body = body_of(request)
    check_fields(body, _EMBEDDING_FIELDS)
    model_text, model = model_name(body)
    inputs = _inputs(body.get("input"))
    as_base64 = _encoding(body.get("encoding_format"))
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or dimensions < 1):
        raise FlowError(400, "dimensions must be at least 1", param="dimensions")
    outcome = yield from embed_vectors(
        EmbedRequest(
            model_text=model_text,
            model=model,
            inputs=inputs,
            dimensions=dimensions if isinstance(dimensions, int) else None,
        ),
        request,
    )
    data: list[JsonValue] = [
        {
            "object": "embedding",
            "index": index,
            "embedding": _base64(vector) if as_base64 else list[JsonValue](vector),
        }
        for index, vector in enumerate(outcome.vectors)
    ]
    yield JsonReply(
        value={
            "object": "list",
            "data": data,
            "model": model_text,
            "usage": {
                "prompt_tokens": outcome.prompt_tokens,
                "total_tokens": outcome.prompt_tokens,
            },
        }
    )


def _inputs(value: JsonValue) -> tuple[str, ...]:
    """A string or an array of strings. An empty array (nothing to embed) and token
    arrays (which would need the tokenizer to mean anything) are refused."""
    if isinstance(value, str):
        return (value,)
    if value is None:
        raise FlowError(400, "input is required", param="input")
    assert isinstance(value, list)
    if not value:
        raise FlowError(400, "input must not be an empty array", param="input")
    texts = tuple(item for item in value if isinstance(item, str))
    if len(texts) != len(value):
        raise FlowError(
            400,
            "input must be a string or an array of strings: token arrays are not "
            "supported",
            param="input",
        )
    return texts


def _encoding(value: JsonValue) -> bool:
    """True for base64, False for floats (the default)."""
    if value is None:
        return False
    assert isinstance(value, str)
    if value.lower() in ("float", "base64"):
        return value.lower() == "base64"
    raise FlowError(
        400,
        f"Invalid value for 'encoding_format' = {value}. "
        "Supported values: ['float', 'base64'].",
        param="encoding_format",
    )


def _base64(vector: Sequence[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


# -- /v1/models -----------------------------------------------------------------------


def _model_object(model_id: str, record: ModelRecord) -> Mapping[str, JsonValue]:
    try:
        owner = ModelName.parse(record.name).namespace
    except InvalidModelName:
        owner = "library"
    return {
        "id": model_id,
        "object": "model",
        "created": int(record.modified_at),
        "owned_by": owner,
    }


def openai_models(request: Request) -> Flow:
    """``GET /v1/models``: every installed model, newest first."""
    found = yield from perform(ListModels(), ModelList)
    records = sorted(found.records, key=lambda r: r.modified_at, reverse=True)
    data: list[JsonValue] = [dict(_model_object(r.name, r)) for r in records]
    yield JsonReply(value={"object": "list", "data": data})


def openai_model(request: Request) -> Flow:
    """``GET /v1/models/{model}``: one model; its ``id`` is the name as asked."""
    as_given = request.param or ""
    try:
        name = ModelName.parse(as_given)
    except InvalidModelName:
        # No model can have this name, so it is not found, as OpenAI would say.
        raise FlowError(404, f"model '{as_given}' not found", param="model") from None
    record = yield from lookup(name, as_given)
    yield JsonReply(value=dict(_model_object(as_given, record)))
