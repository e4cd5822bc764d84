"""Top-level field types of every JSON request, checked before any handler runs.

Each operation lists the fields it knows and the JSON types each may have. A field of
the wrong type gives 400 naming the field; a field not listed is ignored, as Ollama and
OpenAI ignore unknown fields. ``null`` counts as absent, as it does for Go's decoder.

This is the first, shallow gate. What values mean (a model name that parses, a
``think`` level that exists, nested message shapes) is checked by each endpoint's
translator, which can rely on the types here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

from ._errors import ClientError
from ._json import JsonValue
from ._routes import Operation
from ._structured import MAX_DEPTH, nested_deeper_than

__all__ = ["SHAPES", "Kind", "check_shape", "kind_of"]


class Kind(enum.Enum):
    """JSON value types, named as people say them in error messages."""

    STRING = "a string"
    BOOLEAN = "a boolean"
    INTEGER = "an integer"
    NUMBER = "a number"
    OBJECT = "an object"
    ARRAY = "an array"
    NULL = "null"


def kind_of(value: JsonValue) -> Kind:
    """The JSON type of a decoded value. ``bool`` is checked before ``int`` because
    Python's ``True`` is an ``int``; a float is a NUMBER even when it is whole."""
    if value is None:
        return Kind.NULL
    if isinstance(value, bool):
        return Kind.BOOLEAN
    if isinstance(value, int):
        return Kind.INTEGER
    if isinstance(value, float):
        return Kind.NUMBER
    if isinstance(value, str):
        return Kind.STRING
    if isinstance(value, list):
        return Kind.ARRAY
    return Kind.OBJECT


_S, _B, _I, _N = Kind.STRING, Kind.BOOLEAN, Kind.INTEGER, Kind.NUMBER
_O, _A = Kind.OBJECT, Kind.ARRAY

Shape = Mapping[str, frozenset[Kind]]
Kinds = Kind | tuple[Kind, ...]


def _shape(**fields: Kinds) -> Shape:
    kinds = {
        name: frozenset(kind if isinstance(kind, tuple) else (kind,))
        for name, kind in fields.items()
    }
    return MappingProxyType(kinds)


# Fields shared by the native generation endpoints (ollama-api.md §1.4, §1.5).
_NATIVE_GENERATION: dict[str, Kinds] = {
    "model": _S,
    "format": (_S, _O),
    "options": _O,
    "stream": _B,
    "keep_alive": (_S, _N, _I),
    "think": (_B, _S),
    "truncate": _B,
    "shift": _B,
    "logprobs": _B,
    "top_logprobs": _I,
    "_debug_render_only": _B,
}

_OPENAI_SAMPLING: dict[str, Kinds] = {
    "model": _S,
    "stream": _B,
    "stream_options": _O,
    "max_tokens": _I,
    "temperature": (_N, _I),
    "top_p": (_N, _I),
    "seed": _I,
    "frequency_penalty": (_N, _I),
    "presence_penalty": (_N, _I),
    "stop": (_S, _A),
    "n": _I,
    "user": _S,
}

# A JSON number written without a fraction decodes to int; every NUMBER field accepts
# both, which is why the tables spell NUMBER fields as (_N, _I).
SHAPES: Mapping[Operation, Shape] = MappingProxyType(
    {
        Operation.GENERATE: _shape(
            **_NATIVE_GENERATION,
            prompt=_S,
            suffix=_S,
            system=_S,
            template=_S,
            context=_A,
            raw=_B,
            images=_A,
        ),
        Operation.CHAT: _shape(
            **_NATIVE_GENERATION, messages=_A, tools=_A, tool_choice=(_S, _O)
        ),
        Operation.EMBED: _shape(
            model=_S,
            input=(_S, _A),
            truncate=_B,
            dimensions=_I,
            keep_alive=(_S, _N, _I),
            options=_O,
            normalize=_B,
        ),
        Operation.EMBEDDINGS: _shape(
            model=_S, prompt=_S, keep_alive=(_S, _N, _I), options=_O, truncate=_B
        ),
        Operation.SHOW: _shape(model=_S, name=_S, verbose=_B, options=_O),
        **dict.fromkeys(
            (Operation.TOKENIZE, Operation.SERVER_TOKENIZE),
            _shape(
                model=_S,
                content=_S,
                add_special=_B,
                with_pieces=_B,
                keep_alive=(_S, _N, _I),
                options=_O,
            ),
        ),
        **dict.fromkeys(
            (Operation.DETOKENIZE, Operation.SERVER_DETOKENIZE),
            _shape(model=_S, tokens=_A, keep_alive=(_S, _N, _I), options=_O),
        ),
        Operation.CREATE: _shape(
            model=_S,
            name=_S,
            stream=_B,
            quantize=_S,
            template=_S,
            system=_S,
            parameters=_O,
            messages=_A,
            files=_O,
            adapters=_O,
            license=(_S, _A),
            parser=_S,
            remote_host=_S,
            **{"from": _S},
        ),
        Operation.COPY: _shape(source=_S, destination=_S),
        Operation.DELETE: _shape(model=_S, name=_S),
        Operation.PULL: _shape(model=_S, name=_S, insecure=_B, stream=_B),
        Operation.PUSH: _shape(model=_S, name=_S, insecure=_B, stream=_B),
        Operation.OPENAI_CHAT: _shape(
            **_OPENAI_SAMPLING,
            messages=_A,
            max_completion_tokens=_I,
            response_format=_O,
            tools=_A,
            tool_choice=(_S, _O),
            parallel_tool_calls=_B,
            reasoning_effort=_S,
            reasoning=_O,
            logprobs=_B,
            top_logprobs=_I,
            logit_bias=_O,
            num_ctx=_I,
            keep_alive=(_S, _N, _I),
            options=_O,
            think=(_B, _S),
        ),
        Operation.OPENAI_COMPLETIONS: _shape(
            **_OPENAI_SAMPLING,
            prompt=_S,
            suffix=_S,
            logprobs=_I,
            echo=_B,
            best_of=_I,
            num_ctx=_I,
            keep_alive=(_S, _N, _I),
            options=_O,
        ),
        Operation.RESPONSES_CREATE: _shape(
            model=_S,
            input=(_S, _A),
            instructions=_S,
            tools=_A,
            tool_choice=(_S, _O),
            text=_O,
            reasoning=_O,
            max_output_tokens=_I,
            temperature=(_N, _I),
            top_p=(_N, _I),
            stream=_B,
            store=_B,
            metadata=_O,
            parallel_tool_calls=_B,
            previous_response_id=_S,
            include=_A,
            top_logprobs=_I,
            truncation=_S,
            user=_S,
            keep_alive=(_S, _N, _I),
            options=_O,
        ),
        Operation.OPENAI_EMBEDDINGS: _shape(
            model=_S, input=(_S, _A), dimensions=_I, encoding_format=_S, user=_S
        ),
        Operation.ANTHROPIC_MESSAGES: _shape(
            model=_S,
            max_tokens=_I,
            messages=_A,
            system=(_S, _A),
            stream=_B,
            temperature=(_N, _I),
            top_p=(_N, _I),
            top_k=_I,
            stop_sequences=_A,
            tools=_A,
            tool_choice=_O,
            thinking=_O,
            metadata=_O,
            output_config=_O,
        ),
        Operation.ANTHROPIC_COUNT_TOKENS: _shape(
            model=_S,
            messages=_A,
            system=(_S, _A),
            tools=_A,
            tool_choice=_O,
            thinking=_O,
        ),
    }
)


def _describe(kinds: frozenset[Kind]) -> str:
    # Stable order, and "a number" already covers the integers listed beside it.
    if Kind.NUMBER in kinds:
        kinds = kinds - {Kind.INTEGER}
    names = [kind.value for kind in Kind if kind in kinds]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def check_shape(operation: Operation, body: JsonValue) -> dict[str, JsonValue]:
    """Return the body as an object if every known field has an allowed type.

    Raises:
        ClientError: 400 if the body is not an object, or naming the first field (in
            the order the client sent them) whose type is wrong.
    """
    if not isinstance(body, dict):
        raise ClientError(
            400, f"request body must be a JSON object, not {kind_of(body).value}"
        )
    shape = SHAPES[operation]  # every JSON route has one; a test checks
    for name, value in body.items():
        allowed = shape.get(name)
        if allowed is None or value is None:
            continue
        kind = kind_of(value)
        if kind not in allowed:
            raise ClientError(
                400,
                f"field '{name}' must be {_describe(allowed)}, not {kind.value}",
                param=name,
            )
    _check_tool_schema_depth(operation, body.get("tools"))
    return body


# Where a tool's JSON Schema sits, for the dialects whose translator validates it
# with jsonschema as it reads the tool. jsonschema recurses several frames per
# level, so a schema well within the body's nesting limit could still exhaust the
# stack there (a 500); the limit of a ``format`` schema keeps it away.
_TOOL_SCHEMA_KEYS: Mapping[Operation, str] = MappingProxyType(
    {
        Operation.ANTHROPIC_MESSAGES: "input_schema",
        Operation.ANTHROPIC_COUNT_TOKENS: "input_schema",
    }
)


def _check_tool_schema_depth(operation: Operation, tools: JsonValue) -> None:
    key = _TOOL_SCHEMA_KEYS.get(operation)
    if key is None or not isinstance(tools, list):
        return  # a wrong type is the translator's to report
    for index, tool in enumerate(tools):
        schema = tool.get(key) if isinstance(tool, dict) else None
        if nested_deeper_than(MAX_DEPTH, schema):
            raise ClientError(
                400,
                f"tools[{index}].{key} is nested deeper than {MAX_DEPTH} levels",
                param="tools",
            )
