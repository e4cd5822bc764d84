"""Failures, sorted by whose fault they are.

- ``LocalProtocolError``: the adapter broke the contract (fed a result when none was
  asked for, kept calling after an earlier misuse, ...). It is always a bug in the
  caller, so it is raised, and the ``Exchange`` refuses every later call.
- ``ClientError``: the HTTP client sent something we cannot serve. It never leaves the
  core as an exception: the ``Exchange`` turns it into an error response in the
  dialect of the API that was called. It carries the status to answer with, like h11's
  ``error_status_hint``.

Runner failures are neither: they arrive as result values, and the state machine that
asked for the work decides what they mean.
"""

from __future__ import annotations

__all__ = ["ClientError", "GatewayError", "LocalProtocolError"]


class GatewayError(Exception):
    """Base class of every exception this package raises on purpose."""


class LocalProtocolError(GatewayError):
    """The adapter used the core wrongly. Any occurrence is a bug in the adapter."""


class ClientError(GatewayError):
    """A request the client got wrong; becomes an error response, never escapes.

    ``param`` names the offending request field when there is one, so that the OpenAI
    envelope can fill its ``param`` key and every dialect can say which field was wrong.
    ``code`` is a machine-readable kind that clients branch on (OpenAI's
    ``context_length_exceeded``), for the envelopes that carry one.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"an error status must be 4xx or 5xx, not {status}")
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
