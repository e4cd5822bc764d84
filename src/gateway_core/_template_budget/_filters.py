"""Jinja's filters and tests, and the private filters the instrumented tree calls.

Each is charged for what it costs, and refused before it builds a value too long.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, cast

from jinja2.sandbox import SandboxedEnvironment

from ._budget import (
    Budget,
    budget_of,
)
from ._costs import (
    _CHARGE,
    _CHARGED,
    _CHEAP_FILTER_STEPS,
    _CONCAT,
    _CONCAT_PART_STEPS,
    _DICT_ATTRIBUTES,
    _F,
    _FILTER_STEPS,
    _FORMAT_STEPS,
    _GETATTR,
    _GETITEM,
    _HAYSTACK,
    _ITERATE,
    _JINJA_ATTRIBUTE_STEPS,
    _LAZY_ITEM_STEPS,
    _LOOKUPS,
    _MEASURED,
    _OUTPUT,
    _PRINT_STEPS,
    _SCALARS,
    _SIZED,
    _SLOW_ATTRIBUTE_STEPS,
    _T,
    _TEST_STEPS,
    _UNDEFINED_STEPS,
    CHARS_PER_ITEM,
    CHARS_PER_STEP,
    MAX_CHARS,
    TemplateContext,
    _Args,
    _Function,
    _Kwargs,
    _size,
    _too_long,
    _want,
)
from ._methods import (
    _argument,
    _int,
    _materialized,
    _replace_size,
    _sequence,
)

# -- filters and tests ----------------------------------------------------------

_FilterCheck = Callable[[Budget, _Args, _Kwargs], _Args]


def _reading(base: int) -> _FilterCheck:
    """For filters whose work follows the top-level size of their arguments."""

    def check(budget: Budget, args: _Args, kwargs: _Kwargs) -> _Args:
        budget.read(base, (*args, *kwargs.values()))
        return args

    return check


def _constant(base: int) -> _FilterCheck:
    """For filters whose work does not depend on their arguments' sizes."""

    def check(budget: Budget, args: _Args, kwargs: _Kwargs) -> _Args:
        budget.charge(base)
        return args

    return check


def _printed(factor: int, base: int = _FILTER_STEPS) -> _FilterCheck:
    """For filters that print their value (or compare, hash or escape all of it),
    ``factor`` times slower than copying it, as measured."""

    def check(budget: Budget, args: _Args, kwargs: _Kwargs) -> _Args:
        size = sum(budget.measure(value) for value in (*args, *kwargs.values()))
        _want(size)
        budget.charge(base + size * factor // CHARS_PER_STEP)
        return args

    return check


_read: Final = _reading(_FILTER_STEPS)
_print: Final = _printed(1)


def _listed(budget: Budget, args: _Args, kwargs: _Kwargs) -> _Args:
    # list, batch, slice: every item of the value, in a new list.
    if args:
        value = _materialized(budget, args[0])
        _want(len(_sequence(value)) * CHARS_PER_ITEM)
        args = (value, *args[1:])
    return _read(budget, args, kwargs)


def _ordered(factor: int) -> _FilterCheck:
    """For filters that compare or hash every item: sort, dictsort and groupby
    call a Python key function for each, unique, min and max do not."""
    compare = _printed(factor)

    def check(budget: Budget, args: _Args, kwargs: _Kwargs) -> _Args:
        if args and not isinstance(args[0], Mapping):
            args = (_materialized(budget, args[0]), *args[1:])
        return compare(budget, args, kwargs)

    return check


def _center(budget: Budget, args: _Args, kwargs: _Kwargs) -> _Args:
    _print(budget, args, kwargs)
    _want(_int(_argument(args, kwargs, 1, "width"), 80))
    return args


def _indent(budget: Budget, args: _Args, kwargs: _Kwargs) -> _Args:
    _print(budget, args, kwargs)
    text, width = args[0] if args else "", _argument(args, kwargs, 1, "width")
    size = budget.measure(text)
    lines = text.count("\n") + 1 if isinstance(text, str) else size + 1
    pad = len(width) if isinstance(width, str) else _int(width, 4)
    _want(size + lines * max(pad, 0))
    return args


def _wordwrap(budget: Budget, args: _Args, kwargs: _Kwargs) -> _Args:
    # textwrap works a word at a time, in Python.
    _printed(8)(budget, args, kwargs)
    wrap = _argument(args, kwargs, 3, "wrapstring")
    if args and isinstance(wrap, str) and len(wrap) > 1:
        # Every line ends in the wrap string, and a line can be one character.
        _want(budget.measure(args[0]) * (1 + len(wrap)))
    return args


def _format(budget: Budget, args: _Args, kwargs: _Kwargs) -> _Args:
    _printed(1, _FORMAT_STEPS)(budget, args, kwargs)
    if args and isinstance(args[0], str):
        values = dict(kwargs) if kwargs else tuple(args[1:])
        _want(budget.printf_size(args[0], values))
    return args


def _join(budget: Budget, args: _Args, kwargs: _Kwargs) -> _Args:
    if not args:
        return args
    value = _materialized(budget, args[0])
    items = _sequence(value)
    glue = _argument(args, kwargs, 1, "d")
    size = (len(glue) if isinstance(glue, str) else 0) * max(len(items) - 1, 0)
    for item in items:
        size += budget.measure(item)
        if size > MAX_CHARS:
            raise _too_long()
    budget.charge(_JOIN_STEPS + size // CHARS_PER_STEP)
    return (value, *args[1:])


def _replace(budget: Budget, args: _Args, kwargs: _Kwargs) -> _Args:
    _print(budget, args, kwargs)
    text = args[0] if args else ""
    old, new = _argument(args, kwargs, 1, "old"), _argument(args, kwargs, 2, "new")
    if isinstance(new, str) and isinstance(text, str):
        count = _int(_argument(args, kwargs, 3, "count"), -1)
        _want(_replace_size(text, old, new, count))
    elif isinstance(new, str):
        size = budget.measure(text)
        _want(size + (size + 1) * len(new))
    return args


def _batch(budget: Budget, args: _Args, kwargs: _Kwargs) -> _Args:
    # batch(n, fill_with) pads the last batch to n items; slice(n) makes n lists.
    args = _listed(budget, args, kwargs)
    count = _argument(args, kwargs, 1, "linecount")
    _want(_int(count if count is not None else kwargs.get("slices")) * CHARS_PER_ITEM)
    return args


def _sum(budget: Budget, args: _Args, kwargs: _Kwargs) -> _Args:
    if not args:
        return args
    value = _materialized(budget, args[0])
    items = _sequence(value)
    budget.read(_FILTER_STEPS, (items,))
    start = _argument(args, kwargs, 2, "start")
    if start is not None and type(start) not in _SCALARS:
        # Adding sequences copies the growing total each time.
        total = _size(start) + sum(_size(item) for item in items)
        _want(total)
        budget.charge(len(items) * total // CHARS_PER_STEP)
    return (value, *args[1:])


def _tojson(budget: Budget, args: _Args, kwargs: _Kwargs) -> _Args:
    if args:
        indent = _argument(args, kwargs, 2, "indent")
        separators = _argument(args, kwargs, 3, "separators")
        _laid_out(budget, args[0], indent, separators, 2)
    return args


def _pprint(budget: Budget, args: _Args, kwargs: _Kwargs) -> _Args:
    # pformat is Python, a node at a time.
    if args:
        _laid_out(budget, args[0], 1, None, 16)
    return args


def _laid_out(
    budget: Budget, value: object, indent: object, separators: object, factor: int
) -> None:
    """Refuse a pretty-printed value that would be too long, or charge it: each of
    its nodes (two characters at least) on a line of its own, indented to its
    depth, between separators; ``factor`` times slower than copying."""
    size, depth = budget.shape(value)
    pad = len(indent) if isinstance(indent, str) else max(_int(indent), 0)
    glue = 0
    if isinstance(separators, list | tuple):
        glue = sum(len(s) for s in separators if isinstance(s, str))
    laid_out = size + (size // 2 + 1) * (pad * depth + glue) if pad or glue else size
    _want(laid_out)
    budget.charge(_DUMP_STEPS + laid_out * factor // CHARS_PER_STEP)


# join converts and joins in Python; tojson and pprint check the value's layout
# first, then dump it.
_JOIN_STEPS: Final = 30
_DUMP_STEPS: Final = 70

_CONSTANT_FILTERS: Final = (
    # Constant work, whatever the value's size.
    *("abs", "attr", "count", "d", "default", "filesizeformat", "first"),
    *("items", "length", "round"),
)
# Lazy: they return a generator that calls a filter or test for each item.
_LAZY_FILTERS: Final = frozenset(
    {"map", "select", "reject", "selectattr", "rejectattr"}
)
_FILTER_CHECKS: Final[Mapping[str, _FilterCheck]] = {
    **dict.fromkeys(_CONSTANT_FILTERS, _constant(_CHEAP_FILTER_STEPS)),
    **dict.fromkeys(_LAZY_FILTERS, _constant(_FILTER_STEPS)),
    # Print, compare, hash or escape all of the value: charged by its printed size,
    # times how much slower than copying the filter is, as measured.
    **dict.fromkeys(("string", "safe", "trim", "truncate", "capitalize"), _print),
    **dict.fromkeys(("escape", "e", "forceescape", "lower", "upper"), _printed(2)),
    **dict.fromkeys(("title", "wordcount", "striptags", "xmlattr"), _printed(8)),
    **dict.fromkeys(("urlencode", "urlize"), _printed(16)),
    **dict.fromkeys(("unique", "min", "max"), _ordered(6)),
    **dict.fromkeys(("sort", "dictsort", "groupby"), _ordered(12)),
    "list": _listed,
    "center": _center,
    "indent": _indent,
    "wordwrap": _wordwrap,
    "format": _format,
    "join": _join,
    "replace": _replace,
    "batch": _batch,
    "slice": _batch,
    "sum": _sum,
    "tojson": _tojson,
    "pprint": _pprint,
}

# Tests that compare or print their value; every other test is a type check.
_COMPARING_TESTS: Final = frozenset(
    {"==", "!=", "<", "<=", ">", ">=", "eq", "equalto", "ne", "lt", "lessthan"}
    | {"le", "gt", "greaterthan", "ge", "in", "lower", "upper"}
)


@dataclass(frozen=True, slots=True)
class _Markers:
    """Jinja's markers for what a filter wants passed first, read off its own
    filters (``jinja2.utils`` is not among the modules the core may import)."""

    context: object
    eval_context: object
    environment: object

    @classmethod
    def of(cls, env: SandboxedEnvironment) -> _Markers:
        def marker(name: str) -> object:
            return vars(env.filters[name])["jinja_pass_arg"]

        return cls(marker("map"), marker("join"), marker("attr"))


def _counted_filter(
    func: _Function, check: _FilterCheck, lazy: bool, markers: _Markers
) -> Callable[[TemplateContext], object]:
    """``func`` behind the budget. The wrapper takes the context, where the budget
    is; that also keeps Jinja from running the filter at compile time on constant
    arguments (``{{ 'a' | center(10 ** 9) }}``), outside any budget."""
    wants = vars(func).get("jinja_pass_arg") if hasattr(func, "__dict__") else None

    def counted(context: TemplateContext, *args: object, **kwargs: object) -> object:
        budget = budget_of(context)
        args = check(budget, args, kwargs)
        if wants is None:
            result = func(*args, **kwargs)
        elif wants is markers.context:
            result = func(context, *args, **kwargs)
        elif wants is markers.eval_context:
            result = func(context.eval_ctx, *args, **kwargs)
        else:
            result = func(context.environment, *args, **kwargs)
        if lazy and isinstance(result, Iterable):
            return budget.iterate(result, _LAZY_ITEM_STEPS)
        return budget.produced(result)

    return _taking_context(counted, markers)


def _counted_test(
    test: object, comparing: bool, markers: _Markers
) -> Callable[[TemplateContext], object]:
    # Only the "filter" and "test" tests want anything passed: the environment.
    func = cast(_Function, test)
    wants = vars(func).get("jinja_pass_arg") if hasattr(func, "__dict__") else None

    def counted(context: TemplateContext, *args: object, **kwargs: object) -> object:
        budget = budget_of(context)
        if comparing:
            _print(budget, args, kwargs)
        else:
            budget.charge(_TEST_STEPS)
        if wants is None:
            return func(*args, **kwargs)
        return func(context.environment, *args, **kwargs)

    return _taking_context(counted, markers)


def _taking_context(func: _F, markers: _Markers) -> _F:
    """Mark ``func`` as Jinja's ``pass_context`` does."""
    vars(func)["jinja_pass_arg"] = markers.context
    return func


def _iterate(
    context: TemplateContext, iterable: Iterable[_T], weight: int
) -> Iterator[_T]:
    return budget_of(context).iterate(iterable, weight)


def _charge(context: TemplateContext, weight: int) -> str:
    budget_of(context).charge(weight)
    return ""


def _charged(context: TemplateContext, value: _T, weight: int) -> _T:
    # An operand evaluated only sometimes (after ``and``, ``or``, ``if``), charged
    # once it has been.
    budget_of(context).charge(weight)
    return value


def _output(context: TemplateContext, value: _T) -> _T:
    # What {{ ... }} prints, charged as it is made: inside a macro or a {% set %}
    # block the text is kept, not written.
    kind = type(value)
    budget = budget_of(context)
    if kind is str:
        size = len(value)  # type: ignore[arg-type]
        if size < CHARS_PER_STEP:
            return value
    else:
        size = 0 if kind in _SCALARS else budget.measure(value)
        _want(size)
        size += _PRINT_STEPS * CHARS_PER_STEP
    budget.charge(size // CHARS_PER_STEP)
    return value


def _measured(context: TemplateContext, value: _T) -> _T:
    if type(value) not in _SCALARS:
        budget = budget_of(context)
        budget.charge(budget.measure(value) // CHARS_PER_STEP)
    return value


def _haystack(context: TemplateContext, value: _T) -> _T:
    # The right side of ``in``: searched through, unless it is a mapping or set.
    if type(value) not in _LOOKUPS:
        _measured(context, value)
    return value


def _sized(context: TemplateContext, value: _T) -> _T:
    return budget_of(context).produced(value)


def _concat(context: TemplateContext, parts: tuple[object, ...]) -> str:
    # ``a ~ b``: Jinja joins the parts' str(), which for a list is its repr.
    budget = budget_of(context)
    size = sum(budget.measure(part) for part in parts)
    _want(size)
    budget.charge(_CONCAT_PART_STEPS * len(parts) + size // CHARS_PER_STEP)
    return "".join([str(part) for part in parts])


def _getattr(context: TemplateContext, obj: object, attribute: str) -> object:
    # ``obj.attribute``. Most are keys of a message or tool (a dict has no
    # attribute but its methods), answered here; the environment has fast paths
    # for other common types (_templates._Environment.getattr), and what misses
    # them is charged.
    if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
        try:
            return obj[attribute]
        except KeyError:
            budget_of(context).charge(_UNDEFINED_STEPS)
            return context.environment.undefined(obj=obj, name=attribute)
    steps = _ATTRIBUTE_STEPS.get(type(obj), _SLOW_ATTRIBUTE_STEPS)
    value = context.environment.getattr(obj, attribute)
    if type(value).__name__ == "Undefined":
        steps += _UNDEFINED_STEPS
    if steps:
        budget_of(context).charge(steps)
    return value


def _getitem(context: TemplateContext, obj: object, key: object) -> object:
    # ``obj[key]``: a tuple key is hashed, all of it.
    if type(key) is tuple:
        budget = budget_of(context)
        budget.charge(budget.measure(key) // CHARS_PER_STEP)
    return context.environment.getitem(obj, key)


# What reading an attribute of a type costs beyond the call, for the types the
# environment answers without the sandbox's slow checks (filled by install()).
_ATTRIBUTE_STEPS: Final[dict[type, int]] = {}


def joined(parts: Iterable[str]) -> str:
    """Jinja's ``concat``, for the text a macro or block builds: refused past
    ``MAX_CHARS`` before it is joined."""
    pieces = parts if isinstance(parts, list) else list(parts)
    if sum(map(len, pieces)) > MAX_CHARS:
        raise _too_long()
    return "".join(pieces)


def install(
    env: SandboxedEnvironment, plain_types: Iterable[type], jinja_types: Iterable[type]
) -> None:
    """Put every filter and test of ``env`` behind the budget, and add the
    instrumentation's private filters. ``env.getattr`` answers attributes of
    ``plain_types`` and ``jinja_types`` without the sandbox's checks."""
    _ATTRIBUTE_STEPS.update(dict.fromkeys(plain_types, 0))
    _ATTRIBUTE_STEPS.update(dict.fromkeys(jinja_types, _JINJA_ATTRIBUTE_STEPS))
    markers = _Markers.of(env)
    for name, func in list(env.filters.items()):
        check = _FILTER_CHECKS.get(name, _read)
        lazy = name in _LAZY_FILTERS
        env.filters[name] = _counted_filter(func, check, lazy, markers)
    for name, func in list(env.tests.items()):
        env.tests[name] = _counted_test(func, name in _COMPARING_TESTS, markers)
    env.filters[_ITERATE] = _taking_context(_iterate, markers)
    env.filters[_CHARGE] = _taking_context(_charge, markers)
    env.filters[_CHARGED] = _taking_context(_charged, markers)
    env.filters[_OUTPUT] = _taking_context(_output, markers)
    env.filters[_MEASURED] = _taking_context(_measured, markers)
    env.filters[_HAYSTACK] = _taking_context(_haystack, markers)
    env.filters[_SIZED] = _taking_context(_sized, markers)
    env.filters[_CONCAT] = _taking_context(_concat, markers)
    env.filters[_GETATTR] = _taking_context(_getattr, markers)
    env.filters[_GETITEM] = _taking_context(_getitem, markers)
