"""Version numbers.

Two numbers, on purpose: ``__version__`` is this package's own release, and
``OLLAMA_API_VERSION`` is the Ollama release whose API we speak. ``GET /api/version``
reports the latter by default, because clients compare it against the Ollama release
that introduced a feature (structured outputs, tool streaming, ``think``) and would
switch those features off if they saw our own, much smaller, number.
"""

from __future__ import annotations

__all__ = ["OLLAMA_API_VERSION", "__version__"]

__version__ = "0.1.0"

OLLAMA_API_VERSION = "0.33.0"
