"""How a family marks its tool calls: the description ``_marked``'s machine reads.

``FORMATS`` names the three JSON call formats the gateway has always read; the
families (``_table``) use them and add grammars of their own.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .._tool_calls import BodyReader, read_json_calls, read_json_cut

__all__ = ["FORMATS", "CallGrammar", "ToolFormat"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallGrammar:
    """How one family marks its calls, for ``ToolCallParser``.

    Attributes:
        markers: each opens a call anywhere in the answer.
        closing: ends a marked body; empty means the body is one JSON value and
            ends where it closes.
        bare: a JSON value as the first thing in the output (or right after a
            call) is a call too, without a marker.
        head: after the marker, a tool name and then this separator come before
            the value (``[ARGS]``); ``head_id`` may sit between name and separator
            with an id after it (``[CALL_ID]``).
        trailer: markup that may follow a value, dropped (``[/TOOL_CALLS]``).
        json_closing: the closing tag counts outside JSON strings only; False for
            bodies that are not JSON.
        read, read_cut: the calls of a whole body, and of one the token limit cut.
    """

    markers: tuple[str, ...] = ()
    closing: str = ""
    bare: bool = False
    head: str = ""
    head_id: str = ""
    trailer: str = ""
    json_closing: bool = True
    read: BodyReader = read_json_calls
    read_cut: BodyReader = read_json_cut

    def __post_init__(self) -> None:
        if not self.markers and not self.bare:
            raise ValueError("a call grammar needs a marker or bare calls")
        if any(not marker for marker in self.markers):
            raise ValueError("a call marker must not be empty")


class ToolFormat(enum.Enum):
    """The JSON call formats the gateway has always read; families name them."""

    HERMES = "hermes"
    JSON = "json"
    MISTRAL = "mistral"


FORMATS: Mapping[ToolFormat, CallGrammar] = MappingProxyType(
    {
        ToolFormat.HERMES: CallGrammar(
            markers=("<tool_call>",), closing="</tool_call>"
        ),
        ToolFormat.MISTRAL: CallGrammar(
            markers=("[TOOL_CALLS]",), trailer="[/TOOL_CALLS]"
        ),
        ToolFormat.JSON: CallGrammar(bare=True),
    }
)
