"""The ``gateway-core`` command line.

``serve`` and ``keys`` run here (``serve``); every other verb is a thin HTTP client
of a running server, at ``GATEWAY_HOST``, else ``OLLAMA_HOST``, else
127.0.0.1:11434 (``client``): ``run`` (``run``), and ``list``/``ls``, ``ps``,
``show``, ``rm``, ``cp``, ``stop``, ``pull``, ``push``, ``create -f`` (``verbs``).

Exit status: 0 done; 1 the server refused or could not be reached (the reason on
stderr, as ``Error: ...``); 2 a usage error; 130 interrupted; 141 the reader of
stdout went away.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from gateway_core import __version__

from .client import ApiError, Client
from .run import add_run_command, run
from .serve import add_serve_commands, run_local
from .verbs import VERBS, add_client_commands

__all__ = ["build_parser", "main"]


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
    add_serve_commands(commands)
    add_run_command(commands)
    add_client_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stdout)
        return 0
    if args.command in ("serve", "keys"):
        return run_local(args)
    verb = run if args.verb == "run" else VERBS[args.verb]
    try:
        with Client() as client:
            return verb(client, args)
    except ApiError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`gateway-core run demo | head`): stop quietly, as
        # Unix tools do, with their status; the interpreter's final flush of
        # stdout must not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
