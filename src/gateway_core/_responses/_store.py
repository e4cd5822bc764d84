"""Stored responses: a bounded, least-recently-used map from response ids to what
``GET /v1/responses/{id}`` returns and what ``previous_response_id`` continues.

Pure data: the adapter holds one per server and answers the core's
``LoadResponse``, ``SaveResponse`` and ``DropResponse`` effects from it. It is
bounded twice, by count and by bytes (each entry's size is the length of its JSON),
so a client that stores long conversations cannot grow the server without limit;
the oldest-used entries go first. Ollama keeps no responses at all
(``previous_response_id`` is always empty there).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from .._json import JsonValue, dumps

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_COUNT", "ResponseStore", "StoredResponse"]

DEFAULT_MAX_COUNT = 1000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredResponse:
    """One response as kept: the Response object, and the conversation up to and
    including its answer, as native messages (without ``instructions``)."""

    response: JsonValue
    conversation: tuple[JsonValue, ...]

    def size(self) -> int:
        return len(dumps({"r": self.response, "c": list(self.conversation)}))


class ResponseStore:
    """At most ``max_count`` responses and ``max_bytes`` bytes of them."""

    def __init__(
        self, *, max_count: int = DEFAULT_MAX_COUNT, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        if max_count < 1 or max_bytes < 1:
            raise ValueError("a response store holds at least one entry and byte")
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[StoredResponse, int]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, response_id: str) -> StoredResponse | None:
        """The response, now the most recently used; None if unknown or evicted."""
        found = self._entries.get(response_id)
        if found is None:
            return None
        self._entries.move_to_end(response_id)
        return found[0]

    def put(self, response_id: str, stored: StoredResponse) -> bool:
        """Keep ``stored``, evicting the least recently used to make room. False
        (and nothing kept) when it alone is bigger than the whole store."""
        size = stored.size()
        self.drop(response_id)
        if size > self.max_bytes:
            return False
        while self._entries and (
            len(self._entries) >= self.max_count or self._bytes + size > self.max_bytes
        ):
            _, (_, freed) = self._entries.popitem(last=False)
            self._bytes -= freed
        self._entries[response_id] = (stored, size)
        self._bytes += size
        return True

    def drop(self, response_id: str) -> bool:
        """Forget the response; False if it was not there."""
        found = self._entries.pop(response_id, None)
        if found is None:
            return False
        self._bytes -= found[1]
        return True
