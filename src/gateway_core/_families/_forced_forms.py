"""Each family's forced tool call, as the forms its own markup gives (``_call_forms``).

One form per tool the call may name; the tool's name is text of the form. What the
model then writes is read by the family's parser, like a call it chose to make. The
``json`` and ``plain`` families have none: their call is the bare JSON object the
core constrains by schema (``tool_call_schema``), which is already their syntax.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeAlias

from .._call_forms import (
    CallForm,
    CallForms,
    Choice,
    Maybe,
    Piece,
    Text,
    Value,
    Words,
)
from .._json import JsonValue, dumps
from .._tool_calls import Toolbox
from . import _deepseek as deepseek
from ._harmony import CHANNEL, CONSTRAIN, MESSAGE, harmony_aliases
from ._marked import HEAD_NAME
from ._qwen3_coder import XML_NAME, followed, value_types

__all__ = [
    "FormBuilder",
    "action_json_form",
    "deepseek_form",
    "harmony_form",
    "hermes_form",
    "listed_form",
    "llama3_form",
    "mistral_v11_form",
    "qwen3_coder_form",
    "tool_forms",
]

FormBuilder: TypeAlias = Callable[
    [str, Mapping[str, JsonValue], Toolbox], CallForm | None
]
"""One tool's form: from its name, its parameters' schema, and every offered tool
(harmony renames a tool by what the others are called); None when the family's
markup cannot hold that name or a parameter's (its parser would not read it)."""

_ANY_OBJECT: Mapping[str, JsonValue] = {"type": "object"}


def tool_forms(
    build: FormBuilder, offered: Toolbox, chosen: Sequence[str]
) -> CallForms | None:
    """The forms of a call to one of ``chosen`` (names of ``offered``); None when
    one of them cannot be written in the family's markup: the call is then the
    bare JSON object, which holds any name."""
    forms = []
    for name in chosen:
        form = build(name, _arguments(offered.parameters.get(name)), offered)
        if form is None:
            return None
        forms.append(form)
    return CallForms(forms=tuple(forms), names=tuple(chosen))


def _one_line(name: str) -> bool:
    """A name that stands on a line of its own and reads back as written."""
    return "\n" not in name and "\r" not in name and name == name.strip() != ""


def _arguments(parameters: Mapping[str, JsonValue] | None) -> Mapping[str, JsonValue]:
    # A tool without parameters still takes an object (as OpenAI's do).
    return parameters if parameters else _ANY_OBJECT


def _head(name: str, key: str = "arguments") -> str:
    """``{"name":"NAME","KEY":`` in compact JSON, the name escaped as JSON escapes."""
    return '{"name":' + dumps(name).decode("utf-8") + ',"' + key + '":'


def hermes_form(
    name: str, parameters: Mapping[str, JsonValue], offered: Toolbox
) -> CallForm:
    """``<tool_call>`` JSON ``</tool_call>`` (Hermes, Qwen 2.5, Qwen3)."""
    return (
        Text("<tool_call>"),
        Text("\n" + _head(name)),
        Value(parameters),
        Text("}\n"),
        Text("</tool_call>"),
    )


def listed_form(marker: str, gap: str = "") -> FormBuilder:
    """``MARKER[{"name": ..., "arguments": ...}]`` (Mistral, ``functools``,
    ``[TOOL_CALL]``)."""

    def build(
        name: str, parameters: Mapping[str, JsonValue], offered: Toolbox
    ) -> CallForm:
        return (
            Text(marker),
            Text(gap + "[" + _head(name)),
            Value(parameters),
            Text("}]"),
        )

    return build


def action_json_form(
    name: str, parameters: Mapping[str, JsonValue], offered: Toolbox
) -> CallForm:
    """``Action: ```json`` then the call, then the fence's end."""
    return (
        Text("Action: "),
        Text("```json"),
        Text("\n" + _head(name)),
        Value(parameters),
        Text("}\n"),
        Text("```"),
    )


def llama3_form(
    name: str, parameters: Mapping[str, JsonValue], offered: Toolbox
) -> CallForm:
    """``<|python_tag|>{"name": ..., "parameters": ...}`` (Llama 3.x)."""
    return (
        Text("<|python_tag|>"),
        Text(_head(name, "parameters")),
        Value(parameters),
        Text("}"),
    )


def mistral_v11_form(
    name: str, parameters: Mapping[str, JsonValue], offered: Toolbox
) -> CallForm | None:
    """``[TOOL_CALLS]name[ARGS]{...}``; the name as a head may hold it."""
    if not HEAD_NAME.fullmatch(name):
        return None
    return (Text("[TOOL_CALLS]"), Text(name), Text("[ARGS]"), Value(parameters))


def deepseek_form(
    name: str, parameters: Mapping[str, JsonValue], offered: Toolbox
) -> CallForm | None:
    """R1's spelling: the type, the name on its line, the arguments fenced."""
    if not _one_line(name) or "<\uff5c" in name:
        return None
    return (
        Text(deepseek.CALLS_BEGIN),
        Text(deepseek.CALL_BEGIN),
        Text("function"),
        Text(deepseek.SEPARATOR),
        Text(name + "\n```json\n"),
        Value(parameters),
        Text("\n```"),
        Text(deepseek.CALL_END),
        Text(deepseek.CALLS_END),
    )


def harmony_form(
    name: str, parameters: Mapping[str, JsonValue], offered: Toolbox
) -> CallForm:
    """A commentary message to ``functions.NAME``, its JSON constrained as the
    template says; the model's ``<|call|>`` (an end of turn) follows it. The name
    is the one the template rendered the tool under."""
    renamed = {name: alias for alias, name in harmony_aliases(offered.names).items()}
    return (
        Text(CHANNEL),
        Text(f"commentary to=functions.{renamed.get(name, name)} "),
        Text(CONSTRAIN),
        Text("json"),
        Text(MESSAGE),
        Value(parameters),
    )


def qwen3_coder_form(
    name: str, parameters: Mapping[str, JsonValue], offered: Toolbox
) -> CallForm | None:
    """The XML call: the required parameters in the schema's order, then each
    optional one or not. A string is written bare, as the template does: one of
    its ``enum``, else any text without ``<``, lines included; any other value as
    JSON, which ``coerce`` reads back."""
    properties = parameters.get("properties")
    keys = [name, *(properties if isinstance(properties, dict) else ())]
    if not all(XML_NAME.fullmatch(key) and key == key.strip() for key in keys):
        return None
    required = parameters.get("required")
    needed = set(required) if isinstance(required, list) else set()
    pieces: list[Piece] = [Text("<tool_call>"), Text(f"\n<function={name}>\n")]
    optional: list[Piece] = []
    if isinstance(properties, dict):
        for key, schema in properties.items():
            spec = schema if isinstance(schema, dict) else {}
            parameter = _xml_parameter(key, spec, parameters)
            if key in needed:
                pieces.extend(parameter)
            else:
                optional.append(Maybe(parameter))
    return (*pieces, *optional, Text("</function>\n"), Text("</tool_call>"))


_VALUE_END = "\n</parameter>"


def _xml_parameter(
    key: str, schema: Mapping[str, JsonValue], root: Mapping[str, JsonValue]
) -> tuple[Piece, ...]:
    value = _xml_value(schema, root)
    if isinstance(value, Words):
        return (Text(f"<parameter={key}>\n"), value, Text("\n"))
    return (Text(f"<parameter={key}>\n"), value, Text("\n</parameter>\n"))


def _xml_value(schema: Mapping[str, JsonValue], root: Mapping[str, JsonValue]) -> Piece:
    """A value that may be a string is bare text, as ``coerce`` reads it (the XML
    has no quotes to hold a JSON string, so a ``pattern`` or length is not
    enforced; an ``enum`` of strings is). Any other value is JSON, with the tool's
    definitions, where its references point."""
    target = followed(schema, root)
    choices = target.get("enum")
    if (
        isinstance(choices, list)
        and choices
        and all(isinstance(c, str) for c in choices)
    ):
        return Choice(tuple(str(c) for c in choices))
    types = value_types(schema, root)
    if not types or "string" in types:
        return Words(until=_VALUE_END)
    definitions = {key: root[key] for key in ("$defs", "definitions") if key in root}
    return Value({**definitions, **schema})
