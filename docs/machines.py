"""Print docs/machines.md from the transition tables in the code.

The tables are the machines: each module keeps its (phase, input) -> phase mapping as
data, and this script draws them. ``tests/examples/test_machines_doc.py`` fails when
docs/machines.md and the code disagree; run ``python docs/machines.py >
docs/machines.md`` to redraw it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

from gateway_core import EXCHANGE_TRANSITIONS
from gateway_core._embed_truncation import TRANSITIONS as EMBED_TRANSITIONS
from gateway_core._families import HARMONY_TRANSITIONS, TOOL_CALL_TRANSITIONS
from gateway_core._thinking import THINKING_TRANSITIONS
from gateway_core._two_pass import TRANSITIONS as TWO_PASS_TRANSITIONS

# Mapping is invariant in its keys, and each table has enums of its own.
Table = Mapping[Any, object]

MACHINES: tuple[tuple[str, str, str, Table], ...] = (
    (
        "Exchange",
        "gateway_core/_state.py",
        "One HTTP request, from its head to its last response byte.",
        EXCHANGE_TRANSITIONS,
    ),
    (
        "Think, then constrain",
        "gateway_core/_two_pass.py",
        "Structured output from a thinking model: a free pass, then a constrained one.",
        TWO_PASS_TRANSITIONS,
    ),
    (
        "Embedding truncate-and-retry",
        "gateway_core/_embed_truncation.py",
        "An input that overflows the context is cut, detokenized and embedded again.",
        EMBED_TRANSITIONS,
    ),
    (
        "Thinking tags",
        "gateway_core/_thinking.py",
        "Splits model output into thinking and content, a character at a time.",
        THINKING_TRANSITIONS,
    ),
    (
        "Tool calls",
        "gateway_core/_families/_marked.py",
        "Finds tool calls in model output; what does not parse stays content.",
        TOOL_CALL_TRANSITIONS,
    ),
    (
        "Harmony channels",
        "gateway_core/_families/_harmony.py",
        "Splits gpt-oss output into messages: thinking, content and tool calls.",
        HARMONY_TRANSITIONS,
    ),
)


def _targets(value: object) -> str:
    if isinstance(value, enum.Enum):
        return f"`{value.name}`"
    assert isinstance(value, Iterable)
    names = sorted(v.name for v in value if isinstance(v, enum.Enum))
    return " or ".join(f"`{name}`" for name in names)


def render() -> str:
    lines = [
        "# The state machines",
        "",
        "Drawn from the transition tables in the code by `docs/machines.py`; a test",
        "fails when this page and the code disagree. A (phase, input) pair that is not",
        "listed is refused: the machine raises instead of guessing.",
    ]
    for title, module, what, table in MACHINES:
        lines += ["", f"## {title}", "", f"`{module}`: {what}", ""]
        lines += ["| phase | input | next phase |", "| --- | --- | --- |"]
        for (phase, event), target in table.items():
            lines.append(f"| `{phase.name}` | `{event.name}` | {_targets(target)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
