"""The syntax tree, rewritten before it is compiled.

Loops, costly branches and macros are made to charge the budget as they run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Protocol, cast

from jinja2.sandbox import SandboxedEnvironment

from ._costs import (
    _CHARGE,
    _CHARGED,
    _CHARGED_BRANCH,
    _CONCAT,
    _GETATTR,
    _GETITEM,
    _HAYSTACK,
    _ITERATE,
    _LOOP_CONTEXT_STEPS,
    _MEASURED,
    _OUTPUT,
    _SIZED,
    _UNDEFINED_STEPS,
    CHARS_PER_STEP,
)

# -- the syntax tree ----------------------------------------------------------


class _Node(Protocol):
    @property
    def fields(self) -> tuple[str, ...]: ...

    lineno: int

    def iter_child_nodes(self) -> Iterator[_Node]: ...

    def set_environment(self, environment: SandboxedEnvironment) -> _Node: ...


class _Make(Protocol):
    def __call__(self, *fields: object, lineno: int) -> _Node: ...


# Jinja's nodes are reached by field name, as jinja2.nodes (with their classes) is
# not among the modules the core may import.
def _node(node: _Node, field: str) -> _Node:
    return cast(_Node, getattr(node, field))


def _nodes(node: _Node, field: str) -> list[_Node]:
    return cast("list[_Node]", getattr(node, field))


def _value(node: _Node, field: str) -> object:
    return cast(object, getattr(node, field))


def _set(node: _Node, field: str, value: object) -> None:
    setattr(node, field, value)


@dataclass(frozen=True, slots=True)
class Program:
    """A template's instrumented syntax tree, and what a render of it costs before
    any loop or call: its top level's weight."""

    tree: _Node
    weight: int
    recursion_weight: int


# What a node costs beyond its children, in steps, where that is not charged when
# it runs (calls, filters, tests, operators are). Names and constants are local
# variables and literals to the compiled code; a filter node is a call of a private
# filter or a real one.
_NODE_STEPS: Final[Mapping[str, int]] = {
    **dict.fromkeys(("Name", "Const", "Keyword", "Pair", "Operand", "Slice"), 0),
    **dict.fromkeys(("NSRef", "Template", "Output"), 0),
    "Filter": 2,
}


class _Instrumenter:
    def __init__(
        self, env: SandboxedEnvironment, tree: _Node, defined: frozenset[str]
    ) -> None:
        # A name the template neither sets nor is given is undefined: each use of
        # it makes an Undefined, which is work.
        self._defined = defined | set(env.globals) | _stored_names(tree)
        # Jinja's node classes, from a parsed prototype.
        output = _nodes(cast(_Node, env.parse("{{ (a,) | f(0) }}")), "body")[0]
        sample = _nodes(output, "nodes")[0]
        self._output = cast(_Make, type(output))
        self._filter = cast(_Make, type(sample))
        self._tuple = cast(_Make, type(_node(sample, "node")))
        self._const = cast(_Make, type(_nodes(sample, "args")[0]))
        self._base = next(c for c in type(tree).__mro__ if c.__name__ == "Node")
        self.recursion_weight = 1

    def _call(self, name: str, line: int, node: object, *args: object) -> _Node:
        return self._filter(node, name, [*args], [], None, None, lineno=line)

    def _number(self, value: int, line: int) -> _Node:
        return self._const(value, lineno=line)

    # Pass one: operations the sandbox does not see, made calls of private filters.

    def rewrite(self, node: _Node) -> _Node:
        for field in node.fields:
            value = _value(node, field)
            if isinstance(value, list):
                _set(node, field, [self._rewritten(item) for item in value])
            elif isinstance(value, self._base):
                _set(node, field, self.rewrite(cast(_Node, value)))
        kind = type(node).__name__
        line = node.lineno
        if kind == "Concat":
            parts = self._tuple(_nodes(node, "nodes"), "load", lineno=line)
            return self._call(_CONCAT, line, parts)
        if kind == "Getattr":
            attribute = self._const(_value(node, "attr"), lineno=line)
            return self._call(_GETATTR, line, _node(node, "node"), attribute)
        if kind == "Getitem":
            arg = _node(node, "arg")
            if type(arg).__name__ == "Slice":
                return self._call(_SIZED, line, node)
            return self._call(_GETITEM, line, _node(node, "node"), arg)
        if kind == "Compare":
            self._measure_operands(node)
        elif kind == "Pair" and not _literal(_node(node, "key")):
            _set(node, "key", self._call(_MEASURED, line, _node(node, "key")))
        elif kind == "Output":
            printed = [self._printed(child, line) for child in _nodes(node, "nodes")]
            _set(node, "nodes", printed)
        return node

    def _rewritten(self, item: object) -> object:
        return self.rewrite(cast(_Node, item)) if isinstance(item, self._base) else item

    def _printed(self, child: _Node, line: int) -> _Node:
        if type(child).__name__ in ("TemplateData", "Const"):
            return child
        return self._call(_OUTPUT, line, child)

    def _measure_operands(self, node: _Node) -> None:
        # A comparison costs as much as its shorter side, so a literal side bounds
        # it; ``in`` costs as much as its right side, unless that is a mapping or
        # a set, where it is a lookup.
        ops = _nodes(node, "ops")
        sides = [_node(node, "expr"), *(_node(op, "expr") for op in ops)]
        wrap: list[str | None] = [None] * len(sides)
        for i, op in enumerate(ops):
            left, right = sides[i], sides[i + 1]
            if _value(op, "op") in ("in", "notin"):
                if not _literal(right):
                    wrap[i] = wrap[i] or (None if _literal(left) else _MEASURED)
                    wrap[i + 1] = wrap[i + 1] or _HAYSTACK
            elif not (_literal(left) or _literal(right)):
                wrap[i] = wrap[i + 1] = _MEASURED
        line = node.lineno
        if wrap[0] is not None:
            _set(node, "expr", self._call(wrap[0], line, sides[0]))
        for i, op in enumerate(ops, start=1):
            name = wrap[i]
            if name is not None:
                _set(op, "expr", self._call(name, line, sides[i]))

    # Pass two: weigh each block, and charge it where it runs.

    def weigh(self, node: _Node) -> int:
        kind = type(node).__name__
        if kind == "For":
            return self._weigh_for(node)
        if kind == "If":
            return self._weigh_if(node)
        if kind in ("Macro", "CallBlock", "Block"):
            body = _nodes(node, "body")
            inner = sum(self.weigh(child) for child in body)
            in_body = {id(child) for child in body}
            outer = sum(
                self.weigh(child)
                for child in node.iter_child_nodes()
                if id(child) not in in_body
            )
            body.insert(0, self._charge(inner, node.lineno))
            return 1 + outer
        if kind in ("And", "Or"):
            return 1 + self.weigh(_node(node, "left")) + self._sometimes(node, "right")
        if kind == "CondExpr":
            own = 1 + self.weigh(_node(node, "test")) + self._sometimes(node, "expr1")
            if _value(node, "expr2") is not None:
                own += self._sometimes(node, "expr2")
            return own
        if kind == "TemplateData":
            return 1 + len(str(_value(node, "data"))) // CHARS_PER_STEP
        if kind == "Name" and _value(node, "name") not in self._defined:
            return _UNDEFINED_STEPS
        own = _NODE_STEPS.get(kind, 1)
        return own + sum(self.weigh(child) for child in node.iter_child_nodes())

    def _sometimes(self, node: _Node, field: str) -> int:
        # An operand that may not be evaluated: a heavy one is charged when it is,
        # a light one counts in the enclosing block.
        operand = _node(node, field)
        weight = self.weigh(operand)
        if weight < _CHARGED_BRANCH:
            return weight
        line = node.lineno
        _set(
            node, field, self._call(_CHARGED, line, operand, self._number(weight, line))
        )
        return 0

    def _charge(self, weight: int, line: int) -> _Node:
        charge = self._call(_CHARGE, line, self._number(weight, line))
        return self._output([charge], lineno=line)

    def _weigh_if(self, node: _Node) -> int:
        # Only one branch runs: a heavy one is charged when it does, a light one
        # counts in the enclosing block.
        elifs = _nodes(node, "elif_")
        own = 1 + self.weigh(_node(node, "test"))
        own += sum(1 + self.weigh(_node(elif_, "test")) for elif_ in elifs)
        branches = [_nodes(node, "body"), *(_nodes(e, "body") for e in elifs)]
        for branch in [*branches, _nodes(node, "else_")]:
            weight = sum(self.weigh(child) for child in branch)
            if weight < _CHARGED_BRANCH:
                own += weight
            else:
                branch.insert(0, self._charge(weight, node.lineno))
        return own

    def _weigh_for(self, node: _Node) -> int:
        per_item = 1 + sum(self.weigh(child) for child in _nodes(node, "body"))
        if _value(node, "test") is not None:
            per_item += self.weigh(_node(node, "test"))
        recursive = bool(_value(node, "recursive"))
        if recursive or _reads_loop(node):
            per_item += _LOOP_CONTEXT_STEPS
        outer = self.weigh(_node(node, "iter")) + self.weigh(_node(node, "target"))
        outer += sum(self.weigh(child) for child in _nodes(node, "else_"))
        if recursive:
            self.recursion_weight = max(self.recursion_weight, per_item)
        line = node.lineno
        weight = self._number(per_item, line)
        _set(node, "iter", self._call(_ITERATE, line, _node(node, "iter"), weight))
        return 1 + outer


def _stored_names(tree: _Node) -> set[str]:
    """Every name the template sets: variables, loop targets, macros, parameters."""
    names: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        kind = type(node).__name__
        stored = kind == "Name" and _value(node, "ctx") in ("store", "param")
        if stored or kind == "Macro":
            names.add(str(_value(node, "name")))
        stack.extend(node.iter_child_nodes())
    # Jinja's own: the loop, a call block's caller, a macro's varargs and kwargs.
    return names | {"loop", "caller", "varargs", "kwargs", "self"}


def _reads_loop(node: _Node) -> bool:
    stack = list(node.iter_child_nodes())
    while stack:
        child = stack.pop()
        if type(child).__name__ == "Name" and _value(child, "name") == "loop":
            return True
        stack.extend(child.iter_child_nodes())
    return False


def _literal(node: _Node) -> bool:
    """Written out in the template: its size is the template's, not the input's."""
    kind = type(node).__name__
    if kind == "Const":
        return True
    if kind in ("List", "Tuple"):
        return all(_literal(item) for item in _nodes(node, "items"))
    return False


def instrument(
    env: SandboxedEnvironment, tree: _Node, variables: frozenset[str]
) -> Program:
    """Rewrite a parsed template so that rendering it charges its budget.
    ``variables`` are the names a render defines besides ``env``'s globals."""
    instrumenter = _Instrumenter(env, tree, variables)
    tree = instrumenter.rewrite(tree)
    weight = 1 + sum(instrumenter.weigh(child) for child in tree.iter_child_nodes())
    tree.set_environment(env)
    return Program(tree, weight, instrumenter.recursion_weight)
