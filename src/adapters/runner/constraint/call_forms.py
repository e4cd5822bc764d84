"""The grammar of a forced tool call in the model family's own markup.

The core describes the forms the call may take (``gateway_core._call_forms``: text,
JSON values, bare words, optional parts; one form per tool it may name); this module
writes them in llguidance's Lark dialect. Text that is one control token of the
vocabulary (harmony's ``<|channel|>``, Mistral's ``[ARGS]``) is named by its id,
since free text can never produce it; other text is a literal, matched byte by byte
whatever tokens the model picks. Each JSON value is its own ``%json`` rule, so a
tool's ``$defs`` resolve within its parameters as they were written. After the last
piece only an end of turn may come.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from .tool_grammar import COMPACT, lark_text

__all__ = ["call_forms_grammar"]


def call_forms_grammar(
    forms: Any,
    *,
    special: Callable[[str], int | None],
    bound: Callable[[dict[str, Any]], dict[str, Any]],
) -> str:
    """The Lark grammar of ``forms`` (``CallForms.to_json()``). ``special`` gives a
    text's control-token id, if it is one; ``bound`` tightens a JSON schema as the
    runner's answers are (numbers within a double)."""
    writer = _Writer(special, bound)
    if not isinstance(forms, list) or not forms:
        raise ValueError("call forms must be a non-empty list")
    alternatives = [writer.sequence(form) for form in forms]
    return "\n".join(
        ["%llguidance {}", "start: " + " | ".join(alternatives), *writer.rules]
    )


def _regex_literal(text: str) -> str:
    """``text`` matched exactly inside a Lark ``/.../`` regex: letters and digits as
    they are, everything else by its code point."""
    return "".join(
        c if c.isascii() and c.isalnum() else f"\\x{{{ord(c):x}}}" for c in text
    )


class _Writer:
    def __init__(
        self,
        special: Callable[[str], int | None],
        bound: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> None:
        self._special = special
        self._bound = bound
        self.rules: list[str] = []

    def sequence(self, pieces: Any) -> str:
        if not isinstance(pieces, list) or not pieces:
            raise ValueError("a call form must be a non-empty list of pieces")
        written = [part for part in map(self._piece, pieces) if part]
        if not written:
            raise ValueError("a call form must write something")
        return " ".join(written)

    def _piece(self, piece: Any) -> str:
        if not isinstance(piece, Mapping) or len(piece) != 1:
            raise ValueError(f"not a call form piece: {piece!r}")
        ((kind, value),) = piece.items()
        if kind == "text" and isinstance(value, str):
            return self._text(value)
        if kind == "json" and isinstance(value, dict):
            name = f"value{len(self.rules)}"
            schema = {**self._bound(value), "x-guidance": COMPACT}
            self.rules.append(f"{name}: %json {json.dumps(schema, ensure_ascii=False)}")
            return name
        if kind == "words" and isinstance(value, str) and value:
            # The words and the markup that ends them in one lexeme: a line break
            # may belong to either, which two greedy lexemes could not allow.
            name = f"WORDS{len(self.rules)}"
            self.rules.append(f"{name}: /[^<]*{_regex_literal(value)}/")
            return name
        if kind == "choice" and isinstance(value, list) and value:
            if not all(isinstance(text, str) for text in value):
                raise ValueError(f"not a call form piece: {piece!r}")
            written = [self._text(text) for text in value if text]
            if not written:
                return ""
            # An empty choice is the choice of writing nothing.
            optional = "?" if "" in value else ""
            return "(" + " | ".join(written) + ")" + optional
        if kind == "maybe" and isinstance(value, list):
            return f"({self.sequence(value)})?" if value else ""
        raise ValueError(f"not a call form piece: {piece!r}")

    def _text(self, text: str) -> str:
        return lark_text(text, self._special) if text else ""
