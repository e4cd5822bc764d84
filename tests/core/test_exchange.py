"""The Exchange end to end, through bytes and values only."""

from __future__ import annotations

import json

import pytest

from gateway_core import (
    OLLAMA_API_VERSION,
    ROUTES,
    BlobStored,
    EndResponse,
    Exchange,
    GatewayConfig,
    LocalProtocolError,
    Phase,
    ReceiveBlob,
    RequestHead,
    Route,
    SendBody,
    StartResponse,
    Tokens,
    Wait,
    error_response,
)

from .helpers import CONFIG, drain, run


def test_version_reports_a_parseable_version() -> None:
    t = run("GET", "/api/version")
    assert t.status == 200
    assert t.header("content-type") == "application/json; charset=utf-8"
    assert t.json() == {"version": OLLAMA_API_VERSION}
    assert [int(part) for part in OLLAMA_API_VERSION.split(".")]
    assert t.header("content-length") == str(len(t.body))


def test_reported_version_is_configurable() -> None:
    t = run("GET", "/api/version", config=GatewayConfig(reported_version="1.2.3"))
    assert t.json() == {"version": "1.2.3"}


def test_root_says_it_is_running_in_plain_text() -> None:
    t = run("GET", "/")
    assert t.status == 200
    assert t.header("content-type") == "text/plain; charset=utf-8"
    assert t.body == b"Ollama is running"


@pytest.mark.parametrize("target", ["/", "/api/version"])
def test_head_gets_the_get_headers_and_no_body(target: str) -> None:
    get, head = run("GET", target), run("HEAD", target)
    assert head.status == 200
    assert head.head.headers == get.head.headers
    assert head.body == b""
    assert int(head.header("content-length") or 0) == len(get.body) > 0


def test_query_strings_and_absolute_form_targets_find_their_route() -> None:
    assert run("GET", "/api/version?verbose=1").status == 200
    assert run("GET", "http://localhost:11434/api/version").status == 200


def test_a_single_trailing_slash_is_forgiven() -> None:
    assert run("GET", "/api/version/").status == 200
    assert run("GET", "/api/version//").status == 404


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/nope", {"error": "unknown endpoint: GET /nope"}),
        (
            "/v1/nope",
            {
                "error": {
                    "message": "unknown endpoint: GET /v1/nope",
                    "type": "not_found_error",
                    "param": None,
                    "code": None,
                }
            },
        ),
        (
            "/v1/messages/nope",
            {
                "type": "error",
                "error": {
                    "type": "not_found_error",
                    "message": "unknown endpoint: GET /v1/messages/nope",
                },
                "request_id": "req_test",
            },
        ),
    ],
)
def test_unknown_paths_get_404_in_the_envelope_of_their_api(
    target: str, expected: object
) -> None:
    t = run("GET", target)
    assert t.status == 404
    assert t.header("content-type") == "application/json; charset=utf-8"
    assert t.json() == expected
    assert not t.read_body


def test_the_fixed_part_of_a_path_is_not_percent_decoded() -> None:
    assert run("GET", "/api%2Fversion").status == 404


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.path)
def test_every_route_answers_405_with_allow_to_a_method_it_lacks(route: Route) -> None:
    target = route.path + ("x" if route.has_param else "")
    t = run("PATCH", target, b"{}")
    assert t.status == 405
    assert t.header("allow") == route.allow
    assert set(route.allow.split(", ")) == set(route.methods)
    assert "PATCH" in t.body.decode()
    assert not t.read_body


def test_405_on_a_known_path() -> None:
    t = run("DELETE", "/api/version")
    assert t.status == 405
    assert t.header("allow") == "GET, HEAD"
    assert t.json() == {
        "error": "method DELETE is not allowed for /api/version; allowed: GET, HEAD"
    }


def test_zero_length_body_is_missing() -> None:
    t = run("POST", "/api/chat", b"")
    assert t.status == 400
    assert t.json() == {"error": "missing request body"}


@pytest.mark.parametrize(
    "body",
    [b"{bad json", b"", b"\xff\xfe\x00garbage", b"[" * 100_000, b'{"a": NaN}'],
)
def test_bad_bodies_get_400_json_errors(body: bytes) -> None:
    t = run("POST", "/api/generate", body)
    assert t.status == 400
    error = t.json()
    assert isinstance(error, dict)
    assert set(error) == {"error"}
    assert isinstance(error["error"], str)


def test_malformed_json_error_says_where() -> None:
    t = run("POST", "/api/chat", b"{bad json")
    assert t.json() == {
        "error": "invalid JSON in request body: Expecting property name enclosed "
        "in double quotes (line 1, column 2)"
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[]", "request body must be a JSON object, not an array"),
        (b'"hi"', "request body must be a JSON object, not a string"),
        (b'{"stream": "yes"}', "field 'stream' must be a boolean, not a string"),
        (b'{"model": 3}', "field 'model' must be a string, not an integer"),
        (b'{"options": []}', "field 'options' must be an object, not an array"),
        (
            b'{"think": 1}',
            "field 'think' must be a string or a boolean, not an integer",
        ),
        (
            b'{"keep_alive": true}',
            "field 'keep_alive' must be a string or a number, not a boolean",
        ),
    ],
)
def test_wrong_types_get_400_naming_the_field(body: bytes, message: str) -> None:
    t = run("POST", "/api/chat", body)
    assert t.status == 400
    assert t.json() == {"error": message}


def test_openai_errors_name_the_field_in_param() -> None:
    t = run("POST", "/v1/chat/completions", b'{"model": "m", "max_tokens": "many"}')
    assert t.status == 400
    assert t.json() == {
        "error": {
            "message": "field 'max_tokens' must be an integer, not a string",
            "type": "invalid_request_error",
            "param": "max_tokens",
            "code": None,
        }
    }


def test_null_fields_and_unknown_fields_pass_the_shape_check() -> None:
    t = run("POST", "/api/chat", b'{"model": null, "stream": null, "mirostat": 1}')
    # Past the type check, into chat's own: a null model is a missing one.
    assert t.status == 400
    assert t.json() == {"error": "model is required"}


def test_a_declared_size_over_the_limit_is_refused_before_reading() -> None:
    config = GatewayConfig(max_body_bytes=1000)
    t = run(
        "POST",
        "/api/chat",
        [b"x" * 10],
        headers=(("content-length", "1001"),),
        config=config,
    )
    assert t.status == 413
    assert not t.read_body
    assert t.json() == {
        "error": "request body of 1001 bytes exceeds the limit of 1000 bytes"
    }


def test_anthropic_413_uses_its_own_error_type() -> None:
    t = run(
        "POST",
        "/v1/messages",
        [],
        headers=(("content-length", str(CONFIG.max_body_bytes + 1)),),
    )
    assert t.status == 413
    body = t.json()
    assert isinstance(body, dict)
    assert body["error"] == {
        "type": "request_too_large",
        "message": f"request body of {CONFIG.max_body_bytes + 1} bytes exceeds "
        f"the limit of {CONFIG.max_body_bytes} bytes",
    }


def test_an_undeclared_body_is_refused_the_moment_it_passes_the_limit() -> None:
    exchange = Exchange(
        RequestHead(method="POST", target="/api/chat"),
        config=GatewayConfig(max_body_bytes=10),
        request_id="r",
    )
    assert exchange.next_effect() is Wait.NEED_BODY
    exchange.receive_body(b"12345")
    assert exchange.next_effect() is Wait.NEED_BODY
    exchange.receive_body(b"123456")  # 11 bytes: one too many
    effects = drain(exchange)
    assert isinstance(effects[0], StartResponse)
    assert effects[0].status == 413
    # The rest of an in-flight body is dropped, not buffered, and ends cleanly.
    exchange.receive_body(b"x" * 1_000_000)
    exchange.end_body()
    assert exchange.next_effect() is Wait.FINISHED
    assert exchange.phase is Phase.FINISHED


def test_a_body_exactly_at_the_limit_is_accepted() -> None:
    body = b'{"model": "m"}'
    t = run("POST", "/api/chat", body, config=GatewayConfig(max_body_bytes=len(body)))
    assert t.status == 404  # read in full, and looked up: there is no model "m"
    assert t.json() == {"error": "model 'm' not found"}


def test_invalid_content_length_is_a_400() -> None:
    t = run("POST", "/api/chat", [], headers=(("content-length", "-1"),))
    assert t.status == 400


def test_a_body_split_into_pieces_is_the_same_body() -> None:
    body = b'{"model": "m", "stream": "no"}'
    whole = run("POST", "/api/chat", body)
    pieces = run("POST", "/api/chat", [body[i : i + 1] for i in range(len(body))])
    assert whole.effects == pieces.effects
    assert whole.status == 400


def test_an_unknown_model_on_the_openai_api_is_its_not_found_error() -> None:
    t = run("GET", "/v1/models/library/llama3:latest")
    assert t.status == 404
    assert t.json() == {
        "error": {
            "message": "model 'library/llama3:latest' not found",
            "type": "not_found_error",
            "param": None,
            "code": None,
        }
    }


def test_a_missing_model_on_the_openai_api_names_the_param() -> None:
    t = run("POST", "/v1/chat/completions", b"{}")
    assert t.status == 400
    assert t.json() == {
        "error": {
            "message": "you must provide a model parameter",
            "type": "invalid_request_error",
            "param": "model",
            "code": None,
        }
    }


@pytest.mark.parametrize("target", ["/v1/messages", "/v1/messages/count_tokens"])
def test_a_missing_model_on_the_anthropic_api_uses_its_envelope(target: str) -> None:
    t = run("POST", target, b"{}")
    assert t.status == 400
    assert t.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "model is required"},
        "request_id": "req_test",
    }


def test_a_bad_blob_digest_is_refused_before_reading_the_upload() -> None:
    t = run("POST", "/api/blobs/sha256:abc", [b"x" * 100])
    assert t.status == 400
    assert "sha256:<64 hex digits>" in t.body.decode()
    assert not t.read_body
    assert not t.work


def test_a_blob_upload_streams_to_the_store_not_through_the_exchange() -> None:
    digest = "sha256:" + "ab" * 32
    t = run(
        "POST",
        f"/api/blobs/{digest}",
        [b"x" * 100],
        world=lambda effect: [BlobStored(created=True)],
    )
    assert t.work == (ReceiveBlob(digest=digest),)
    assert not t.read_body  # the adapter streamed it to disk
    assert t.status == 201


def test_error_response_uses_the_envelope_of_the_path() -> None:
    native = error_response(431, "headers too large", path=None, request_id="r")
    openai = error_response(
        408, "too slow", path="/v1/chat/completions", request_id="r"
    )
    for effects in (native, openai):
        assert isinstance(effects[0], StartResponse)
        assert isinstance(effects[1], SendBody)
        assert isinstance(effects[-1], EndResponse)
    assert json.loads(native[1].data) == {"error": "headers too large"}  # type: ignore[union-attr]
    assert json.loads(openai[1].data)["error"]["type"] == "timeout_error"  # type: ignore[union-attr]


# -- adapter misuse and abort --------------------------------------------------


def _fresh_post() -> Exchange:
    return Exchange(
        RequestHead(method="POST", target="/api/chat"), config=CONFIG, request_id="r"
    )


def test_a_result_nobody_asked_for_is_adapter_misuse_and_sticks() -> None:
    exchange = _fresh_post()
    with pytest.raises(LocalProtocolError, match="result"):
        exchange.receive_result(Tokens(ids=(1,)), now=0.0)
    assert exchange.phase is Phase.ERROR
    with pytest.raises(LocalProtocolError):
        exchange.next_effect()
    with pytest.raises(LocalProtocolError):
        exchange.receive_body(b"{}")


def test_abort_while_receiving_stops_everything() -> None:
    exchange = _fresh_post()
    exchange.receive_body(b'{"mo')
    exchange.abort("client disconnected")
    exchange.abort("again")  # idempotent; the first reason is kept
    assert exchange.abort_reason == "client disconnected"
    assert exchange.next_effect() is Wait.FINISHED
    exchange.receive_body(b'del": "x"}')  # late bytes from the adapter are dropped
    exchange.end_body()
    assert exchange.next_effect() is Wait.FINISHED


def test_abort_with_a_response_queued_drops_the_response() -> None:
    exchange = Exchange(
        RequestHead(method="GET", target="/api/version"), config=CONFIG, request_id="r"
    )
    assert exchange.response_started
    first = exchange.next_effect()
    assert isinstance(first, StartResponse)
    exchange.abort("send failed")
    assert exchange.phase is Phase.ABORTED
    assert exchange.next_effect() is Wait.FINISHED


def test_abort_after_finishing_changes_nothing() -> None:
    exchange = Exchange(
        RequestHead(method="GET", target="/"), config=CONFIG, request_id="r"
    )
    drain(exchange)
    exchange.abort("late send failure")
    assert exchange.phase is Phase.FINISHED
    assert exchange.abort_reason is None
