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
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Final

import llguidance

if TYPE_CHECKING:  # a type of the stubs only, not of the module
    from llguidance._lib import JsonCompileOptions

from gateway_core._json import JsonValue

from .errors import UnsupportedSchema

__all__ = [
    "JSON_OPTIONS",
    "NUMBER_BOUND",
    "bounded_schema",
    "check_schema_support",
    "json_grammar",
]

JSON_OPTIONS: Final[JsonCompileOptions] = {
    "whitespace_flexible": False,
    "lenient": False,
}
"""llguidance's JSON options: compact output (``","`` and ``":"`` with no spaces),
and every keyword either enforced or refused."""
_ANY_OBJECT: Final[dict[str, JsonValue]] = {"type": "object"}
# Keywords whose values are data, not schemas.
_DATA: Final = frozenset({"enum", "const", "default", "examples", "required"})
_ANNOTATIONS: Final = frozenset(
    {"title", "description", "$comment", "examples", "default", "deprecated"}
)
_COMBINERS: Final = frozenset(
    {"$ref", "$dynamicRef", "allOf", "anyOf", "oneOf", "not", "if", "then", "else"}
)
_ALL_TYPES: Final = ("null", "boolean", "object", "array", "number", "string")
# Where a schema holds other schemas: one, a map of them, a list of them.
_SCHEMA_KEYS: Final = frozenset(
    {
        "additionalProperties", "additionalItems", "not", "if", "then", "else",
        "contains", "propertyNames", "unevaluatedItems", "unevaluatedProperties",
    }
)  # fmt: skip
_SCHEMA_MAPS: Final = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)
_SCHEMA_LISTS: Final = frozenset({"allOf", "anyOf", "oneOf", "prefixItems", "items"})
_DEFINITIONS: Final = ("$defs", "definitions")
# Counts, which llguidance takes only as integers.
_COUNTS: Final = frozenset(
    {
        "minLength", "maxLength", "minItems", "maxItems", "minProperties",
        "maxProperties", "minContains", "maxContains",
    }
)  # fmt: skip


def bounded_schema(schema: dict[str, JsonValue]) -> dict[str, JsonValue]:
    """``schema`` as the engine is given it (see ``_tightened``): a tool call's
    arguments are kept within what the parser accepts, as an answer is."""
    tightened = _tightened(schema)
    assert isinstance(tightened, dict)
    return tightened


def json_grammar(format: JsonValue) -> str:
    """The llguidance grammar of a checked format: ``"json"`` (any JSON object) or a
    schema."""
    schema: JsonValue = dict(_ANY_OBJECT) if format == "json" else format
    tightened = _tightened(schema)
    if not isinstance(tightened, dict):
        raise UnsupportedSchema(f'format must be "json" or a schema, not {format!r}')
    grammar: str = llguidance.LLMatcher.grammar_from_json_schema(
        tightened, overrides=JSON_OPTIONS
    )
    return grammar


# Dates and times as the final check reads them (RFC 3339 as python-jsonschema
# checks it), stricter than llguidance's own formats, which allow a 61st second
# anywhere and the 29th of February in any year: an answer the check refuses would
# be a 500. Years 0001-9999, leap years by the Gregorian rule, no leap seconds,
# "T" and "Z" in capitals.
_YEAR: Final = r"(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_LEAP_YEAR: Final = (
    r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
)
_DATE: Final = (
    rf"(?:{_YEAR}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"
    rf"|{_LEAP_YEAR}-02-29)"
)
_TIME: Final = (
    r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_PATTERNS: Final = {
    "date": f"^{_DATE}$",
    "time": f"^{_TIME}$",
    "date-time": f"^{_DATE}T{_TIME}$",
}


# llguidance bounds a number only by its digits unless told otherwise, and a JSON
# number such as 1e400 is no double: a parser turns it into infinity, which no
# JSON encoder writes back. So numbers are kept within NUMBER_BOUND (llguidance
# builds ranges up to about 1e18) wherever the schema leaves them unbounded: typed
# numbers get the missing bound, and the values a schema leaves free (``{}``,
# ``true``, arrays without ``items``, objects whose other properties are free)
# become a bounded "any value". An answer within these bounds is still valid
# against the schema: they only narrow it.
NUMBER_BOUND: Final = 1e18
_ANY_NAME: Final = "gateway-core-any"
_ANY_REF: Final[dict[str, JsonValue]] = {"$ref": f"#/$defs/{_ANY_NAME}"}
_BOUNDED_ANY: Final[dict[str, JsonValue]] = {
    "minimum": -NUMBER_BOUND,
    "maximum": NUMBER_BOUND,
    "items": _ANY_REF,
    "additionalProperties": _ANY_REF,
}


# The same, without references, for the later branches of an allOf (see
# _tightened): arrays and objects in it hold scalars only. Narrower, still valid.
_SCALAR: Final[dict[str, JsonValue]] = {
    "type": ["null", "boolean", "number", "string"],
    "minimum": -NUMBER_BOUND,
    "maximum": NUMBER_BOUND,
}
_FLAT_ANY: Final[dict[str, JsonValue]] = {
    "minimum": -NUMBER_BOUND,
    "maximum": NUMBER_BOUND,
    "items": _SCALAR,
    "additionalProperties": _SCALAR,
}


def _tightened(
    schema: JsonValue, *, resource: bool = True, flat: bool = False
) -> JsonValue:
    """``schema`` as llguidance is given it: every ``format`` of ``_PATTERNS``
    replaced by its pattern (where the sub-schema has no pattern of its own), and
    numbers bounded (see NUMBER_BOUND). ``resource``: the schema is the root of a
    resource (the document, or a sub-schema with an ``$id``), where the bounded
    "any value" is defined for the references inside it. ``flat``: free values get
    the bounded any value that holds no reference (``_FLAT_ANY``)."""
    if schema is True:
        return dict(_FLAT_ANY if flat else _ANY_REF)
    if not isinstance(schema, dict):
        return schema
    result: dict[str, JsonValue] = {}
    for key, value in schema.items():
        if key in _SCHEMA_KEYS or (key == "items" and isinstance(value, dict | bool)):
            result[key] = _tightened(value, resource=False, flat=flat)
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            result[key] = {
                name: _tightened(child, resource=False, flat=flat)
                for name, child in value.items()
            }
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            # llguidance intersects the branches of an allOf, and the intersection
            # of two recursive "any values" never ends ("stack level exceeded"):
            # only the first branch gets the recursive one.
            result[key] = [
                _tightened(
                    child, resource=False, flat=flat or (key == "allOf" and i > 0)
                )
                for i, child in enumerate(value)
            ]
        elif key in _COUNTS and isinstance(value, float) and value.is_integer():
            result[key] = int(value)  # JSON Schema: 2.0 is the integer 2
        else:
            result[key] = value
    fmt = result.get("format")
    if isinstance(fmt, str) and fmt in _PATTERNS and "pattern" not in result:
        del result["format"]
        result["pattern"] = _PATTERNS[fmt]
    _bound(result, flat=flat)
    if resource or "$id" in result:
        definitions = result.get("$defs")
        result["$defs"] = {
            **(definitions if isinstance(definitions, dict) else {}),
            _ANY_NAME: _BOUNDED_ANY,
        }
    return result


def _bound(schema: dict[str, JsonValue], *, flat: bool = False) -> None:
    """Bound what ``schema`` leaves free, in place (a sub-schema that combines
    others, by ``$ref`` or ``anyOf``..., is left alone: the engine merges what sits
    beside those, and its parts are bounded where they are written)."""
    if _COMBINERS & schema.keys():
        return
    free = _FLAT_ANY if flat else _ANY_REF
    if all(key in _ANNOTATIONS for key in schema):
        schema.update(free)  # {} or annotations only: any value
        return
    kinds = schema.get("type", list(_ALL_TYPES))
    if isinstance(kinds, str):
        types = {kinds}
    elif isinstance(kinds, list):
        types = {kind for kind in kinds if isinstance(kind, str)}
    else:
        return  # not a schema: the engine refuses it, with its own words
    if "number" in types:
        if "maximum" not in schema and "exclusiveMaximum" not in schema:
            schema["maximum"] = NUMBER_BOUND
        if "minimum" not in schema and "exclusiveMinimum" not in schema:
            schema["minimum"] = -NUMBER_BOUND
    if "array" in types and "items" not in schema:
        schema["items"] = dict(free)
    if "object" in types and "additionalProperties" not in schema:
        schema["additionalProperties"] = dict(free)


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
    """The JSON pointer of the sub-schema llguidance refuses: the one that holds the
    unimplemented keyword or the unknown format it names, else the deepest that it
    refuses alone with the same message as the whole; "" (the root) when none."""
    named = _named_keys(error)
    definitions: dict[str, JsonValue] = {
        key: root[key] for key in _DEFINITIONS if isinstance(root, dict) and key in root
    }
    found = ""
    for pointer, schema in _subschemas(root):
        if named and any(
            key in schema if kind == "key" else schema.get("format") == key
            for kind, key in named
        ):
            return pointer
        if named or not pointer or pointer.count("/") <= found.count("/"):
            continue
        alone: dict[str, JsonValue] = {**definitions, **schema}
        if _validate(json.dumps(alone)) == error:
            found = pointer
    return found


def _named_keys(error: str) -> list[tuple[str, str]]:
    """The keywords (``("key", name)``) or formats (``("format", name)``) an
    llguidance message names."""
    keys = re.match(r"Unimplemented keys: (\[.*?\])", error)
    if keys:
        try:
            return [("key", str(key)) for key in json.loads(keys.group(1))]
        except ValueError:
            return []
    fmt = re.match(r"Unknown format: (\S+)", error)
    return [("format", fmt.group(1))] if fmt else []


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
    """The message's gist: its first line, and its last when the first only
    introduces a quote of the input (as regex errors do)."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    if not lines:
        return error
    if lines[0].endswith(":") and len(lines) > 1:
        return f"{lines[0]} {lines[-1]}"
    return lines[0]
