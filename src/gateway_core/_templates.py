"""Chat templates: the Jinja programs that turn messages into a model's prompt text.

A GGUF file carries its chat template as Jinja source written for Hugging Face
``transformers``, so we render it the way ``transformers`` does: a sandboxed,
immutable environment with ``trim_blocks`` and ``lstrip_blocks``, loop controls, and
the helpers those templates call (``tojson``, ``raise_exception``, ``strftime_now``).

Templates are untrusted input: they come from downloaded model files and, through the
``template`` field of ``/api/generate`` or ``/api/create``, from clients. So the
environment

- has no loader, so ``include`` and ``import`` cannot reach a file;
- refuses (raises, rather than rendering nothing) any attribute the sandbox deems
  unsafe: dunder attributes and methods that mutate, such as ``list.append``;
- renders within a budget (``_template_budget``): at most ``MAX_STEPS`` steps of
  work (loop iterations, calls, filters, tests, operators, weighed by what they
  cost), no value longer than ``MAX_CHARS`` characters (padding, format widths,
  ``%``, ``join`` and the like are refused before they allocate) and at most
  ``MAX_CHARS`` written, so that a render holds the event loop for about 20 ms at
  most and takes memory in the tens of megabytes; ``*`` and ``**`` keep their own,
  older bounds. A source longer than ``MAX_SOURCE_CHARS`` is not compiled at all,
  as compiling costs about 10 us a character;
- is deterministic: the ``random`` filter and ``lipsum`` global are gone, and
  ``strftime_now`` formats the ``now`` the caller passes in, never the clock.

Every failure, whether at compile or render time, leaves as ``TemplateError``; going
over the budget as its subclass ``TemplateTooCostly``.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import BuiltinMethodType, MappingProxyType
from typing import Final, NoReturn, Protocol

from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.exceptions import TemplateError as JinjaTemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ._errors import GatewayError
from ._json import JsonValue
from ._template_budget import (
    BUDGET_KEY,
    Budget,
    OverBudget,
    Program,
    TemplateContext,
    budget_of,
    install,
    instrument,
    joined,
)

__all__ = ["ChatTemplate", "TemplateError", "TemplateRaised", "TemplateTooCostly"]


class TemplateError(GatewayError):
    """A chat template could not be compiled or rendered; the message says why."""


class TemplateRaised(TemplateError):
    """The template itself refused to render, through ``raise_exception``.

    Templates do this to reject conversations they cannot express ("Conversation
    roles must alternate user/assistant/..."), so, unlike other template errors,
    this one usually means the request is at fault, not the model.
    """


class TemplateTooCostly(TemplateError):
    """The template went over its render budget (steps, or characters), or is too
    long to compile; the message names the limit and its figure.

    The limit is a property of the template and its input, so, like
    ``TemplateRaised``, this is the request's fault, even for a model's template.
    """


# Large enough for any honest prompt (a million characters is far beyond a context
# window), small enough that refusing costs nothing.
_MAX_REPEAT: Final = 1_000_000
_MAX_POWER_BITS: Final = 4096
_COMPILED_CACHE_SIZE: Final = 64
# Compiling costs about 10 us a character here, on the event loop, and a compiled
# template stays cached: the longest chat templates published are under 20,000
# characters, so 64 Ki leaves room and bounds a compile to about half a second.
MAX_SOURCE_CHARS: Final = 65_536
_EMPTY: Final[Mapping[str, JsonValue]] = MappingProxyType({})


class _Compiled(Protocol):
    def generate(self, *args: object, **kwargs: object) -> Iterator[str]: ...


@dataclass(frozen=True, slots=True)
class _Program:
    template: _Compiled
    weight: int
    recursion_weight: int


class _Node(Protocol):
    def iter_child_nodes(self) -> Iterator[_Node]: ...


class _Environment(ImmutableSandboxedEnvironment):
    # Every operator that can build something large goes through call_binop.
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def unsafe_undefined(self, obj: object, attribute: str) -> NoReturn:
        # The sandbox's default returns an Undefined that prints as "", so a template
        # probing for internals would render quietly; an error is the honest answer.
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object"
            " is unsafe"
        )

    def call_binop(
        self, context: TemplateContext, operator: str, left: object, right: object
    ) -> object:
        if operator == "+":
            return budget_of(context).add(left, right)
        if operator == "*":
            _check_repeat(left, right)
            _check_repeat(right, left)
        elif operator == "**":
            _check_power(left, right)
        budget = budget_of(context)
        budget.before_operator(operator, left, right)
        result = super().call_binop(context, operator, left, right)  # type: ignore[arg-type]
        return budget.produced(result)

    def call(
        self, context: TemplateContext, obj: object, /, *args: object, **kwargs: object
    ) -> object:
        budget = budget_of(context)
        if type(obj) is BuiltinMethodType:
            # A method of a string, list or dict (the sandbox vetted the attribute
            # when the template read it): no Jinja conventions to apply, and, unlike
            # Python functions, no flag the sandbox could find on it, so it is
            # called directly, as Context.call would, in a fraction of the time.
            args = budget.before_method(obj, args, kwargs)
            kwargs.pop("_loop_vars", None)
            kwargs.pop("_block_vars", None)
            try:
                return budget.produced(obj(*args, **kwargs))
            except StopIteration:
                return self.undefined(
                    "value was undefined because a callable raised a"
                    " StopIteration exception"
                )
        args = budget.before_call(obj, args, kwargs)
        result = super().call(context, obj, *args, **kwargs)  # type: ignore[arg-type]
        return budget.produced(result)

    def getattr(self, obj: object, attribute: str) -> object:
        # The sandbox tries getattr() first and falls back to obj[attribute]: for
        # message.role that is an AttributeError raised and caught, every time; then
        # it checks the attribute against every kind of Python internal. Plain
        # values and Jinja's loop and namespace objects are answered directly here,
        # with the sandbox's own answers, worked out once per type.
        kind = type(obj)
        known = _PLAIN_ATTRIBUTES.get(kind)
        if known is not None:
            names, safe = known
            if attribute in safe:
                value = getattr(obj, attribute)
                wrapped = self.wrap_str_format(value) if kind is str else None
                return value if wrapped is None else wrapped
            if attribute not in names:
                if kind is dict:
                    try:
                        return obj[attribute]  # type: ignore[index]
                    except KeyError:
                        pass
                return self.undefined(obj=obj, name=attribute)
        elif kind in _JINJA_OBJECTS and not attribute.startswith("_"):
            # Every public attribute of these is safe by the sandbox's rules.
            try:
                value = getattr(obj, attribute)
            except AttributeError:
                return self.undefined(obj=obj, name=attribute)
            wrapped = self.wrap_str_format(value)
            return value if wrapped is None else wrapped
        return super().getattr(obj, attribute)


def _attributes(
    env: ImmutableSandboxedEnvironment, kind: type
) -> tuple[frozenset[str], frozenset[str]]:
    """A type's attributes, and those the sandbox lets a template read."""
    sample = kind()
    names = frozenset(dir(kind))
    safe = frozenset(
        name
        for name in names
        if env.is_safe_attribute(sample, name, getattr(sample, name))
    )
    return names, safe


_PLAIN_ATTRIBUTES: Final[Mapping[type, tuple[frozenset[str], frozenset[str]]]] = {
    kind: _attributes(ImmutableSandboxedEnvironment(), kind)
    for kind in (dict, list, tuple, str, int, float, bool, type(None))
}


def _check_repeat(sequence: object, count: object) -> None:
    if (
        isinstance(sequence, str | list | tuple)
        and isinstance(count, int)
        and len(sequence) * count > _MAX_REPEAT
    ):
        raise SecurityError(f"repetition longer than {_MAX_REPEAT} items refused")


def _check_power(base: object, exponent: object) -> None:
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and abs(base) > 1
        and abs(base).bit_length() * exponent > _MAX_POWER_BITS
    ):
        raise SecurityError(f"power larger than {_MAX_POWER_BITS} bits refused")


def _tojson(
    value: object,
    ensure_ascii: bool = False,
    indent: int | str | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    """JSON as ``transformers`` renders it, not as Jinja's HTML-safe ``tojson`` does.

    Jinja's own filter sorts keys and escapes ``<``, ``>``, ``&`` and ``'`` as
    ``\\u003c``...: right for HTML, wrong for a prompt, where a tool schema should
    reach the model as the client wrote it.
    """
    return json.dumps(
        value,
        ensure_ascii=ensure_ascii,
        indent=indent,
        separators=separators,
        sort_keys=sort_keys,
    )


def _raise_exception(message: object) -> NoReturn:
    raise TemplateRaised(str(message))


def _strftime_now(now: float | None) -> Callable[[str], str]:
    def strftime_now(format: str) -> str:
        if now is None:
            # Rendering "today" as 1970 would be quietly wrong; a missing clock is
            # a caller bug, so say so.
            raise TemplateError("the template asks for the date, and none was given")
        moment = datetime.datetime.fromtimestamp(now, tz=datetime.UTC)
        return moment.strftime(format)

    return strftime_now


def _environment() -> _Environment:
    # loopcontrols ({% break %}, {% continue %}) is on in transformers, so templates
    # use it. Named by string, jinja2 imports its own pure extension module.
    env = _Environment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.loopcontrols"],
    )
    del env.filters["random"]
    del env.globals["lipsum"]
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    # Text a macro or block builds is joined by concat: refuse it if too long.
    env.concat = joined  # type: ignore[method-assign]
    install(env, plain_types=_PLAIN_ATTRIBUTES, jinja_types=_JINJA_OBJECTS)
    return env


def _jinja_types() -> frozenset[type]:
    """Jinja's loop and namespace classes (jinja2.runtime and jinja2.utils are not
    among the modules the core may import), caught from a render."""
    seen: list[object] = []
    probe = ImmutableSandboxedEnvironment().from_string(
        "{% for _ in [0] %}{{ keep(loop) }}{% endfor %}{{ keep(namespace()) }}"
    )
    probe.render(keep=seen.append)
    return frozenset(type(value) for value in seen)


_JINJA_OBJECTS: Final = _jinja_types()


_ENV: Final = _environment()

# Ollama's Go templates: "{{ .Prompt }}", "{{- if .System }}", "{{ range $i, $m := ...".
_GO_TEMPLATE = re.compile(r"\{\{-?\s*(?:[.$]|(?:if|range|with|block|define)\s+[.$])")


def is_go_template(source: str) -> bool:
    """``source`` is one of Ollama's Go templates (``{{ .Prompt }}``,
    ``{{ range .Messages }}``...): no Jinja template has these, Jinja cannot even
    parse them."""
    return _GO_TEMPLATE.search(source) is not None


# Names the renderer sets itself; ``extra`` may not shadow them.
_RESERVED: Final = frozenset(
    {
        "messages",
        "tools",
        "add_generation_prompt",
        "enable_thinking",
        "reasoning_effort",
        "bos_token",
        "eos_token",
        "strftime_now",
        "raise_exception",
    }
)


@functools.lru_cache(maxsize=_COMPILED_CACHE_SIZE)
def _compile(source: str) -> _Program:
    """Compile once per distinct source: compiling costs milliseconds, and one chat
    request may render several times while its history is truncated to fit.

    The syntax tree is instrumented before it is compiled, so that rendering charges
    the render's budget (see ``_template_budget``)."""
    if len(source) > MAX_SOURCE_CHARS:
        raise TemplateTooCostly(
            f"the template is longer than {MAX_SOURCE_CHARS} characters"
        )
    try:
        program: Program = instrument(_ENV, _ENV.parse(source), _RESERVED)
        template: _Compiled = _ENV.from_string(program.tree)  # type: ignore[arg-type]
        return _Program(template, program.weight, program.recursion_weight)
    except TemplateSyntaxError as exc:
        if _GO_TEMPLATE.search(source):
            raise TemplateError(
                "this is a Go template (Ollama's {{ .Prompt }} style); only Jinja chat"
                " templates are supported (a model whose GGUF carries its own Jinja"
                " template uses that one instead)"
            ) from None
        raise TemplateError(
            f"template syntax error on line {exc.lineno}: {exc.message}"
        ) from None
    except JinjaTemplateError as exc:
        raise TemplateError(f"template cannot be compiled: {exc.message}") from None
    except RecursionError:
        # Jinja parses and compiles recursively, so does the instrumentation.
        raise TemplateError("template nests too deeply to compile") from None


@functools.lru_cache(maxsize=_COMPILED_CACHE_SIZE)
def _loaded_names(source: str) -> frozenset[str]:
    """Every variable the template reads, from its syntax tree, not its text.

    Looking at the tree means that "suffix" inside a string literal or a comment
    does not count as using the variable.
    """
    names: set[str] = set()
    stack: list[_Node] = [_ENV.parse(source)]
    while stack:
        node = stack.pop()
        if type(node).__name__ == "Name" and getattr(node, "ctx", None) == "load":
            names.add(str(getattr(node, "name", "")))
        stack.extend(node.iter_child_nodes())
    return frozenset(names)


@dataclass(frozen=True, slots=True)
class ChatTemplate:
    """A compiled Jinja chat template; constructing one compiles (or raises).

    Equal sources share one compiled program, so building a ``ChatTemplate`` per
    request is cheap.
    """

    source: str

    def __post_init__(self) -> None:
        _compile(self.source)

    @classmethod
    def compile(cls, source: str) -> ChatTemplate:
        """Compile ``source``; raises ``TemplateError`` saying what is wrong."""
        return cls(source)

    @property
    def capabilities(self) -> frozenset[str]:
        """What the template can express, by Ollama's heuristics for Jinja sources.

        ``tools`` when the text mentions tools or tool calls, ``thinking`` when it
        has both reasoning tags, ``insert`` (fill-in-the-middle) when it reads a
        ``suffix`` variable.
        """
        found: set[str] = set()
        if "tools" in self.source or "tool_call" in self.source:
            found.add("tools")
        if "<think>" in self.source and "</think>" in self.source:
            found.add("thinking")
        if "suffix" in _loaded_names(self.source):
            found.add("insert")
        return frozenset(found)

    def render(
        self,
        *,
        messages: Sequence[Mapping[str, JsonValue]],
        tools: Sequence[Mapping[str, JsonValue]] | None = None,
        add_generation_prompt: bool = True,
        enable_thinking: bool | None = None,
        reasoning_effort: str | None = None,
        bos_token: str = "",
        eos_token: str = "",
        now: float | None = None,
        extra: Mapping[str, JsonValue] = _EMPTY,
    ) -> str:
        """The prompt text for ``messages``.

        ``enable_thinking`` and ``reasoning_effort`` are only defined for the
        template when given: templates test ``enable_thinking is defined`` to tell
        "the client said nothing" from "the client said no". ``tools`` is always
        defined, ``None`` when there are none (an empty list counts as none), as in
        ``transformers``. ``now`` (unix seconds) is what ``strftime_now`` formats,
        in UTC. ``extra`` adds variables (``chat_template_kwargs``); it may not
        reuse the names above (``ValueError``).

        Raises:
            TemplateRaised: the template called ``raise_exception``.
            TemplateTooCostly: the render went over its budget of steps or
                characters (``_template_budget``).
            TemplateError: any other failure, e.g. an undefined variable called,
                an unsafe attribute, or a type error in the template's own code.
        """
        clash = _RESERVED.intersection(extra)
        if clash:
            raise ValueError(f"extra template variables reuse {sorted(clash)}")
        variables: dict[str, object] = {
            **extra,
            "messages": [dict(message) for message in messages],
            "tools": [dict(tool) for tool in tools] if tools else None,
            "add_generation_prompt": add_generation_prompt,
            "bos_token": bos_token,
            "eos_token": eos_token,
            "strftime_now": _strftime_now(now),
        }
        if enable_thinking is not None:
            variables["enable_thinking"] = enable_thinking
        if reasoning_effort is not None:
            variables["reasoning_effort"] = reasoning_effort
        program = _compile(self.source)
        budget = Budget(recursion_weight=program.recursion_weight)
        # Last, so that no variable of ``extra`` can stand in for it.
        variables[BUDGET_KEY] = budget
        try:
            budget.charge(program.weight)
            chunks: list[str] = []
            for chunk in program.template.generate(variables):
                budget.output -= len(chunk)
                if budget.output < 0:
                    budget.emit("")
                chunks.append(chunk)
            return "".join(chunks)
        except OverBudget as exc:
            raise TemplateTooCostly(str(exc)) from None
        except TemplateError:
            raise
        except JinjaTemplateError as exc:
            raise TemplateError(f"template error: {exc.message}") from None
        # The template is a program we did not write: whatever it raises (a
        # TypeError from adding a string to a number, a RecursionError from a
        # recursive macro) is its failure to render, reported as one.
        except Exception as exc:
            raise TemplateError(
                f"template error: {type(exc).__name__}: {exc}"
            ) from None
