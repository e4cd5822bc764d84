"""The exchange's state machine, as one table.

Rule 1 (from h11): every transition is a row of ``EXCHANGE_TRANSITIONS``. A pair that is
not in the table is adapter misuse: it raises ``LocalProtocolError`` and the exchange
moves to ``ERROR``, where it stays. Nothing else in the package assigns a phase.

Rule 2: the table knows nothing of dialects or endpoints. Which API was called decides
what the response says, never which phase comes next.

Theory of operation. An exchange is born in ``RECEIVING_BODY``. Inputs are named after
what caused them: ``BODY`` and ``END_BODY`` come from the adapter's ``receive_body``
and ``end_body``; ``ABORT`` from ``abort``; ``RESULT`` from ``receive_result``.
``RESPOND`` and ``DRAINED`` are the core's own: ``RESPOND`` when a complete response
has been queued (at once, for a 404 or a GET; after the body, for a POST; mid-body,
for a 413), and ``DRAINED`` when the adapter has pulled the final ``EndResponse``.
Body bytes that arrive after the answer is decided are accepted and dropped, because an
adapter cannot always stop a body that is already in flight.

The runner's phases (waiting for a result while a response streams) join this table
with the runner; until then ``RESULT`` is legal nowhere.
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
    """The request is complete and is being turned into a response."""
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
    RESPOND = "respond"
    DRAINED = "drained"


_P, _I = Phase, Input

EXCHANGE_TRANSITIONS: Mapping[tuple[Phase, Input], Phase] = MappingProxyType(
    {
        (_P.RECEIVING_BODY, _I.BODY): _P.RECEIVING_BODY,
        (_P.RECEIVING_BODY, _I.END_BODY): _P.HANDLING,
        (_P.RECEIVING_BODY, _I.RESPOND): _P.RESPONDING,
        (_P.RECEIVING_BODY, _I.ABORT): _P.ABORTED,
        (_P.HANDLING, _I.RESPOND): _P.RESPONDING,
        (_P.RESPONDING, _I.BODY): _P.RESPONDING,
        (_P.RESPONDING, _I.END_BODY): _P.RESPONDING,
        (_P.RESPONDING, _I.DRAINED): _P.FINISHED,
        (_P.RESPONDING, _I.ABORT): _P.ABORTED,
        (_P.FINISHED, _I.BODY): _P.FINISHED,
        (_P.FINISHED, _I.END_BODY): _P.FINISHED,
        # A send of the last bytes can fail after the core is done; that is no misuse.
        (_P.FINISHED, _I.ABORT): _P.FINISHED,
        (_P.ABORTED, _I.BODY): _P.ABORTED,
        (_P.ABORTED, _I.END_BODY): _P.ABORTED,
        (_P.ABORTED, _I.ABORT): _P.ABORTED,
    }
)
