"""A forced tool call written in the model family's own syntax: the forms it may take.

``tool_choice`` required (or naming a tool) makes the answer one call. A model
writes calls best as its chat template taught it to (``<tool_call>`` JSON,
``[TOOL_CALLS]name[ARGS]{...}``, harmony's commentary channel, Qwen3-Coder's XML),
so the constraint holds it to that markup, and the family's parser reads the answer
as it reads any call. A form is a sequence of pieces, one form per tool the call
may name: the tool's name is text of the form, never something the model chooses
inside a JSON schema.

The core says what the forms are; the runner turns them into its engine's grammar
(``CallForms.to_json`` crosses the process boundary). A ``Text`` piece that is one
of the family's markers is that marker alone, so the runner can name it as the
control token it may be in the model's vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

from ._json import JsonValue

__all__ = [
    "CallForm",
    "CallForms",
    "Choice",
    "Maybe",
    "Piece",
    "Text",
    "Value",
    "Words",
]


@dataclass(frozen=True, slots=True)
class Text:
    """Written exactly as it is."""

    text: str


@dataclass(frozen=True, slots=True)
class Value:
    """One compact JSON value valid against ``schema``."""

    schema: Mapping[str, JsonValue]


@dataclass(frozen=True, slots=True)
class Words:
    """Bare text without ``<``, lines included, then ``until``: the markup that
    ends it (a Qwen3-Coder string parameter, then ``\n</parameter>``), written as
    part of the words so that a line break may belong to either."""

    until: str

    def __post_init__(self) -> None:
        if not self.until.startswith(("\n<", "<")):
            raise ValueError("words end at markup, which starts with '<'")


@dataclass(frozen=True, slots=True)
class Choice:
    """One of ``texts``, written exactly (a Qwen3-Coder string ``enum``)."""

    texts: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.texts:
            raise ValueError("a choice needs at least one text")


@dataclass(frozen=True, slots=True)
class Maybe:
    """``pieces``, or nothing (an optional parameter)."""

    pieces: tuple[Piece, ...]


Piece: TypeAlias = Text | Value | Words | Choice | Maybe
CallForm: TypeAlias = tuple[Piece, ...]


@dataclass(frozen=True, slots=True)
class CallForms:
    """The answer is exactly one of ``forms`` (then the model's end of turn).

    Attributes:
        forms: one per tool the call may name, in the request's order.
        names: the tool each form calls, in the same order.
    """

    forms: tuple[CallForm, ...]
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.forms or len(self.forms) != len(self.names):
            raise ValueError("call forms need one form per tool, at least one")

    def leads(self) -> tuple[str, ...]:
        """Each form's opening text, up to its first piece that is not text."""
        leads = []
        for form in self.forms:
            lead = []
            for piece in form:
                if not isinstance(piece, Text):
                    break
                lead.append(piece.text)
            leads.append("".join(lead))
        return tuple(leads)

    def to_json(self) -> JsonValue:
        """The forms as JSON: a list of forms, each a list of pieces, each one of
        ``{"text": str}``, ``{"json": schema}``, ``{"words": until}``,
        ``{"choice": [str]}`` and ``{"maybe": [pieces]}``."""
        return [[_piece_json(piece) for piece in form] for form in self.forms]


def _piece_json(piece: Piece) -> JsonValue:
    match piece:
        case Text(text=text):
            return {"text": text}
        case Value(schema=schema):
            return {"json": dict(schema)}
        case Words(until=until):
            return {"words": until}
        case Choice(texts=texts):
            return {"choice": list(texts)}
        case Maybe(pieces=pieces):
            return {"maybe": [_piece_json(inner) for inner in pieces]}
