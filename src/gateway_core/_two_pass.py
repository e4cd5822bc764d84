"""Think, then constrain: the two-pass plan for structured output (ollama-api.md §3.5).

A constraint applied from the first token leaves a thinking model no room to think. So
when a request has a ``format`` and its thinking is on, the first pass runs free and
ends as soon as the thinking does; the second pass continues from there (the thinking
is in its context) with the constraint on. Without thinking, or without a format,
there is one pass. Unlike the reference, this holds for ``/api/generate`` as well as
``/api/chat``; ``think: false`` never switches the format off; and a model that stops
inside its thinking still gets its thinking closed and is asked for the answer,
instead of returning none.

Phases and events (``TRANSITIONS`` is all of it; a pair not in it is a core bug)::

    THINKING     --THOUGHT--> CONSTRAINED    the closing tag came: pass 2 starts
    THINKING     --STOPPED--> CONSTRAINED    it stopped inside its thinking: close it
    THINKING     --LENGTH---> FINISHED       num_predict or the context ran out
    CONSTRAINED  --STOPPED--> FINISHED
    CONSTRAINED  --LENGTH---> FINISHED
    SINGLE       --STOPPED--> FINISHED
    SINGLE       --LENGTH---> FINISHED
    any but FINISHED --FAILED--> FINISHED    an error in either pass ends the request
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

from ._call_forms import CallForms
from ._json import JsonValue

__all__ = ["TRANSITIONS", "Event", "PassPlan", "Phase"]


class Phase(enum.Enum):
    SINGLE = "single"
    """One pass: constrained if there is a format, free otherwise."""
    THINKING = "thinking"
    """Pass 1 of 2: free, until the thinking ends."""
    CONSTRAINED = "constrained"
    """Pass 2 of 2: the format is on."""
    FINISHED = "finished"


class Event(enum.Enum):
    THOUGHT = "thought"
    """The closing thinking tag was generated."""
    STOPPED = "stopped"
    """The model ended the pass (an end token, or a stop string)."""
    LENGTH = "length"
    """``num_predict`` or the context ran out."""
    FAILED = "failed"


_P, _E = Phase, Event

TRANSITIONS: Mapping[tuple[Phase, Event], Phase] = MappingProxyType(
    {
        (_P.THINKING, _E.THOUGHT): _P.CONSTRAINED,
        (_P.THINKING, _E.STOPPED): _P.CONSTRAINED,
        (_P.THINKING, _E.LENGTH): _P.FINISHED,
        (_P.CONSTRAINED, _E.STOPPED): _P.FINISHED,
        (_P.CONSTRAINED, _E.LENGTH): _P.FINISHED,
        (_P.SINGLE, _E.STOPPED): _P.FINISHED,
        (_P.SINGLE, _E.LENGTH): _P.FINISHED,
        (_P.THINKING, _E.FAILED): _P.FINISHED,
        (_P.CONSTRAINED, _E.FAILED): _P.FINISHED,
        (_P.SINGLE, _E.FAILED): _P.FINISHED,
    }
)


class PassPlan:
    """Which pass runs, and with which constraint."""

    def __init__(self, *, format: JsonValue | CallForms, thinking: bool) -> None:
        self.format = format
        self.phase = Phase.THINKING if format is not None and thinking else Phase.SINGLE

    @property
    def constraint(self) -> JsonValue | CallForms:
        """The format (or a forced call's forms) the current pass runs under
        (None: free)."""
        return None if self.phase is Phase.THINKING else self.format

    @property
    def ends_with_thinking(self) -> bool:
        """The current pass stops where the thinking ends."""
        return self.phase is Phase.THINKING

    def on(self, event: Event) -> Phase:
        try:
            self.phase = TRANSITIONS[self.phase, event]
        except KeyError:
            raise RuntimeError(
                f"core bug: two-pass {event.value} in {self.phase.value}"
            ) from None
        return self.phase
