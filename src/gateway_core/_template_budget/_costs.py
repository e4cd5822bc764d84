"""Costs and limits of a template render.

What each kind of operation is charged, in steps; the sizes no value may pass; and
the error that says a render went over.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final, Protocol, TypeVar

from jinja2.sandbox import SandboxedEnvironment, SandboxedFormatter

# About 20 ms of the event loop, the most one render may hold it: a step is an
# empty loop iteration, 45-60 ns here, and the costs below are measured so that no
# kind of step takes much more. Real templates do real work for each message: the
# Qwen3 template with tools takes 226 steps a message, so about 1,300 messages fit
# (a Llama 3.1-style template: 105 steps, 2,800 messages).
MAX_STEPS: Final = 300_000

# A prompt has to fit a context window (a million tokens is about 4 million
# characters), so no honest template builds or writes more; a value this long is at
# most 16 MB (4 bytes a character at worst).
MAX_CHARS: Final = 4_000_000

# Copying, searching or comparing 64 characters costs about a step (string work runs
# in C, at several characters a nanosecond), and a list item about 16 characters (a
# pointer, and usually an object to make or visit).
CHARS_PER_STEP: Final = 64
CHARS_PER_ITEM: Final = 16

# Where a render keeps its budget among the template's variables: not a name a
# template can write, so only the instrumentation reaches it.
BUDGET_KEY: Final = "$budget"

# What operations cost, in steps, measured against an empty loop iteration (the
# instrumentation's own cost included). A call through the sandbox takes 1.5-3 us,
# most of it Jinja's checks; a macro call more, as it binds its arguments in
# Python. A filter is two calls and often Python work; a test is a type check.
_METHOD_STEPS: Final = 25
_CALL_STEPS: Final = 45
_MACRO_STEPS: Final = 60
_FILTER_STEPS: Final = 12
_CHEAP_FILTER_STEPS: Final = 5
_TEST_STEPS: Final = 4
_OPERATOR_STEPS: Final = 3
# ``~`` measures each part and calls str() on it.
_CONCAT_PART_STEPS: Final = 5
# Checking a format string (%, the format filter) before formatting; str.format
# then formats with Jinja's sandboxed formatter, which is Python.
_FORMAT_STEPS: Final = 60
_STR_FORMAT_STEPS: Final = 120
# map, select, reject, selectattr, rejectattr: a filter or test call per item.
_LAZY_ITEM_STEPS: Final = 10
# An attribute that misses the fast paths (say, of a cycler) goes through the
# sandbox's checks and usually two exceptions: 1-3 us. One of Jinja's loop or
# namespace objects is a Python-level lookup. A missing attribute or name makes an
# Undefined (400 ns), and printing anything but a string is a str() call or more.
_SLOW_ATTRIBUTE_STEPS: Final = 25
_JINJA_ATTRIBUTE_STEPS: Final = 8
_UNDEFINED_STEPS: Final = 10
_PRINT_STEPS: Final = 5
# A loop that reads ``loop`` iterates through Jinja's LoopContext, about 300 ns an
# item more than a plain Python loop.
_LOOP_CONTEXT_STEPS: Final = 4
# Measuring a value walks it in Python, 150-250 ns an item; making a list of what an
# iterable yields, before a filter may use it, 80 ns an item.
_WALK_STEPS: Final = 3
_LIST_STEPS: Final = 2
# An if branch, or an operand that is not always evaluated, weighing this much is
# charged when it runs rather than with the block around it: a charge costs about
# two steps.
_CHARGED_BRANCH: Final = 8

_MAX_ITEMS: Final = MAX_CHARS // CHARS_PER_ITEM
# Containers this long have their printed size remembered for the render; shorter
# ones are cheaper to walk again than to keep alive (the garbage collector would
# walk them all, again and again).
_CACHED_ITEMS: Final = 16

# The private filters the instrumented syntax tree calls. "$" is not part of a Jinja
# name, so a template can neither call nor replace them.
_ITERATE: Final = "$iterate"
_CHARGE: Final = "$charge"
_CHARGED: Final = "$charged"
_OUTPUT: Final = "$output"
_MEASURED: Final = "$measured"
_HAYSTACK: Final = "$haystack"
_SIZED: Final = "$sized"
_CONCAT: Final = "$concat"
_GETATTR: Final = "$getattr"
_GETITEM: Final = "$getitem"

# Scalars print short: an int is at most a few thousand digits (str() refuses more).
_SCALARS: Final = frozenset({int, float, bool, type(None)})
_PER_ITEM: Final[Mapping[type, int]] = {
    str: 1,
    bytes: 1,
    list: CHARS_PER_ITEM,
    tuple: CHARS_PER_ITEM,
    dict: CHARS_PER_ITEM,
    set: CHARS_PER_ITEM,
    frozenset: CHARS_PER_ITEM,
}
_SEQUENCES: Final = frozenset({list, tuple, set, frozenset})
_LOOKUPS: Final[frozenset[type]] = frozenset({dict, set, frozenset})
_VIEWS: Final = frozenset({"dict_keys", "dict_values", "dict_items"})
_DICT_ATTRIBUTES: Final = frozenset(dir(dict))
_FORMATTER: Final = SandboxedFormatter(SandboxedEnvironment())

_T = TypeVar("_T")
_F = TypeVar("_F")
_Args = tuple[object, ...]
_Kwargs = Mapping[str, object]


class _Environment(Protocol):
    """What the instrumentation uses of Jinja's environment."""

    def undefined(self, *, obj: object, name: str) -> object: ...

    def getattr(self, obj: object, attribute: str) -> object: ...

    def getitem(self, obj: object, argument: object) -> object: ...


class TemplateContext(Protocol):
    """What the instrumentation uses of Jinja's render context."""

    @property
    def parent(self) -> Mapping[str, object]: ...

    @property
    def environment(self) -> _Environment: ...

    @property
    def eval_ctx(self) -> object: ...


class _Function(Protocol):
    def __call__(self, *args: object, **kwargs: object) -> object: ...


class OverBudget(Exception):
    """A render went over its budget; the message names the limit and its figure."""


def _size(value: object) -> int:
    """What a value holds at its top level, in characters (items count more)."""
    per_item = _PER_ITEM.get(type(value))
    if per_item is not None:
        return len(value) * per_item  # type: ignore[arg-type]
    if isinstance(value, str | bytes):
        return len(value)
    return 0


def _too_long() -> OverBudget:
    return OverBudget(f"the template built a value of more than {MAX_CHARS} characters")


def _want(chars: int) -> None:
    """Refuse a result of ``chars`` characters before it is made."""
    if chars > MAX_CHARS:
        raise _too_long()


def _given(kwargs: _Kwargs) -> Iterator[object]:
    # Jinja passes its loop and block variables along to calls; they are not the
    # template's arguments.
    return (v for k, v in kwargs.items() if k not in ("_loop_vars", "_block_vars"))
