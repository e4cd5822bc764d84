"""The three API dialects: pure translators between wire formats and the core.

Each module knows only its own API and exports one ``DIALECT`` value. Today a dialect is
its error envelope and stream framing; request and response translation join it as the
endpoints land.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .._routes import Dialect
from ._anthropic import DIALECT as ANTHROPIC
from ._common import DialectSpec, ErrorInfo
from ._ollama import DIALECT as OLLAMA
from ._openai import DIALECT as OPENAI
from ._openai import RESPONSES_DIALECT as OPENAI_RESPONSES

__all__ = ["DIALECTS", "DialectSpec", "ErrorInfo"]

DIALECTS: Mapping[Dialect, DialectSpec] = MappingProxyType(
    {spec.dialect: spec for spec in (OLLAMA, OPENAI, OPENAI_RESPONSES, ANTHROPIC)}
)
