"""A forced tool call (``tool_choice`` ``required`` or naming a tool): which tools
it may name, and the call read back from the constrained answer.

The answer is either the family's own markup (``_call_forms``; the family's parser
has read the call as it was written) or one JSON object ``{"name", "arguments"}``
(``tool_call_schema``), made by the local runner's constraint or an upstream's
structured output. Either way it goes back to the client as a tool call, never as
text, and a call the token limit cut is still a call.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping, Sequence

from ._answer import Emitter
from ._call_forms import CallForms
from ._completion_request import CompletionRequest, NamedTool
from ._flow import FlowError, Step
from ._json import JsonValue
from ._segments import ToolCall
from ._tool_calls import call_id, cut_call, salvage_json
from ._work import Result

__all__ = [
    "chosen_tools",
    "deliver_forced_call",
    "deliver_forced_form",
    "is_forced",
    "tool_names",
]


def is_forced(completion: CompletionRequest) -> bool:
    """The answer must be a call (``required``, or one tool named)."""
    return completion.tool_choice == "required" or isinstance(
        completion.tool_choice, NamedTool
    )


def tool_names(tools: Sequence[Mapping[str, JsonValue]]) -> list[str]:
    names = []
    for tool in tools:
        function = tool.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.append(str(function["name"]))
    return names


def chosen_tools(completion: CompletionRequest) -> tuple[Mapping[str, JsonValue], ...]:
    """The tools a forced call may use: all (``required``) or the one named."""
    choice = completion.tool_choice
    if not isinstance(choice, NamedTool):
        return completion.tools
    chosen = tuple(
        tool
        for tool, name in zip(
            completion.tools, tool_names(completion.tools), strict=False
        )
        if name == choice.name
    )
    if not chosen:
        raise FlowError(400, f"tool_choice names no offered tool: {choice.name}")
    return chosen


def deliver_forced_call(
    emitter: Emitter,
    completion: CompletionRequest,
    answer: str,
    *,
    cut: bool,
    request_id: str,
) -> Generator[Step, Result | None, None]:
    """The constrained ``answer`` to the client as its call, in place of the text
    the emitter held back. A call the token limit cut (``cut``) is still the call
    the client asked for: it comes with the arguments so far, and the finish
    reason says it is cut."""
    emitter.gathered.content = []
    names = tool_names(chosen_tools(completion))
    found = _cut_call(answer, names, request_id) if cut else _call(answer, request_id)
    if found is not None:
        yield from emitter.emit([found])  # streamed, or gathered for the whole


def deliver_forced_form(
    emitter: Emitter,
    forms: CallForms,
    written: str,
    *,
    cut: bool,
    request_id: str,
) -> Generator[Step, Result | None, None]:
    """The end of a forced call written in the family's markup. The parser has
    sent the call on as it read it; what is left is a call the limit cut before
    the parser could name its tool. The constraint allowed only ``forms``, so the
    first whose opening agrees with ``written`` is the call (nothing written: no
    call, none is made up)."""
    emitter.gathered.content = []
    if emitter.call_count:
        return
    if not cut:
        # The constraint allowed nothing but a call: a parser that read none is a
        # bug between the two, and earns a clear error rather than an empty answer.
        raise FlowError(500, "the forced tool call could not be read")
    found = _cut_form(forms, written, request_id)
    if found is not None:
        yield from emitter.emit([found])


def _cut_form(forms: CallForms, written: str, request_id: str) -> ToolCall | None:
    if not written:
        return None
    for name, lead in zip(forms.names, forms.leads(), strict=True):
        if lead.startswith(written) or written.startswith(lead):
            partial = written[len(lead) :]
            value = salvage_json(partial) if partial else None
            return ToolCall(
                index=0,
                id=call_id(request_id, 0),
                name=name,
                arguments=value if isinstance(value, dict) else {},
                partial=partial,
            )
    return None


def _call(answer: str, request_id: str) -> ToolCall:
    # The answer was checked against the call schema; a failure here is a
    # constraint that let something through, and earns a clear error.
    try:
        value = json.loads(answer)
    except ValueError:
        raise FlowError(500, "the forced tool call is not valid JSON") from None
    arguments = value.get("arguments") if isinstance(value, dict) else None
    name = value.get("name") if isinstance(value, dict) else None
    if not isinstance(name, str) or not isinstance(arguments, dict):
        raise FlowError(500, "the forced tool call has no name or arguments")
    return ToolCall(index=0, id=call_id(request_id, 0), name=name, arguments=arguments)


def _cut_call(answer: str, names: Sequence[str], request_id: str) -> ToolCall | None:
    found = cut_call(answer, names)
    if found is None:
        return None
    return ToolCall(
        index=0,
        id=call_id(request_id, 0),
        name=found.name,
        arguments=found.arguments,
        partial=found.partial,
    )
