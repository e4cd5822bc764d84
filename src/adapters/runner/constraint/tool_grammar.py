"""The grammar of free text whose tool calls are constrained once they open.

llguidance's lazy lexemes do the work (its docs, "Tool calling"): the text is free
until the marker appears, and the marker's lexeme is lazy, so it ends at the first
occurrence. From there the body must be a call (or an array of calls) valid against
the offered tools, then the closing tag; then the text is free again, and another
call may open. A token that holds the end of the marker and the start of the body
(``ll>\\n{``) is matched byte by byte like any other, so the model cannot slip past
the constraint between two tokens.

A marker (or closing tag) that is one *control* token of the vocabulary (Mistral's
``[TOOL_CALLS]``) cannot be written as text: the grammar names that token by id, and
the free text, which never holds control tokens, ends where it comes.

Without a marker (a model whose calls are bare JSON at the start of its answer), the
answer is either whitespace then calls, or text that does not start with a bracket.
A marker that opens a JSON array (``functools[``) is followed by the array's calls,
separated by commas, and its closing bracket.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final

from ..values import ToolCallTrigger

__all__ = ["COMPACT", "lark_text", "tool_call_grammar"]

# Between the marker, the body and the closing tag models write a newline or a
# space; a random model must not spend its tokens there, so a few at most.
_GAP: Final = r"/[ \t\r\n]{0,4}/"
COMPACT: Final = {"whitespace_flexible": False}
"""llguidance's JSON options for a ``%json`` rule: no whitespace between tokens."""
_DEFINITIONS: Final = ("$defs", "definitions")


def _no_tokens(text: str) -> int | None:
    return None


def tool_call_grammar(
    trigger: ToolCallTrigger, *, special: Callable[[str], int | None] = _no_tokens
) -> str:
    """The Lark grammar (llguidance's dialect) for ``trigger``; ``special`` gives
    the marker's or closing tag's token id when it is a control token."""
    call = json.loads(trigger.call_schema)
    # The call's definitions move to the new root, where its "#/$defs/..." point.
    definitions = {key: call.pop(key) for key in _DEFINITIONS if key in call}
    body = {
        "anyOf": [call, {"type": "array", "items": call, "minItems": 1}],
        **definitions,
        "x-guidance": COMPACT,
    }
    body_rule = "body: %json " + json.dumps(body, ensure_ascii=False)
    if not trigger.marker:
        return "\n".join(
            [
                "%llguidance {}",
                "start: GAP body (GAP body)* GAP AFTER | LEADING_TEXT",
                f"GAP: {_GAP}",
                # After the calls, text that does not open another bracket (a bracket
                # there would be another call, and is one).
                r"AFTER: /([^ \t\r\n{\[](.|\n)*)?/",
                # Free text: anything that does not open with a bracket.
                r"LEADING_TEXT: /[ \t\r\n]*([^ \t\r\n{\[](.|\n)*)?/",
                body_rule,
            ]
        )
    closing = f" GAP {lark_text(trigger.closing, special)}" if trigger.closing else ""
    if trigger.marker.endswith("["):
        # The marker opened the array: calls, not an array of them, go inside.
        body_rule = 'body: item (GAP "," GAP item)*\nitem: %json ' + json.dumps(
            {**call, **definitions, "x-guidance": COMPACT}, ensure_ascii=False
        )
    if special(trigger.marker) is not None:
        # Free text cannot hold the control token: no lazy lexeme needed.
        opening = f"opening: TEXT {lark_text(trigger.marker, special)}"
    else:
        opening = f"opening[lazy]: TEXT {_literal(trigger.marker)}"
    return "\n".join(
        [
            "%llguidance {}",
            "start: call* TEXT",
            "TEXT: /(.|\\n)*/",
            f"GAP: {_GAP}",
            opening,
            f"call: opening GAP body{closing}",
            body_rule,
        ]
    )


def lark_text(text: str, special: Callable[[str], int | None]) -> str:
    """``text`` in a grammar: the control token it is (``special`` gives its id),
    named by id, since free text never produces one; else a literal."""
    token = special(text)
    return f"<[{token}]>" if token is not None else _literal(text)


def _literal(text: str) -> str:
    """A Lark string literal: JSON's quoting is a subset Lark reads the same way
    (ASCII escapes: Lark's lexer refuses some characters raw, DEL)."""
    return json.dumps(text)
