"""Structured output: what ``format`` may be, and checking the answer against it.

The runner enforces the format while it generates (constrained decoding); this module
checks the request's ``format`` before any work, and checks the finished answer after
it, with jsonschema. The second check is not redundant: it is what turns a constraint
engine that let something through into a clear error instead of a wrong answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import jsonschema
import jsonschema.exceptions

from ._flow import FlowError
from ._json import JsonValue

__all__ = ["check_answer", "check_format", "tool_call_schema"]

_MAX_SCHEMA_CHARS = 32_768


def check_format(value: JsonValue) -> JsonValue:
    """The request's ``format``, normalized: None, ``"json"``, or a schema object.

    Raises:
        FlowError: 400 for anything else, or a schema that is not a valid JSON
            Schema (Ollama answers these with 500; they are the client's mistake).
    """
    if value is None or value == "":
        return None
    if value == "json":
        return "json"
    if isinstance(value, dict):
        # Compiling a schema into a constraint cannot be interrupted, and its cost
        # grows with the schema; a bound keeps one request from holding a worker.
        if len(json.dumps(value)) > _MAX_SCHEMA_CHARS:
            raise FlowError(
                400, f"the schema in format is over {_MAX_SCHEMA_CHARS} characters"
            )
        try:
            validator = jsonschema.validators.validator_for(value)
            validator.check_schema(value)
        except jsonschema.exceptions.SchemaError as exc:
            raise FlowError(
                400, f"invalid JSON schema in format: {exc.message}"
            ) from None
        return value
    shown = json.dumps(value)[:100]
    raise FlowError(
        400, f'invalid format: {shown}; expected "json" or a valid JSON Schema object'
    )


def check_answer(text: str, format: JsonValue) -> None:
    """Check a finished constrained answer; a mismatch is the server's failure.

    Raises:
        FlowError: 500 naming what does not match.
    """
    try:
        value = json.loads(text)
    except ValueError:
        raise FlowError(500, "the model's answer is not valid JSON") from None
    if format == "json":
        if not isinstance(value, dict):
            raise FlowError(500, "the model's answer is not a JSON object")
        return
    if isinstance(format, Mapping):
        error = jsonschema.exceptions.best_match(
            jsonschema.validators.validator_for(format)(format).iter_errors(value)
        )
        if error is not None:
            raise FlowError(
                500, f"the model's answer does not match the schema: {error.message}"
            )


def tool_call_schema(
    tools: tuple[Mapping[str, JsonValue], ...],
) -> dict[str, JsonValue]:
    """A schema for one call of one of ``tools``: ``{"name": ..., "arguments": ...}``
    with the arguments valid against that tool's parameters. Forcing a tool call
    (``tool_choice`` required or named) constrains the output to it."""
    options: list[JsonValue] = []
    for tool in tools:
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            continue
        parameters = function.get("parameters")
        options.append(
            {
                "type": "object",
                "properties": {
                    "name": {"const": function["name"]},
                    "arguments": (
                        parameters
                        if isinstance(parameters, dict)
                        else {"type": "object"}
                    ),
                },
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    if not options:
        raise FlowError(400, "tool_choice needs at least one function tool")
    if len(options) == 1:
        only = options[0]
        assert isinstance(only, dict)
        return only
    return {"anyOf": options}
