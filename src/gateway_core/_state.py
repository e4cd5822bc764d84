"""The exchange's state machine, as one table.

Rule 1 (from h11): every transition is a row of ``EXCHANGE_TRANSITIONS``. A pair that is
not in the table is adapter misuse: it raises ``LocalProtocolError`` and the exchange
moves to ``ERROR``, where it stays. Nothing else in the package assigns a phase.

Rule 2: the table knows nothing of dialects or endpoints. Which API was called decides
what the response says, never which phase comes next.

Theory of operation. An exchange is born in ``RECEIVING_BODY``. Inputs are named after
what caused them: ``BODY`` and ``END_BODY`` come from the adapter's ``receive_body``
and ``end_body``; ``ABORT`` from ``abort``; ``RESULT`` from ``receive_result``.
``INTERRUPT`` from ``interrupt`` (the server ending a request early, at its
shutdown deadline). ``AWAIT``, ``RESPOND`` and ``DRAINED`` are the core's own:
``AWAIT`` when it has handed out a work effect (or wants the next result of one) and
can do nothing until the result comes; ``RESPOND`` when the rest of the response has
been queued (at once, for a 404; after the body, for a POST; mid-body, for a 413;
after the last result, for a stream); and ``DRAINED`` when the adapter has pulled
the final ``EndResponse``.
Body bytes that arrive after the answer is decided are accepted and dropped, because an
adapter cannot always stop a body that is already in flight.

A streaming response lives in ``WAITING``: each result queues a few ``SendBody``
effects and another ``AWAIT``, until the last one queues the end and ``RESPOND``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["EXCHANGE_TRANSITIONS", "Input", "Phase"]


class Phase(enum.Enum):
    RECEIVING_BODY = "receiving-body"
    """Waiting for request body bytes or their end."""
    HANDLING = "handling"
    """The request (or a result) is being turned into effects; never seen from
    outside, because it ends before ``end_body`` or ``receive_result`` returns."""
    WAITING = "waiting"
    """A work effect is out; the exchange needs its result (``receive_result``)."""
    RESPONDING = "responding"
    """A complete response is queued; the adapter is pulling it."""
    FINISHED = "finished"
    """The last response effect has been handed out."""
    ABORTED = "aborted"
    """The client went away or a send failed; nothing more is produced."""
    ERROR = "error"
    """The adapter broke the contract; every further call raises."""


class Input(enum.Enum):
    BODY = "body"
    END_BODY = "end-body"
    RESULT = "result"
    ABORT = "abort"
    INTERRUPT = "interrupt"
    AWAIT = "await"
    RESPOND = "respond"
    DRAINED = "drained"


_P, _I = Phase, Input

EXCHANGE_TRANSITIONS: Mapping[tuple[Phase, Input], Phase] = MappingProxyType(
    {
        (_P.RECEIVING_BODY, _I.BODY): _P.RECEIVING_BODY,
        (_P.RECEIVING_BODY, _I.END_BODY): _P.HANDLING,
        (_P.RECEIVING_BODY, _I.RESPOND): _P.RESPONDING,
        # Routes that need no body (or stream it elsewhere) start work at once.
        (_P.RECEIVING_BODY, _I.AWAIT): _P.WAITING,
        (_P.RECEIVING_BODY, _I.ABORT): _P.ABORTED,
        # The server ends the request early: an error answer is queued at once.
        (_P.RECEIVING_BODY, _I.INTERRUPT): _P.RESPONDING,
        (_P.HANDLING, _I.RESPOND): _P.RESPONDING,
        (_P.HANDLING, _I.AWAIT): _P.WAITING,
        (_P.WAITING, _I.RESULT): _P.HANDLING,
        (_P.WAITING, _I.ABORT): _P.ABORTED,
        (_P.WAITING, _I.INTERRUPT): _P.RESPONDING,
        (_P.RESPONDING, _I.BODY): _P.RESPONDING,
        (_P.RESPONDING, _I.END_BODY): _P.RESPONDING,
        (_P.RESPONDING, _I.DRAINED): _P.FINISHED,
        (_P.RESPONDING, _I.ABORT): _P.ABORTED,
        # The whole answer is queued already; it only needs sending.
        (_P.RESPONDING, _I.INTERRUPT): _P.RESPONDING,
        (_P.FINISHED, _I.BODY): _P.FINISHED,
        (_P.FINISHED, _I.END_BODY): _P.FINISHED,
        # A send of the last bytes can fail after the core is done; that is no misuse.
        (_P.FINISHED, _I.ABORT): _P.FINISHED,
        (_P.FINISHED, _I.INTERRUPT): _P.FINISHED,
        (_P.ABORTED, _I.BODY): _P.ABORTED,
        (_P.ABORTED, _I.END_BODY): _P.ABORTED,
        (_P.ABORTED, _I.ABORT): _P.ABORTED,
        (_P.ABORTED, _I.INTERRUPT): _P.ABORTED,
        # A result can be on its way in when the client leaves; it is dropped.
        (_P.ABORTED, _I.RESULT): _P.ABORTED,
    }
)
