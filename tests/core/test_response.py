"""The error rule per dialect: a real status before the first byte, in-band after."""

from __future__ import annotations

import json

import pytest

from gateway_core import Dialect, EndResponse, SendBody, StartResponse
from gateway_core._dialects import DIALECTS
from gateway_core._response import ResponseWriter


def _writer(dialect: Dialect, *, head_only: bool = False) -> ResponseWriter:
    return ResponseWriter(DIALECTS[dialect], request_id="req_1", head_only=head_only)


@pytest.mark.parametrize(
    ("dialect", "body"),
    [
        (Dialect.OLLAMA, {"error": "model 'x' not found"}),
        (
            Dialect.OPENAI,
            {
                "error": {
                    "message": "model 'x' not found",
                    "type": "not_found_error",
                    "param": None,
                    "code": None,
                }
            },
        ),
        (
            Dialect.ANTHROPIC,
            {
                "type": "error",
                "error": {"type": "not_found_error", "message": "model 'x' not found"},
                "request_id": "req_1",
            },
        ),
    ],
)
def test_error_before_the_first_byte_is_a_real_status(
    dialect: Dialect, body: object
) -> None:
    effects = _writer(dialect).error(404, "model 'x' not found")
    assert isinstance(effects[0], StartResponse)
    assert effects[0].status == 404
    assert isinstance(effects[1], SendBody)
    assert json.loads(effects[1].data) == body
    assert isinstance(effects[2], EndResponse)


# Golden bytes: what a client reads when a stream fails after it began.
IN_BAND = {
    Dialect.OLLAMA: b'{"error":"runner crashed"}\n',
    Dialect.OPENAI: (
        b'data: {"error":{"message":"runner crashed","type":"api_error",'
        b'"param":null,"code":null}}\n\ndata: [DONE]\n\n'
    ),
    Dialect.ANTHROPIC: (
        b"event: error\n"
        b'data: {"type":"error","error":{"type":"api_error",'
        b'"message":"runner crashed"}}\n\n'
    ),
    Dialect.OPENAI_RESPONSES: (
        b"event: error\n"
        b'data: {"type":"error","code":null,"message":"runner crashed",'
        b'"param":null,"sequence_number":0}\n\n'
    ),
}


@pytest.mark.parametrize("dialect", list(Dialect))
def test_error_after_the_first_byte_goes_in_band_then_ends(dialect: Dialect) -> None:
    writer = _writer(dialect)
    head = writer.start_stream()
    assert len(head) == 1
    assert isinstance(head[0], StartResponse)
    assert head[0].status == 200
    assert head[0].header("content-type") == DIALECTS[dialect].stream_media_type
    assert head[0].header("content-length") is None
    writer.frame(b"first frame")
    effects = writer.error(500, "runner crashed")
    assert effects == [SendBody(data=IN_BAND[dialect]), EndResponse()]
    assert writer.finished


def test_streams_of_each_dialect_use_their_framing() -> None:
    assert DIALECTS[Dialect.OLLAMA].stream_media_type == "application/x-ndjson"
    assert DIALECTS[Dialect.OPENAI].stream_media_type == "text/event-stream"
    assert DIALECTS[Dialect.ANTHROPIC].stream_media_type == "text/event-stream"


def test_head_only_streams_send_no_body() -> None:
    writer = _writer(Dialect.OLLAMA, head_only=True)
    writer.start_stream()
    assert writer.frame(b"x\n") == []
    assert writer.error(500, "boom") == [EndResponse()]


def test_ordering_mistakes_inside_the_core_are_caught() -> None:
    writer = _writer(Dialect.OLLAMA)
    with pytest.raises(RuntimeError):
        writer.frame(b"x")
    with pytest.raises(RuntimeError):
        writer.end_stream()
    writer.json(200, {})
    with pytest.raises(RuntimeError):
        writer.json(200, {})


@pytest.mark.parametrize(
    ("status", "openai", "anthropic"),
    [
        (400, "invalid_request_error", "invalid_request_error"),
        (404, "not_found_error", "not_found_error"),
        (413, "invalid_request_error", "request_too_large"),
        (429, "rate_limit_error", "rate_limit_error"),
        (500, "api_error", "api_error"),
        (501, "api_error", "api_error"),
        (503, "api_error", "overloaded_error"),
        (418, "invalid_request_error", "invalid_request_error"),
    ],
)
def test_error_types_follow_the_status(
    status: int, openai: str, anthropic: str
) -> None:
    o = json.loads(_writer(Dialect.OPENAI).error(status, "m")[1].data)  # type: ignore[union-attr]
    a = json.loads(_writer(Dialect.ANTHROPIC).error(status, "m")[1].data)  # type: ignore[union-attr]
    assert o["error"]["type"] == openai
    assert a["error"]["type"] == anthropic
