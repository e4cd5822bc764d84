"""gateway_core: the Sans-IO heart of an Ollama-compatible LLM gateway.

Everything here is pure: bytes and values in, bytes and values out. No sockets, threads,
clocks or randomness; those belong to the adapters. The one class most users touch is
``Exchange``; see docs/architecture.md for how an adapter drives it.
"""

from __future__ import annotations

from ._config import DEFAULT_MAX_BODY_BYTES, GatewayConfig
from ._effects import Effect, EndResponse, ResponseEffect, SendBody, StartResponse, Wait
from ._errors import GatewayError, LocalProtocolError
from ._exchange import Exchange, error_response
from ._framing import (
    SSE_DONE,
    FramingError,
    NdjsonDecoder,
    SseDecoder,
    SseEvent,
    encode_ndjson,
    encode_sse,
)
from ._head import RequestHead
from ._routes import ROUTES, Dialect, Operation, Route
from ._state import EXCHANGE_TRANSITIONS, Input, Phase
from ._version import OLLAMA_API_VERSION, __version__

# Every name above is public API; the modules they come from are not.
__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "EXCHANGE_TRANSITIONS",
    "OLLAMA_API_VERSION",
    "ROUTES",
    "SSE_DONE",
    "Dialect",
    "Effect",
    "EndResponse",
    "Exchange",
    "FramingError",
    "GatewayConfig",
    "GatewayError",
    "Input",
    "LocalProtocolError",
    "NdjsonDecoder",
    "Operation",
    "Phase",
    "RequestHead",
    "ResponseEffect",
    "Route",
    "SendBody",
    "SseDecoder",
    "SseEvent",
    "StartResponse",
    "Wait",
    "__version__",
    "encode_ndjson",
    "encode_sse",
    "error_response",
]
