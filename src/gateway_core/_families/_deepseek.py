"""DeepSeek R1 and V3: calls between special tokens, with JSON arguments.

Written here with ``|`` and ``_``, the tokens' bars are U+FF5C (fullwidth) and their
word breaks U+2581 (LOWER ONE EIGHTH BLOCK); the constants spell them exactly.
The chat templates teach two spellings of one shape. R1 (and V3-0324) name the
tool's type, then the name on its own line, then the arguments in a fenced block::

    <|tool_calls_begin|><|tool_call_begin|>function<|tool_sep|>get_weather
    ```json
    {"city": "Paris"}
    ```<|tool_call_end|>
    <|tool_call_begin|>function<|tool_sep|>...<|tool_call_end|><|tool_calls_end|>

V3.1 writes the name before the separator and the arguments right after it::

    <|tool_calls_begin|><|tool_call_begin|>get_weather<|tool_sep|>{"city": "Paris"}
    <|tool_call_end|><|tool_calls_end|>      (one line)

Both are read. The body between ``tool_calls_begin`` and ``tool_calls_end`` must be
nothing but whole calls (whitespace between them); otherwise it is content.
"""

from __future__ import annotations

import re

from .._json import loads_strict
from .._tool_calls import Found, Toolbox, json_value_end, salvage_json
from ._grammar import CallGrammar

__all__ = [
    "CALLS_BEGIN",
    "CALLS_END",
    "CALL_BEGIN",
    "CALL_END",
    "END_OF_SENTENCE",
    "GRAMMAR",
    "SEPARATOR",
    "read_deepseek_calls",
    "read_deepseek_cut",
]

_BAR, _BREAK = "\uff5c", "\u2581"


def _token(*words: str) -> str:
    return f"<{_BAR}{_BREAK.join(words)}{_BAR}>"


CALLS_BEGIN = _token("tool", "calls", "begin")
CALLS_END = _token("tool", "calls", "end")
CALL_BEGIN = _token("tool", "call", "begin")
CALL_END = _token("tool", "call", "end")
SEPARATOR = _token("tool", "sep")
END_OF_SENTENCE = _token("end", "of", "sentence")
_FENCE_OPEN = re.compile(r"```(?:json)?[ \t]*\n?")
_FENCE_CLOSE = re.compile(r"\n?```\s*$")


def read_deepseek_calls(head: str, body: str, tools: Toolbox) -> list[Found] | None:
    """The calls of a whole body, or None if it is not wholly calls."""
    found: list[Found] = []
    rest = body.strip()
    while rest:
        if not rest.startswith(CALL_BEGIN):
            return None
        end = rest.find(CALL_END)
        if end < 0:
            return None
        call = _call(rest[len(CALL_BEGIN) : end], tools)
        if call is None:
            return None
        found.append(call)
        rest = rest[end + len(CALL_END) :].lstrip()
    return found or None


def read_deepseek_cut(head: str, body: str, tools: Toolbox) -> list[Found] | None:
    """A body the token limit cut: its whole calls, and the last one with its
    arguments so far if the tool's name was written whole."""
    found: list[Found] = []
    rest = body.strip()
    while rest.startswith(CALL_BEGIN):
        end = rest.find(CALL_END)
        text = rest[len(CALL_BEGIN) : end if end >= 0 else len(rest)]
        call = _call(text, tools) if end >= 0 else _cut_call(text, tools)
        if call is None:
            break
        found.append(call)
        if end < 0:
            break
        rest = rest[end + len(CALL_END) :].lstrip()
    return found or None


def _split(text: str) -> tuple[str, str] | None:
    """The tool's name and the arguments text of one call's text."""
    before, sep, after = text.partition(SEPARATOR)
    if not sep:
        return None
    if before.strip() == "function" and "\n" in after:
        # R1: the separator follows the type; the name has a line of its own.
        name, _, arguments = after.partition("\n")
        return name.strip(), arguments
    return before.strip(), after


def _unfenced(text: str) -> str:
    text = text.strip()
    opened = _FENCE_OPEN.match(text)
    if opened is None:
        return text
    return _FENCE_CLOSE.sub("", text[opened.end() :])


def _call(text: str, tools: Toolbox) -> Found | None:
    parts = _split(text)
    if parts is None:
        return None
    name = tools.resolve(parts[0])
    if name is None:
        return None
    try:
        arguments = loads_strict(_unfenced(parts[1]))
    except ValueError:
        return None
    return Found(name, arguments) if isinstance(arguments, dict) else None


def _cut_call(text: str, tools: Toolbox) -> Found | None:
    parts = _split(text)
    if parts is None:
        return None
    name = tools.resolve(parts[0])
    if name is None:
        return None
    raw = _unfenced(parts[1])
    end = json_value_end(raw)
    if end >= 0:
        raw = raw[:end]
    value = salvage_json(raw)
    return Found(name, value if isinstance(value, dict) else {}, partial=raw)


GRAMMAR = CallGrammar(
    markers=(CALLS_BEGIN,),
    closing=CALLS_END,
    json_closing=False,
    read=read_deepseek_calls,
    read_cut=read_deepseek_cut,
)
