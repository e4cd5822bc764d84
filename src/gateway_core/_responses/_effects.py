"""The work effects of stored responses: the adapter keeps the ``ResponseStore``
(one per server) and answers these from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ._store import StoredResponse

__all__ = [
    "DropResponse",
    "LoadResponse",
    "ResponseDropped",
    "ResponseLoaded",
    "SaveResponse",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseLoaded:
    """The stored response, or None when the id is unknown or was evicted."""

    stored: StoredResponse | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseDropped:
    found: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadResponse:
    answers: ClassVar[tuple[type, ...]] = (ResponseLoaded,)
    response_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SaveResponse:
    """Keep ``stored`` under ``response_id`` (answered by ``ResponseDropped``:
    ``found`` False when it was too big to keep)."""

    answers: ClassVar[tuple[type, ...]] = (ResponseDropped,)
    response_id: str
    stored: StoredResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class DropResponse:
    answers: ClassVar[tuple[type, ...]] = (ResponseDropped,)
    response_id: str
