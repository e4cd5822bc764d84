"""Value types reject what cannot be valid; routes and shapes agree with each other."""

from __future__ import annotations

import pytest

from gateway_core import (
    ROUTES,
    GatewayConfig,
    Operation,
    RequestHead,
    SendBody,
    StartResponse,
)
from gateway_core._errors import ClientError
from gateway_core._json import dumps, parse_body
from gateway_core._routes import Body, match_route
from gateway_core._shapes import SHAPES, Kind, check_shape


def test_request_head_normalizes_header_names_and_finds_repeats() -> None:
    head = RequestHead(
        method="GET",
        target="/api/tags",
        headers=(("Accept", "a"), ("X-Thing", "1"), ("x-thing", "2")),
    )
    assert head.headers[0] == ("accept", "a")
    assert head.header("X-THING") == "1, 2"
    assert head.header("missing") is None
    assert head.path == "/api/tags"


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        ("GE T", "/", ()),
        ("GET", "", ()),
        ("GET", "/a b", ()),
        ("GET", "/", (("bad name", "v"),)),
        ("GET", "/", (("x", "a\r\nInjected: yes"),)),
    ],
)
def test_request_head_rejects_what_http_cannot_carry(
    method: str, target: str, headers: tuple[tuple[str, str], ...]
) -> None:
    with pytest.raises(ValueError, match="invalid"):
        RequestHead(method=method, target=target, headers=headers)


def test_effects_reject_invalid_values() -> None:
    with pytest.raises(ValueError, match="200-599"):
        StartResponse(status=100)
    with pytest.raises(ValueError, match="lower-case"):
        StartResponse(status=200, headers=(("Content-Type", "x"),))
    with pytest.raises(ValueError, match="invalid value"):
        StartResponse(status=200, headers=(("x", "a\nb"),))
    with pytest.raises(ValueError, match="at least one byte"):
        SendBody(data=b"")


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        GatewayConfig(max_body_bytes=0)
    with pytest.raises(ValueError, match=r"1\.2\.3"):
        GatewayConfig(reported_version="0.33")


def test_client_error_statuses_are_errors() -> None:
    with pytest.raises(ValueError, match="4xx or 5xx"):
        ClientError(200, "fine")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "missing request body"),
        (b"\xc3\x28", "request body is not valid UTF-8 (byte 0)"),
        (
            b"{",
            "invalid JSON in request body: Expecting property name enclosed in "
            "double quotes (line 1, column 2)",
        ),
        (b"[NaN]", "invalid JSON in request body: NaN is not valid JSON"),
        (b"[-Infinity]", "invalid JSON in request body: -Infinity is not valid JSON"),
        (b"[1e999]", "invalid JSON in request body: number 1e999 is out of range"),
        (
            b"[" * 50_000 + b"]" * 50_000,
            "invalid JSON in request body: nested too deeply",
        ),
    ],
)
def test_parse_body_refuses_with_a_reason(body: bytes, message: str) -> None:
    with pytest.raises(ClientError) as info:
        parse_body(body)
    assert info.value.status == 400
    assert info.value.message == message


def test_parse_body_refuses_absurdly_long_integers() -> None:
    with pytest.raises(ClientError, match="invalid JSON"):
        parse_body(b"1" * 5000)


def test_dumps_is_compact_utf8_and_survives_lone_surrogates() -> None:
    assert dumps({"a": "é", "b": [1, 2.5]}) == '{"a":"é","b":[1,2.5]}'.encode()
    assert dumps("\ud800") == '"\ufffd"'.encode()
    with pytest.raises(ValueError, match="JSON compliant"):
        dumps(float("nan"))


def test_every_json_route_has_a_shape_and_every_shape_a_route() -> None:
    json_operations = {
        route.methods[method]
        for route in ROUTES
        for method in route.methods
        if route.body_for(method) is Body.JSON
    }
    assert json_operations == set(SHAPES)


def test_every_operation_is_routed_exactly_once() -> None:
    routed = [op for route in ROUTES for op in route.methods.values()]
    # ROOT and VERSION share their operation between GET and HEAD.
    assert set(routed) == set(Operation)


def test_check_shape_accepts_integers_for_numbers_but_not_the_reverse() -> None:
    assert check_shape(Operation.OPENAI_CHAT, {"temperature": 1})
    with pytest.raises(ClientError, match="'seed' must be an integer, not a number"):
        check_shape(Operation.OPENAI_CHAT, {"seed": 1.5})
    assert Kind.INTEGER in SHAPES[Operation.OPENAI_CHAT]["temperature"]


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/v1/models/llama3.2:latest", "llama3.2:latest"),
        ("/v1/models/hf.co/user/model:Q4", "hf.co/user/model:Q4"),
        ("/v1/models/a%3Ab", "a:b"),
        ("/api/blobs/sha256:0123", "sha256:0123"),
    ],
)
def test_path_parameters_take_the_rest_of_the_path(path: str, param: str) -> None:
    match = match_route(path)
    assert match is not None
    assert match.param == param


def test_prefix_routes_need_a_parameter() -> None:
    assert match_route("/api/blobs/") is None
    listing = match_route("/v1/models/")
    assert listing is not None
    assert listing.route.path == "/v1/models"
