"""The ``options`` object: typed, layered, and split by when it matters.

Ollama applies a request's ``options`` over the model's Modelfile ``PARAMETER``s over
built-in defaults (ollama-api.md §1.3). Two facts shape this module:

- Some options fix how a model is *loaded* (context size, batch, GPU layers, threads,
  mmap); changing one means a reload. They live in ``LoadOptions``, a hashable value
  the scheduler can compare. The rest steer one generation: ``SamplingOptions``.
- Clients send options meant for other backends (``mirostat``, ``tfs_z``,
  ``use_mlock``...). Failing them would break those clients, so unknown keys are only
  collected in ``Options.ignored`` for the caller to log. A *known* key with the wrong
  type is the client's mistake and gets a 400 naming it; Ollama raises the same message
  from inside scheduling, where it surfaces as a 500.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from ._errors import ClientError
from ._json import JsonValue

__all__ = [
    "MAX_CONTEXT_CELLS",
    "MAX_PARALLEL",
    "LoadOptions",
    "Options",
    "SamplingOptions",
    "effective_num_ctx",
    "parameter_from_text",
    "parameters_text",
    "resolve_options",
    "validate_parameters",
]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_NOTED_NAMES = 10
_NOTED_NAME_LENGTH = 40


def _shortened(name: str) -> str:
    shown = name if len(name) <= _NOTED_NAME_LENGTH else name[:_NOTED_NAME_LENGTH] + "…"
    return repr(shown)


_MIN_NUM_CTX = 4
_INT32_MAX = 2**31 - 1
_FLOAT32_MAX = 3.4028234663852886e38
MAX_PARALLEL = 256
"""llama.cpp's limit on sequences in one context (``LLAMA_MAX_SEQ``)."""
MAX_CONTEXT_CELLS = 2**22
"""Most KV cells one runner may be asked for (``num_ctx`` times ``num_parallel``): four
requests of a million tokens. Past it the memory, not llama.cpp's counters, runs
out first, and llama.cpp may abort rather than fail on an allocation that large."""

# The values llama.cpp takes for each numeric option, as C would receive them:
# past these a value is truncated by ctypes (``num_batch`` 2**32 becomes 0, which
# aborts llama.cpp) or becomes infinite in a C float. A value outside its range is
# a 400 naming the option, at request and at /api/create alike. ``seed`` has no
# range: any 64-bit seed is taken modulo 2**32, as llama.cpp (and Ollama) take it,
# so clients that draw 64-bit seeds keep working. Within the ranges, odd
# but workable values are the client's business, as with Ollama (a ``top_p`` of 2
# switches the filter off; a ``temperature`` of -1 samples greedily).
_RANGES: Mapping[str, tuple[float, float]] = {
    "num_ctx": (1, 2**24),
    "num_batch": (1, 65_536),
    "num_gpu": (-1, _INT32_MAX),
    "main_gpu": (0, _INT32_MAX),
    "num_thread": (0, 1024),
    "num_parallel": (1, MAX_PARALLEL),
    # -1: until the model stops; -2: until the context is full (Ollama's meanings).
    "num_predict": (-2, _INT32_MAX),
    "num_keep": (-1, _INT32_MAX),
    "top_k": (-_INT32_MAX, _INT32_MAX),
    "repeat_last_n": (-1, _INT32_MAX),
    "draft_num_predict": (0, _INT32_MAX),
    "top_p": (-_FLOAT32_MAX, _FLOAT32_MAX),
    "min_p": (-_FLOAT32_MAX, _FLOAT32_MAX),
    "typical_p": (-_FLOAT32_MAX, _FLOAT32_MAX),
    "temperature": (-_FLOAT32_MAX, _FLOAT32_MAX),
    "repeat_penalty": (-_FLOAT32_MAX, _FLOAT32_MAX),
    "presence_penalty": (-_FLOAT32_MAX, _FLOAT32_MAX),
    "frequency_penalty": (-_FLOAT32_MAX, _FLOAT32_MAX),
}


class _Kind(enum.Enum):
    """The JSON type an option takes; the value is how error messages name it."""

    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    STRINGS = "string or array of strings"


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadOptions:
    """Options fixed when a model is loaded; a different value needs a reload.

    Hashable, so the scheduler can tell whether a loaded runner fits a request.
    ``num_ctx`` None means "the gateway's automatic default" (see
    ``effective_num_ctx``); ``use_mmap`` None lets llama.cpp decide; ``num_gpu`` -1
    offloads as many layers as fit; ``num_thread`` 0 picks a count automatically;
    ``num_parallel`` None takes the server's default number of slots.
    """

    num_ctx: int | None = None
    num_batch: int = 512
    num_gpu: int = -1
    main_gpu: int = 0
    use_mmap: bool | None = None
    num_thread: int = 0
    num_parallel: int | None = None
    """Requests one runner serves at once (its slots); None: the server's default."""

    def __post_init__(self) -> None:
        # Only what would break a load is refused: an odd but workable value is the
        # client's business, as it is with Ollama.
        _at_least("num_batch", self.num_batch, 1)
        _at_least("num_gpu", self.num_gpu, -1)
        _at_least("main_gpu", self.main_gpu, 0)
        _at_least("num_thread", self.num_thread, 0)
        if self.num_parallel is not None:
            _at_least("num_parallel", self.num_parallel, 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class SamplingOptions:
    """Options of one generation, with Ollama's defaults.

    ``seed`` -1 picks a random seed; ``num_predict`` -1 generates until a stop (the
    runner still bounds it by the context); ``stop`` strings end the output and are
    not part of it.
    """

    seed: int = -1
    num_predict: int = -1
    num_keep: int = 4
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_last_n: int = 64
    temperature: float = 0.8
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f'"{spec.name}" must be a finite number')
        if not all(isinstance(text, str) and text for text in self.stop):
            raise ValueError('"stop" must hold non-empty strings')
        # llama.cpp divides logits by the repeat penalty and reads the window size
        # as a count (-1: the whole context); anything else cannot be sampled with.
        _at_least("repeat_last_n", self.repeat_last_n, -1)
        if not self.repeat_penalty > 0:
            raise ValueError(
                f'"repeat_penalty" must be positive, not {self.repeat_penalty}'
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """Everything a request's options resolved to.

    ``ignored`` lists the keys no option is called, in the order first seen, so
    the caller can warn about them once.
    """

    load: LoadOptions = field(default_factory=LoadOptions)
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    ignored: tuple[str, ...] = ()

    @property
    def ignored_note(self) -> str | None:
        """The log line about ``ignored``, None if there are none. Client text, so
        bounded: a few names, each cut short, so that no request writes a long line
        into the server's log."""
        if not self.ignored:
            return None
        names = [_shortened(name) for name in sorted(self.ignored)[:_NOTED_NAMES]]
        more = len(self.ignored) - len(names)
        tail = f" and {more} more" if more else ""
        return "ignoring unknown options: " + ", ".join(names) + tail


def _at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ValueError(f'"{name}" must be at least {minimum}, not {value}')


_LOAD_KINDS: Mapping[str, _Kind] = {
    "num_ctx": _Kind.INTEGER,
    "num_batch": _Kind.INTEGER,
    "num_gpu": _Kind.INTEGER,
    "main_gpu": _Kind.INTEGER,
    "use_mmap": _Kind.BOOLEAN,
    "num_thread": _Kind.INTEGER,
    "num_parallel": _Kind.INTEGER,
}
_SAMPLING_KINDS: Mapping[str, _Kind] = {
    "seed": _Kind.INTEGER,
    "num_predict": _Kind.INTEGER,
    "num_keep": _Kind.INTEGER,
    "top_k": _Kind.INTEGER,
    "top_p": _Kind.NUMBER,
    "min_p": _Kind.NUMBER,
    "typical_p": _Kind.NUMBER,
    "repeat_last_n": _Kind.INTEGER,
    "temperature": _Kind.NUMBER,
    "repeat_penalty": _Kind.NUMBER,
    "presence_penalty": _Kind.NUMBER,
    "frequency_penalty": _Kind.NUMBER,
    "stop": _Kind.STRINGS,
}
# Options Ollama knows that the gateway has no use for yet (speculative decoding).
# They are checked like the others and then dropped, so they are never "unknown".
_UNUSED_KINDS: Mapping[str, _Kind] = {
    "draft_num_predict": _Kind.INTEGER,
}
_KINDS: Mapping[str, _Kind] = {**_LOAD_KINDS, **_SAMPLING_KINDS, **_UNUSED_KINDS}


def _wrong_type(noun: str, key: str, kind: _Kind) -> ClientError:
    return ClientError(
        400, f'{noun} "{key}" must be of type {kind.value}', param=f"{noun}s"
    )


def _out_of_range(noun: str, key: str) -> ClientError:
    return ClientError(400, f'{noun} "{key}" is out of range', param=f"{noun}s")


def _check_range(noun: str, key: str, value: float) -> None:
    bounds = _RANGES.get(key)
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        low, high = (f"{b:g}" if isinstance(b, float) else str(b) for b in bounds)
        raise ClientError(
            400,
            f'{noun} "{key}" must be between {low} and {high}, not {value:g}'
            if isinstance(value, float)
            else f'{noun} "{key}" must be between {low} and {high}, not {value}',
            param=f"{noun}s",
        )


@dataclass(slots=True)
class _Values:
    """Option values gathered from the layers, one dict per Python type.

    Typed dicts, rather than one dict of everything, let the option classes be
    built with every field's type checked statically.
    """

    integers: dict[str, int] = field(default_factory=dict)
    numbers: dict[str, float] = field(default_factory=dict)
    booleans: dict[str, bool] = field(default_factory=dict)
    strings: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def set(self, key: str, kind: _Kind, value: JsonValue, *, noun: str) -> None:
        """Store ``value`` as the type option ``key`` has, or raise ClientError(400).

        Integers take integral floats (``2048.0``: some JSON encoders write every
        number that way) but not ``1.5``, which Ollama would silently truncate. No
        option takes a boolean where a number is meant, though Python counts
        ``True`` as 1.
        """
        if kind is _Kind.BOOLEAN:
            if not isinstance(value, bool):
                raise _wrong_type(noun, key, kind)
            self.booleans[key] = value
        elif kind is _Kind.STRINGS:
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list):
                raise _wrong_type(noun, key, kind)
            texts = [item for item in items if isinstance(item, str)]
            if len(texts) != len(items):
                raise _wrong_type(noun, key, kind)
            # An empty stop string would end every output at once: "" means "none".
            self.strings[key] = tuple(text for text in texts if text)
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise _wrong_type(noun, key, kind)
        elif kind is _Kind.INTEGER:
            if isinstance(value, float) and not value.is_integer():
                raise _wrong_type(noun, key, kind)
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise _out_of_range(noun, key)
            _check_range(noun, key, int(value))
            self.integers[key] = int(value)
        else:
            if isinstance(value, int) and abs(value) > _INT64_MAX:
                raise _out_of_range(noun, key)  # float() of a huge int overflows
            if not math.isfinite(value):
                raise _out_of_range(noun, key)
            _check_range(noun, key, float(value))
            self.numbers[key] = float(value)

    def json_value(self, key: str) -> JsonValue:
        """The stored value of ``key`` as JSON (None if no layer set it)."""
        if key in self.strings:
            return list(self.strings[key])
        if key in self.booleans:
            return self.booleans[key]
        if key in self.numbers:
            return self.numbers[key]
        return self.integers.get(key)

    def options(self, ignored: tuple[str, ...], *, noun: str) -> Options:
        """The options these values make; ClientError(400) for an unusable value."""
        try:
            return Options(
                load=self._load_options(),
                sampling=self._sampling_options(),
                ignored=ignored,
            )
        except ValueError as exc:
            raise ClientError(400, f"{noun} {exc}", param=f"{noun}s") from None

    def _load_options(self) -> LoadOptions:
        given, default = self.integers, LoadOptions()
        return LoadOptions(
            num_ctx=given.get("num_ctx", default.num_ctx),
            num_batch=given.get("num_batch", default.num_batch),
            num_gpu=given.get("num_gpu", default.num_gpu),
            main_gpu=given.get("main_gpu", default.main_gpu),
            use_mmap=self.booleans.get("use_mmap", default.use_mmap),
            num_thread=given.get("num_thread", default.num_thread),
            num_parallel=given.get("num_parallel", default.num_parallel),
        )

    def _sampling_options(self) -> SamplingOptions:
        ints, numbers, default = self.integers, self.numbers, SamplingOptions()
        return SamplingOptions(
            seed=ints.get("seed", default.seed),
            num_predict=ints.get("num_predict", default.num_predict),
            num_keep=ints.get("num_keep", default.num_keep),
            top_k=ints.get("top_k", default.top_k),
            top_p=numbers.get("top_p", default.top_p),
            min_p=numbers.get("min_p", default.min_p),
            typical_p=numbers.get("typical_p", default.typical_p),
            repeat_last_n=ints.get("repeat_last_n", default.repeat_last_n),
            temperature=numbers.get("temperature", default.temperature),
            repeat_penalty=numbers.get("repeat_penalty", default.repeat_penalty),
            presence_penalty=numbers.get("presence_penalty", default.presence_penalty),
            frequency_penalty=numbers.get(
                "frequency_penalty", default.frequency_penalty
            ),
            stop=self.strings.get("stop", default.stop),
        )


def resolve_options(*layers: Mapping[str, JsonValue] | None) -> Options:
    """Apply option maps over the defaults, later layers winning.

    Pass the Modelfile parameters first, then the request's ``options``; None stands
    for a missing layer. A null value leaves the option as the layers below set it.

    Raises:
        ClientError: 400 for a known option with the wrong type or an unusable value,
            e.g. ``option "num_ctx" must be of type integer``.
    """
    return _resolve(layers, noun="option")


def _resolve(
    layers: tuple[Mapping[str, JsonValue] | None, ...], *, noun: str
) -> Options:
    values = _Values()
    ignored: dict[str, None] = {}  # an ordered set
    for layer in layers:
        for key, value in (layer or {}).items():
            kind = _KINDS.get(key)
            if kind is None:
                ignored[key] = None
            elif value is not None:
                values.set(key, kind, value, noun=noun)
    return values.options(tuple(ignored), noun=noun)


def validate_parameters(parameters: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    """Check the ``parameters`` of ``/api/create`` and return them normalized.

    Unlike request options, a model's stored parameters must all mean something:
    a typo here would be saved and silently ignored on every later request. Null
    values are dropped; ``stop`` becomes a list; numbers get their option's type.

    Raises:
        ClientError: 400, ``unknown parameter "x"`` or a type message.
    """
    values = _Values()
    for key, value in parameters.items():
        kind = _KINDS.get(key)
        if kind is None:
            raise ClientError(400, f'unknown parameter "{key}"', param="parameters")
        if value is not None:
            values.set(key, kind, value, noun="parameter")
    values.options((), noun="parameter")  # the range checks
    return {
        key: values.json_value(key)
        for key, value in parameters.items()
        if value is not None
    }


def parameter_from_text(key: str, text: str) -> JsonValue:
    """A Modelfile ``PARAMETER key text`` as the JSON value ``/api/create`` takes:
    a number, a boolean or a string, by the option's type (ranges are checked where
    the parameters are stored).

    Raises:
        ClientError: 400, an unknown parameter or a value of the wrong type.
    """
    kind = _KINDS.get(key)
    if kind is None:
        raise ClientError(400, f'unknown parameter "{key}"', param="parameters")
    if kind is _Kind.STRINGS:
        return text
    if kind is _Kind.BOOLEAN and text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        if kind is _Kind.INTEGER:
            return int(text)
        if kind is _Kind.NUMBER:
            return float(text)
    except ValueError:
        pass
    raise _wrong_type("parameter", key, kind)


def effective_num_ctx(load: LoadOptions, *, default: int, train: int) -> int:
    """The context size to load with (ollama-api.md §9.4).

    The requested size, else ``default``; never more than the model was trained
    for (``train``, when known: > 0), and never below 4 tokens, Ollama's floor.
    """
    size = default if load.num_ctx is None else load.num_ctx
    if train > 0:
        size = min(size, train)
    return max(size, _MIN_NUM_CTX)


def _go_value(value: JsonValue) -> str:
    """One value as Ollama's ``/api/show`` prints it (Go's ``%#v``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # Go prints integral floats without ".0", and uses an exponent only from
        # 1e21 on; Python's repr already agrees everywhere else.
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def parameters_text(parameters: Mapping[str, JsonValue]) -> str:
    """The ``parameters`` text of ``/api/show``: one ``key value`` line per value.

    Keys are padded to 30 columns; strings are quoted; a list gives one line per
    element under the same key (that is how several ``stop`` strings show), as in
    Ollama. Lines keep the mapping's order, so the output is deterministic.
    """
    lines: list[str] = []
    for key, value in parameters.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"{key:<30} {_go_value(item)}")
    return "\n".join(lines)
