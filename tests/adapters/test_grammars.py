"""What llguidance is asked to enforce, and what it refuses, with where."""

from __future__ import annotations

import json
import re

import llguidance
import pytest

from gateway_core._json import JsonValue
from gateway_core_adapters.runner.errors import UnsupportedSchema
from gateway_core_adapters.runner.grammars import (
    _PATTERNS,
    check_schema_support,
    json_grammar,
)

from .test_schema_suite import walks


@pytest.mark.parametrize(
    ("schema", "keyword", "pointer"),
    [
        ({"type": "array", "uniqueItems": True}, "uniqueItems", "/"),
        (
            {
                "type": "object",
                "properties": {"tags": {"type": "array", "uniqueItems": True}},
            },
            "uniqueItems",
            "/properties/tags",
        ),
        (
            {
                "$defs": {"T": {"not": {"type": "string"}}},
                "properties": {"t": {"$ref": "#/$defs/T"}},
            },
            "not",
            "/$defs/T",
        ),
        (
            {"properties": {"d": {"type": "string", "format": "idn-email"}}},
            "idn-email",
            "/properties/d",
        ),
        ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, "oneOf", "/"),
        (
            {"properties": {"p": {"type": "string", "pattern": "(?=a)a"}}},
            "look-around",
            "/properties/p",
        ),
        ({"$ref": "https://example.com/s.json"}, "does not fetch", "/"),
    ],
)
def test_refusals_name_the_keyword_and_where_it_is(
    schema: dict[str, JsonValue], keyword: str, pointer: str
) -> None:
    with pytest.raises(UnsupportedSchema) as caught:
        check_schema_support(schema)
    message = str(caught.value)
    assert keyword in message
    assert f"(at {pointer})" in message


def test_a_discriminated_union_and_recursion_are_enforced() -> None:
    pet: dict[str, JsonValue] = {
        "$defs": {
            "Cat": {
                "type": "object",
                "properties": {"kind": {"const": "cat"}, "lives": {"type": "integer"}},
                "required": ["kind", "lives"],
            },
            "Dog": {
                "type": "object",
                "properties": {
                    "kind": {"const": "dog"},
                    "kids": {"type": "array", "items": {"$ref": "#/$defs/Dog"}},
                },
                "required": ["kind"],
            },
        },
        "oneOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}],
        "discriminator": {"propertyName": "kind"},
    }
    check_schema_support(pet)  # no exception


def test_answers_are_compact() -> None:
    schema: dict[str, JsonValue] = {
        "type": "object",
        "properties": {
            "a": {"type": "integer"},
            "b": {"type": "array", "items": {"type": "boolean"}},
        },
        "required": ["a", "b"],
    }
    for answer in walks(schema, count=50, seed=1):
        json.loads(answer)
        outside_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', answer)
        assert not re.search(r"\s", outside_strings), answer


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        (
            "date",
            ["2024-02-29", "2000-02-29", "0001-01-01"],
            ["2023-02-29", "1900-02-29", "0000-01-01", "2024-04-31"],
        ),
        (
            "time",
            ["23:59:59Z", "00:00:00.123+05:30"],
            ["23:59:60Z", "24:00:00Z", "12:00:00"],
        ),
        (
            "date-time",
            ["2024-02-29T12:00:00Z"],
            ["2024-02-29t12:00:00z", "2024-02-29T12:00:60Z"],
        ),
    ],
)
def test_dates_and_times_are_what_the_final_check_accepts(
    name: str, good: list[str], bad: list[str]
) -> None:
    """Stricter than llguidance's own formats (a 61st second, any year's
    29th of February): whatever the pattern allows, the answer check accepts."""
    pattern = re.compile(_PATTERNS[name])
    assert all(pattern.fullmatch(text) for text in good)
    assert not any(pattern.fullmatch(text) for text in bad)


def test_a_format_with_a_pattern_of_its_own_is_left_alone() -> None:
    grammar = json_grammar({"type": "string", "format": "date", "pattern": "^2"})
    assert '"format":"date"' in grammar.replace(" ", "")


def test_json_means_any_object() -> None:
    assert llguidance.LLMatcher.validate_grammar(json_grammar("json")) == ""
    for answer in walks("json", count=20, seed=3):
        assert isinstance(json.loads(answer), dict)
