"""Where models that do not run here are served: upstream pools and remote hosts.

An upstreams file (TOML, read by the adapter, parsed here) maps model names or
``*`` patterns to pools; each pool lists upstream servers of a kind (Ollama's native
API, any OpenAI-compatible server, or another gateway-core). A remote model
(``/api/create`` with ``remote_host``) is a pool of one Ollama upstream, allowed only
when its host is on the remote allow-list.

Everything here is a value: the table decides nothing by itself; the ``Router``
holds the state (health, requests in flight), the flows use the table to route.
"""

from __future__ import annotations

import enum
import ipaddress
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .._access._patterns import matches_any
from .._errors import GatewayError
from .._families import FAMILIES

__all__ = [
    "DEFAULT_REMOTE_PORT",
    "Dialect",
    "Policy",
    "Pool",
    "Timeouts",
    "Upstream",
    "UpstreamConfigError",
    "UpstreamKind",
    "UpstreamTable",
    "normalize_remote_host",
    "remote_host_allowed",
    "remote_pool",
]

DEFAULT_REMOTE_PORT = 11434
_MAX_UPSTREAMS = 256


class UpstreamConfigError(GatewayError, ValueError):
    """The upstreams file (or a remote host) is not valid; the message says where."""


class UpstreamKind(enum.Enum):
    """Which API an upstream speaks."""

    OLLAMA = "ollama"
    """Ollama's native API: ``/api/chat``, ``/api/generate``, NDJSON streams."""
    OPENAI = "openai"
    """OpenAI's chat completions, SSE streams: vLLM, SGLang, llama-server,
    llama-cpp-python's server, LM Studio."""
    GATEWAY = "gateway"
    """Another gateway-core: the native API, plus the extensions it understands
    (``tool_choice``)."""


Dialect = tuple[UpstreamKind, str | None, str]
"""An upstream's kind, its name for the model, its schema format."""


class Policy(enum.Enum):
    """How a pool picks an upstream for a request."""

    LEAST_BUSY = "least-busy"
    """The healthy upstream with the fewest requests in flight."""
    SESSION = "session"
    """The same session key always lands on the same healthy upstream (rendezvous
    hashing), so a conversation returns to the upstream that caches its prefix."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Seconds to wait: for the connection, for the first byte of the answer, and
    between two reads of it."""

    connect: float = 5.0
    first_byte: float = 120.0
    idle: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Upstream:
    """One server behind the gateway.

    Attributes:
        name: unique in its pool; what logs, metrics and ``/api/ps`` call it.
        kind: the API it speaks.
        url: its base URL (scheme, host, port, and a path prefix if any; no
            trailing slash).
        api_key_env: the environment variable holding its API key (sent as a
            bearer token), if it needs one. The client's own is never forwarded.
        model: the name the upstream knows the model by; None sends the name the
            client asked for.
        schema_format: how an OpenAI upstream is asked for a schema:
            ``json_schema`` (OpenAI's ``response_format``: vLLM, SGLang,
            llama-server) or ``json_object`` (``{"type": "json_object", "schema":
            ...}``: llama-cpp-python's server, which knows no other).
    """

    name: str
    kind: UpstreamKind
    url: str
    api_key_env: str | None = None
    model: str | None = None
    schema_format: str = "json_schema"

    @property
    def dialect(self) -> Dialect:
        """What its request depends on: upstreams alike in it get the same one."""
        return (self.kind, self.model, self.schema_format)

    @property
    def host(self) -> str:
        """The host name or address this upstream is reached at (lower case)."""
        return (urlsplit(self.url).hostname or "").lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class Pool:
    """Upstreams serving the same models.

    Attributes:
        name: what logs and ``/api/ps`` call it (``remote:<host>`` for a remote
            model's pool of one).
        models: the model names (``*`` patterns) routed here.
        upstreams: at least one.
        policy: how one is picked.
        session_messages: with the session policy and no explicit key, how many
            of a chat's first messages (system messages aside) make the key.
        parser: the model family whose parser reads tool calls and thinking from
            the text an upstream returns (docs/compatibility.md); "" for the
            default (``hermes``, when tools were offered); ``none`` to read none.
        timeouts: connect, first byte, idle.
        health_interval: seconds between two health checks of each upstream.
        failure_threshold: consecutive failures that open an upstream's circuit.
        cooldown: seconds an open circuit stays open before one request may try.
    """

    name: str
    models: tuple[str, ...]
    upstreams: tuple[Upstream, ...]
    policy: Policy = Policy.LEAST_BUSY
    session_messages: int = 1
    parser: str = ""
    timeouts: Timeouts = field(default_factory=Timeouts)
    health_interval: float = 10.0
    failure_threshold: int = 3
    cooldown: float = 30.0

    def serves(self, model: str) -> bool:
        return matches_any(model, self.models)


@dataclass(frozen=True, slots=True)
class UpstreamTable:
    """Every pool of an upstreams file, in its order (the first match wins)."""

    pools: tuple[Pool, ...] = ()

    def route(self, model: str) -> Pool | None:
        """The pool serving ``model`` (as the client wrote it, or its full name),
        None when the model is not routed (it runs here)."""
        for pool in self.pools:
            if pool.serves(model):
                return pool
        return None

    @property
    def hosts(self) -> frozenset[str]:
        """Every host the file names: the only ones ever contacted for it."""
        return frozenset(up.host for pool in self.pools for up in pool.upstreams)

    @classmethod
    def from_toml(cls, text: str) -> UpstreamTable:
        """Parse an upstreams file.

        Raises:
            UpstreamConfigError: naming the pool, the upstream and the key at fault.
        """
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UpstreamConfigError(f"not valid TOML: {exc}") from None
        unknown = set(data) - {"pool"}
        if unknown:
            raise UpstreamConfigError(f"unknown top-level key {sorted(unknown)[0]!r}")
        pools = data.get("pool", [])
        if not isinstance(pools, list) or not all(isinstance(p, dict) for p in pools):
            raise UpstreamConfigError("'pool' must be an array of tables ([[pool]])")
        parsed = tuple(_pool(index, entry) for index, entry in enumerate(pools))
        names = [pool.name for pool in parsed]
        for name in names:
            if names.count(name) > 1:
                raise UpstreamConfigError(f"two pools are named {name!r}")
        return cls(pools=parsed)


_POOL_KEYS = frozenset(
    {
        "name",
        "models",
        "upstream",
        "policy",
        "session_messages",
        "parser",
        "timeouts",
        "health_interval",
        "failure_threshold",
        "cooldown",
    }
)
_UPSTREAM_KEYS = frozenset(
    {"name", "kind", "url", "api_key_env", "model", "schema_format"}
)


def _pool(index: int, entry: Mapping[str, object]) -> Pool:
    where = f"pool {index + 1}"
    name = _text(entry, "name", where)
    where = f"pool {name!r}"
    _only(entry, _POOL_KEYS, where)
    models = entry.get("models")
    if (
        not isinstance(models, list)
        or not models
        or not all(isinstance(m, str) and m for m in models)
    ):
        raise UpstreamConfigError(
            f"{where}: 'models' must be a non-empty list of names or patterns"
        )
    raw_upstreams = entry.get("upstream")
    if (
        not isinstance(raw_upstreams, list)
        or not raw_upstreams
        or not all(isinstance(u, dict) for u in raw_upstreams)
    ):
        raise UpstreamConfigError(
            f"{where}: needs at least one upstream ([[pool.upstream]])"
        )
    if len(raw_upstreams) > _MAX_UPSTREAMS:
        raise UpstreamConfigError(f"{where}: more than {_MAX_UPSTREAMS} upstreams")
    upstreams = tuple(_upstream(where, up) for up in raw_upstreams)
    seen = [up.name for up in upstreams]
    for up_name in seen:
        if seen.count(up_name) > 1:
            raise UpstreamConfigError(f"{where}: two upstreams are named {up_name!r}")
    policy_text = entry.get("policy", Policy.LEAST_BUSY.value)
    try:
        policy = Policy(policy_text)
    except ValueError:
        raise UpstreamConfigError(
            f"{where}: policy must be 'least-busy' or 'session', not {policy_text!r}"
        ) from None
    parser = entry.get("parser", "")
    if not isinstance(parser, str) or (
        parser and parser != "none" and parser not in FAMILIES
    ):
        raise UpstreamConfigError(
            f"{where}: parser must be 'none' or one of {', '.join(FAMILIES)}"
        )
    return Pool(
        name=name,
        models=tuple(str(m) for m in models),
        upstreams=upstreams,
        policy=policy,
        session_messages=int(
            _number(entry, "session_messages", where, 1, integer=True)
        ),
        parser=parser,
        timeouts=_timeouts(entry.get("timeouts", {}), where),
        health_interval=_number(entry, "health_interval", where, 10.0),
        failure_threshold=int(
            _number(entry, "failure_threshold", where, 3, integer=True)
        ),
        cooldown=_number(entry, "cooldown", where, 30.0),
    )


def _upstream(pool_where: str, entry: Mapping[str, object]) -> Upstream:
    name = _text(entry, "name", f"{pool_where}: an upstream")
    where = f"{pool_where}, upstream {name!r}"
    _only(entry, _UPSTREAM_KEYS, where)
    kind_text = entry.get("kind")
    try:
        kind = UpstreamKind(kind_text)
    except ValueError:
        raise UpstreamConfigError(
            f"{where}: kind must be 'ollama', 'openai' or 'gateway', not {kind_text!r}"
        ) from None
    url = _base_url(_text(entry, "url", where), where)
    api_key_env = entry.get("api_key_env")
    if api_key_env is not None and (
        not isinstance(api_key_env, str) or not api_key_env.isidentifier()
    ):
        raise UpstreamConfigError(
            f"{where}: api_key_env must name an environment variable"
        )
    model = entry.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise UpstreamConfigError(f"{where}: model must be a non-empty string")
    schema_format = entry.get("schema_format", "json_schema")
    if schema_format not in ("json_schema", "json_object"):
        raise UpstreamConfigError(
            f"{where}: schema_format must be 'json_schema' or 'json_object'"
        )
    return Upstream(
        name=name,
        kind=kind,
        url=url,
        api_key_env=api_key_env,
        model=model,
        schema_format=str(schema_format),
    )


def _base_url(text: str, where: str) -> str:
    """``text`` as a base URL: http or https, a host, no query, no credentials."""
    return _http_url(text, f"{where}: url", default_port=None)


def _http_url(text: str, what: str, *, default_port: int | None) -> str:
    """``text`` checked as an http(s) URL with a host and nothing that is not an
    address (credentials, query, fragment), written back with ``default_port``
    when it names none (None: left out), and no trailing slash.

    Raises:
        UpstreamConfigError: saying what, of ``what``, is wrong.
    """
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise UpstreamConfigError(f"invalid {what}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UpstreamConfigError(
            f"{what} must be an http:// or https:// URL with a host"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise UpstreamConfigError(
            f"{what} must not hold credentials, a query or a fragment"
        )
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    port = default_port if port is None else port
    netloc = shown if port is None else f"{shown}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


def _text(entry: Mapping[str, object], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise UpstreamConfigError(f"{where}: {key!r} must be a non-empty string")
    return value


def _only(entry: Mapping[str, object], keys: frozenset[str], where: str) -> None:
    unknown = sorted(set(entry) - keys)
    if unknown:
        raise UpstreamConfigError(f"{where}: unknown key {unknown[0]!r}")


def _number(
    entry: Mapping[str, object],
    key: str,
    where: str,
    default: float,
    *,
    integer: bool = False,
) -> float:
    value = entry.get(key, default)
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
        what = "a positive integer" if integer else "a positive number of seconds"
        raise UpstreamConfigError(f"{where}: {key} must be {what}")
    return value


def _timeouts(value: object, where: str) -> Timeouts:
    if not isinstance(value, dict):
        raise UpstreamConfigError(f"{where}: timeouts must be a table")
    _only(value, frozenset({"connect", "first_byte", "idle"}), f"{where}, timeouts")
    defaults = Timeouts()
    return Timeouts(
        connect=_number(value, "connect", f"{where}, timeouts", defaults.connect),
        first_byte=_number(
            value, "first_byte", f"{where}, timeouts", defaults.first_byte
        ),
        idle=_number(value, "idle", f"{where}, timeouts", defaults.idle),
    )


def normalize_remote_host(text: str) -> str:
    """A remote model's host as Ollama stores it: a bare path is on
    ``localhost:11434``, a missing scheme is ``http``, a missing port is 11434
    (443 for ``ollama.com``, which is https).

    Raises:
        UpstreamConfigError: it is not a usable http(s) URL.
    """
    text = text.strip()
    if not text:
        raise UpstreamConfigError("remote_host is empty")
    if text.startswith("/"):
        text = f"http://localhost:{DEFAULT_REMOTE_PORT}{text}"
    elif "://" not in text:
        text = ("https://" if text.lower() == "ollama.com" else "http://") + text
    https = text.lower().startswith("https://")
    return _http_url(
        text, "remote_host", default_port=443 if https else DEFAULT_REMOTE_PORT
    )


def remote_host_allowed(url: str, allowed: Sequence[str]) -> bool:
    """Whether a remote model's host is on the allow-list (host names or ``*``
    patterns, compared without the port, ignoring case; IPv6 addresses compared
    as addresses)."""
    host = (urlsplit(url).hostname or "").lower()
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return matches_any(host, allowed)
    for entry in allowed:
        try:
            if ipaddress.ip_address(entry.strip("[]")) == address:
                return True
        except ValueError:
            continue
    return False


def remote_pool(url: str, remote_model: str, parser: str = "") -> Pool:
    """The pool of one Ollama upstream a remote model is served by."""
    host = urlsplit(url).hostname or url
    return Pool(
        name=f"remote:{host}",
        models=(),
        upstreams=(
            Upstream(name=host, kind=UpstreamKind.OLLAMA, url=url, model=remote_model),
        ),
        parser=parser,
    )
