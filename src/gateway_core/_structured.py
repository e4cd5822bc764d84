"""Structured output: what ``format`` may be, and checking the answer against it.

The runner enforces the format while it generates (constrained decoding, with
llguidance); this module checks the request's ``format`` before any work, and checks
the finished answer after it. The second check is not redundant: it is what turns a
constraint engine that let something through into a clear error instead of a wrong
answer.

Before any work, in three steps:

1. here, what the core can tell alone: the format is ``"json"`` or a schema object,
   no larger than ``MAX_SCHEMA_CHARS`` and nested no deeper than ``MAX_DEPTH`` (both
   checked without recursion, so a hostile schema cannot exhaust the stack), a valid
   JSON Schema, with local ``$ref``s that resolve and no count that no output could
   ever satisfy (``minLength`` 10⁹);
2. the ``CheckSchema`` work effect: the constraint engine says whether it can
   enforce the schema, naming the keyword it cannot and where (the adapter owns the
   engine);
3. only then is a model loaded.

After the work, ``check_answer`` parses the answer strictly and validates it with
jsonschema and its format checker (``date``, ``date-time``, ``email``, ...).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from decimal import Context, Decimal
from typing import Final
from urllib.parse import unquote

import jsonschema
import jsonschema.exceptions
import jsonschema.protocols

from ._flow import FlowError
from ._json import JsonValue, resolve_pointer

__all__ = [
    "ANNOTATIONS",
    "FORMATS",
    "MAX_DEPTH",
    "MAX_MIN_COUNT",
    "MAX_SCHEMA_CHARS",
    "check_answer",
    "check_format",
    "nested_deeper_than",
    "tool_call_schema",
]

MAX_SCHEMA_CHARS: Final = 256 * 1024
"""Largest schema accepted, as compact JSON. Real schemas (a Pydantic model with a
few dozen nested models) are tens of KB; the engine compiles a 300-property
schema in milliseconds, so the bound is about what a request may make the server
hold and walk, not about compile time (which has its own deadline)."""
MAX_DEPTH: Final = 64
"""Deepest nesting of objects and arrays inside a schema. Pydantic nests through
``$defs``, so real schemas stay within a dozen levels; 200 levels would exhaust the
stack of any recursive schema walker, jsonschema's included."""
MAX_MIN_COUNT: Final = 1_000_000
"""Largest ``minLength``, ``minItems`` or ``minProperties`` accepted: an answer that
must hold a million characters or items cannot fit any model's context, so it
could only ever be cut short."""
ANNOTATIONS: Final = frozenset(
    {
        "title", "description", "default", "examples", "$schema", "$id",
        "$comment", "deprecated", "readOnly", "writeOnly", "$anchor",
        "contentMediaType", "contentEncoding", "discriminator",
    }
)  # fmt: skip
"""Keywords that describe and never constrain: accepted, and ignored when enforcing
(``discriminator`` is OpenAPI's, which Pydantic writes next to ``oneOf``)."""
_MIN_COUNTS: Final = ("minLength", "minItems", "minProperties")
# ISO 8601 durations as RFC 3339's appendix A writes them, ASCII digits only.
_DURATION: Final = re.compile(
    r"P(?:(?:[0-9]+D|[0-9]+M(?:[0-9]+D)?|[0-9]+Y(?:[0-9]+M(?:[0-9]+D)?)?)"
    r"(?:T(?:[0-9]+H(?:[0-9]+M(?:[0-9]+S)?)?|[0-9]+M(?:[0-9]+S)?|[0-9]+S))?"
    r"|T(?:[0-9]+H(?:[0-9]+M(?:[0-9]+S)?)?|[0-9]+M(?:[0-9]+S)?|[0-9]+S)"
    r"|[0-9]+W)"
)


def _is_duration(instance: object) -> bool:
    return not isinstance(instance, str) or _DURATION.fullmatch(instance) is not None


FORMATS: Final = jsonschema.FormatChecker(formats=())
"""The formats a structured answer is checked for: draft 2020-12's as jsonschema
checks them (``date-time``, ``time``, ``uri`` and ``hostname`` through the small
packages the core depends on), and ``duration``, whose jsonschema checker needs a
date library the core does without."""
FORMATS.checkers.update(jsonschema.Draft202012Validator.FORMAT_CHECKER.checkers)
FORMATS.checks("duration")(_is_duration)
# Keywords whose values are data, not schemas: never walked into.
_DATA: Final = frozenset({"enum", "const", "default", "examples", "required"})


def check_format(value: JsonValue) -> JsonValue:
    """The request's ``format``, normalized: None, ``"json"``, or a schema object.

    Raises:
        FlowError: 400 for anything else: not a schema, too large or too deep, an
            invalid JSON Schema, a ``$ref`` that resolves nowhere, a count nothing
            can satisfy (Ollama answers these with 500; they are the client's).
    """
    if value is None or value == "":
        return None
    if value == "json":
        return "json"
    if not isinstance(value, dict):
        shown = json.dumps(value)[:100]
        raise FlowError(
            400,
            f'invalid format: {shown}; expected "json" or a valid JSON Schema object',
        )
    size = len(json.dumps(value, separators=(",", ":")))
    if size > MAX_SCHEMA_CHARS:
        raise FlowError(
            400, f"the schema in format is {size} characters, over {MAX_SCHEMA_CHARS}"
        )
    _check_depth(value)
    try:
        validator = _validator_class(value)
        validator.check_schema(value)
    except jsonschema.exceptions.SchemaError as exc:
        raise FlowError(400, f"invalid JSON schema in format: {exc.message}") from None
    for pointer, schema in _subschemas(value):
        _check_counts(schema, pointer)
        ref = schema.get("$ref")
        if isinstance(ref, str):
            _check_ref(value, ref, pointer)
    return value


def check_answer(text: str, format: JsonValue) -> None:
    """Check a finished constrained answer; a mismatch is the server's failure.

    Strict: JSON's own grammar (no control characters inside strings, no NaN or
    Infinity, no number too large for a double: it could not be written back), then
    the schema with format checking. A repeated key is JSON, and the last one
    counts (the engine does not keep keys that only ``additionalProperties``
    allows unique).

    Raises:
        FlowError: 500 naming what does not match.
    """
    try:
        value = json.loads(
            text,
            parse_constant=_no_constant,
            parse_float=_finite,
        )
    except ValueError as exc:
        raise FlowError(500, f"the model's answer is not valid JSON: {exc}") from None
    except RecursionError:
        # "json" constrains nothing but the syntax: a model can nest without end.
        raise FlowError(500, "the model's answer is nested too deeply") from None
    if format == "json":
        if not isinstance(value, dict):
            raise FlowError(500, "the model's answer is not a JSON object")
        return
    if isinstance(format, Mapping):
        validator_class = _validator_class(format)
        validator = validator_class(format, format_checker=FORMATS)
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            raise FlowError(
                500, f"the model's answer does not match the schema: {error.message}"
            )


def tool_call_schema(
    tools: tuple[Mapping[str, JsonValue], ...],
) -> dict[str, JsonValue]:
    """A schema for one call of one of ``tools``: ``{"name": ..., "arguments": ...}``
    with the arguments valid against that tool's parameters. Forcing a tool call
    (``tool_choice`` required or named) constrains the output to it.

    Each tool's definitions (``$defs``) move to the root under a name of their
    own, with the tool's ``$ref``s rewritten to match: a reference written for the
    tool's own schema would resolve nowhere, or to another tool's definition, once
    that schema is nested in this one.
    """
    options: list[JsonValue] = []
    definitions: dict[str, JsonValue] = {}
    for number, tool in enumerate(tools):
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            continue
        parameters = function.get("parameters")
        arguments: JsonValue = {"type": "object"}
        if isinstance(parameters, dict):
            arguments = _hoisted(parameters, f"tool{number}_", definitions)
        options.append(
            {
                "type": "object",
                "properties": {
                    "name": {"const": function["name"]},
                    "arguments": arguments,
                },
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    if not options:
        raise FlowError(400, "tool_choice needs at least one function tool")
    schema: dict[str, JsonValue] = (
        dict(options[0]) if len(options) == 1 else {"anyOf": options}  # type: ignore[arg-type]
    )
    if definitions:
        schema["$defs"] = definitions
    return schema


# -- walking a schema ------------------------------------------------------------------

_DRAFTS: Final = (
    jsonschema.Draft3Validator,
    jsonschema.Draft4Validator,
    jsonschema.Draft6Validator,
    jsonschema.Draft7Validator,
    jsonschema.Draft201909Validator,
    jsonschema.Draft202012Validator,
)
_BY_URI: Final = {
    str(d.META_SCHEMA.get("$id") or d.META_SCHEMA.get("id")).rstrip("#"): d
    for d in _DRAFTS
}


def _validator_class(
    schema: Mapping[str, JsonValue],
) -> type[jsonschema.protocols.Validator]:
    """The draft ``$schema`` names, else 2020-12 (also for a ``$schema`` no draft
    has: jsonschema would warn and then do the same), with an exact ``multipleOf``."""
    uri = schema.get("$schema")
    draft: type[jsonschema.protocols.Validator] = jsonschema.Draft202012Validator
    if isinstance(uri, str):
        draft = _BY_URI.get(uri.rstrip("#"), draft)
    exact: type[jsonschema.protocols.Validator] = _EXACT[draft]
    return exact


def _multiple_of(
    validator: jsonschema.protocols.Validator,
    divisor: JsonValue,
    instance: JsonValue,
    schema: Mapping[str, JsonValue],
) -> Iterator[jsonschema.exceptions.ValidationError]:
    """``multipleOf`` in decimal arithmetic, as JSON writes numbers: jsonschema
    divides floats, so 5.3 is "not a multiple of 0.0001" to it (52999.999...),
    and an answer the engine got right would fail the final check."""
    if not validator.is_type(instance, "number") or not isinstance(
        divisor, int | float
    ):
        return
    assert isinstance(instance, int | float)
    remainder = _EXACT_ARITHMETIC.remainder(
        Decimal(repr(instance)), Decimal(repr(divisor))
    )
    if remainder != 0:
        yield jsonschema.exceptions.ValidationError(
            f"{instance!r} is not a multiple of {divisor!r}"
        )


# Enough digits for the quotient of any two doubles (exponents up to 308 each).
_EXACT_ARITHMETIC: Final = Context(prec=700)
_EXACT: Final[
    Mapping[type[jsonschema.protocols.Validator], type[jsonschema.protocols.Validator]]
] = {
    draft: jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        draft, {"multipleOf": _multiple_of}
    )
    for draft in _DRAFTS
}


def _check_depth(schema: JsonValue) -> None:
    """Refuse a schema nested deeper than MAX_DEPTH, before jsonschema walks it."""
    if nested_deeper_than(MAX_DEPTH, schema):
        raise FlowError(
            400, f"the schema in format is nested deeper than {MAX_DEPTH} levels"
        )


def nested_deeper_than(limit: int, value: JsonValue) -> bool:
    """Whether any value in ``value`` sits more than ``limit`` levels deep (the
    value itself is level 1, a member of it level 2, ...).

    Iterative, so any depth is safe to ask about: the answer is what keeps a deep
    schema away from jsonschema, which recurses several frames per level.
    """
    stack: list[tuple[JsonValue, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return False


def _subschemas(schema: JsonValue) -> Iterator[tuple[str, dict[str, JsonValue]]]:
    """Every object in the schema that sits where a schema may, with its JSON
    pointer: all of them but the values of data keywords (``enum``, ``const``...)."""
    stack: list[tuple[str, JsonValue]] = [("", schema)]
    while stack:
        pointer, node = stack.pop()
        if isinstance(node, dict):
            yield pointer, node
            for key, child in node.items():
                if key not in _DATA and key not in ANNOTATIONS:
                    stack.append((f"{pointer}/{_escape(key)}", child))
        elif isinstance(node, list):
            stack.extend((f"{pointer}/{i}", child) for i, child in enumerate(node))


def _check_counts(schema: Mapping[str, JsonValue], pointer: str) -> None:
    for keyword in _MIN_COUNTS:
        count = schema.get(keyword)
        if isinstance(count, int | float) and count > MAX_MIN_COUNT:
            raise FlowError(
                400,
                f'"{keyword}" at {pointer or "/"} asks for {count:g}: no answer that'
                " long fits a model's context",
            )


def _check_ref(root: JsonValue, ref: str, pointer: str) -> None:
    """A ``$ref`` into the schema's own document (``#``, ``#/$defs/...``, or an
    anchor) must resolve. Other references (to a sub-schema's ``$id``) are the
    engine's to resolve: it finds those inside the schema and fetches nothing, so a
    reference to anything outside is refused there."""
    where = pointer or "/"
    if not ref.startswith("#"):
        return
    fragment = unquote(ref[1:])
    if fragment and not fragment.startswith("/"):
        anchors = {
            s.get(keyword)
            for _, s in _subschemas(root)
            for keyword in ("$anchor", "$dynamicAnchor")
        }
        if fragment not in anchors:
            raise FlowError(400, f'"$ref" at {where}: no "$anchor" {fragment!r}')
        return
    if not resolve_pointer(root, fragment)[0]:
        raise FlowError(400, f'"$ref" at {where}: {ref} resolves to nothing')


def _hoisted(
    schema: dict[str, JsonValue], prefix: str, definitions: dict[str, JsonValue]
) -> JsonValue:
    """``schema`` with its ``$defs`` moved into ``definitions`` (names prefixed) and
    its local references rewritten to point there."""
    own = schema.get("$defs")
    if not isinstance(own, dict):
        return schema
    renamed = {f"#/$defs/{name}": f"#/$defs/{prefix}{name}" for name in own}

    def rewrite(node: JsonValue) -> JsonValue:
        if isinstance(node, dict):
            return {
                key: (
                    renamed.get(value, value)
                    if key == "$ref" and isinstance(value, str)
                    else value
                    if key in _DATA
                    else rewrite(value)
                )
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    rewritten = rewrite(schema)
    assert isinstance(rewritten, dict)
    moved = rewritten.pop("$defs")
    assert isinstance(moved, dict)
    for name, definition in moved.items():
        definitions[f"{prefix}{name}"] = definition
    return rewritten


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _no_constant(name: str) -> JsonValue:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is beyond what a double holds")
    return value
