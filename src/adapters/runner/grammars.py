"""JSON schemas as llguidance grammars, and whether llguidance can enforce one.

The core checks what it can alone (``gateway_core._structured``: size, depth,
validity, references, impossible counts); what only the engine knows, this module
asks it, before any model work (the ``CheckSchema`` effect): llguidance validates a
grammar without a vocabulary in well under a millisecond, and refuses what it cannot
enforce rather than approximating it (``lenient`` stays off, and ``oneOf`` is
enforced only where its branches are provably exclusive). Its message names the
keyword; ``check_schema_support`` adds where: the deepest sub-schema that fails
alone with the same message.

The answers are compact JSON (``JSON_OPTIONS``): no whitespace between tokens, so a
random model cannot spend its tokens on spaces.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Final

import llguidance

if TYPE_CHECKING:  # a type of the stubs only, not of the module
    from llguidance._lib import JsonCompileOptions

from gateway_core._json import JsonValue

from .errors import UnsupportedSchema

__all__ = ["JSON_OPTIONS", "check_schema_support", "json_grammar"]

JSON_OPTIONS: Final[JsonCompileOptions] = {
    "whitespace_flexible": False,
    "lenient": False,
}
"""llguidance's JSON options: compact output (``","`` and ``":"`` with no spaces),
and every keyword either enforced or refused."""
_ANY_OBJECT: Final = {"type": "object"}
# Keywords whose values are data, not schemas.
_DATA: Final = frozenset({"enum", "const", "default", "examples", "required"})
_DEFINITIONS: Final = ("$defs", "definitions")


def json_grammar(format: JsonValue) -> str:
    """The llguidance grammar of a checked format: ``"json"`` (any JSON object) or a
    schema."""
    schema = _ANY_OBJECT if format == "json" else format
    if not isinstance(schema, dict):
        raise UnsupportedSchema(f'format must be "json" or a schema, not {format!r}')
    grammar: str = llguidance.LLMatcher.grammar_from_json_schema(
        schema, overrides=JSON_OPTIONS
    )
    return grammar


def check_schema_support(schema: Mapping[str, JsonValue]) -> None:
    """Raise UnsupportedSchema, naming the keyword and its JSON pointer, when
    llguidance cannot enforce ``schema``. Cached: the same schema is checked once."""
    error = _validate(json.dumps(schema))
    if error:
        where = _culprit(dict(schema), error)
        raise UnsupportedSchema(
            f"the schema cannot be enforced by constrained decoding:"
            f" {_first_line(error)} (at {where or '/'})"
        )


@lru_cache(maxsize=256)
def _validate(text: str) -> str:
    """llguidance's verdict on a schema (as JSON text): "" if it can enforce it."""
    schema = json.loads(text)
    try:
        grammar = json_grammar(schema)
    except (ValueError, UnsupportedSchema) as exc:
        return str(exc) or type(exc).__name__
    verdict: str = llguidance.LLMatcher.validate_grammar(grammar)
    return verdict


def _culprit(root: JsonValue, error: str) -> str:
    """The JSON pointer of the deepest sub-schema that llguidance refuses, alone,
    with the same message as the whole; "" (the root) when none does."""
    definitions: dict[str, JsonValue] = {
        key: root[key] for key in _DEFINITIONS if isinstance(root, dict) and key in root
    }
    found = ""
    for pointer, schema in _subschemas(root):
        if not pointer or pointer.count("/") <= found.count("/"):
            continue
        alone: dict[str, JsonValue] = {**definitions, **schema}
        if _validate(json.dumps(alone)) == error:
            found = pointer
    return found


def _subschemas(schema: JsonValue) -> Iterator[tuple[str, dict[str, JsonValue]]]:
    stack: list[tuple[str, JsonValue]] = [("", schema)]
    while stack:
        pointer, node = stack.pop()
        if isinstance(node, dict):
            yield pointer, node
            for key, child in node.items():
                if key not in _DATA:
                    escaped = key.replace("~", "~0").replace("/", "~1")
                    stack.append((f"{pointer}/{escaped}", child))
        elif isinstance(node, list):
            stack.extend((f"{pointer}/{i}", child) for i, child in enumerate(node))


def _first_line(error: str) -> str:
    lines = error.strip().splitlines()
    return lines[0] if lines else error
