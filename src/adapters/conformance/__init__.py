"""A conformance kit: the protocol checks, run against any server of these APIs.

``python -m adapters.conformance URL`` runs every check against the server at
``URL`` (this gateway, another one, Ollama itself) and prints each one's outcome;
it exits 1 if any failed. ``run_checks(Target(url))`` does the same from Python,
and ``pytest --conformance-url URL`` runs each check as a test (the plugin is
registered by the installed package's ``pytest11`` entry point).

The checks need no particular model output: statuses and error envelopes, the
framing of streams and errors in the three dialects, whole-answer envelopes, model
management round trips, structured output that validates, tool-call shapes, and a
client hanging up mid-stream.

Why here and not in ``gateway_core``: the kit talks HTTP to a server, which is
I/O, and the core does none (a test refuses any I/O import there). It lives with
the other adapters and is shipped with them. It reuses rather than copies: streams
are read with the core's own ``NdjsonDecoder`` and ``SseDecoder``, the checks are
the ones the project's own test suite runs against both of its servers
(tests/adapters/test_conformance.py), and a check failing there fails the build.
"""

from __future__ import annotations

from . import checks as _checks  # registers the checks
from .kit import CHECKS, Check, Failed, Outcome, Result, Skipped, Target, run_checks

__all__ = [
    "CHECKS",
    "Check",
    "Failed",
    "Outcome",
    "Result",
    "Skipped",
    "Target",
    "run_checks",
]

del _checks
