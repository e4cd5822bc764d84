"""Constraints compiled for one model's vocabulary, cached, and started per request.

``Compiler.compile(constraint)`` turns a ``GenerationConstraint`` (a JSON schema, or
tool calls in free text) into a ``Compiled`` grammar: an llguidance matcher at the
start of the output, kept pristine in an LRU cache; ``Compiled.start()`` copies it
for one generation (``ConstraintState``). Compiling is CPU work of milliseconds, for
a worker thread (llguidance lets go of the interpreter lock meanwhile), never the
engine's: the engine only computes masks and advances states.

Never a silent fallback: a grammar llguidance refuses raises ``UnsupportedConstraint``
with its message; the first mask is computed here too, so a grammar that cannot even
start fails the request before it takes a slot.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import replace
from typing import Final, Generic, TypeVar

import llguidance
import numpy as np
import numpy.typing as npt

from ..values import GenerationConstraint
from .call_forms import call_forms_grammar
from .tool_grammar import tool_call_grammar
from .vocabulary import Vocabulary

__all__ = [
    "Compiled",
    "Compiler",
    "ConstraintFailed",
    "ConstraintState",
    "UnsupportedConstraint",
]

CACHE_SIZE: Final = 64
"""Compiled grammars kept per model, least recently used dropped first."""

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class UnsupportedConstraint(ValueError):
    """llguidance cannot compile the constraint; the message says why (a 400)."""


class ConstraintFailed(Exception):
    """Constrained generation cannot go on: no token is allowed, a sampled token is
    not allowed, or the matcher failed. Raised instead of going on unconstrained."""


class ConstraintState:
    """Where one generation is in its grammar; used by one thread at a time.

    ``mask()`` fills and returns the allowed-token bitmask (bit ``i % 32`` of word
    ``i // 32`` for token ``i``); ``accept(token)`` advances past a sampled token.
    """

    def __init__(self, matcher: llguidance.LLMatcher, vocabulary: Vocabulary) -> None:
        self._matcher = matcher
        self.vocabulary = vocabulary
        self._words: npt.NDArray[np.int32] = np.zeros(
            (vocabulary.size + 31) // 32, dtype=np.int32
        )

    def mask(self) -> npt.NDArray[np.int32]:
        words = self._words
        self._matcher.unsafe_compute_mask_ptr(words.ctypes.data, words.nbytes)
        self._check()
        return words

    @property
    def stopped(self) -> bool:
        """Nothing may follow but the end: the output is complete."""
        return self._matcher.is_stopped()

    @property
    def accepting(self) -> bool:
        """The output may end here."""
        return self._matcher.is_accepting()

    def accept(self, token: int) -> None:
        if not self._matcher.consume_token(token):
            raise ConstraintFailed(
                f"token {token} was not allowed: {self._matcher.get_error()}"
            )

    def _check(self) -> None:
        if self._matcher.is_error():
            raise ConstraintFailed(
                f"the constraint failed: {self._matcher.get_error()}"
            )


class Compiled:
    """A grammar compiled for one vocabulary; immutable and shared."""

    def __init__(
        self, matcher: llguidance.LLMatcher, vocabulary: Vocabulary, seconds: float
    ) -> None:
        self._matcher = matcher
        self._vocabulary = vocabulary
        self.compile_seconds = seconds

    def start(self) -> ConstraintState:
        """A fresh state at the start of the output."""
        return ConstraintState(self._matcher.deep_copy(), self._vocabulary)


class _Lru(OrderedDict[_K, _V], Generic[_K, _V]):
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


class Compiler:
    """Compiles and caches constraints for one model; safe from several threads.

    ``vocabulary`` builds the model's llguidance vocabulary, on first use (it takes
    about a second on a large vocabulary); ``special_token`` tells whether a text
    is one control token of the model (for tool-call markers such as Mistral's
    ``[TOOL_CALLS]``), and which.
    """

    def __init__(
        self,
        vocabulary: Callable[[], Vocabulary],
        *,
        special_token: Callable[[str], int | None],
        cache_size: int = CACHE_SIZE,
        limits: llguidance.LLParserLimits | None = None,
    ) -> None:
        self._make_vocabulary = vocabulary
        self._special_token = special_token
        self._limits = limits
        self._vocabulary: Vocabulary | None = None
        self._lock = threading.Lock()
        self._compiling: dict[Hashable, threading.Lock] = {}
        self._cache: _Lru[Hashable, Compiled] = _Lru(cache_size)
        self.compile_count = 0
        """Grammars compiled (not found in the cache) so far, for tests."""

    def vocabulary(self) -> Vocabulary:
        with self._lock:
            if self._vocabulary is None:
                self._vocabulary = self._make_vocabulary()
            return self._vocabulary

    def cached(self, constraint: GenerationConstraint) -> Compiled | None:
        """The compiled constraint if it is in the cache; never compiles."""
        with self._lock:
            return self._cache.get_recent(constraint)

    def compile(self, constraint: GenerationConstraint) -> Compiled:
        """Blocking: the compiled constraint, from the cache or compiled now (once,
        even when several threads ask at the same time). Raises
        UnsupportedConstraint."""
        with self._lock:
            found = self._cache.get_recent(constraint)
            if found is not None:
                return found
            lock = self._compiling.setdefault(constraint, threading.Lock())
        with lock:
            with self._lock:
                found = self._cache.get_recent(constraint)
            if found is not None:
                return found
            try:
                compiled = self._compile(constraint)
            finally:
                with self._lock:
                    self._compiling.pop(constraint, None)
            with self._lock:
                self._cache.put(constraint, compiled)
                self.compile_count += 1
            return compiled

    def _compile(self, constraint: GenerationConstraint) -> Compiled:
        started = time.perf_counter()
        grammar = self._grammar(constraint)
        vocabulary = self.vocabulary()
        matcher = llguidance.LLMatcher(
            vocabulary.tokenizer, grammar, log_level=0, limits=self._limits
        )
        if matcher.is_error():
            raise UnsupportedConstraint(_reason(matcher.get_error()))
        # The first mask builds the lexer's start states: done here, in the
        # compiling thread, and not in the engine's first step.
        state = ConstraintState(matcher.deep_copy(), vocabulary)
        try:
            state.mask()
        except ConstraintFailed as exc:
            raise UnsupportedConstraint(_reason(str(exc))) from None
        return Compiled(matcher, vocabulary, time.perf_counter() - started)

    def _grammar(self, constraint: GenerationConstraint) -> str:
        # The schema half lives beside the runner: what the core accepts and how
        # llguidance is asked to compile it are decided together.
        from ..grammars import bounded_schema, json_grammar

        if constraint.call_forms is not None:
            try:
                return call_forms_grammar(
                    json.loads(constraint.call_forms),
                    special=self._special_token,
                    bound=bounded_schema,
                )
            except ValueError as exc:
                raise UnsupportedConstraint(
                    f"the call forms are invalid: {exc}"
                ) from None
        if constraint.tool_calls is not None:
            trigger = constraint.tool_calls
            # Arguments are bounded as answers are: a number past a double (1e400)
            # would make the parser refuse the call.
            call = bounded_schema(json.loads(trigger.call_schema))
            bounded = replace(trigger, call_schema=json.dumps(call))
            return tool_call_grammar(bounded, special=self._special_token)
        assert constraint.json_schema is not None

        schema = constraint.json_schema
        return json_grammar("json" if schema == "json" else json.loads(schema))


def _reason(error: str) -> str:
    # llguidance's messages can be long (a grammar dump); the first line says it.
    first = error.strip().splitlines()[0] if error.strip() else "unknown error"
    return f"the constraint cannot be compiled: {first}"
