"""gateway_core: the Sans-IO heart of an Ollama-compatible LLM gateway.

Everything here is pure: bytes and values in, bytes and values out. No sockets, threads,
clocks or randomness; those belong to the adapters. The one class most users touch is
``Exchange``; see docs/architecture.md for how an adapter drives it.
"""

from __future__ import annotations

from ._config import DEFAULT_CONTEXT_LENGTH, DEFAULT_MAX_BODY_BYTES, GatewayConfig
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
from ._models import ModelDetails, ModelRecord
from ._names import (
    DEFAULT_TAG,
    InvalidDigest,
    InvalidModelName,
    ModelName,
    parse_digest,
)
from ._options import LoadOptions, Options, SamplingOptions, resolve_options
from ._routes import ROUTES, Dialect, Operation, Route
from ._state import EXCHANGE_TRANSITIONS, Input, Phase
from ._version import OLLAMA_API_VERSION, __version__
from ._work import (
    AcquireRunner,
    BlobPresence,
    BlobStored,
    CheckBlob,
    CopyModel,
    CreateModel,
    DeleteModel,
    Generate,
    GenerationDone,
    ListModels,
    ListRunning,
    LookupModel,
    ModelCreated,
    ModelFound,
    ModelList,
    Piece,
    PromptEvaluated,
    ReceiveBlob,
    Result,
    RunnerReady,
    RunningList,
    RunningModel,
    StoreDone,
    Tokenize,
    Tokens,
    Unloaded,
    UnloadModel,
    WorkEffect,
    WorkFailed,
)

# Every name above is public API; the modules they come from are not.
__all__ = [
    "DEFAULT_CONTEXT_LENGTH",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_TAG",
    "EXCHANGE_TRANSITIONS",
    "OLLAMA_API_VERSION",
    "ROUTES",
    "SSE_DONE",
    "AcquireRunner",
    "BlobPresence",
    "BlobStored",
    "CheckBlob",
    "CopyModel",
    "CreateModel",
    "DeleteModel",
    "Dialect",
    "Effect",
    "EndResponse",
    "Exchange",
    "FramingError",
    "GatewayConfig",
    "GatewayError",
    "Generate",
    "GenerationDone",
    "Input",
    "InvalidDigest",
    "InvalidModelName",
    "ListModels",
    "ListRunning",
    "LoadOptions",
    "LocalProtocolError",
    "LookupModel",
    "ModelCreated",
    "ModelDetails",
    "ModelFound",
    "ModelList",
    "ModelName",
    "ModelRecord",
    "NdjsonDecoder",
    "Operation",
    "Options",
    "Phase",
    "Piece",
    "PromptEvaluated",
    "ReceiveBlob",
    "RequestHead",
    "ResponseEffect",
    "Result",
    "Route",
    "RunnerReady",
    "RunningList",
    "RunningModel",
    "SamplingOptions",
    "SendBody",
    "SseDecoder",
    "SseEvent",
    "StartResponse",
    "StoreDone",
    "Tokenize",
    "Tokens",
    "UnloadModel",
    "Unloaded",
    "Wait",
    "WorkEffect",
    "WorkFailed",
    "__version__",
    "encode_ndjson",
    "encode_sse",
    "error_response",
    "parse_digest",
    "resolve_options",
]
