"""Each model family's template, driven through the core from all three APIs.

The same conversation (a tool call, its result, thinking) sent as a native chat,
an OpenAI chat and an Anthropic message must reach the family's template as the
same messages, and so render the same prompt: the family's own call syntax with
the arguments, its result syntax with the tool's name (OpenAI and Anthropic only
send the call's id; the core finds the name), and thinking where the family keeps
it. ``RENDERED`` is that prompt, per family.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway_core._families import family_for

from .family_templates import CAPABILITIES, HISTORY, RENDERED, TEMPLATES, WEATHER_TOOL
from .helpers import model_record, run
from .test_generation import World

OPENAI_HISTORY: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "reasoning_content": "Need the tool.",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
]
ANTHROPIC_BODY: dict[str, Any] = {
    "model": "tiny",
    "max_tokens": 50,
    "system": "Be brief.",
    "tools": [
        {
            "name": "get_weather",
            "description": "The weather in a city.",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ],
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Need the tool.", "signature": "s"},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": '{"temp": 21}',
                }
            ],
        },
    ],
}
REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "native": (
        "/api/chat",
        {
            "model": "tiny",
            "messages": HISTORY,
            "tools": [WEATHER_TOOL],
            "stream": False,
        },
    ),
    "openai": (
        "/v1/chat/completions",
        {"model": "tiny", "messages": OPENAI_HISTORY, "tools": [WEATHER_TOOL]},
    ),
    "anthropic": ("/v1/messages", ANTHROPIC_BODY),
}


@pytest.mark.parametrize("family", sorted(TEMPLATES))
def test_each_template_is_recognised_as_its_family(family: str) -> None:
    assert family_for(TEMPLATES[family]).name == family


@pytest.mark.parametrize("dialect", sorted(REQUESTS))
@pytest.mark.parametrize("family", sorted(TEMPLATES))
def test_a_conversation_with_a_call_renders_in_the_familys_format(
    family: str, dialect: str
) -> None:
    world = World(record=model_record("tiny", TEMPLATES[family]))
    path, body = REQUESTS[dialect]
    reply = run("POST", path, json.dumps(body).encode(), world=world)
    assert reply.status == 200, reply.body
    (prompt,) = world.prompts
    assert prompt == RENDERED[family]


@pytest.mark.parametrize("family", sorted(TEMPLATES))
def test_show_lists_the_familys_capabilities(family: str) -> None:
    world = World(record=model_record("tiny", TEMPLATES[family]))
    reply = run("POST", "/api/show", b'{"model": "tiny"}', world=world)
    assert reply.status == 200, reply.body
    shown = reply.json()
    assert isinstance(shown, dict)
    assert set(shown["capabilities"]) == {"completion", *CAPABILITIES[family]}
