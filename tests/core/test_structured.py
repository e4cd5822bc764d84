"""``format`` checked before the work, and answers checked after it."""

from __future__ import annotations

import pytest

from gateway_core._flow import FlowError
from gateway_core._json import JsonValue
from gateway_core._structured import check_answer, check_format, tool_call_schema

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
        ({"enum": ["x" * 40_000]}, "over 32768 characters"),
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
