"""OpenAI's API as a translation layer (being written)."""

from __future__ import annotations

from ._flow import Flow, FlowError
from ._request import Request

__all__ = [
    "openai_chat",
    "openai_completions",
    "openai_embeddings",
    "openai_model",
    "openai_models",
]


def _not_yet(request: Request) -> Flow:
    if request.body is not None or request.method:
        raise FlowError(501, f"{request.method} {request.path} is not implemented yet")
    yield from ()


openai_chat = openai_completions = openai_embeddings = _not_yet
openai_models = openai_model = _not_yet
