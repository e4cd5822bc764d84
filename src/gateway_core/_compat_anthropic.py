"""Anthropic's Messages API as a translation layer (being written)."""

from __future__ import annotations

from ._flow import Flow, FlowError
from ._request import Request

__all__ = ["anthropic_count_tokens", "anthropic_messages"]


def _not_yet(request: Request) -> Flow:
    if request.body is not None or request.method:
        raise FlowError(501, f"{request.method} {request.path} is not implemented yet")
    yield from ()


anthropic_messages = anthropic_count_tokens = _not_yet
