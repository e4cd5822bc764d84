"""``format`` checked before the work, and answers checked after it."""

from __future__ import annotations

import json

import jsonschema
import pytest

from gateway_core._flow import FlowError
from gateway_core._json import JsonValue
from gateway_core._structured import (
    FORMATS,
    check_answer,
    check_format,
    tool_call_schema,
)

SCHEMA: dict[str, JsonValue] = {
    "type": "object",
    "properties": {"n": {"type": "integer"}},
    "required": ["n"],
}


def test_formats_that_mean_nothing_are_none() -> None:
    assert check_format(None) is None
    assert check_format("") is None
    assert check_format("json") == "json"
    assert check_format(SCHEMA) == SCHEMA


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("xml", 'invalid format: "xml"'),
        ([], "invalid format: []"),
        (12, "invalid format: 12"),
        ({"type": "nonsense"}, "invalid JSON schema in format"),
        ({"enum": ["x" * 300_000]}, "over 262144"),
        ({"type": "string", "minLength": 10**9}, '"minLength" at / asks for 1e+09'),
        (
            {"properties": {"a": {"type": "array", "minItems": 2_000_000}}},
            '"minItems" at /properties/a',
        ),
        ({"$ref": "#/$defs/missing"}, '"$ref" at /: #/$defs/missing resolves to'),
        ({"$ref": "#nowhere"}, 'no "$anchor"'),
    ],
)
def test_bad_formats_are_400s(value: object, message: str) -> None:
    with pytest.raises(FlowError) as caught:
        check_format(value)  # type: ignore[arg-type]
    assert caught.value.status == 400
    assert message in caught.value.message


def test_an_answer_is_checked_against_its_format() -> None:
    check_answer('{"n": 3}', SCHEMA)
    check_answer('{"any": "object"}', "json")
    cases: list[tuple[str, JsonValue, str]] = [
        ('{"n": "3"}', SCHEMA, "does not match the schema: '3' is not of type"),
        ("[1]", "json", "not a JSON object"),
        ('{"n": 3', SCHEMA, "not valid JSON"),
    ]
    for text, fmt, message in cases:
        with pytest.raises(FlowError) as caught:
            check_answer(text, fmt)
        assert caught.value.status == 500
        assert message in caught.value.message


def test_a_forced_call_schema_names_each_tool_and_its_arguments() -> None:
    add: dict[str, JsonValue] = {
        "type": "function",
        "function": {"name": "add", "parameters": SCHEMA},
    }
    ping: dict[str, JsonValue] = {"type": "function", "function": {"name": "ping"}}
    one = tool_call_schema((add,))
    assert one["properties"] == {"name": {"const": "add"}, "arguments": SCHEMA}
    both = tool_call_schema((add, ping))
    options = both["anyOf"]
    assert isinstance(options, list)
    assert [o["properties"]["name"] for o in options] == [  # type: ignore[index,call-overload]
        {"const": "add"},
        {"const": "ping"},
    ]
    with pytest.raises(FlowError):
        tool_call_schema(({"type": "function"},))


def _nested(depth: int) -> dict[str, JsonValue]:
    schema: dict[str, JsonValue] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


def test_a_schema_too_deep_is_refused_before_anything_recurses() -> None:
    # 200 levels would exhaust the stack of jsonschema's own schema check.
    with pytest.raises(FlowError) as caught:
        check_format(_nested(200))
    assert caught.value.status == 400
    assert "nested deeper than 64" in caught.value.message
    assert check_format(_nested(20)) == _nested(20)


def test_references_that_resolve_are_accepted() -> None:
    recursive: dict[str, JsonValue] = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}
                },
            }
        },
        "$ref": "#/$defs/node",
    }
    assert check_format(recursive) == recursive
    anchored: dict[str, JsonValue] = {
        "$defs": {"n": {"$anchor": "num", "type": "integer"}},
        "properties": {"a": {"$ref": "#num"}},
    }
    assert check_format(anchored) == anchored
    # A huge maximum is fine: nothing is allocated for it, and it is a bound.
    assert check_format({"type": "string", "maxLength": 10**9})


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"n": 1e400}', "beyond what a double holds"),
        ('{"n": NaN}', "NaN is not JSON"),
        ('{"n": Infinity}', "Infinity is not JSON"),
        (r'{"n": "escaped\nnewline\u0000"}', None),
        ('{"n": "raw\ttab"}', "Invalid control character"),
        ('{"n": "raw\nnewline"}', "Invalid control character"),
    ],
)
def test_answers_are_parsed_strictly(text: str, words: str | None) -> None:
    if words is None:
        check_answer(text, "json")
        return
    with pytest.raises(FlowError, match=words) as caught:
        check_answer(text, "json")
    assert caught.value.status == 500


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        ("date", "2024-10-30", "\u1040\U0001ccf48\u1b57-10-30"),
        ("date-time", "2024-10-30T12:00:00Z", "2024-10-30 noon"),
        ("time", "12:00:00+02:00", "25:00:00Z"),
        ("uuid", "12345678-1234-1234-1234-123456789abc", "1234"),
        ("email", "a@example.com", "no at sign"),
        ("ipv4", "192.168.0.1", "192.168.0"),
        ("ipv6", "::1", "1::2::3"),
        ("uri", "https://example.com/a?b=c", "no scheme"),
        ("hostname", "example.com", "-dash-first"),
        ("duration", "P1Y2M3DT4H5M6S", "P1S"),
    ],
)
def test_answers_are_checked_for_their_formats(fmt: str, good: str, bad: str) -> None:
    """Every format the engine enforces is checked in the answer too: the final
    check is what catches an engine that let something through."""
    assert fmt in FORMATS.checkers
    schema: dict[str, JsonValue] = {"type": "string", "format": fmt}
    check_answer(json.dumps(good), schema)
    bad_text = json.dumps(json.loads(f'"{bad}"'), ensure_ascii=False)
    with pytest.raises(FlowError, match="does not match the schema") as caught:
        check_answer(bad_text, schema)
    assert caught.value.status == 500


def test_each_tools_definitions_move_to_the_root_with_their_references() -> None:
    def tool(name: str, item: JsonValue) -> dict[str, JsonValue]:
        return {
            "type": "function",
            "function": {
                "name": name,
                "parameters": {
                    "$defs": {"Item": item},
                    "type": "object",
                    "properties": {"item": {"$ref": "#/$defs/Item"}},
                },
            },
        }

    schema = tool_call_schema(
        (tool("a", {"type": "integer"}), tool("b", {"type": "string"}))
    )
    assert schema["$defs"] == {
        "tool0_Item": {"type": "integer"},
        "tool1_Item": {"type": "string"},
    }
    assert check_format(schema) == schema  # every reference resolves
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"name": "a", "arguments": {"item": 3}})
    assert not validator.is_valid({"name": "a", "arguments": {"item": "x"}})
    assert validator.is_valid({"name": "b", "arguments": {"item": "x"}})
