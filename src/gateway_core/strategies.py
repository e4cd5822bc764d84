"""Hypothesis strategies for the requests the gateway accepts, for property tests.

Users who build on the core (their own server, a proxy, a client) can sample every
shape of request the three APIs allow::

    from hypothesis import given
    from gateway_core.strategies import openai_chat_requests

    @given(openai_chat_requests(model="demo"))
    def test_my_proxy_accepts_it(body): ...

Every strategy draws a JSON body (a ``dict``) that the core accepts as valid: the
gateway answers it with work, never with a 400. Text is any Unicode a client can
send (no lone surrogates, no NUL, which JSON allows but no model can take), so the
bodies also exercise escaping. Hypothesis is a test dependency: this module imports
it, and nothing else in ``gateway_core`` imports this module.
"""

from __future__ import annotations

from hypothesis import strategies as st

from ._json import JsonValue

__all__ = [
    "anthropic_message_requests",
    "messages",
    "model_names",
    "native_chat_requests",
    "native_generate_requests",
    "openai_chat_requests",
    "sampling_options",
]

_NAME_FIRST = "abcdefghijklmnopqrstuvwxyz0123456789"
_NAME_REST = _NAME_FIRST + "_-."
# utf-8 has no lone surrogates; NUL is valid JSON but no model takes it.
_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=60
)
_Body = dict[str, object]
_Fields = dict[str, st.SearchStrategy[object]]
_TOOL: dict[str, JsonValue] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
_SCHEMA: dict[str, JsonValue] = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "sure": {"type": "boolean"}},
    "required": ["answer"],
}


def _bodies(required: _Fields, optional: _Fields) -> st.SearchStrategy[_Body]:
    return st.fixed_dictionaries(required, optional=optional)


def model_names() -> st.SearchStrategy[str]:
    """Model names as clients write them: ``name``, ``name:tag``, ``ns/name:tag``."""
    part = st.builds(
        lambda first, rest: first + rest,
        st.sampled_from(_NAME_FIRST),
        st.text(alphabet=_NAME_REST, max_size=12),
    )
    tag = st.one_of(st.just(""), part.map(lambda t: ":" + t))
    namespace = st.one_of(
        st.just(""), part.filter(lambda n: "." not in n).map(lambda n: n + "/")
    )
    return st.builds(lambda ns, name, t: ns + name + t, namespace, part, tag)


def sampling_options() -> st.SearchStrategy[_Body]:
    """Ollama ``options`` that shape sampling, each within its valid range."""
    return _bodies(
        {},
        optional={
            "temperature": st.floats(min_value=0.0, max_value=2.0),
            "top_k": st.integers(min_value=1, max_value=100),
            "top_p": st.floats(min_value=0.0, max_value=1.0),
            "min_p": st.floats(min_value=0.0, max_value=1.0),
            "seed": st.integers(min_value=0, max_value=2**31 - 1),
            "num_predict": st.integers(min_value=1, max_value=64),
            "repeat_penalty": st.floats(min_value=0.5, max_value=2.0),
            "stop": st.lists(_TEXT.filter(bool), max_size=3),
        },
    )


def messages(
    *, tool_results: bool = True
) -> st.SearchStrategy[list[dict[str, JsonValue]]]:
    """A conversation in Ollama's (and OpenAI's) message shape, ending with the user."""
    system = st.builds(lambda text: {"role": "system", "content": text}, _TEXT)
    turn = st.tuples(_TEXT, _TEXT).map(
        lambda pair: [
            {"role": "user", "content": pair[0]},
            {"role": "assistant", "content": pair[1]},
        ]
    )
    last = st.builds(lambda text: [{"role": "user", "content": text}], _TEXT)
    return st.builds(
        lambda head, turns, tail: head + [m for pair in turns for m in pair] + tail,
        st.lists(system, max_size=1),
        st.lists(turn, max_size=3),
        last,
    )


def native_chat_requests(model: str | None = None) -> st.SearchStrategy[_Body]:
    """``POST /api/chat`` bodies: messages, options, streaming, format, tools."""
    return _bodies(
        {
            "model": st.just(model) if model else model_names(),
            "messages": messages(),
        },
        optional={
            "stream": st.booleans(),
            "options": sampling_options(),
            "format": st.sampled_from(["json", _SCHEMA]),
            "tools": st.just([_TOOL]),
            "keep_alive": st.sampled_from(["5m", "30s", 60, -1]),
        },
    )


def native_generate_requests(
    model: str | None = None,
) -> st.SearchStrategy[_Body]:
    """``POST /api/generate`` bodies: a prompt, maybe a system prompt, options."""
    return _bodies(
        {"model": st.just(model) if model else model_names(), "prompt": _TEXT},
        optional={
            "system": _TEXT,
            "stream": st.booleans(),
            "options": sampling_options(),
            "format": st.sampled_from(["json", _SCHEMA]),
        },
    )


def openai_chat_requests(model: str | None = None) -> st.SearchStrategy[_Body]:
    """``POST /v1/chat/completions`` bodies, as the openai client sends them."""
    return _bodies(
        {
            "model": st.just(model) if model else model_names(),
            "messages": messages(),
        },
        optional={
            "stream": st.booleans(),
            "max_tokens": st.integers(min_value=1, max_value=64),
            "temperature": st.floats(min_value=0.0, max_value=2.0),
            "top_p": st.floats(min_value=0.0, max_value=1.0),
            "seed": st.integers(min_value=0, max_value=2**31 - 1),
            "stop": st.lists(_TEXT.filter(bool), min_size=1, max_size=3),
            "tools": st.just([_TOOL]),
            "response_format": st.sampled_from(
                [
                    {"type": "json_object"},
                    {
                        "type": "json_schema",
                        "json_schema": {"name": "a", "schema": _SCHEMA},
                    },
                ]
            ),
        },
    )


def anthropic_message_requests(
    model: str | None = None,
) -> st.SearchStrategy[_Body]:
    """``POST /v1/messages`` bodies, as the anthropic client sends them."""
    turn = st.tuples(_TEXT.filter(bool), _TEXT.filter(bool)).map(
        lambda pair: [
            {"role": "user", "content": pair[0]},
            {"role": "assistant", "content": [{"type": "text", "text": pair[1]}]},
        ]
    )
    conversation = st.builds(
        lambda turns, last: (
            [m for pair in turns for m in pair] + [{"role": "user", "content": last}]
        ),
        st.lists(turn, max_size=3),
        _TEXT.filter(bool),
    )
    return _bodies(
        {
            "model": st.just(model) if model else model_names(),
            "max_tokens": st.integers(min_value=1, max_value=64),
            "messages": conversation,
        },
        optional={
            "system": _TEXT.filter(bool),
            "stream": st.booleans(),
            "temperature": st.floats(min_value=0.0, max_value=1.0),
            "stop_sequences": st.lists(_TEXT.filter(bool), max_size=3),
        },
    )
