"""What one render of a chat template may cost: steps, and characters.

Chat templates are programs, and the ones clients send (the ``template`` field of
``/api/generate``, or one stored with ``/api/create``) are untrusted programs that
the core runs on the event loop. This module meters a render, so that a hostile
template ends (``OverBudget``) after a bounded amount of work and memory.

Steps. A render may take ``MAX_STEPS`` steps; a step is about what an empty loop
iteration costs (45-60 ns on the development machine). Jinja's sandbox sees calls
and some operators; the rest runs as compiled Python, so ``instrument`` rewrites the
syntax tree before it is compiled:

- every loop iteration, over anything (a list, a string, ``range``,
  ``dict.items()``, a recursive loop's ``loop(children)``), is charged by the
  iterator that feeds the loop: a step, plus the weight of the loop's body, that is
  what its nodes cost; an ``if`` branch or an operand of ``and``, ``or`` or
  ``... if ... else ...`` that weighs much is charged only when it runs, and a macro,
  call block or block each time it runs;
- every call (method, global, macro), filter, test and operator, and every attribute
  read that misses the fast paths, is charged when it happens, by what that kind of
  operation costs, plus a step for every ``CHARS_PER_STEP`` characters it reads or
  builds (a list or dict item counts ``CHARS_PER_ITEM``);
- comparisons, ``~``, slices, subscripts and dictionary keys are charged for the
  sizes of the values they work on, unless a side is written in the template.

A value the template only passes around costs nothing more: printing
``message.content`` is a few steps however long the content is, plus its length.

Characters. No value a render builds may be longer than ``MAX_CHARS`` characters
(``MAX_CHARS // CHARS_PER_ITEM`` items for a list or dict), and a render writes at
most ``MAX_CHARS``. Where a result's size follows from the arguments (padding and
format widths, ``%``, ``join``, ``replace``, ``expandtabs``, ``translate``,
``indent``, ``center``, ``wordwrap``, ``tojson``'s indent, ``batch``, ``slice``,
``sum``, ``list``, anything a call prints), it is refused before it is allocated;
any other result is checked as soon as it exists, so a transient value is at most a
small multiple of ``MAX_CHARS`` (an escaping filter writes at most 12 characters
for one).

Measured on the development machine (2 shared vCPUs, CPython 3.11), in CPU time,
median of 7 runs (the wall clock adds whatever else the machine runs: about twice
as much while it was busy): a render over budget stops after 13-22 ms whatever the
template does (nested loops over ``range``, strings or lists 13-18 ms; loops of
calls, filters, tests or attribute reads 15-22 ms; macros calling themselves twice
17 ms; nested shared lists or tuples 20 ms); a macro recursing without end stops at
Python's recursion limit after 5 ms; padding, format and other size bombs are
refused before they allocate, in under 1 ms. The Qwen3 chat template with tools
takes 226 steps a message (so 1,000 messages take 75% of the budget, 13 ms) and a
Llama 3.1-style one 105.
"""

from __future__ import annotations

from ._budget import Budget, budget_of
from ._costs import (
    BUDGET_KEY,
    CHARS_PER_ITEM,
    CHARS_PER_STEP,
    MAX_CHARS,
    MAX_STEPS,
    OverBudget,
    TemplateContext,
)
from ._filters import install, joined
from ._tree import Program, instrument

__all__ = [
    "BUDGET_KEY",
    "CHARS_PER_ITEM",
    "CHARS_PER_STEP",
    "MAX_CHARS",
    "MAX_STEPS",
    "Budget",
    "OverBudget",
    "Program",
    "TemplateContext",
    "budget_of",
    "install",
    "instrument",
    "joined",
]
