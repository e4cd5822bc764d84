"""The shape every dialect module fills in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .._json import JsonValue
from .._routes import Dialect

__all__ = ["DialectSpec", "ErrorInfo"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorInfo:
    """One error, before a dialect dresses it in its envelope."""

    status: int
    message: str
    param: str | None = None
    """The request field at fault, if one is."""
    request_id: str = ""
    code: str | None = None
    """A machine-readable kind of error (OpenAI's ``code``), if there is one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DialectSpec:
    """How one API family spells errors and frames streams.

    Attributes:
        dialect: which family this is.
        error_body: the JSON body of an error response sent with its real status,
            before any byte of the response went out.
        stream_media_type: ``content-type`` of this dialect's streaming responses.
        stream_error: the bytes that end a stream which fails after its first byte: an
            in-band error, then whatever this dialect's streams end with.
    """

    dialect: Dialect
    error_body: Callable[[ErrorInfo], JsonValue]
    stream_media_type: str
    stream_error: Callable[[ErrorInfo], bytes]
