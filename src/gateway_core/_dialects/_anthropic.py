"""Anthropic's Messages API: typed error envelopes and named-event SSE streams."""

from __future__ import annotations

from .._framing import encode_sse
from .._json import JsonValue, dumps
from .._routes import Dialect
from ._common import DialectSpec, ErrorInfo

__all__ = ["DIALECT"]

# Anthropic's documented error types by status.
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _error_object(error: ErrorInfo) -> dict[str, JsonValue]:
    kind = _TYPE_BY_STATUS.get(error.status)
    if kind is None:
        kind = "invalid_request_error" if error.status < 500 else "api_error"
    return {"type": kind, "message": error.message}


def _error_body(error: ErrorInfo) -> JsonValue:
    return {
        "type": "error",
        "error": _error_object(error),
        "request_id": error.request_id,
    }


def _stream_error(error: ErrorInfo) -> bytes:
    # Anthropic ends a failed stream with an `error` event; there is no terminator
    # after it (message_stop belongs to streams that succeeded).
    body = {"type": "error", "error": _error_object(error)}
    return encode_sse(dumps(body).decode("utf-8"), event="error")


DIALECT = DialectSpec(
    dialect=Dialect.ANTHROPIC,
    error_body=_error_body,
    stream_media_type="text/event-stream",
    stream_error=_stream_error,
)
