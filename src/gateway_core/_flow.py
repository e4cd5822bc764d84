"""Flows: handlers that need the store or a model, written as plain generators.

A request like ``/api/chat`` is a conversation with the adapter: look the model up,
get a runner, tokenize, generate, stream. Written as a generator, that conversation
reads top to bottom while staying pure: the flow *yields* what it wants and is *sent*
what came back; it never waits, and it never learns how the adapter got the answer.

A flow yields:

- a work effect (``LookupModel``, ``Generate``...): it is sent the effect's result;
- ``MORE``: the outstanding effect has more results coming (a generation); it is sent
  the next one;
- ``StreamOpen`` / ``StreamItem``: a streaming response opens / carries frames;
  it is sent None at once;
- a ``Reply``: the whole answer; the flow is closed after it.

When a flow returns with its stream open, the stream ends. A ``FlowError`` (or a
``ClientError``) raised anywhere in it becomes an error response, in-band if the stream
has started. ``WorkFailed`` results become ``FlowError`` through ``perform``.
"""

from __future__ import annotations

import enum
from collections.abc import Generator
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

from ._errors import ClientError
from ._framing import encode_ndjson
from ._json import JsonValue
from ._replies import Reply
from ._work import Result, WorkEffect, WorkFailed

__all__ = [
    "MORE",
    "Flow",
    "FlowError",
    "More",
    "Step",
    "StreamItem",
    "StreamOpen",
    "Timeline",
    "perform",
    "succeeded",
]


class FlowError(ClientError):
    """The request fails with this status and message. Not always the client's
    fault (a model that won't load is a 500), but it travels the same one path."""


class More(enum.Enum):
    MORE = "more"


MORE = More.MORE
"""Yielded to ask for the next result of the effect still outstanding."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamOpen:
    """Open a streaming response (status 200, the dialect's framing)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamItem:
    """Bytes of the open stream: one or more frames, already encoded (an NDJSON line,
    SSE events), because only the dialect knows its framing."""

    data: bytes

    @classmethod
    def ndjson(cls, value: JsonValue) -> StreamItem:
        return cls(data=encode_ndjson(value))


class Timeline:
    """The wall-clock times a flow may read: when the request arrived, and the ``now``
    that came with the latest result. Unix seconds, set by the exchange only."""

    __slots__ = ("now", "started")

    def __init__(self, started: float | None) -> None:
        self.started = started
        self.now = 0.0 if started is None else started

    def advance(self, now: float) -> None:
        if self.started is None:
            self.started = now
        self.now = now

    @property
    def elapsed(self) -> float:
        """Seconds since the request arrived (never negative, even if the wall clock
        was set back meanwhile)."""
        return 0.0 if self.started is None else max(0.0, self.now - self.started)


_R = TypeVar("_R")
Step: TypeAlias = WorkEffect | More | StreamOpen | StreamItem | Reply
Flow: TypeAlias = Generator[Step, Result | None, None]


def perform(
    effect: WorkEffect, expected: type[_R]
) -> Generator[Step, Result | None, _R]:
    """Yield ``effect`` and return its result; a failure raises ``FlowError``.

    Use as ``record = (yield from perform(LookupModel(name=n), ModelFound)).record``.
    """
    result = yield effect
    return expect(result, expected)


def succeeded(result: Result | None) -> Result:
    """``result``, unless it is a failure: then ``FlowError``."""
    if isinstance(result, WorkFailed):
        raise FlowError(result.status, result.message)
    if result is None:
        raise TypeError("core bug: a flow was sent None where it waited for work")
    return result


def expect(result: Result | None, expected: type[_R]) -> _R:
    """``result`` as the type the flow waits for; a failure raises ``FlowError``."""
    result = succeeded(result)
    if not isinstance(result, expected):
        # The exchange checks results against the effect's answers before any flow
        # sees them, so this is a flow asking for the wrong type: a core bug.
        raise TypeError(f"core bug: expected {expected.__name__}, got {result!r}")
    return result
