"""Qwen3-Coder: tool calls as XML, each parameter's value coerced by the tool's schema.

The model writes, inside the ``<tool_call>`` tags its chat template teaches::

    <tool_call>
    <function=get_weather>
    <parameter=city>
    Paris
    </parameter>
    <parameter=days>
    3
    </parameter>
    </function>
    </tool_call>

A value is text: one newline after its opening tag and one before its closing tag
are the template's, the rest is the value. It becomes what the tool's JSON schema
says the parameter is (``coerce``): ``null`` is null whatever the type; then, in this
order, each type the schema allows (its ``type``, a list of them, or those of its
``anyOf``) is tried: boolean (``true``/``false``), integer, number (a whole number
is an integer), array and object (JSON), string. A value no allowed type reads
stays the text it was: unlike the reference, which makes a bad boolean ``false``,
nothing the model wrote is changed into something it did not write. A parameter
the schema does not name is a string.

A value ends at its closing tag, or, when the model left it open, at the next
parameter or the function's end (as the reference parser allows).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from urllib.parse import unquote

from .._json import JsonValue, dumps, loads_strict, resolve_pointer
from .._tool_calls import Found, Toolbox
from ._grammar import CallGrammar

__all__ = [
    "GRAMMAR",
    "XML_NAME",
    "coerce",
    "followed",
    "read_xml_calls",
    "read_xml_cut",
    "value_types",
]

XML_NAME = re.compile(r"[^>\n]{1,256}")
"""A function or parameter name the XML may hold."""
_FUNCTION = re.compile(rf"<function=({XML_NAME.pattern})>")
_FUNCTION_END = "</function>"
_PARAMETER = re.compile(rf"<parameter=({XML_NAME.pattern})>")
_PARAMETER_END = "</parameter>"
_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def read_xml_calls(head: str, body: str, tools: Toolbox) -> list[Found] | None:
    """The calls of one ``<tool_call>`` body: one ``<function=...>`` block or more,
    nothing else but whitespace; None if it is not that, or names an unknown tool."""
    return _read(body, tools, cut=False)


def read_xml_cut(head: str, body: str, tools: Toolbox) -> list[Found] | None:
    """A body the token limit cut: its whole blocks, and the last one with the
    parameters read so far, if its function's name was written whole."""
    return _read(body, tools, cut=True)


def _read(body: str, tools: Toolbox, *, cut: bool) -> list[Found] | None:
    found: list[Found] = []
    rest = body.strip()
    while rest:
        opened = _FUNCTION.match(rest)
        if opened is None:
            return (found or None) if cut else None
        name = tools.resolve(opened.group(1).strip())
        if name is None:
            return None
        end = rest.find(_FUNCTION_END, opened.end())
        if end < 0 and not cut:
            return None
        inner = rest[opened.end() : end if end >= 0 else len(rest)]
        arguments = _parameters(inner, tools.parameters.get(name, {}), cut=end < 0)
        if arguments is None:
            return None
        partial = dumps(arguments).decode("utf-8") if end < 0 else None
        found.append(Found(name, arguments, partial=partial))
        if end < 0:
            break
        rest = rest[end + len(_FUNCTION_END) :].lstrip()
    return found or None


def _parameters(
    inner: str, schema: Mapping[str, JsonValue], *, cut: bool
) -> dict[str, JsonValue] | None:
    properties = schema.get("properties")
    types = properties if isinstance(properties, dict) else {}
    arguments: dict[str, JsonValue] = {}
    rest = inner.strip()
    while rest:
        opened = _PARAMETER.match(rest)
        if opened is None:
            return arguments if cut else None
        name = opened.group(1).strip()
        value, rest, closed = _value(rest[opened.end() :])
        if not closed and cut and not rest:
            break  # the value the limit cut: not read, since it may be incomplete
        spec = types.get(name)
        arguments[name] = coerce(value, spec if isinstance(spec, dict) else {}, schema)
        rest = rest.lstrip()
    return arguments


def _value(text: str) -> tuple[str, str, bool]:
    """The value at the start of ``text``, the text after it, and whether its
    closing tag was there."""
    ends = [
        at
        for at in (
            text.find(_PARAMETER_END),
            text.find("<parameter="),
            text.find(_FUNCTION_END),
        )
        if at >= 0
    ]
    end = min(ends, default=len(text))
    closed = text.startswith(_PARAMETER_END, end)
    after = end + len(_PARAMETER_END) if closed else end
    value = text[:end].removeprefix("\n").removesuffix("\n")
    return value, text[after:], closed


def coerce(
    raw: str,
    schema: Mapping[str, JsonValue],
    root: Mapping[str, JsonValue] | None = None,
) -> JsonValue:
    """``raw`` as the type ``schema`` says, or the text itself; ``root`` is the
    tool's whole schema, where ``schema``'s local references point (Pydantic puts
    a nested model or an enum in ``$defs``)."""
    if raw.lower() == "null":
        return None
    allowed = value_types(schema, root or {})
    for kind in ("boolean", "integer", "number", "array", "object"):
        if kind in allowed:
            read, value = _as(kind, raw)
            if read:
                return value
    return raw


def followed(
    schema: Mapping[str, JsonValue], root: Mapping[str, JsonValue]
) -> Mapping[str, JsonValue]:
    """``schema``, or the sub-schema of ``root`` its local ``$ref`` (``#/...``)
    points to, followed a few times; itself when the reference leads nowhere."""
    for _ in range(_REF_HOPS):
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return schema
        found, target = resolve_pointer(dict(root), unquote(ref[1:]))
        if not found or not isinstance(target, dict):
            return schema
        schema = target
    return schema


_REF_HOPS = 8


def value_types(
    schema: Mapping[str, JsonValue], root: Mapping[str, JsonValue]
) -> set[str]:
    """The JSON types a value of ``schema`` may have: its ``type``s, those of its
    ``anyOf``/``oneOf`` branches, and of its ``enum`` or ``const`` values; empty
    when it says none (any value)."""
    schema = followed(schema, root)
    found: set[str] = set()
    values = schema.get("enum")
    listed = [
        *(values if isinstance(values, list) else ()),
        *([schema["const"]] if "const" in schema else []),
    ]
    found.update(_type_of(value) for value in listed)
    kind = schema.get("type")
    if isinstance(kind, str):
        found.add(kind)
    elif isinstance(kind, list):
        found.update(k for k in kind if isinstance(k, str))
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list):
            for option in options:
                if isinstance(option, dict):
                    found |= value_types(option, root)
    return found


def _type_of(value: JsonValue) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _as(kind: str, raw: str) -> tuple[bool, JsonValue]:
    """Whether ``raw`` reads as a ``kind``, and the value it reads as."""
    no: tuple[bool, JsonValue] = (False, None)
    text = raw.strip()
    if kind == "boolean":
        lowered = text.lower()
        return (True, lowered == "true") if lowered in ("true", "false") else no
    if kind == "integer":
        return (True, int(text)) if _INTEGER.fullmatch(text) else no
    if kind == "number":
        if not _NUMBER.fullmatch(text):
            return no
        number = float(text)
        if not math.isfinite(number):
            return no
        if number.is_integer() and "." not in text:
            return True, int(number)
        return True, number
    try:
        value = loads_strict(text)
    except ValueError:
        return no
    wanted = list if kind == "array" else dict
    return (True, value) if isinstance(value, wanted) else no


GRAMMAR = CallGrammar(
    markers=("<tool_call>",),
    closing="</tool_call>",
    json_closing=False,
    read=read_xml_calls,
    read_cut=read_xml_cut,
)
