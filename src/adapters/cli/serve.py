"""``gateway-core serve [--host HOST:PORT] ...``: the server, and its keys.

``gateway-core serve --asgi uvicorn`` serves the ASGI app under uvicorn instead of
the bundled trio server (same settings; uvicorn comes with the ``asgi`` extra).

``gateway-core keys new NAME`` makes an API key and prints the entry of the keys
file that accepts it (see docs/security.md).

Each setting comes from its flag, else its ``GATEWAY_*`` variable, else its default
(see ``settings.OPTIONS``). The first SIGINT or SIGTERM starts a graceful shutdown; a
second one stops at once, for the operator who does not want to wait.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from typing import Any

import trio

from gateway_core import hash_api_key

from ..demo_store import ensure_demo_model
from ..logs import LOG_FORMATS, start_logging
from ..model_store import ModelStore
from ..server import Address, Server
from ..settings import OPTIONS, ServerSettings, resolve_settings

__all__ = ["add_serve_commands", "run_local"]

logger = logging.getLogger("adapters.cli")

_LOG_LEVELS = ("debug", "info", "warning", "error")
_LOG_LEVEL_ENV = "GATEWAY_LOG_LEVEL"
_LOG_FORMAT_ENV = "GATEWAY_LOG_FORMAT"
# The access log is at info: a server that prints nothing looks dead.
_DEFAULT_LOG_LEVEL = "info"


def add_serve_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """``serve`` and ``keys``: the commands that run here, not against a server."""
    serve = commands.add_parser(
        "serve",
        allow_abbrev=False,
        help="run the HTTP server",
        description=(
            "Run the HTTP server. Each flag can also be set with the environment "
            "variable shown; a flag wins over its variable. SIGINT or SIGTERM finish "
            "requests in flight and exit; a second signal exits at once."
        ),
    )
    for option in OPTIONS:
        if not option.metavar:  # a switch: present means on
            serve.add_argument(
                option.flag,
                dest=option.name,
                action="store_const",
                const="1",
                help=option.describe(),
            )
            continue
        serve.add_argument(
            option.flag,
            dest=option.name,
            metavar=option.metavar,
            help=option.describe(),
        )
    _add_keys_command(commands)
    serve.add_argument(
        "--log-level",
        dest="log_level",
        metavar="LEVEL",
        help=(
            f"one of {', '.join(_LOG_LEVELS)} "
            f"[env {_LOG_LEVEL_ENV}; default {_DEFAULT_LOG_LEVEL}]"
        ),
    )
    serve.add_argument(
        "--asgi",
        dest="asgi",
        choices=("uvicorn",),
        help=(
            "serve the ASGI app (adapters.asgi) under this ASGI server instead of "
            "the bundled trio server; needs the asgi extra"
        ),
    )
    serve.add_argument(
        "--log-format",
        dest="log_format",
        metavar="FORMAT",
        help=(
            "text, or json for one JSON object per line "
            f"[env {_LOG_FORMAT_ENV}; default text]"
        ),
    )


def _add_keys_command(commands: argparse._SubParsersAction[Any]) -> None:
    keys = commands.add_parser(
        "keys", allow_abbrev=False, help="make API keys for --api-keys-file"
    )
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    new = actions.add_parser(
        "new",
        allow_abbrev=False,
        help="make a key; print it, and the keys-file entry that accepts it",
        description=(
            "Make a random API key. The key is printed once, on stderr; the TOML "
            "entry for the keys file, which holds only its hash, goes to stdout: "
            "gateway-core keys new alice >> keys.toml"
        ),
    )
    new.add_argument("name", help="who the key is for; shown in logs")
    new.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        default=[],
        help="the models it may use (names or patterns with *); default: all",
    )
    new.add_argument(
        "--max-concurrent",
        type=int,
        metavar="N",
        help="its requests at once; default: no limit",
    )


def _new_key(args: argparse.Namespace) -> int:
    if args.max_concurrent is not None and args.max_concurrent < 1:
        print(
            "gateway-core keys new: --max-concurrent must be 1 or more", file=sys.stderr
        )
        return 2
    secret = "gk-" + secrets.token_urlsafe(32)
    lines = ["[[key]]", f"name = {_toml_string(args.name)}"]
    lines.append(f'sha256 = "{hash_api_key(secret)}"')
    if args.models:
        listed = ", ".join(_toml_string(model) for model in args.models)
        lines.append(f"models = [{listed}]")
    if args.max_concurrent is not None:
        lines.append(f"max_concurrent = {args.max_concurrent}")
    print(
        f"API key for {args.name} (shown once, keep it secret): {secret}",
        file=sys.stderr,
    )
    print("\n".join(lines) + "\n")
    return 0


def _toml_string(text: str) -> str:
    # A JSON string is a valid TOML basic string.
    return json.dumps(text)


def run_local(args: argparse.Namespace) -> int:
    """Run ``serve`` or ``keys``; returns the process exit status."""
    if args.command == "keys":
        return _new_key(args)
    try:
        settings = resolve_settings(vars(args), os.environ)
        level = _log_level(args.log_level, os.environ)
        log_format = _log_format(args.log_format, os.environ)
    except ValueError as exc:
        print(f"gateway-core serve: error: {exc}", file=sys.stderr)
        return 2
    logs = start_logging(level, log_format)
    try:
        if args.asgi:
            return _serve_asgi(settings)
        return trio.run(_serve_until_signalled, settings)
    except KeyboardInterrupt:
        # Ctrl-C before the signal handlers were in place (during start-up).
        return 130
    finally:
        logs.stop()


def _log_format(flag: str | None, environ: Mapping[str, str]) -> str:
    source, text = (
        ("--log-format", flag)
        if flag
        else (_LOG_FORMAT_ENV, environ.get(_LOG_FORMAT_ENV))
    )
    name = (text or "text").strip().lower()
    if name not in LOG_FORMATS:
        raise ValueError(f"{source}: {text!r} is not one of {', '.join(LOG_FORMATS)}")
    return name


def _log_level(flag: str | None, environ: Mapping[str, str]) -> int:
    source, text = (
        ("--log-level", flag) if flag else (_LOG_LEVEL_ENV, environ.get(_LOG_LEVEL_ENV))
    )
    name = (text or _DEFAULT_LOG_LEVEL).strip().lower()
    if name not in _LOG_LEVELS:
        raise ValueError(f"{source}: {text!r} is not one of {', '.join(_LOG_LEVELS)}")
    level: int = getattr(logging, name.upper())
    return level


def _serve_asgi(settings: ServerSettings) -> int:
    """The ASGI app under uvicorn, which handles the signals itself (the first one
    finishes requests in flight for up to the shutdown timeout)."""
    try:
        from ..asgi.serve import serve_with_uvicorn
    except ImportError as exc:
        logger.error(  # noqa: TRY400 (the message says what to do)
            "--asgi uvicorn needs the asgi extra "
            "(pip install 'gateway-core[asgi]'): %s",
            exc,
        )
        return 2
    if settings.models is not None:
        _register_demo(settings, ModelStore(settings.models))
    return serve_with_uvicorn(settings)


def _register_demo(settings: ServerSettings, store: ModelStore) -> None:
    if ensure_demo_model(store):
        logger.info(
            "the model store %s was empty: registered a tiny demo model as 'demo'",
            settings.models,
        )


async def _serve_until_signalled(settings: ServerSettings) -> int:
    try:
        server = Server(settings)
    except ValueError as exc:  # the API keys file
        logger.error("%s", exc)  # noqa: TRY400 (the message says it all)
        return 2
    if server.models is not None:
        await trio.to_thread.run_sync(_register_demo, settings, server.models.store)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(_serve_then_stop, server, nursery.cancel_scope)
            except OSError as exc:
                # The message is the user's to act on; a traceback would bury it.
                logger.error("cannot listen on %s: %s", settings.url, exc)  # noqa: TRY400
                return 1
            nursery.start_soon(_relay_signals, signals, server)
    return 0


async def _serve_then_stop(
    server: Server,
    done: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[tuple[Address, ...]] = trio.TASK_STATUS_IGNORED,
) -> None:
    await server.serve(task_status=task_status)
    done.cancel()  # the signal relay has nothing left to do


async def _relay_signals(signals: AsyncIterator[int], server: Server) -> None:
    async for signum in signals:
        name = signal.Signals(signum).name
        if not server.shutting_down:
            logger.info(
                "%s: finishing requests in flight (up to %g s); repeat to stop now",
                name,
                server.settings.shutdown_timeout,
            )
            server.shutdown()
        else:
            logger.warning("%s again: stopping now", name)
            server.stop_now()
