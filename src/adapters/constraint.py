"""Structured output: ``format`` compiled into a token automaton for one model.

``compile_constraint(runner, format)`` turns ``"json"`` (any JSON object) or a JSON
schema into a ``Constraint`` with outlines (``outlines_core``): the schema becomes a
regular expression, and the expression, over the model's vocabulary, an index
saying which tokens may follow each automaton state. ``LlamaRunner.generate``
samples only among those tokens (see ``llama_runner``); ``Constraint.start()``
gives each generation its own ``ConstraintState``.

The vocabulary is the model's tokens as generation yields them, as exact bytes
(``LlamaRunner.token_table``), so a token holding half a UTF-8 character is
matched byte by byte. Control, unknown and unused tokens never appear in the
output; end-of-generation tokens are allowed only where the automaton may end.
User-defined tokens (``<think>``, ``<tool_call>``) are text and stay in.

Never a silent fallback: a regular expression cannot express every JSON schema,
and outlines ignores some keywords rather than refuse them. Before compiling,
every keyword that the schema's own jsonschema validator enforces is checked
against what outlines really enforces in that position; anything else raises
``UnsupportedSchema`` naming the keyword and where it is. The regular expression
is stricter than the schema in places (properties come in the declared order and
no undeclared ones; whitespace is one optional space; free-form objects and
arrays, ``"json"`` among them, nest ``FREE_DEPTH`` levels at most), which only
ever narrows valid output.

Compiling is CPU work of milliseconds on the demo model and up to seconds on a
real vocabulary, for a worker thread; compiled constraints are cached per
model file and format (files in the store are content-addressed, so a path names
one vocabulary), and so is each model's outlines vocabulary.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Final, NoReturn, Protocol, TypeVar

import jsonschema
import jsonschema.exceptions
import jsonschema.protocols
import jsonschema.validators
import llama_cpp
import numpy as np
import numpy.typing as npt
import outlines_core  # type: ignore[import-untyped]
import outlines_core.json_schema  # type: ignore[import-untyped]

from gateway_core._json import JsonValue

from .llama_runner import ConstraintFailed, LlamaRunner, TokenTable

__all__ = [
    "Constraint",
    "ConstraintFailed",
    "ConstraintState",
    "UnsupportedSchema",
    "clear_cache",
    "compile_constraint",
]

CACHE_SIZE: Final = 64
"""Compiled constraints kept, least recently used dropped first."""
VOCABULARY_CACHE_SIZE: Final = 4

FREE_DEPTH: Final = 1
"""How deep a free-form object or array (``"json"``, or a schema's object without
properties, array without items) may nest: its values may be objects or arrays
of scalars (outlines' ``depth`` keyword, which jsonschema ignores). Compile
time grows steeply with it: on the demo model's 265 tokens a free object takes
0.2 s at depth 1, 9 s at outlines' default of 2."""
# Ollama's "json" is some JSON object.
_ANY_OBJECT: Final[JsonValue] = {"type": "object"}
_NOT_TEXT: Final = (
    llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
    | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
    | llama_cpp.LLAMA_TOKEN_ATTR_UNUSED
)
# Keywords outlines reads first decide what the rest of a schema object means
# (outlines' own dispatch order); the others next to them are not looked at.
_DISPATCH: Final = (
    "properties",
    "allOf",
    "anyOf",
    "oneOf",
    "prefixItems",
    "enum",
    "const",
    "$ref",
    "type",
)
_ENFORCED_BY_TYPE: Final[Mapping[str, frozenset[str]]] = {
    "string": frozenset({"minLength", "maxLength", "pattern", "format"}),
    "integer": frozenset(),
    "number": frozenset(),
    "boolean": frozenset(),
    "null": frozenset(),
    "array": frozenset({"items", "minItems", "maxItems"}),
    "object": frozenset({"minProperties", "maxProperties", "additionalProperties"}),
}
_MAX_REF_DEPTH: Final = 3
# outlines reads these only when they are whole numbers (2.0 would be ignored).
_COUNTS: Final = (
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
)
# The escapes a pattern may use: none matches a quote, a backslash or a control
# character, which would end or break the JSON string.
_PATTERN_ESCAPES: Final = frozenset("dw.-+*?()[]{}|^$/")
_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class _Guide(Protocol):
    """The parts of ``outlines_core.Guide`` used here (the package has no types)."""

    def write_mask_into(self, data_ptr: int, numel: int, element_size: int) -> None: ...

    def is_finished(self) -> bool: ...

    def advance(self, token_id: int, return_tokens: bool) -> object: ...


class UnsupportedSchema(ValueError):
    """The format is not a schema the constraint engine can enforce.

    The message names the keyword and its place in the schema (a JSON pointer),
    or says why the schema is not valid; the gateway answers 400 with it.
    """


class Constraint:
    """A format compiled for one model's vocabulary; immutable and shared.

    ``start()`` makes the per-generation state. ``compile_seconds`` is how long
    building its index took, kept with the cached result.
    """

    def __init__(
        self,
        *,
        format: JsonValue,
        model_file: str,
        n_vocab: int,
        index: object,
        eos: int,
        eog: npt.NDArray[np.int32],
        compile_seconds: float,
    ) -> None:
        self.format = format
        self.model_file = model_file
        self.n_vocab = n_vocab
        self._index = index
        self._eos = eos
        self._eog = eog
        self.compile_seconds = compile_seconds

    def fits(self, runner: LlamaRunner) -> bool:
        """Whether this was compiled for ``runner``'s vocabulary."""
        return (runner.model_file, runner.n_vocab) == (self.model_file, self.n_vocab)

    def start(self) -> ConstraintState:
        """A fresh state at the start of the output."""
        return ConstraintState(
            outlines_core.Guide(self._index),
            n_vocab=self.n_vocab,
            eos=self._eos,
            eog=self._eog,
        )


class ConstraintState:
    """Where one generation is in the automaton; used from one thread at a time."""

    def __init__(
        self,
        guide: _Guide,
        *,
        n_vocab: int,
        eos: int,
        eog: npt.NDArray[np.int32],
    ) -> None:
        self._guide = guide
        self._n_vocab = n_vocab
        self._eos = eos
        self._eog = eog
        # One bit per token id, the end-of-sequence stand-in included.
        self._mask = np.zeros((max(n_vocab, eos + 1) + 31) // 32, dtype=np.int32)
        self._allowed: npt.NDArray[np.int32] | None = None
        self._text_allowed = False

    def allowed_tokens(self) -> npt.NDArray[np.int32]:
        """Token ids that may come next, sorted: text tokens the automaton takes
        and, once the output may end, the end-of-generation tokens."""
        if self._allowed is None:
            guide = self._guide
            mask = self._mask
            guide.write_mask_into(mask.ctypes.data, mask.size, mask.itemsize)
            # Token i is bit i % 32 of word i // 32, read least significant first.
            words = mask.astype("<i4", copy=False)
            bits = np.unpackbits(words.view(np.uint8), bitorder="little")
            ends = bool(bits[self._eos])
            bits[self._eos] = 0
            text = np.flatnonzero(bits[: self._n_vocab]).astype(np.int32)
            self._text_allowed = len(text) > 0
            self._allowed = np.union1d(text, self._eog) if ends else text
        return self._allowed

    def is_final(self) -> bool:
        """Whether the output so far is complete: it may end here."""
        return self._guide.is_finished()

    def is_complete(self) -> bool:
        """Whether the output is complete and no text token may follow."""
        self.allowed_tokens()
        return self.is_final() and not self._text_allowed

    def advance(self, token: int) -> None:
        """Take ``token`` (a text token); ConstraintFailed if it is not allowed."""
        try:
            self._guide.advance(token, return_tokens=False)
        except ValueError as error:
            raise ConstraintFailed(f"token {token} is not allowed here") from error
        self._allowed = None


class _Lru(OrderedDict[_K, _V]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_recent(self, key: _K) -> _V | None:
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def put(self, key: _K, value: _V) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


# Cache lookups take _cache_lock only briefly (the event loop does them);
# compiling takes the lock of its key, so that the same format is compiled once
# while others compile alongside.
_cache_lock = threading.Lock()
_compiling: dict[tuple[str, int, str], threading.Lock] = {}
_constraints: _Lru[tuple[str, int, str], Constraint] = _Lru(CACHE_SIZE)
_vocabularies: _Lru[tuple[str, int], tuple[object, int]] = _Lru(VOCABULARY_CACHE_SIZE)
compile_count = 0
"""Compilations done since start (or ``clear_cache``), for tests of the cache."""


def compile_constraint(runner: LlamaRunner, format: JsonValue) -> Constraint:
    """``format`` ("json" or a JSON schema object) as a constraint for ``runner``.

    Blocking, for a worker thread (``anyio.to_thread.run_sync``), with the runner
    held: compiling takes from milliseconds to seconds. Cached: a format already
    compiled for this model file comes back at once, and one being compiled by
    another thread is waited for, not compiled twice. Raises UnsupportedSchema
    for a schema that cannot be enforced (or is not a valid schema), TypeError
    for a format that is neither "json" nor an object.
    """
    key = (runner.model_file, runner.n_vocab, _format_key(format))
    with _cache_lock:
        cached = _constraints.get_recent(key)
    if cached is not None:
        return cached
    schema = _checked_schema(format)  # before reading the vocabulary
    return _compile(key, format, schema, runner.token_table())


def clear_cache() -> None:
    """Forget every compiled constraint and vocabulary."""
    global compile_count
    with _cache_lock:
        _constraints.clear()
        _vocabularies.clear()
        compile_count = 0


def _format_key(format: JsonValue) -> str:
    if format == "json":
        return "json"
    if not isinstance(format, dict):
        raise TypeError(f'format must be "json" or a JSON schema object: {format!r}')
    # Key order kept: outlines writes properties in the order they are declared.
    return json.dumps(format, separators=(",", ":"))


def _compile(
    key: tuple[str, int, str], format: JsonValue, schema: str, table: TokenTable
) -> Constraint:
    """Build the index, unless another thread just did."""
    global compile_count
    with _cache_lock:
        lock = _compiling.setdefault(key, threading.Lock())
    with lock:
        with _cache_lock:
            cached = _constraints.get_recent(key)
        if cached is not None:
            return cached
        started = time.perf_counter()
        vocabulary, eos = _vocabulary(key[0], table)
        try:
            regex = outlines_core.json_schema.build_regex_from_schema(schema)
            index = outlines_core.Index(regex, vocabulary)
        except ValueError as error:
            with _cache_lock:
                _compiling.pop(key, None)
            raise UnsupportedSchema(
                f"the schema cannot be compiled for constrained decoding: {error}"
            ) from error
        constraint = Constraint(
            format=format,
            model_file=key[0],
            n_vocab=len(table.pieces),
            index=index,
            eos=eos,
            eog=np.array(sorted(table.eog), dtype=np.int32),
            compile_seconds=time.perf_counter() - started,
        )
        with _cache_lock:
            compile_count += 1
            _constraints.put(key, constraint)
            _compiling.pop(key, None)
        return constraint


def _vocabulary(model_file: str, table: TokenTable) -> tuple[object, int]:
    """outlines' vocabulary for a model (cached) and the id it treats as EOS.

    outlines needs one end-of-sequence id outside the token map: the model's EOS,
    else another end-of-generation token, else ``n_vocab`` as a stand-in that no
    sampler can pick (the state then knows the output may end, and with no end
    token in the model, a complete output with nothing to follow just stops).
    """
    key = (model_file, len(table.pieces))
    with _cache_lock:
        cached = _vocabularies.get_recent(key)
    if cached is not None:
        return cached
    tokens: dict[bytes, list[int]] = {}
    for token, (piece, attributes) in enumerate(
        zip(table.pieces, table.attributes, strict=True)
    ):
        if piece and not attributes & _NOT_TEXT and token not in table.eog:
            tokens.setdefault(piece, []).append(token)
    eos = table.eos if table.eos is not None else min(table.eog, default=None)
    if eos is None:
        eos = len(table.pieces)
    result = (outlines_core.Vocabulary(eos, tokens), eos)
    with _cache_lock:
        _vocabularies.put(key, result)
    return result


def _checked_schema(format: JsonValue) -> str:
    """``format`` as the schema text outlines compiles, free-form containers
    bounded to ``FREE_DEPTH``; UnsupportedSchema when the schema is invalid or
    has a feature the regular expression would drop."""
    source = _ANY_OBJECT if _format_key(format) == "json" else format
    # A copy, to bound in place.
    schema: dict[str, JsonValue] = json.loads(json.dumps(source))
    validator = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft202012Validator
    )
    try:
        validator.check_schema(schema)
    except jsonschema.exceptions.SchemaError as error:
        raise UnsupportedSchema(f"invalid JSON schema: {error.message}") from error
    _Checker(schema, validator).check(schema, "", ())
    return json.dumps(schema)


class _Checker:
    """Walks a schema the way outlines reads it and refuses what it would drop.

    The keywords that matter are those in the table of the schema's own
    jsonschema validator: the others (annotations, unknown extensions) do not
    decide validity, so outlines may ignore them; the ones in it must be
    enforced wherever they appear.
    """

    def __init__(
        self,
        root: Mapping[str, JsonValue],
        validator: type[jsonschema.protocols.Validator],
    ) -> None:
        self.root = root
        self.validator = validator
        self.enforced = frozenset(validator.VALIDATORS)

    def check(self, schema: JsonValue, where: str, refs: tuple[str, ...]) -> None:
        """Refuse what outlines would drop; bound free-form containers in place."""
        if not isinstance(schema, dict) or not schema:
            return  # outlines refuses a boolean schema itself; {} is any value
        head = next((key for key in _DISPATCH if key in schema), None)
        allowed: set[str] = {head} if head is not None else set()
        if head == "properties":
            allowed |= {"required", "type", "additionalProperties"}
            self._expect_type(schema, "object", where)
            self._check_properties(schema, where, refs)
        elif head in ("allOf", "oneOf", "anyOf"):
            branches = schema[head]
            if head != "anyOf" and isinstance(branches, list) and len(branches) > 1:
                what = "all of" if head == "allOf" else "exactly one of"
                _refuse(head, where, f"{what} several schemas")
            self._check_each(branches, f"{where}/{head}", refs)
        elif head == "prefixItems":
            allowed |= {"type", "items"}
            self._expect_type(schema, "array", where)
            self._check_each(schema["prefixItems"], f"{where}/prefixItems", refs)
        elif head in ("enum", "const"):
            allowed.add("type")
            self._check_values(schema, head, where)
        elif head == "$ref":
            self._check_ref(schema["$ref"], where, refs)
        elif head == "type":
            types = schema["type"]
            names = set(types) if isinstance(types, list) else {types}
            for name in names:
                if isinstance(name, str):
                    allowed |= _ENFORCED_BY_TYPE.get(name, frozenset())
            free_object = schema.get("additionalProperties", True) is True
            if ("object" in names and free_object) or (
                "array" in names and "items" not in schema
            ):
                depth = schema.get("depth")
                schema["depth"] = (
                    min(FREE_DEPTH, depth) if type(depth) is int else FREE_DEPTH
                )
            self._check_typed(schema, where, refs)
        ignored = sorted(key for key in schema if key in self.enforced - allowed)
        if ignored:
            context = f"next to {head}" if head is not None else "without a type"
            _refuse(ignored[0], where, context)

    def _check_each(
        self, schemas: JsonValue, where: str, refs: tuple[str, ...]
    ) -> None:
        if isinstance(schemas, list):
            for position, schema in enumerate(schemas):
                self.check(schema, f"{where}/{position}", refs)

    def _expect_type(
        self, schema: Mapping[str, JsonValue], name: str, where: str
    ) -> None:
        types = schema.get("type", name)
        if name != types and not (isinstance(types, list) and name in types):
            _refuse("type", where, f"a type other than {name} next to its keywords")

    def _check_properties(
        self, schema: Mapping[str, JsonValue], where: str, refs: tuple[str, ...]
    ) -> None:
        properties = schema["properties"]
        if not isinstance(properties, dict):
            return
        required = schema.get("required", [])
        for name in required if isinstance(required, list) else []:
            if name not in properties:
                _refuse("required", where, f"{name!r}, not in properties,")
        for name, value in properties.items():
            self.check(value, f"{where}/properties/{_escape(name)}", refs)

    def _check_values(
        self, schema: Mapping[str, JsonValue], head: str, where: str
    ) -> None:
        """outlines writes the values out as they are, whatever ``type`` says."""
        if "type" not in schema:
            return
        values = schema[head] if head == "enum" else [schema[head]]
        typed = self.validator({"type": schema["type"]})
        for value in values if isinstance(values, list) else []:
            if not typed.is_valid(value):
                _refuse("type", where, f"{head} value {value!r} of another type")

    def _check_typed(
        self, schema: Mapping[str, JsonValue], where: str, refs: tuple[str, ...]
    ) -> None:
        # outlines takes the lengths, else the pattern, else the format.
        kinds = [k for k in ("minLength", "maxLength") if k in schema][:1]
        kinds += [k for k in ("pattern", "format") if k in schema]
        if len(kinds) > 1:
            _refuse(kinds[1], where, f"together with {kinds[0]}")
        for keyword in _COUNTS:
            value = schema.get(keyword)
            if keyword in schema and (type(value) is not int):
                _refuse(keyword, where, f"a count that is not an integer ({value!r})")
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            _check_pattern(pattern, f"{where}/pattern")
        for keyword in ("items", "additionalProperties"):
            if keyword in schema:
                self.check(schema[keyword], f"{where}/{keyword}", refs)

    def _check_ref(self, ref: JsonValue, where: str, refs: tuple[str, ...]) -> None:
        if not isinstance(ref, str):
            return
        if ref in refs:
            _refuse("$ref", where, f"a recursive reference ({ref})")
        if len(refs) >= _MAX_REF_DEPTH:
            _refuse("$ref", where, f"references nested over {_MAX_REF_DEPTH} deep")
        if not ref.startswith("#") or "~" in ref or "%" in ref:
            _refuse("$ref", where, f"a reference that is not a local path ({ref})")
        target: JsonValue = dict(self.root)
        for part in filter(None, ref[1:].split("/")):
            if not isinstance(target, dict) or part not in target:
                raise UnsupportedSchema(f"$ref at {where or '/'}: {ref} not found")
            target = target[part]
        self.check(target, ref[1:], (*refs, ref))


def _check_pattern(pattern: str, where: str) -> None:
    """Refuse a pattern that could match a quote, a backslash or a control
    character: outlines puts it between quotes as it is, so such a match would
    end or break the JSON string. Conservative on purpose."""
    # outlines drops a leading ^ and a trailing $ together, and only then.
    anchored = pattern.startswith("^"), pattern.endswith("$")
    if anchored[0] != anchored[1] or pattern.endswith("\\$"):
        _refuse_pattern(pattern, where, "an anchor at one end only")
    body = pattern[1:-1] if anchored[0] else pattern
    in_class = False
    previous = ""
    position = 0
    while position < len(body):
        char = body[position]
        if char == "\\":
            escaped = body[position + 1 : position + 2]
            if escaped not in _PATTERN_ESCAPES:
                _refuse_pattern(pattern, where, f"the escape \\{escaped}")
            previous = escaped if escaped in "-." else ""
            position += 2
            continue
        if ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F or char == '"':
            _refuse_pattern(pattern, where, f"the character {char!r}")
        if in_class:
            if char == "[":
                _refuse_pattern(pattern, where, "a class inside a class")
            if char == "]":
                in_class = False
            elif (
                char == "-"
                and previous
                and body[position + 1 : position + 2] not in ("", "]")
            ):
                end = body[position + 1]
                if not _same_run(previous, end):
                    _refuse_pattern(pattern, where, f"the range {previous}-{end}")
            previous = char
        elif char == "[":
            if body[position + 1 : position + 2] == "^":
                _refuse_pattern(pattern, where, "a negated class")
            in_class = True
            previous = ""
        elif char == ".":
            _refuse_pattern(pattern, where, "'.'")
        elif char in "^$":
            _refuse_pattern(pattern, where, "an anchor inside")
        elif (
            char == "("
            and body[position + 1 : position + 2] == "?"
            and (body[position + 2 : position + 3] != ":")
        ):
            _refuse_pattern(pattern, where, "a group flag or lookaround")
        position += 1


def _same_run(start: str, end: str) -> bool:
    return any(
        start <= end and first <= start and end <= last
        for first, last in (("0", "9"), ("a", "z"), ("A", "Z"))
    )


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _refuse(keyword: str, where: str, context: str) -> NoReturn:
    raise UnsupportedSchema(
        f'"{keyword}" at {where or "/"} ({context}) cannot be enforced by'
        " constrained decoding"
    )


def _refuse_pattern(pattern: str, where: str, what: str) -> NoReturn:
    raise UnsupportedSchema(
        f"pattern at {where}: {pattern!r} uses {what}, which could break the JSON"
        " string; constrained decoding cannot enforce it"
    )
