"""Builtin methods whose results outgrow their receivers, checked before they run."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # only in annotations: _budget imports this module
    from ._budget import Budget

from ._costs import (
    _LIST_STEPS,
    _MAX_ITEMS,
    _STR_FORMAT_STEPS,
    CHARS_PER_ITEM,
    CHARS_PER_STEP,
    _Args,
    _given,
    _Kwargs,
    _too_long,
    _want,
)

# -- builtin methods whose results outgrow their receivers -----------------------

# Methods that need not read the whole receiver: their cost is their arguments'.
_CHEAP_METHODS: Final = frozenset(
    {"startswith", "endswith", "get", "keys", "values", "items", "bit_length"}
)

_MethodCheck = Callable[["Budget", object, _Args, _Kwargs], _Args]


def _argument(args: _Args, kwargs: _Kwargs, index: int, name: str) -> object:
    return args[index] if len(args) > index else kwargs.get(name)


def _int(value: object, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _padded(budget: Budget, receiver: object, args: _Args, kwargs: _Kwargs) -> _Args:
    # ljust, rjust, center, zfill: the width is the result's length.
    _want(_int(_argument(args, kwargs, 0, "width")))
    return args


def _expanded(budget: Budget, receiver: object, args: _Args, kwargs: _Kwargs) -> _Args:
    tabsize = max(_int(_argument(args, kwargs, 0, "tabsize"), 8), 0)
    if isinstance(receiver, str):
        _want(len(receiver) + receiver.count("\t") * tabsize)
    elif isinstance(receiver, bytes):
        _want(len(receiver) + receiver.count(b"\t") * tabsize)
    return args


def _replaced(budget: Budget, receiver: object, args: _Args, kwargs: _Kwargs) -> _Args:
    old, new = _argument(args, kwargs, 0, "old"), _argument(args, kwargs, 1, "new")
    count = _int(_argument(args, kwargs, 2, "count"), -1)
    if isinstance(receiver, str | bytes) and isinstance(new, str | bytes):
        _want(_replace_size(receiver, old, new, count))
    return args


def _replace_size(text: str | bytes, old: object, new: str | bytes, count: int) -> int:
    if isinstance(old, str | bytes) and type(old) is type(text) and old:
        found = text.count(old)  # type: ignore[arg-type]
    else:
        found = len(text) + 1
    if count >= 0:
        found = min(found, count)
    width = len(old) if isinstance(old, str | bytes) else 0
    return len(text) + found * max(len(new) - width, 0)


def _joined_by(budget: Budget, receiver: object, args: _Args, kwargs: _Kwargs) -> _Args:
    if not args or not isinstance(receiver, str | bytes):
        return args
    value = _materialized(budget, args[0])
    items = _sequence(value)
    size = len(receiver) * max(len(items) - 1, 0)
    size += sum(len(item) for item in items if isinstance(item, str | bytes))
    _want(size)
    budget.charge(size // CHARS_PER_STEP)
    return (value, *args[1:])


def _translated(
    budget: Budget, receiver: object, args: _Args, kwargs: _Kwargs
) -> _Args:
    table = _argument(args, kwargs, 0, "table")
    if isinstance(receiver, str) and isinstance(table, Mapping):
        longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
        _want(len(receiver) * longest)
    return args


def _to_bytes(budget: Budget, receiver: object, args: _Args, kwargs: _Kwargs) -> _Args:
    _want(_int(_argument(args, kwargs, 0, "length"), 1))
    return args


def _searched(budget: Budget, receiver: object, args: _Args, kwargs: _Kwargs) -> _Args:
    # list.index and list.count compare every item with the argument.
    if isinstance(receiver, list | tuple):
        size = budget.measure(receiver) + sum(budget.measure(arg) for arg in args)
        budget.charge(size // CHARS_PER_STEP)
    return args


def _keyed(budget: Budget, receiver: object, args: _Args, kwargs: _Kwargs) -> _Args:
    # dict.fromkeys hashes every key.
    if not args:
        return args
    keys = _materialized(budget, args[0])
    budget.charge(budget.measure(_sequence(keys)) // CHARS_PER_STEP)
    return (keys, *args[1:])


def _formatted(budget: Budget, receiver: object, args: _Args, kwargs: _Kwargs) -> _Args:
    # str.format and str.format_map (the sandbox calls the latter with a mapping).
    if isinstance(receiver, str):
        values = [*args, *_given(kwargs)]
        if len(args) == 1 and isinstance(args[0], Mapping):
            values.extend(args[0].values())
        size = budget.format_size(receiver, values)
        _want(size)
        budget.charge(_STR_FORMAT_STEPS + size // CHARS_PER_STEP)
    return args


_METHOD_CHECKS: Final[Mapping[str, _MethodCheck]] = {
    "ljust": _padded,
    "rjust": _padded,
    "center": _padded,
    "zfill": _padded,
    "expandtabs": _expanded,
    "replace": _replaced,
    "join": _joined_by,
    "translate": _translated,
    "to_bytes": _to_bytes,
    "fromkeys": _keyed,
    "index": _searched,
    "count": _searched,
    "format": _formatted,
    "format_map": _formatted,
}


def _materialized(budget: Budget, value: object) -> object:
    """What an iterable yields, as a list, charged an item at a time: so that a
    filter or method can be refused before it builds something from it. Anything
    else is returned as it is, for the filter to say what is wrong with it."""
    if isinstance(value, list | tuple) or not isinstance(value, Iterable):
        return value
    if isinstance(value, str):
        _want(len(value) * CHARS_PER_ITEM)
        return list(value)
    items: list[object] = []
    for item in value:
        items.append(item)
        budget.charge(_LIST_STEPS)
        if len(items) > _MAX_ITEMS:
            raise _too_long()
    return items


def _sequence(value: object) -> list[object] | tuple[object, ...]:
    """The items of a materialized value, none if it is not a sequence."""
    return value if isinstance(value, list | tuple) else ()
