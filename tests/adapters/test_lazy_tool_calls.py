"""With ``tool_choice`` auto, a tool call the model opens is constrained from its
marker to its closing tag: it names an offered tool and its arguments validate,
while the text around it stays free.

The demo model writes ``<tool_call>`` now and then by chance (it is one token of
its vocabulary); over many answers it opens calls anywhere, in its thinking too.
Every call it opens and closes must be valid.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import ollama
import pytest

from .live import LiveServer

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 10},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}
CLOCK: dict[str, Any] = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object"}},
}
TOOLS = {"get_weather": WEATHER, "get_time": CLOCK}
_OPEN, _CLOSE = "<tool_call>", "</tool_call>"
_DECODER = json.JSONDecoder()


def check_call(name: str, arguments: dict[str, Any]) -> None:
    tool = TOOLS[name]  # an offered tool, or KeyError
    jsonschema.validate(arguments, tool["function"]["parameters"])


def closed_calls(text: str) -> list[Any]:
    """The calls written in ``text`` and closed: an opening tag, a JSON value, then
    the closing tag. The closing tag's text inside a JSON string is part of the
    string; a call cut short (by ``num_predict``) is not closed."""
    found = []
    start = text.find(_OPEN)
    while start >= 0:
        body = start + len(_OPEN)
        try:
            value, end = _DECODER.raw_decode(text, body + _skip(text, body))
        except json.JSONDecodeError:
            value, end = None, body
        else:
            end += _skip(text, end)
            if text.startswith(_CLOSE, end):
                found.append(value)
        start = text.find(_OPEN, end)
    return found


def _skip(text: str, at: int) -> int:
    return len(text[at:]) - len(text[at:].lstrip())


def check_text(text: str) -> int:
    """Check every closed call written in ``text`` (thinking keeps what it holds);
    return how many there were."""
    values = closed_calls(text)
    for value in values:
        for item in value if isinstance(value, list) else [value]:
            check_call(item["name"], item["arguments"])
    return len(values)


async def _answers(live: LiveServer, seeds: range) -> tuple[int, int]:
    """Chat over plain HTTP: the ollama client would drop the tools' bounds
    (``maxLength``, ``minimum``...), keeping only types, and those bounds are what
    the constraint must enforce."""
    calls = written = 0
    base = f"http://{live.host}:{live.port}"
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        for seed in seeds:
            body = {
                "model": "tiny",
                "messages": [{"role": "user", "content": "What is the weather?"}],
                "tools": [WEATHER, CLOCK],
                "stream": False,
                "options": {"seed": seed, "temperature": 1.5, "num_predict": 400},
            }
            reply = await http.post("/api/chat", json=body)
            assert reply.status_code == 200, reply.text
            answer = reply.json()
            message = answer["message"]
            tool_calls = message.get("tool_calls", [])
            if tool_calls and answer["done_reason"] == "length":
                # The limit may have cut the last call: it still comes back, as a
                # call to an offered tool with the arguments written so far (no call
                # is ever lost), which need not validate yet.
                cut = tool_calls.pop()["function"]
                assert cut["name"] in TOOLS
                assert isinstance(cut["arguments"], dict)
            for tool_call in tool_calls:
                function = tool_call["function"]
                check_call(function["name"], function["arguments"])
                calls += 1
            content = message["content"]
            written += check_text(message.get("thinking", "")) + check_text(content)
            # Content never holds a whole call that was not parsed as one (a stray
            # closing tag, with no call opened before it, is only text).
            assert not closed_calls(content), content
    return calls, written


async def test_calls_a_model_opens_are_valid(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    live, _ = served
    calls, written = await _answers(live, range(30))
    assert calls + written > 0, "no call was opened: the test tested nothing"


@pytest.mark.slow
async def test_calls_a_model_opens_are_valid_across_many_answers(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    live, _ = served
    calls, _ = await _answers(live, range(30, 300))
    assert calls > 20
