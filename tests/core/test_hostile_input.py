"""Hostile request bodies get a 400 naming what is wrong, never a 500.

Each case here once reached code that could not cope: a lone surrogate that has no
UTF-8 form, a model name too long for a directory name, a body or a schema nested
deep enough to exhaust the stack of a recursive walker.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from gateway_core._errors import ClientError
from gateway_core._flow import FlowError
from gateway_core._json import (
    MAX_BODY_NESTING,
    Flaw,
    JsonValue,
    find_lone_surrogate,
    find_nesting_over,
    loads_strict,
    parse_body,
)
from gateway_core._names import InvalidModelName, ModelName
from gateway_core._options import resolve_options
from gateway_core._structured import MAX_DEPTH, check_answer, nested_deeper_than

from .helpers import Transcript, run


def _message(t: Transcript) -> str:
    """The error message, in whichever envelope the route's API uses."""
    reply = t.json()
    assert isinstance(reply, dict)
    error = reply["error"]
    return error if isinstance(error, str) else str(error["message"])


# -- lone surrogates ----------------------------------------------------------------

_LONE = "h\\ud800i"
"""A lone high surrogate, as raw JSON text (an escape, as it must be)."""


def _with(text: str, template: str) -> bytes:
    return template.replace("@", f'"{text}"').encode()


# One text field per JSON route, and where the 400 must say the surrogate is.
_TEXT_FIELDS = [
    ("POST", "/api/generate", '{"model": "m", "prompt": @}', "prompt"),
    ("POST", "/api/generate", '{"model": "m", "system": @}', "system"),
    (
        "POST",
        "/api/chat",
        '{"model": "m", "messages": [{"role": "user", "content": @}]}',
        "messages[0].content",
    ),
    (
        "POST",
        "/api/chat",
        '{"model": "m", "messages": [], "options": {"stop": ["a", @]}}',
        "options.stop[1]",
    ),
    ("POST", "/api/embed", '{"model": "m", "input": ["x", @]}', "input[1]"),
    ("POST", "/api/embeddings", '{"model": "m", "prompt": @}', "prompt"),
    ("POST", "/api/show", '{"model": @}', "model"),
    ("POST", "/api/create", '{"model": "m", "from": "b", "system": @}', "system"),
    ("POST", "/api/copy", '{"source": "a", "destination": @}', "destination"),
    ("DELETE", "/api/delete", '{"model": @}', "model"),
    ("POST", "/api/pull", '{"model": "m", "stream": false, "x": @}', "x"),
    (
        "POST",
        "/v1/chat/completions",
        '{"model": "m", "messages": [{"role": "user", "content": @}]}',
        "messages[0].content",
    ),
    ("POST", "/v1/completions", '{"model": "m", "prompt": @}', "prompt"),
    ("POST", "/v1/embeddings", '{"model": "m", "input": @}', "input"),
    (
        "POST",
        "/v1/messages",
        '{"model": "m", "max_tokens": 1, "messages": [{"role": "user",'
        ' "content": [{"type": "text", "text": @}]}]}',
        "messages[0].content[0].text",
    ),
    (
        "POST",
        "/v1/messages/count_tokens",
        '{"model": "m", "messages": [], "system": @}',
        "system",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "template", "where"),
    _TEXT_FIELDS,
    ids=[f"{path}:{where}" for _, path, _, where in _TEXT_FIELDS],
)
def test_a_lone_surrogate_in_any_route_is_a_400_naming_the_field(
    method: str, path: str, template: str, where: str
) -> None:
    t = run(method, path, _with(_LONE, template))
    assert t.status == 400
    assert _message(t).startswith(
        f"invalid text in {where}: a lone UTF-16 surrogate (\\ud800) is not a character"
    )
    assert t.work == ()  # refused before any work


def test_openai_names_the_top_level_field_in_param() -> None:
    body = _with(_LONE, '{"model": "m", "messages": [{"role": "user", "content": @}]}')
    error = run("POST", "/v1/chat/completions", body).json()
    assert isinstance(error, dict)
    assert error["error"]["param"] == "messages"


@pytest.mark.parametrize(
    ("raw", "where", "code"),
    [
        ('{"a": "\\udc00x"}', "a", "\\udc00"),  # a lone low surrogate
        ('{"a": "\\ud800\\u0041"}', "a", "\\ud800"),  # high, then no low
        ('{"a": "\\ude00\\ud83d"}', "a", "\\ude00"),  # a pair the wrong way round
        ('{"a": "\\uDBFF"}', "a", "\\udbff"),  # upper-case hex
        ('{"a": ["ok", {"b": "x\\ud83d"}]}', "a[1].b", "\\ud83d"),
        ('{"a-b": "\\udfff"}', '["a-b"]', "\\udfff"),
        ('"\\ud800"', "the body", "\\ud800"),
    ],
)
def test_parse_body_finds_a_lone_surrogate_anywhere(
    raw: str, where: str, code: str
) -> None:
    with pytest.raises(ClientError) as caught:
        parse_body(raw.encode())
    assert caught.value.status == 400
    assert caught.value.message.startswith(
        f"invalid text in {where}: a lone UTF-16 surrogate ({code})"
    )


def test_a_lone_surrogate_in_a_key_names_the_key() -> None:
    with pytest.raises(ClientError) as caught:
        parse_body(b'{"options": {"h\\ud800i": 1}}')
    assert caught.value.message.startswith(
        'invalid text in the field name options["h\\ud800i"]'
    )
    assert caught.value.param == "options"
    with pytest.raises(ClientError) as caught:
        parse_body(b'{"\\ud800": 1}')
    assert caught.value.param is None  # no name an error could print


def test_the_first_lone_surrogate_in_document_order_is_named() -> None:
    raw = b'{"a": [{"b": "\\ud800"}], "c": "\\ud800"}'
    with pytest.raises(ClientError, match=r"in a\[0\]\.b:"):
        parse_body(raw)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ('{"a": "\\ud83d\\ude00"}', {"a": "\U0001f600"}),  # a valid pair
        ('{"a": "\\uD83D\\uDE00"}', {"a": "\U0001f600"}),
        ('{"a": "\\\\ud800"}', {"a": "\\ud800"}),  # an escaped backslash, not a \u
        ('{"a": "\\u00e9\\ud7ff\\ue000"}', {"a": "\u00e9\ud7ff\ue000"}),
    ],
)
def test_text_that_only_looks_like_a_surrogate_is_accepted(
    raw: str, value: JsonValue
) -> None:
    assert parse_body(raw.encode()) == value


def test_a_surrogate_encoded_as_utf8_bytes_is_not_utf8() -> None:
    # CESU-8's form of U+D800; strict UTF-8 has none.
    with pytest.raises(ClientError, match="not valid UTF-8"):
        parse_body(b'{"a": "\xed\xa0\x80"}')


def test_the_finders_say_where_for_json_decoded_from_inside_a_body() -> None:
    # OpenAI's tool call arguments are JSON inside a JSON string: the body's
    # check cannot see a surrogate escaped there, the translator must ask.
    arguments = loads_strict('{"city": ["ok", "\\ud800"]}')
    assert find_lone_surrogate(arguments) == Flaw("city[1]", "city", "\\ud800")
    assert find_lone_surrogate(loads_strict('{"a": "\\ud83d\\ude00"}')) is None
    deep = {"a": _nested_list(3)}
    assert find_nesting_over(3, deep) == Flaw("a[0][0]", "a", "4 levels")
    assert find_nesting_over(4, deep) is None


# -- model names too long for the store -----------------------------------------------


@pytest.mark.parametrize("length", [256, 300, 350])
def test_a_host_ollama_allows_but_no_directory_can_hold_is_refused(
    length: int,
) -> None:
    with pytest.raises(InvalidModelName, match="longer than 255 characters"):
        ModelName.parse("h" * length + "/ns/m:t")


def test_a_host_of_255_characters_is_a_name() -> None:
    name = ModelName.parse("h" * 255 + "/ns/m:t")
    assert max(len(part) for part in name.path_parts) == 255


_LONG = "h" * 300 + "/ns/m:t"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/generate", {"model": _LONG, "prompt": "x"}),
        ("POST", "/api/chat", {"model": _LONG, "messages": []}),
        ("POST", "/api/embed", {"model": _LONG, "input": "x"}),
        ("POST", "/api/embeddings", {"model": _LONG, "prompt": "x"}),
        ("POST", "/api/show", {"model": _LONG}),
        ("POST", "/api/create", {"model": _LONG, "from": "tiny"}),
        ("POST", "/api/create", {"model": "tiny2", "from": _LONG}),
        ("POST", "/api/copy", {"source": _LONG, "destination": "b"}),
        ("POST", "/api/copy", {"source": "a", "destination": _LONG}),
        ("DELETE", "/api/delete", {"model": _LONG}),
        ("POST", "/v1/chat/completions", {"model": _LONG, "messages": []}),
        ("POST", "/v1/completions", {"model": _LONG, "prompt": "x"}),
        ("POST", "/v1/embeddings", {"model": _LONG, "input": "x"}),
        ("POST", "/v1/messages", {"model": _LONG, "max_tokens": 1, "messages": []}),
    ],
)
def test_an_overlong_host_is_refused_before_the_store_is_asked(
    method: str, path: str, body: JsonValue
) -> None:
    t = run(method, path, json.dumps(body).encode())
    assert t.status == 400
    assert t.work == ()


# /api/pull and /api/push are left out: they answer every request with 501, as
# this gateway never talks to a registry (docs/compatibility.md).


def test_an_overlong_host_in_a_models_path_is_not_found() -> None:
    t = run("GET", "/v1/models/" + _LONG)
    assert t.status == 404
    assert t.work == ()


# -- deep nesting ------------------------------------------------------------------


def _schema(levels: int) -> dict[str, JsonValue]:
    """A schema of ``levels`` nested objects: two JSON levels each."""
    schema: dict[str, JsonValue] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def _chain(levels: int) -> JsonValue:
    """``{"not": {"not": ...}}``: one JSON level per schema level, the cheapest way
    to make jsonschema recurse."""
    schema: JsonValue = {"type": "string"}
    for _ in range(levels):
        schema = {"not": schema}
    return schema


def _nested_list(levels: int) -> JsonValue:
    value: JsonValue = "x"
    for _ in range(levels):
        value = [value]
    return value


_MESSAGE = {"role": "user", "content": "hi"}
_DEEP = _schema(200)
_DEEP_BODIES = [
    ("/api/chat", {"model": "m", "messages": [_MESSAGE], "format": _DEEP}),
    ("/api/generate", {"model": "m", "prompt": "x", "format": _DEEP}),
    (
        "/v1/chat/completions",
        {
            "model": "m",
            "messages": [_MESSAGE],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": _DEEP},
            },
        },
    ),
    (
        "/v1/chat/completions",
        {
            "model": "m",
            "messages": [_MESSAGE],
            "tools": [
                {"type": "function", "function": {"name": "f", "parameters": _DEEP}}
            ],
        },
    ),
    (
        "/api/chat",
        {
            "model": "m",
            "messages": [_MESSAGE],
            "tools": [
                {"type": "function", "function": {"name": "f", "parameters": _DEEP}}
            ],
        },
    ),
    (
        "/v1/messages",
        {
            "model": "m",
            "max_tokens": 1,
            "messages": [_MESSAGE],
            "tools": [{"name": "f", "input_schema": _DEEP}],
        },
    ),
    (
        "/v1/messages",
        {
            "model": "m",
            "max_tokens": 1,
            "messages": [_MESSAGE],
            "output_config": {"format": {"type": "json_schema", "schema": _DEEP}},
        },
    ),
    (
        "/api/chat",
        {"model": "m", "messages": [{"role": "user", "content": _nested_list(300)}]},
    ),
    ("/api/chat", {"model": "m", "messages": [], "options": {"stop": _DEEP}}),
    ("/api/embed", {"model": "m", "input": _nested_list(150)}),
    ("/v1/completions", {"model": "m", "prompt": "x", "x": _nested_list(150)}),
]


@pytest.mark.parametrize(
    ("path", "body"), _DEEP_BODIES, ids=[path for path, _ in _DEEP_BODIES]
)
def test_deep_nesting_anywhere_in_a_body_is_a_400(path: str, body: JsonValue) -> None:
    t = run("POST", path, json.dumps(body).encode())
    assert t.status == 400
    assert "request body is nested too deeply" in t.body.decode()
    assert f"more than {MAX_BODY_NESTING} levels" in t.body.decode()
    assert t.work == ()


def test_the_nesting_limit_is_exact_and_names_the_field() -> None:
    assert parse_body(json.dumps(_nested_list(MAX_BODY_NESTING)).encode())
    with pytest.raises(ClientError) as caught:
        parse_body(json.dumps({"input": _nested_list(MAX_BODY_NESTING)}).encode())
    assert caught.value.message.startswith(
        "request body is nested too deeply: input[0][0]"
    )
    assert caught.value.param == "input"
    assert len(caught.value.message) < 250  # the path is cut short


def test_far_deeper_bodies_are_refused_too() -> None:
    for levels in (129, 500, 900, 5000, 100_000):
        with pytest.raises(ClientError, match="nested too deeply"):
            parse_body(b"[" * levels + b"]" * levels)


def _called_deep(frames: int, function: Callable[[], Transcript]) -> Transcript:
    """``function()`` with ``frames`` more frames on the stack: the server runs the
    core under trio's and its driver's frames, some dozens of them."""
    return function() if frames == 0 else _called_deep(frames - 1, function)


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 120])
def test_an_anthropic_tool_schema_within_the_body_limit_but_deep_is_a_400(
    path: str, levels: int
) -> None:
    # jsonschema checks input_schema as the tool is read, about eight frames per
    # level: 120 levels of "not" once exhausted the stack (a 500).
    schema = {"type": "object", "additionalProperties": _chain(levels)}
    body = {
        "model": "m",
        "max_tokens": 1,
        "messages": [_MESSAGE],
        "tools": [
            {"name": "ok", "input_schema": {"type": "object"}},
            {"name": "f", "input_schema": schema},
        ],
    }
    t = _called_deep(100, lambda: run("POST", path, json.dumps(body).encode()))
    assert t.status == 400
    assert _message(t) == (
        f"tools[1].input_schema is nested deeper than {MAX_DEPTH} levels"
    )


def test_a_tool_schema_at_the_schema_limit_passes_the_depth_check() -> None:
    # The object, its additionalProperties, MAX_DEPTH - 3 levels of "not", the
    # innermost schema and its "type": MAX_DEPTH levels in all.
    schema = {"type": "object", "additionalProperties": _chain(MAX_DEPTH - 3)}
    assert not nested_deeper_than(MAX_DEPTH, schema)
    body = {
        "model": "m",
        "messages": [_MESSAGE],
        "tools": [{"name": "f", "input_schema": schema}],
    }
    t = run("POST", "/v1/messages/count_tokens", json.dumps(body).encode())
    assert t.status == 404  # the model, in an empty store: the schema was fine


def test_nested_deeper_than_counts_levels_from_one() -> None:
    assert not nested_deeper_than(1, "x")
    assert nested_deeper_than(1, ["x"])
    assert not nested_deeper_than(2, ["x"])
    assert nested_deeper_than(2, {"a": {"b": 1}})
    assert not nested_deeper_than(100_000, _nested_list(10_000))  # no recursion


def test_a_model_answer_too_deep_to_parse_is_a_handled_500() -> None:
    with pytest.raises(FlowError) as caught:
        check_answer("[" * 100_000 + "]" * 100_000, "json")
    assert caught.value.status == 500
    assert "nested too deeply" in caught.value.message


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (1.5, "tool_calls[0] must be an object with a function object"),
        ({"function": "f"}, "tool_calls[0] must be an object with a function object"),
        ({"function": {"name": 3}}, "tool_calls[0].function.name must be a string"),
        (
            {"function": {"name": "f", "arguments": "{}"}},
            "tool_calls[0].function.arguments must be an object",
        ),
    ],
)
def test_an_earlier_turns_tool_call_must_have_ollamas_shape(
    call: JsonValue, says: str
) -> None:
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
    ]
    body = json.dumps({"model": "tiny", "messages": messages}).encode()
    transcript = run("POST", "/api/chat", body)
    assert transcript.status == 400
    assert says in _message(transcript)
    assert transcript.work == ()


def test_a_lone_surrogate_inside_openai_tool_arguments_is_a_400() -> None:
    arguments = json.dumps({"city": "x"}).replace("x", "\\ud800")
    call = {
        "id": "c",
        "type": "function",
        "function": {"name": "f", "arguments": arguments},
    }
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
    ]
    body = json.dumps({"model": "tiny", "messages": messages}).encode()
    transcript = run("POST", "/v1/chat/completions", body)
    assert transcript.status == 400
    assert "lone UTF-16 surrogate" in _message(transcript)


def test_unknown_option_names_reach_the_log_cut_short() -> None:
    options = resolve_options({}, {f"x{i}{'y' * 500}": 1 for i in range(30)})
    note = options.ignored_note
    assert note is not None
    assert len(note) < 800
    assert note.endswith("and 20 more")
    assert resolve_options({}, {}).ignored_note is None
