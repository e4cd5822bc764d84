"""The routing table: which paths exist, who answers them, and in which dialect.

Every path the gateway will serve is listed here, including the ones whose handler has
not been written yet: those answer 501 in their API's error envelope, so a client learns
"not yet" rather than "no such thing". Two paths end in a parameter
(`/api/blobs/:digest`, `/v1/models/:model`); a model name may itself contain `/`, so
the parameter takes the rest of the path.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import unquote

__all__ = [
    "ROUTES",
    "Body",
    "Dialect",
    "Operation",
    "Route",
    "RouteMatch",
    "dialect_for_path",
    "match_route",
]


class Dialect(enum.Enum):
    """The API family of a path; it decides error envelopes and stream framing."""

    OLLAMA = "ollama"
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    OPENAI_RESPONSES = "openai-responses"
    """OpenAI's envelope; its streams are named events, and so are their errors."""


class Operation(enum.Enum):
    """What a request asks for, independent of method and path spelling."""

    ROOT = "root"
    VERSION = "version"
    HEALTH = "health"
    METRICS = "metrics"
    GENERATE = "generate"
    CHAT = "chat"
    EMBED = "embed"
    EMBEDDINGS = "embeddings"
    TOKENIZE = "tokenize"
    DETOKENIZE = "detokenize"
    SERVER_TOKENIZE = "server-tokenize"
    SERVER_DETOKENIZE = "server-detokenize"
    LIST_RUNNING = "ps"
    LIST_MODELS = "tags"
    SHOW = "show"
    CREATE = "create"
    COPY = "copy"
    DELETE = "delete"
    PULL = "pull"
    PUSH = "push"
    BLOB_EXISTS = "blob-exists"
    BLOB_UPLOAD = "blob-upload"
    OPENAI_CHAT = "openai-chat"
    OPENAI_COMPLETIONS = "openai-completions"
    OPENAI_EMBEDDINGS = "openai-embeddings"
    OPENAI_LIST_MODELS = "openai-models"
    OPENAI_GET_MODEL = "openai-model"
    ANTHROPIC_MESSAGES = "anthropic-messages"
    ANTHROPIC_COUNT_TOKENS = "anthropic-count-tokens"
    RESPONSES_CREATE = "responses-create"
    RESPONSES_GET = "responses-get"
    RESPONSES_DELETE = "responses-delete"


class Body(enum.Enum):
    """What the route does with a request body."""

    NONE = "none"  # ignored; GET, HEAD and DELETE-without-payload style routes
    JSON = "json"  # required, a JSON object, bounded by GatewayConfig.max_body_bytes
    # Streamed to the handler unbuffered, unbounded by max_body_bytes (blob uploads).
    # Until the model store lands, blob upload answers 501 before reading anything.
    STREAM = "stream"


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """One path and the operations its methods map to."""

    path: str
    dialect: Dialect
    methods: Mapping[str, Operation]
    body: Mapping[str, Body] = field(default_factory=dict)
    """Body handling per method; a method not listed here takes no body."""
    has_param: bool = False
    """Whether ``path`` is a prefix whose remainder is a parameter."""

    @property
    def allow(self) -> str:
        """The ``Allow`` header value for a 405 on this path."""
        return ", ".join(self.methods)

    def body_for(self, method: str) -> Body:
        return self.body.get(method, Body.NONE)


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteMatch:
    route: Route
    param: str | None = None
    """The decoded path parameter (blob digest or model name), if the route has one."""


def _route(
    path: str,
    dialect: Dialect,
    methods: dict[str, Operation],
    json_body: tuple[str, ...] = (),
) -> Route:
    body = dict.fromkeys(json_body, Body.JSON)
    return Route(
        path=path,
        dialect=dialect,
        methods=MappingProxyType(methods),
        body=MappingProxyType(body),
    )


_OLLAMA, _OPENAI, _ANTHROPIC = Dialect.OLLAMA, Dialect.OPENAI, Dialect.ANTHROPIC
_OP = Operation

# Exact paths. The native list follows Ollama's route table (ollama-api.md §1.1) minus
# the ollama.com account and cloud routes, which have no meaning for a local gateway.
_EXACT: tuple[Route, ...] = (
    _route("/", _OLLAMA, {"GET": _OP.ROOT, "HEAD": _OP.ROOT}),
    _route("/api/version", _OLLAMA, {"GET": _OP.VERSION, "HEAD": _OP.VERSION}),
    # Not Ollama's: probes for load balancers and Kubernetes, and Prometheus.
    _route("/health", _OLLAMA, {"GET": _OP.HEALTH, "HEAD": _OP.HEALTH}),
    _route("/healthz", _OLLAMA, {"GET": _OP.HEALTH, "HEAD": _OP.HEALTH}),
    _route("/metrics", _OLLAMA, {"GET": _OP.METRICS}),
    _route("/api/generate", _OLLAMA, {"POST": _OP.GENERATE}, ("POST",)),
    _route("/api/chat", _OLLAMA, {"POST": _OP.CHAT}, ("POST",)),
    _route("/api/embed", _OLLAMA, {"POST": _OP.EMBED}, ("POST",)),
    _route("/api/embeddings", _OLLAMA, {"POST": _OP.EMBEDDINGS}, ("POST",)),
    # Not Ollama's (its users have asked for them): tokens of the model's vocabulary,
    # and llama-server's shapes of the same under its paths.
    _route("/api/tokenize", _OLLAMA, {"POST": _OP.TOKENIZE}, ("POST",)),
    _route("/api/detokenize", _OLLAMA, {"POST": _OP.DETOKENIZE}, ("POST",)),
    _route("/tokenize", _OLLAMA, {"POST": _OP.SERVER_TOKENIZE}, ("POST",)),
    _route("/detokenize", _OLLAMA, {"POST": _OP.SERVER_DETOKENIZE}, ("POST",)),
    _route("/api/ps", _OLLAMA, {"GET": _OP.LIST_RUNNING}),
    _route("/api/tags", _OLLAMA, {"GET": _OP.LIST_MODELS, "HEAD": _OP.LIST_MODELS}),
    _route("/api/show", _OLLAMA, {"POST": _OP.SHOW}, ("POST",)),
    _route("/api/create", _OLLAMA, {"POST": _OP.CREATE}, ("POST",)),
    _route("/api/copy", _OLLAMA, {"POST": _OP.COPY}, ("POST",)),
    _route("/api/delete", _OLLAMA, {"DELETE": _OP.DELETE}, ("DELETE",)),
    _route("/api/pull", _OLLAMA, {"POST": _OP.PULL}, ("POST",)),
    _route("/api/push", _OLLAMA, {"POST": _OP.PUSH}, ("POST",)),
    _route("/v1/chat/completions", _OPENAI, {"POST": _OP.OPENAI_CHAT}, ("POST",)),
    _route("/v1/completions", _OPENAI, {"POST": _OP.OPENAI_COMPLETIONS}, ("POST",)),
    _route("/v1/embeddings", _OPENAI, {"POST": _OP.OPENAI_EMBEDDINGS}, ("POST",)),
    _route("/v1/models", _OPENAI, {"GET": _OP.OPENAI_LIST_MODELS}),
    _route(
        "/v1/responses",
        Dialect.OPENAI_RESPONSES,
        {"POST": _OP.RESPONSES_CREATE},
        ("POST",),
    ),
    _route("/v1/messages", _ANTHROPIC, {"POST": _OP.ANTHROPIC_MESSAGES}, ("POST",)),
    _route(
        "/v1/messages/count_tokens",
        _ANTHROPIC,
        {"POST": _OP.ANTHROPIC_COUNT_TOKENS},
        ("POST",),
    ),
)

# Prefix routes: the remainder of the path is the parameter.
_PREFIXED: tuple[Route, ...] = (
    Route(
        path="/api/blobs/",
        dialect=_OLLAMA,
        methods=MappingProxyType({"HEAD": _OP.BLOB_EXISTS, "POST": _OP.BLOB_UPLOAD}),
        body=MappingProxyType({"POST": Body.STREAM}),
        has_param=True,
    ),
    Route(
        path="/v1/models/",
        dialect=_OPENAI,
        methods=MappingProxyType({"GET": _OP.OPENAI_GET_MODEL}),
        has_param=True,
    ),
    Route(
        path="/v1/responses/",
        dialect=Dialect.OPENAI_RESPONSES,
        methods=MappingProxyType(
            {"GET": _OP.RESPONSES_GET, "DELETE": _OP.RESPONSES_DELETE}
        ),
        has_param=True,
    ),
)

ROUTES: tuple[Route, ...] = _EXACT + _PREFIXED
"""Every route, for documentation and tests."""

_BY_PATH: Mapping[str, Route] = MappingProxyType(
    {route.path: route for route in _EXACT}
)


def match_route(path: str) -> RouteMatch | None:
    """Find the route for a request path (no query string), or None for a 404.

    A single trailing slash is forgiven (``/api/tags/``), as Ollama's router redirects
    it. The parameter is percent-decoded; the fixed part of the path is not, so
    ``/api%2Fversion`` is not ``/api/version``.
    """
    if len(path) > 1 and path.endswith("/") and path not in _BY_PATH:
        path = path[:-1]
    route = _BY_PATH.get(path)
    if route is not None:
        return RouteMatch(route=route)
    for route in _PREFIXED:
        if path.startswith(route.path) and len(path) > len(route.path):
            return RouteMatch(route=route, param=unquote(path[len(route.path) :]))
    return None


def dialect_for_path(path: str | None) -> Dialect:
    """The API a path belongs to, for paths that match no route (and for errors
    raised before the path is known). Anthropic's paths live under ``/v1/messages``;
    everything else under ``/v1/`` is OpenAI's; the rest is native."""
    if path is None:
        return Dialect.OLLAMA
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return Dialect.ANTHROPIC
    if path == "/v1" or path.startswith("/v1/"):
        return Dialect.OPENAI
    return Dialect.OLLAMA
