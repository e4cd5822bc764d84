"""Ollama's native API: ``{"error": "..."}`` bodies and NDJSON streams."""

from __future__ import annotations

from .._framing import encode_ndjson
from .._json import JsonValue
from .._routes import Dialect
from ._common import DialectSpec, ErrorInfo

__all__ = ["DIALECT"]


def _error_body(error: ErrorInfo) -> JsonValue:
    return {"error": error.message}


def _stream_error(error: ErrorInfo) -> bytes:
    # Ollama's clients (ollama-python, the Go client) raise on any line with an
    # "error" key; the stream then simply ends, which is NDJSON's only terminator.
    return encode_ndjson(_error_body(error))


DIALECT = DialectSpec(
    dialect=Dialect.OLLAMA,
    error_body=_error_body,
    stream_media_type="application/x-ndjson",
    stream_error=_stream_error,
)
