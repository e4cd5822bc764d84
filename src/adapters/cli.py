"""The ``gateway-core`` command line: ``gateway-core serve [--host HOST:PORT] ...``.

Each setting comes from its flag, else its ``GATEWAY_*`` variable, else its default
(see ``settings.OPTIONS``). The first SIGINT or SIGTERM starts a graceful shutdown; a
second one stops at once, for the operator who does not want to wait.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence

import trio

from gateway_core import __version__

from .model_store import ensure_demo_model
from .server import Address, Server
from .settings import OPTIONS, ServerSettings, resolve_settings

__all__ = ["build_parser", "main"]

logger = logging.getLogger("adapters.cli")

_LOG_LEVELS = ("debug", "info", "warning", "error")
_LOG_LEVEL_ENV = "GATEWAY_LOG_LEVEL"
# The access log is at info: a server that prints nothing looks dead.
_DEFAULT_LOG_LEVEL = "info"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway-core",
        allow_abbrev=False,
        description="An Ollama-compatible LLM gateway.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
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
        serve.add_argument(
            option.flag,
            dest=option.name,
            metavar=option.metavar,
            help=option.describe(),
        )
    serve.add_argument(
        "--log-level",
        dest="log_level",
        metavar="LEVEL",
        help=(
            f"one of {', '.join(_LOG_LEVELS)} "
            f"[env {_LOG_LEVEL_ENV}; default {_DEFAULT_LOG_LEVEL}]"
        ),
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        settings = resolve_settings(vars(args), os.environ)
        level = _log_level(args.log_level, os.environ)
    except ValueError as exc:
        print(f"gateway-core serve: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    try:
        return trio.run(_serve_until_signalled, settings)
    except KeyboardInterrupt:
        # Ctrl-C before the signal handlers were in place (during start-up).
        return 130


def _log_level(flag: str | None, environ: Mapping[str, str]) -> int:
    source, text = (
        ("--log-level", flag) if flag else (_LOG_LEVEL_ENV, environ.get(_LOG_LEVEL_ENV))
    )
    name = (text or _DEFAULT_LOG_LEVEL).strip().lower()
    if name not in _LOG_LEVELS:
        raise ValueError(f"{source}: {text!r} is not one of {', '.join(_LOG_LEVELS)}")
    level: int = getattr(logging, name.upper())
    return level


async def _serve_until_signalled(settings: ServerSettings) -> int:
    server = Server(settings)
    if server.models is not None:
        store = server.models.store
        if await trio.to_thread.run_sync(ensure_demo_model, store):
            logger.info(
                "the model store %s was empty: registered a tiny demo model as 'demo'",
                settings.models,
            )
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
