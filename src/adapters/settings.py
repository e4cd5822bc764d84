"""Server configuration: defaults, the ``HOST:PORT`` syntax, flags and variables.

Every setting has one spelling on the command line (``--keep-alive-timeout``) and one in
the environment (``GATEWAY_KEEP_ALIVE_TIMEOUT``). A flag wins over a variable, and a
variable over the default. ``OPTIONS`` lists them once, so that ``--help`` and the code
that reads them cannot drift apart.
"""

from __future__ import annotations

import ipaddress
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway_core import (
    DEFAULT_CONTEXT_LENGTH,
    DEFAULT_MAX_BODY_BYTES,
    UpstreamConfigError,
    UpstreamTable,
)
from gateway_core._config import DEFAULT_NUM_PARALLEL
from gateway_core._durations import format_go_duration, parse_keep_alive_setting
from gateway_core._names import DEFAULT_HOST as DEFAULT_REGISTRY
from gateway_core._names import DEFAULT_NAMESPACE, InvalidModelName, ModelName
from gateway_core._options import MAX_PARALLEL
from gateway_core._registry._reference import registry_host_problem

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_HOST",
    "DEFAULT_KEEP_ALIVE",
    "DEFAULT_KEEP_ALIVE_TIMEOUT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_MAX_LOADED_MODELS",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_PORT",
    "DEFAULT_SEND_TIMEOUT",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "OPTIONS",
    "Option",
    "ServerSettings",
    "default_models_dir",
    "parse_bytes",
    "parse_host",
    "parse_list",
    "parse_seconds",
    "parse_switch",
    "resolve_settings",
]

# Ollama's own defaults, so that every existing client finds us without configuration.
# Loopback only: the gateway has no authentication, and listening on every interface
# must be a decision someone writes down (``--host 0.0.0.0``).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 11434

# A client sends its request head in one packet or a few; ten seconds covers a slow
# mobile link many times over, and bounds how long a slowloris client that trickles
# header bytes can hold a connection.
DEFAULT_HEADER_TIMEOUT = 10.0

# Long enough for a client's next request in a burst (a chat UI polling /api/ps, an
# agent's tool loop), short enough that abandoned sockets don't pile up. It is also
# hypercorn's default and equal to httpx's pool expiry, so neither side routinely
# sends into a connection the other is closing.
DEFAULT_KEEP_ALIVE_TIMEOUT = 5.0

# Per read, not for the whole body: a large upload over a slow link is fine as long
# as bytes keep coming. Thirty seconds without a single byte means the client is gone
# or is holding the connection on purpose.
DEFAULT_BODY_TIMEOUT = 30.0

# A client that reads nothing for thirty seconds while we stream to it is stalled,
# and because of end-to-end backpressure it also stalls the generation that feeds it;
# dropping it frees the model for others.
DEFAULT_SEND_TIMEOUT = 30.0

# Kubernetes kills a pod 30 s after SIGTERM and systemd a unit after 90 s; finishing
# five seconds inside the shorter of the two leaves time to log and exit cleanly.
DEFAULT_SHUTDOWN_TIMEOUT = 25.0

# h11's default is 16 KiB, which large bearer tokens plus headers added by a chain of
# proxies can approach. 64 KiB leaves room and still bounds memory per connection:
# 1000 connections with half-sent heads hold at most 64 MiB.
DEFAULT_MAX_HEADER_BYTES = 64 * 1024

# Ollama's defaults for the model scheduler (ollama-api.md §7.1): an idle model stays
# loaded five minutes, at most three models are loaded at once (its minimum), and 512
# requests may wait before the next one is told "server busy".
DEFAULT_KEEP_ALIVE = 300.0
DEFAULT_MAX_LOADED_MODELS = 3
DEFAULT_MAX_QUEUE = 512
DEFAULT_LOAD_TIMEOUT = 300.0  # Ollama's OLLAMA_LOAD_TIMEOUT
DEFAULT_SCHEMA_COMPILE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """Everything the trio server needs to know; the core's share is ``max_body_bytes``.

    Attributes:
        host: address to listen on; a name such as ``localhost`` binds every address
            it resolves to.
        port: TCP port; 0 picks a free one (tests use that).
        header_timeout: seconds from the first byte of a request head to its end;
            past it, 408 and close.
        keep_alive_timeout: seconds an idle connection may wait for its next request
            (or a new one for its first); past it, closed without a response.
        body_timeout: seconds a body read may stall; past it, 408 and close.
        send_timeout: seconds one write may block on a client that stopped reading;
            past it, the connection is dropped and its exchange aborted.
        shutdown_timeout: seconds in-flight requests get to finish after a graceful
            shutdown starts; then they are cancelled.
        max_header_bytes: largest request head (h11's ``max_incomplete_event_size``);
            past it, 431.
        max_body_bytes: largest request body, passed to the core's ``GatewayConfig``.
        models: the model store's directory; None runs without one (every model
            request then fails with a clear 500; only tests do that).
        keep_alive: seconds an idle model stays loaded when a request doesn't say
            (``math.inf``: forever; 0: unload when idle).
        max_loaded_models: models loaded at once; the least recently used idle one
            is unloaded to make room.
        max_queue: requests that may wait for a model; one more gets 503.
        context_length: ``num_ctx`` when neither request nor model sets one; None
            chooses it from the accelerator memory found at start (4,096 on a CPU).
        gpu_overhead: accelerator memory to leave unused when choosing that
            default, in bytes.
        metrics: serve Prometheus metrics at ``GET /metrics``.
        num_parallel: requests one model serves at once (its slots), when neither
            request nor model sets ``num_parallel``.
        load_timeout: seconds a model load may take; past it, the load fails.
        schema_compile_timeout: seconds a structured-output schema may take to
            compile; past it, its request gets a 400.
        allowed_hosts: Host names (or ``*`` patterns) accepted besides this
            machine's own while listening on loopback (see docs/security.md).
        origins: browser origins allowed besides the local ones (CORS).
        api_keys_file: the TOML file of API keys; with it, every request but
            ``GET /`` and the health check needs a key.
        upstreams: the pools of upstream servers models are routed to, read from
            the upstreams file (docs/scaling.md); empty: every model runs here.
        remotes: the hosts remote models may name (``*`` patterns); none by
            default, so no remote model is contacted unless its host is listed.
        registry: where a model name without a host is pulled from and pushed
            to; Ollama's registry and namespace by default.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    models: Path | None = None
    keep_alive: float = DEFAULT_KEEP_ALIVE
    max_loaded_models: int = DEFAULT_MAX_LOADED_MODELS
    max_queue: int = DEFAULT_MAX_QUEUE
    context_length: int | None = None
    gpu_overhead: int = 0
    metrics: bool = False
    num_parallel: int = DEFAULT_NUM_PARALLEL
    load_timeout: float = DEFAULT_LOAD_TIMEOUT
    schema_compile_timeout: float = DEFAULT_SCHEMA_COMPILE_TIMEOUT
    allowed_hosts: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()
    api_keys_file: Path | None = None
    upstreams: UpstreamTable = field(default_factory=UpstreamTable)
    remotes: tuple[str, ...] = ()
    registry: DefaultRegistry = field(default_factory=lambda: DefaultRegistry())

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0-65535, not {self.port}")
        for name in (
            "header_timeout",
            "keep_alive_timeout",
            "body_timeout",
            "send_timeout",
        ):
            value: float = getattr(self, name)
            # inf is allowed: it is how a caller says "no limit" to trio.
            if not value > 0:
                raise ValueError(f"{name} must be positive, not {value}")
        if not self.shutdown_timeout >= 0:
            raise ValueError(
                f"shutdown_timeout must not be negative, not {self.shutdown_timeout}"
            )
        if self.max_header_bytes < 1 or self.max_body_bytes < 1:
            raise ValueError("byte limits must be positive")
        if self.max_loaded_models < 1 or self.max_queue < 1:
            raise ValueError("max_loaded_models and max_queue must be positive")
        if self.context_length is not None and self.context_length < 4:
            raise ValueError("context_length must be at least 4")
        if self.gpu_overhead < 0:
            raise ValueError("gpu_overhead must not be negative")
        if not 1 <= self.num_parallel <= MAX_PARALLEL:
            raise ValueError(f"num_parallel must be 1-{MAX_PARALLEL}")
        for name in ("load_timeout", "schema_compile_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if math.isnan(self.keep_alive) or self.keep_alive < 0:
            raise ValueError("keep_alive must be a duration of zero or more")

    @property
    def url(self) -> str:
        """The base URL clients should use, for logs and messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


# -- parsing the text forms ----------------------------------------------------------

_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.\-]*[A-Za-z0-9])?")


def parse_host(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` into a host and a port, filling in what is left out.

    Accepted: ``host``, ``host:port``, ``:port`` and ``port`` (the default host,
    as Ollama reads ``OLLAMA_HOST=8080``), ``[::1]``, ``[::1]:port``, each
    optionally after ``http://``. An empty host means the default (loopback), not
    every interface; say ``0.0.0.0`` or ``[::]`` for that.

    Raises:
        ValueError: with a message that shows the accepted forms.
    """
    original = text
    rest = text.strip()
    if rest[:7].lower() == "http://":
        rest = rest[7:]
    rest = rest.removesuffix("/")

    def bad(reason: str) -> ValueError:
        return ValueError(
            f"invalid address {original!r}: {reason} "
            "(expected HOST, HOST:PORT, :PORT, PORT or [IPV6]:PORT)"
        )

    if not rest:
        raise bad("it is empty")
    if rest.isascii() and rest.isdigit():
        rest = ":" + rest  # a bare number is a port: no host name is all digits
    if "://" in rest:
        raise bad("only plain http:// is served")
    port_text: str | None
    if rest.startswith("["):
        host, bracket, after = rest[1:].partition("]")
        if not bracket:
            raise bad("missing ']'")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise bad(f"{host!r} is not an IPv6 address") from None
        if after and not after.startswith(":"):
            raise bad("unexpected text after ']'")
        port_text = after[1:] if after else None
    elif rest.count(":") > 1:
        # "::1:8080" is itself a valid IPv6 address; only brackets say where it ends.
        raise bad("write IPv6 addresses in brackets, e.g. [::1]:11434")
    else:
        host, colon, port_text = rest.partition(":")
        if not colon:
            port_text = None
        if not host:
            host = DEFAULT_HOST
        elif not _HOSTNAME.fullmatch(host):
            raise bad(f"{host!r} is not a host name or IPv4 address")
    if port_text is None:
        return host, DEFAULT_PORT
    if not port_text.isascii() or not port_text.isdigit():
        raise bad(f"port {port_text!r} is not a number")
    port = int(port_text)
    if port > 65535:
        raise bad(f"port {port} is out of range")
    return host, port


def parse_seconds(text: str) -> float:
    """A positive number of seconds; ``inf`` switches a timeout off."""
    return _seconds(text, allow_zero=False)


def _seconds(text: str, *, allow_zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if math.isnan(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{text!r} is not a positive number of seconds")
    return value


_SIZE = re.compile(r"(\d+)\s*([KMG]i?B?)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_bytes(text: str) -> int:
    """A positive size: ``65536``, ``64KiB``, ``8M``. Suffixes are powers of 1024."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a size in bytes (e.g. 65536, 64KiB, 8MiB)")
    number, unit = match.groups()
    value = int(number) * _UNITS[(unit or "")[:1].lower()]
    if value < 1:
        raise ValueError(f"{text!r} is not a positive size")
    return value


def _ranged_int(minimum: int, maximum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = _positive_int(minimum)(text)
        if value > maximum:
            raise ValueError(f"must be at most {maximum}, not {value}")
        return value

    return parse


def _positive_int(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.strip().isdigit() or int(text) < minimum:
            raise ValueError(f"{text!r} is not a whole number of at least {minimum}")
        return int(text)

    return parse


def default_models_dir(environ: Mapping[str, str], home: Path) -> Path:
    """The per-user place for models: the platform's data directory, not the
    working directory, so that the store is found again from anywhere."""
    if sys.platform == "win32":
        base = Path(environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / "gateway-core" / "models"


@dataclass(frozen=True, slots=True)
class DefaultRegistry:
    """The registry (and namespace) a short model name is pulled from."""

    host: str = DEFAULT_REGISTRY
    namespace: str = DEFAULT_NAMESPACE
    insecure: bool = False
    """Plain HTTP (the setting was given as an ``http://`` URL)."""


def parse_registry(text: str) -> DefaultRegistry:
    """``[http[s]://]HOST[:PORT][/NAMESPACE]``: the default registry.

    Raises:
        ValueError: the host is not one DNS could resolve, or the namespace is
            not a model name's.
    """
    insecure = text.startswith("http://")
    rest = text.split("://", 1)[1] if "://" in text else text
    host, _, namespace = rest.strip("/").partition("/")
    problem = registry_host_problem(host)
    if problem is not None:
        raise ValueError(f"invalid registry {text!r}: {problem}")
    namespace = namespace or DEFAULT_NAMESPACE
    try:
        ModelName.parse(f"{host}/{namespace}/model")
    except InvalidModelName:
        raise ValueError(f"invalid registry namespace {namespace!r}") from None
    return DefaultRegistry(host=host, namespace=namespace, insecure=insecure)


def read_upstreams_file(text: str) -> UpstreamTable:
    """The upstreams file at ``text``, read and checked.

    Raises:
        ValueError: it cannot be read, or is not valid (naming the entry at fault).
    """
    try:
        content = Path(text).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the upstreams file {text}: {exc}") from None
    try:
        return UpstreamTable.from_toml(content)
    except UpstreamConfigError as exc:
        raise ValueError(f"upstreams file {text}: {exc}") from None


def parse_list(text: str) -> tuple[str, ...]:
    """A comma-separated list, as ``OLLAMA_ORIGINS`` is written; blanks dropped."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def parse_switch(text: str) -> bool:
    """An on/off setting, as environment variables spell it."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(
        f"{text!r} is not on or off (1, true, yes, on / 0, false, no, off)"
    )


def _non_negative_bytes(text: str) -> int:
    return 0 if text.strip() == "0" else parse_bytes(text)


def _parse_shutdown_seconds(text: str) -> float:
    # Zero is meaningful here: "cancel in-flight requests at once".
    return _seconds(text, allow_zero=True)


# -- flags and environment variables -------------------------------------------------

# Ollama's variable for the same list; read too, so that a setup written for Ollama
# keeps its browser clients.
_OLLAMA_ORIGINS = "OLLAMA_ORIGINS"
_OLLAMA_HOST = "OLLAMA_HOST"
# Settings whose Ollama variable applies when the GATEWAY_ one is unset.
_OLLAMA_FALLBACKS = {"host": _OLLAMA_HOST, "remotes": "OLLAMA_REMOTES"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Option:
    """One setting as the command line and the environment spell it.

    ``name`` is the ``ServerSettings`` field (and the argparse ``dest``); the flag and
    the variable are derived from it, so the three spellings cannot drift apart.
    ``default`` is the text ``--help`` shows; the value itself is the field's default.
    """

    name: str
    metavar: str
    default: str
    help: str
    parse: Callable[[str], object]

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "GATEWAY_" + self.name.upper()

    def describe(self) -> str:
        return f"{self.help} [env {self.env}; default {self.default}]"


OPTIONS: tuple[Option, ...] = (
    Option(
        name="host",
        metavar="HOST:PORT",
        default=f"{DEFAULT_HOST}:{DEFAULT_PORT}",
        help=(
            "address to listen on: HOST, HOST:PORT, :PORT, PORT or [IPV6]:PORT "
            "(OLLAMA_HOST too, when GATEWAY_HOST is unset)"
        ),
        parse=parse_host,  # sets port too
    ),
    Option(
        name="header_timeout",
        metavar="SECONDS",
        default=f"{DEFAULT_HEADER_TIMEOUT:g}",
        help="time a client has to finish sending a request head (then 408)",
        parse=parse_seconds,
    ),
    Option(
        name="keep_alive_timeout",
        metavar="SECONDS",
        default=f"{DEFAULT_KEEP_ALIVE_TIMEOUT:g}",
        help="how long an idle connection waits for its next request",
        parse=parse_seconds,
    ),
    Option(
        name="body_timeout",
        metavar="SECONDS",
        default=f"{DEFAULT_BODY_TIMEOUT:g}",
        help="longest stall while reading a request body (then 408)",
        parse=parse_seconds,
    ),
    Option(
        name="send_timeout",
        metavar="SECONDS",
        default=f"{DEFAULT_SEND_TIMEOUT:g}",
        help="longest a client may stop reading a response before it is dropped",
        parse=parse_seconds,
    ),
    Option(
        name="shutdown_timeout",
        metavar="SECONDS",
        default=f"{DEFAULT_SHUTDOWN_TIMEOUT:g}",
        help="time in-flight requests get to finish on shutdown",
        parse=_parse_shutdown_seconds,
    ),
    Option(
        name="max_header_bytes",
        metavar="BYTES",
        default=str(DEFAULT_MAX_HEADER_BYTES),
        help="largest request head (then 431)",
        parse=parse_bytes,
    ),
    Option(
        name="max_body_bytes",
        metavar="BYTES",
        default=str(DEFAULT_MAX_BODY_BYTES),
        help="largest request body (then 413)",
        parse=parse_bytes,
    ),
    Option(
        name="models",
        metavar="DIR",
        default="the per-user data directory, e.g. ~/.local/share/gateway-core/models",
        help="model store (Ollama's layout: blobs/ and manifests/)",
        parse=Path,
    ),
    Option(
        name="keep_alive",
        metavar="DURATION",
        default=format_go_duration(DEFAULT_KEEP_ALIVE),
        help="how long an idle model stays loaded (e.g. 30s, 10m, -1 = forever)",
        parse=parse_keep_alive_setting,
    ),
    Option(
        name="max_loaded_models",
        metavar="N",
        default=str(DEFAULT_MAX_LOADED_MODELS),
        help="models loaded at once",
        parse=_positive_int(1),
    ),
    Option(
        name="max_queue",
        metavar="N",
        default=str(DEFAULT_MAX_QUEUE),
        help="requests that may wait for a model (then 503)",
        parse=_positive_int(1),
    ),
    Option(
        name="context_length",
        metavar="TOKENS",
        default=(
            f"by accelerator memory, as Ollama: {DEFAULT_CONTEXT_LENGTH} on a CPU, "
            "32768 from 23 GiB, 262144 from 47 GiB"
        ),
        help="default num_ctx",
        parse=_positive_int(4),
    ),
    Option(
        name="gpu_overhead",
        metavar="BYTES",
        default="0",
        help="accelerator memory to leave aside when choosing the default num_ctx",
        parse=_non_negative_bytes,
    ),
    Option(
        name="metrics",
        metavar="",
        default="off",
        help="serve Prometheus metrics at GET /metrics (variable: 1 or true)",
        parse=parse_switch,
    ),
    Option(
        name="num_parallel",
        metavar="N",
        default=str(DEFAULT_NUM_PARALLEL),
        help="requests one model serves at once (default num_parallel)",
        parse=_ranged_int(1, MAX_PARALLEL),
    ),
    Option(
        name="load_timeout",
        metavar="SECONDS",
        default=f"{DEFAULT_LOAD_TIMEOUT:g}",
        help="longest a model may take to load (then the load fails)",
        parse=parse_seconds,
    ),
    Option(
        name="schema_compile_timeout",
        metavar="SECONDS",
        default=f"{DEFAULT_SCHEMA_COMPILE_TIMEOUT:g}",
        help="longest a structured-output schema may take to compile (then 400)",
        parse=parse_seconds,
    ),
    Option(
        name="allowed_hosts",
        metavar="NAMES",
        default="none: this machine's names and addresses only",
        help=(
            "more Host names to answer while listening on loopback, comma-separated; "
            "'*' allows any"
        ),
        parse=parse_list,
    ),
    Option(
        name="origins",
        metavar="ORIGINS",
        default="none: localhost pages and app schemes only",
        help=(
            "more browser origins allowed (CORS), comma-separated, '*' as a wildcard; "
            f"{_OLLAMA_ORIGINS} is added too"
        ),
        parse=parse_list,
    ),
    Option(
        name="api_keys_file",
        metavar="FILE",
        default="none: no key needed",
        help="TOML file of API keys (see gateway-core keys new)",
        parse=Path,
    ),
    Option(
        name="registry",
        metavar="URL",
        default=f"{DEFAULT_REGISTRY}/{DEFAULT_NAMESPACE}",
        help=(
            "where model names without a host are pulled from and pushed to: "
            "[http[s]://]HOST[:PORT][/NAMESPACE] (http:// for plain HTTP)"
        ),
        parse=parse_registry,
    ),
    Option(
        name="upstreams",
        metavar="FILE",
        default="none: every model runs here",
        help="TOML file of upstream pools models are routed to (docs/scaling.md)",
        parse=read_upstreams_file,
    ),
    Option(
        name="remotes",
        metavar="HOSTS",
        default="none",
        help=(
            "hosts remote models (created with remote_host) may use, comma-separated "
            "(OLLAMA_REMOTES too, when GATEWAY_REMOTES is unset)"
        ),
        parse=parse_list,
    ),
)


def resolve_settings(
    flags: Mapping[str, str | None],
    environ: Mapping[str, str],
    *,
    home: Path | None = None,
) -> ServerSettings:
    """Build settings from flag values (by option name), else variables, else defaults.

    An empty variable counts as unset, as shells make ``GATEWAY_HOST= cmd`` easy to
    write by accident. The model store defaults to ``default_models_dir`` under
    ``home`` (the user's home directory when not given).

    Raises:
        ValueError: naming the flag or variable whose value is wrong.
    """
    values: dict[str, Any] = {}
    for option in OPTIONS:
        given = flags.get(option.name)
        source, text = (
            (option.flag, given)
            if given is not None
            else (option.env, environ.get(option.env))
        )
        fallback = _OLLAMA_FALLBACKS.get(option.name)
        if fallback is not None and not text and environ.get(fallback):
            # A drop-in for Ollama honours the variables Ollama's users already set.
            source, text = fallback, environ[fallback]
        if not text:
            continue  # the ServerSettings default applies
        try:
            values[option.name] = option.parse(text)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None
    if "host" in values:
        values["host"], values["port"] = values["host"]
    ollama_origins = parse_list(environ.get(_OLLAMA_ORIGINS, ""))
    if ollama_origins:
        values["origins"] = (*values.get("origins", ()), *ollama_origins)
    if "models" not in values:
        values["models"] = default_models_dir(environ, home or Path.home())
    return ServerSettings(**values)
