"""Drive an Exchange with bytes and values only, and collect what it says."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from gateway_core import (
    Effect,
    EndResponse,
    Exchange,
    GatewayConfig,
    RequestHead,
    SendBody,
    StartResponse,
    Wait,
)

CONFIG = GatewayConfig()


@dataclass(frozen=True, slots=True, kw_only=True)
class Transcript:
    """Everything an exchange emitted, checked for order on the way in."""

    effects: tuple[Effect, ...]
    read_body: bool
    """Whether the exchange asked for the request body at all."""

    @property
    def head(self) -> StartResponse:
        first = self.effects[0]
        assert isinstance(first, StartResponse)
        return first

    @property
    def status(self) -> int:
        return self.head.status

    def header(self, name: str) -> str | None:
        return self.head.header(name)

    @property
    def body(self) -> bytes:
        return b"".join(e.data for e in self.effects if isinstance(e, SendBody))

    def json(self) -> object:
        return json.loads(self.body)


def drain(exchange: Exchange) -> list[Effect]:
    """Pull effects until the exchange waits or finishes."""
    effects: list[Effect] = []
    while True:
        effect = exchange.next_effect()
        if isinstance(effect, Wait):
            return effects
        effects.append(effect)


def check_order(effects: list[Effect]) -> None:
    """One head first, one end last, only body in between."""
    assert effects, "an exchange must answer"
    assert isinstance(effects[0], StartResponse)
    assert isinstance(effects[-1], EndResponse)
    assert all(isinstance(e, SendBody) for e in effects[1:-1])


def run(
    method: str,
    target: str,
    body: bytes | Iterable[bytes] | None = None,
    *,
    headers: tuple[tuple[str, str], ...] = (),
    config: GatewayConfig = CONFIG,
) -> Transcript:
    """Run one request through a fresh exchange, the way an adapter would.

    ``body`` is fed as one chunk (bytes) or as the given chunks; a ``content-length``
    header is added for a bytes body unless the caller sent one (chunked otherwise).
    """
    chunks: list[bytes]
    if body is None:
        chunks = []
    elif isinstance(body, bytes):
        chunks = [body]
        if not any(name.lower() == "content-length" for name, _ in headers):
            headers = (*headers, ("content-length", str(len(body))))
    else:
        chunks = list(body)
    exchange = Exchange(
        RequestHead(method=method, target=target, headers=headers),
        config=config,
        request_id="req_test",
    )
    effects: list[Effect] = []
    read_body = False
    pending = iter(chunks)
    while True:
        effect = exchange.next_effect()
        if effect is Wait.FINISHED:
            break
        if effect is Wait.NEED_BODY:
            read_body = True
            chunk = next(pending, None)
            if chunk is None:
                exchange.end_body()
            else:
                exchange.receive_body(chunk)
            continue
        assert not isinstance(effect, Wait), effect
        effects.append(effect)
    check_order(effects)
    return Transcript(effects=tuple(effects), read_body=read_body)
