"""OpenAI's API: ``{"error": {...}}`` envelopes and ``data:``-only SSE streams."""

from __future__ import annotations

from .._framing import SSE_DONE, encode_sse
from .._json import JsonValue, dumps
from .._routes import Dialect
from ._common import DialectSpec, ErrorInfo

__all__ = ["DIALECT", "RESPONSES_DIALECT"]

# OpenAI's documented error types. SDKs pick the exception class from the status code;
# the type is for people and for clients that log it.
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def _error_object(error: ErrorInfo) -> JsonValue:
    kind = _TYPE_BY_STATUS.get(error.status)
    if kind is None:
        kind = "invalid_request_error" if error.status < 500 else "api_error"
    return {
        "message": error.message,
        "type": kind,
        "param": error.param,
        "code": error.code,
    }


def _error_body(error: ErrorInfo) -> JsonValue:
    return {"error": _error_object(error)}


def _stream_error(error: ErrorInfo) -> bytes:
    # The reference drops the stream here without [DONE]; clients then hang or report a
    # truncated answer. An error event followed by the usual terminator is what the
    # OpenAI SDK turns into an APIError.
    return encode_sse(dumps(_error_body(error)).decode("utf-8")) + SSE_DONE


DIALECT = DialectSpec(
    dialect=Dialect.OPENAI,
    error_body=_error_body,
    stream_media_type="text/event-stream",
    stream_error=_stream_error,
)


def _responses_stream_error(error: ErrorInfo) -> bytes:
    # The Responses API's streams are named events with no [DONE]: a failure is an
    # `error` event, which the SDK raises. (Its sequence number is not known here:
    # the dialect writes it without the renderer that counted the others.)
    body = {"type": "error", **_error_object_of(error), "sequence_number": 0}
    return encode_sse(dumps(body).decode("utf-8"), event="error")


def _error_object_of(error: ErrorInfo) -> dict[str, JsonValue]:
    value = _error_object(error)
    assert isinstance(value, dict)
    return {key: value[key] for key in ("code", "message", "param")}


RESPONSES_DIALECT = DialectSpec(
    dialect=Dialect.OPENAI_RESPONSES,
    error_body=_error_body,
    stream_media_type="text/event-stream",
    stream_error=_responses_stream_error,
)
