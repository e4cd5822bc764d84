"""Model families: how each writes thinking, tool calls and the end of its turn, and
the incremental parser that reads its output.

``_table`` is the family table and its recognition rule; ``_parser`` the interface
every family's parser offers and the parser most share (thinking tags, then marked
calls, ``_marked``); the other modules are families with a grammar of their own
(harmony's channels, Qwen3-Coder's XML, DeepSeek's blocks). Each machine has its
transition table, drawn in docs/machines.md.
"""

from __future__ import annotations

from ._grammar import FORMATS, CallGrammar, ToolFormat
from ._harmony import HARMONY_TRANSITIONS, HarmonyParser, harmony_aliases, harmony_name
from ._marked import (
    TOOL_CALL_TRANSITIONS,
    ToolCallInput,
    ToolCallParser,
    ToolCallPhase,
)
from ._parser import OutputParser, ParserSetup, TaggedParser
from ._qwen3_coder import coerce
from ._table import FAMILIES, Family, family_for, family_named
from ._table import PLAIN as PLAIN_FAMILY

__all__ = [
    "FAMILIES",
    "FORMATS",
    "HARMONY_TRANSITIONS",
    "PLAIN_FAMILY",
    "TOOL_CALL_TRANSITIONS",
    "CallGrammar",
    "Family",
    "HarmonyParser",
    "OutputParser",
    "ParserSetup",
    "TaggedParser",
    "ToolCallInput",
    "ToolCallParser",
    "ToolCallPhase",
    "ToolFormat",
    "coerce",
    "family_for",
    "family_named",
    "harmony_aliases",
    "harmony_name",
]
