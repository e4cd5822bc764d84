"""``Budget``: one render's steps and characters, and the size arithmetic of values."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from types import BuiltinMethodType, FunctionType, MethodType
from typing import Final, cast

from ._costs import (
    _CACHED_ITEMS,
    _CALL_STEPS,
    _FORMAT_STEPS,
    _FORMATTER,
    _MACRO_STEPS,
    _METHOD_STEPS,
    _OPERATOR_STEPS,
    _SCALARS,
    _SEQUENCES,
    _T,
    _VIEWS,
    _WALK_STEPS,
    BUDGET_KEY,
    CHARS_PER_STEP,
    MAX_CHARS,
    MAX_STEPS,
    OverBudget,
    TemplateContext,
    _Args,
    _given,
    _Kwargs,
    _size,
    _too_long,
    _want,
)
from ._methods import (
    _CHEAP_METHODS,
    _METHOD_CHECKS,
    _formatted,
)


class Budget:
    """What is left of one render's budget. One per render, never shared."""

    __slots__ = ("_kept", "_sizes", "output", "recursion_weight", "steps")

    def __init__(self, recursion_weight: int = 1) -> None:
        self.steps = MAX_STEPS
        self.output = MAX_CHARS
        # What an item of a recursive loop's recursion (``loop(children)``) costs:
        # that is a call of the loop object, which knows nothing of the loop's
        # syntax, so it is charged the template's heaviest recursive loop body.
        self.recursion_weight = recursion_weight
        # Printed sizes and depths of long containers measured so far, by
        # identity, kept alive so that identities stay unique. The sandbox lets no
        # template change a list or dict, so a size stays true for the render.
        self._sizes: dict[int, tuple[int, int]] = {}
        self._kept: list[object] = []

    def charge(self, steps: int) -> None:
        self.steps -= steps
        if self.steps < 0:
            raise OverBudget(f"the template took more than {MAX_STEPS} steps")

    def emit(self, chunk: str) -> None:
        """Count text the render writes."""
        self.output -= len(chunk)
        if self.output < 0:
            raise OverBudget(f"the template wrote more than {MAX_CHARS} characters")

    def iterate(self, iterable: Iterable[_T], weight: int) -> Iterator[_T]:
        """Feed a loop, charging ``weight`` steps an item, before its body runs."""
        for item in iterable:
            self.steps -= weight
            if self.steps < 0:
                self.charge(0)
            yield item

    def produced(self, value: _T) -> _T:
        """Check and charge a value an operation has just built."""
        size = _size(value)
        if size >= CHARS_PER_STEP:
            if size > MAX_CHARS:
                raise _too_long()
            self.charge(size // CHARS_PER_STEP)
        return value

    def read(self, steps: int, values: Iterable[object]) -> None:
        """Charge ``steps``, and the top-level sizes of ``values``."""
        size = 0
        for value in values:
            size += _size(value)
        self.charge(steps + size // CHARS_PER_STEP)

    def add(self, left: object, right: object) -> object:
        """``left + right``, refused if too long, charged by its length."""
        if type(left) is str and type(right) is str:
            # Most additions in chat templates: no sizes to look up.
            size = len(left) + len(right)
        else:
            size = _size(left) + _size(right)
        if size > MAX_CHARS:
            raise _too_long()
        self.steps -= _OPERATOR_STEPS + size // CHARS_PER_STEP
        if self.steps < 0:
            self.charge(0)
        return left + right  # type: ignore[operator]

    def measure(self, value: object) -> int:
        """About ``len(str(value))``, and so the work of printing, comparing or
        hashing it; past ``MAX_CHARS`` it raises, since nothing may be that long.
        Walking a container is charged by its items (the first time, for a long
        one, whose size is then remembered)."""
        if isinstance(value, str):
            return len(value)
        return self._printed(value)[0]

    def shape(self, value: object) -> tuple[int, int]:
        """``measure(value)``, and how deeply containers nest in it."""
        size, depth, _ = self._printed(value)
        return (len(value), 0) if isinstance(value, str) else (size, depth)

    def _printed(self, value: object) -> tuple[int, int, bool]:
        """Printed size, nesting depth, and whether they are fixed (a namespace,
        or anything holding one, can change)."""
        kind = type(value)
        if kind is str:
            return len(value) + 2, 0, True  # type: ignore[arg-type]
        if kind in _SCALARS:
            return 24, 0, True
        known = self._sizes.get(id(value))
        if known is not None:
            return known[0], known[1], True
        fixed = True
        items: Iterable[object]
        name = kind.__name__
        if kind in _SEQUENCES or name in _VIEWS:
            items = cast("Iterable[object]", value)
            count = len(value)  # type: ignore[arg-type]
            if name == "dict_items":
                items = (
                    x
                    for pair in cast("Iterable[tuple[object, ...]]", value)
                    for x in pair
                )
        elif kind is dict:
            items = (
                x for pair in cast("dict[object, object]", value).items() for x in pair
            )
            count = 2 * len(value)  # type: ignore[arg-type]
        elif isinstance(value, str):
            return len(value) + 2, 0, True
        elif isinstance(value, bytes):
            return 4 * len(value) + 3, 0, True  # repr() escapes
        elif name == "Namespace":
            attrs: dict[str, object] = object.__getattribute__(
                value, "_Namespace__attrs"
            )
            items = (x for pair in attrs.items() for x in pair)
            count, fixed = 2 * len(attrs), False
        else:
            # Everything else a template can reach prints as a short repr: a macro,
            # a loop, a generator, a range, undefined.
            return 64, 0, True
        self.charge(_WALK_STEPS * (1 + count))
        total, deepest = 2, 0
        for item in items:
            size, depth, item_fixed = self._printed(item)
            total += size + 2
            deepest = max(deepest, depth)
            fixed = fixed and item_fixed
            if total > MAX_CHARS:
                raise _too_long()
        if fixed and count >= _CACHED_ITEMS:
            self._sizes[id(value)] = (total, deepest + 1)
            self._kept.append(value)
        return total, deepest + 1, fixed

    # -- before the sandbox's operations ------------------------------------------

    def before_method(
        self, method: BuiltinMethodType, args: _Args, kwargs: _Kwargs
    ) -> _Args:
        """Charge a call of a builtin method (of a string, list, dict...), refuse it
        if its result is predictably too large, and return the arguments."""
        receiver = method.__self__
        name = method.__name__
        steps = _METHOD_STEPS
        if name not in _CHEAP_METHODS:
            steps += _size(receiver) // CHARS_PER_STEP
        self.read(steps, (*args, *_given(kwargs)))
        check = _METHOD_CHECKS.get(name)
        return args if check is None else check(self, receiver, args, kwargs)

    def before_call(self, obj: object, args: _Args, kwargs: _Kwargs) -> _Args:
        """Charge any other call, refuse it if its result is predictably too large,
        and return the arguments."""
        kind = type(obj)
        if kind.__name__ == "Macro":
            # Its arguments are only bound; what its body prints is charged there.
            self.read(_MACRO_STEPS, (*args, *_given(kwargs)))
        else:
            # A function or class may print, compare or hash its arguments:
            # raise_exception(x) makes str(x), loop.changed(x) compares x.
            size = sum(self.measure(value) for value in (*args, *_given(kwargs)))
            _want(size)
            self.charge(_CALL_STEPS + size // CHARS_PER_STEP)
        if kind is MethodType:
            # Markup's string methods, which wrap str's, are Python methods.
            receiver = getattr(obj, "__self__", None)
            check = _METHOD_CHECKS.get(getattr(obj, "__name__", ""))
            if isinstance(receiver, str | bytes) and check is not None:
                self.charge(_size(receiver) // CHARS_PER_STEP)
                return check(self, receiver, args, kwargs)
        elif kind is FunctionType:
            # The sandbox hands out str.format and str.format_map (Markup's too)
            # wrapped, at attribute access; the wrapper keeps the method as
            # __wrapped__.
            wrapped = getattr(obj, "__wrapped__", None)
            receiver = getattr(wrapped, "__self__", None)
            if isinstance(receiver, str) and getattr(wrapped, "__name__", "") in (
                "format",
                "format_map",
            ):
                return _formatted(self, receiver, args, kwargs)
        elif kind.__name__ == "LoopContext" and args and isinstance(args[0], Iterable):
            # ``loop(children)`` in a recursive loop: the items are the loop's, and
            # cost what its body does.
            return (self.iterate(args[0], self.recursion_weight), *args[1:])
        return args

    def before_operator(self, operator: str, left: object, right: object) -> None:
        """Charge ``*``, ``%`` or ``**``, refusing what would be too large."""
        size, steps = 0, _OPERATOR_STEPS
        if operator == "*":
            if type(left) is int and type(right) is int:
                _want_bits(abs(left).bit_length() + abs(right).bit_length())
            size = _repeat_size(left, right) or _repeat_size(right, left)
        elif operator == "%" and isinstance(left, str | bytes):
            fmt = left if isinstance(left, str) else left.decode("latin-1")
            size, steps = self.printf_size(fmt, right), _FORMAT_STEPS
        _want(size)
        self.charge(steps + size // CHARS_PER_STEP)

    def printf_size(self, fmt: str, args: object) -> int:
        """A bound on the length of ``fmt % args``."""
        values = list(args) if isinstance(args, tuple) else [args]
        fields = [match.group(1, 2) for match in _PRINTF.finditer(fmt)]
        return self._fields_size(fmt, fields, values)

    def format_size(self, fmt: str, values: list[object]) -> int:
        """A bound on the length of ``fmt.format(...)`` given the values."""
        fields: list[tuple[str | None, ...]] = []
        for _, field, spec, _ in _FORMATTER.parse(fmt):
            if field is not None:
                # A nested field ({:{}}) takes its width from the arguments.
                numbers = _DIGITS.findall(spec or "")
                fields.append((*numbers, *(["*"] * (spec or "").count("{"))))
        return self._fields_size(fmt, fields, values)

    def _fields_size(
        self, fmt: str, fields: list[tuple[str | None, ...]], values: list[object]
    ) -> int:
        # Each field prints one of the values (at most the widest), padded to its
        # width or precision; a "*" width is one of the integer arguments.
        widest = max((self.measure(value) for value in values), default=0)
        star = max((v for v in values if type(v) is int), default=0)
        total = len(fmt)
        for numbers in fields:
            total += widest + sum(_field_width(n, star) for n in numbers)
            if total > MAX_CHARS:
                break
        return total


def budget_of(context: TemplateContext) -> Budget:
    budget: Budget = context.parent[BUDGET_KEY]  # type: ignore[assignment]
    return budget


def _repeat_size(sequence: object, count: object) -> int:
    return _size(sequence) * max(count, 0) if type(count) is int else 0


# A number of more bits than this is refused, as ``**`` is: big-number arithmetic in
# a loop is a way to spend CPU that no chat template needs.
_MAX_NUMBER_BITS: Final = 4096


def _want_bits(bits: int) -> None:
    if bits > _MAX_NUMBER_BITS:
        raise OverBudget(
            f"the template built a number of more than {_MAX_NUMBER_BITS} bits"
        )


# printf-style conversions: %[(key)][flags][width][.precision][length]type
_PRINTF: Final = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?.")
_DIGITS: Final = re.compile(r"\d+")


def _field_width(text: str | None, star: int) -> int:
    if not text:
        return 0
    if text == "*":
        return star
    # Nine digits pass any limit; int() of thousands would be slow.
    return int(text) if len(text) <= 9 else MAX_CHARS + 1
