"""Effects: what the core asks the adapter to do.

The adapter pulls them one at a time from ``Exchange.next_effect()``. Response effects
map one-to-one onto h11's ``Response``, ``Data`` and ``EndOfMessage``; any HTTP
server (ASGI, asyncio streams, blocking sockets) can carry them just as well. Work
effects (``_work.py``) ask the model store and the runner for something and are
answered through ``Exchange.receive_result()``.

All values are frozen, slotted and keyword-only, and check themselves on construction,
so that an invalid effect cannot exist. Don't subclass them.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import TypeAlias

from ._work import WorkEffect

__all__ = [
    "Effect",
    "EndResponse",
    "ResponseEffect",
    "SendBody",
    "StartResponse",
    "Wait",
]

_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")


class Wait(enum.Enum):
    """What ``next_effect()`` returns when it has no effect to give.

    - ``NEED_BODY``: feed more body (``receive_body``) or its end (``end_body``).
    - ``NEED_RESULT``: a work effect is outstanding; feed its next result.
    - ``FINISHED``: the exchange is over (answered, or aborted); nothing more will come.
    """

    NEED_BODY = "need-body"
    NEED_RESULT = "need-result"
    FINISHED = "finished"


@dataclass(frozen=True, slots=True, kw_only=True)
class StartResponse:
    """Send the response status line and headers. Always the first response effect.

    Header names are lower-case. ``content-length`` is present when the body size is
    known up front; without it the adapter streams the body (chunked on HTTP/1.1).
    """

    status: int
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        # 1xx responses are the HTTP layer's business (100-continue), not the core's.
        if not 200 <= self.status <= 599:
            raise ValueError(f"response status must be 200-599, not {self.status}")
        for name, value in self.headers:
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"header names must be lower-case tokens: {name!r}")
            if any(ch in value for ch in "\r\n\x00"):
                raise ValueError(f"invalid value for header {name!r}")

    def header(self, name: str) -> str | None:
        """The value of the first header called ``name``, or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class SendBody:
    """Send these bytes of the response body. Never empty."""

    data: bytes

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError("SendBody needs at least one byte")


@dataclass(frozen=True, slots=True, kw_only=True)
class EndResponse:
    """The response is complete. Always the last effect of an exchange."""


ResponseEffect: TypeAlias = StartResponse | SendBody | EndResponse
Effect: TypeAlias = ResponseEffect | WorkEffect
