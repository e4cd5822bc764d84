"""Drive an Exchange with bytes and values only, and collect what it says."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from gateway_core import (
    AccessGate,
    BlobPresence,
    CheckBlob,
    Effect,
    EndResponse,
    Exchange,
    GatewayConfig,
    ListModels,
    ListRunning,
    LookupModel,
    ModelList,
    ModelRecord,
    RequestHead,
    ResponseEffect,
    Result,
    RunningList,
    SendBody,
    StartResponse,
    Wait,
    WorkEffect,
    WorkFailed,
)

CONFIG = GatewayConfig()
NOW = 1_700_000_000.0
"""The wall-clock time every result arrives at, in these tests."""

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""A minimal ChatML chat template: it knows neither thinking nor tools."""
THINKING_TOOLS = CHATML + "{# <think></think> tools <tool_call> #}"
"""The same, mentioning what gives a model the thinking and tools capabilities."""


def model_record(name: str = "tiny", template: str = CHATML) -> ModelRecord:
    """An installed model as the store would describe it, for scripted worlds."""
    return ModelRecord(
        name=f"{name}:latest",
        digest="ab" * 32,
        size=1,
        modified_at=NOW,
        model_file="/m",
        model_digest="sha256:" + "cd" * 32,
        template=template,
        context_length=4096,
    )


World = Callable[[WorkEffect], Sequence[Result]]
"""Answers a work effect with its results, as the adapter would."""


def empty_store(effect: WorkEffect) -> Sequence[Result]:
    """A world with no models installed and none loaded."""
    match effect:
        case LookupModel():
            return [WorkFailed(status=404, message="no such model")]
        case ListModels():
            return [ModelList(records=())]
        case ListRunning():
            return [RunningList(models=())]
        case CheckBlob():
            return [BlobPresence(exists=False)]
        case _:
            return [WorkFailed(status=500, message=f"unexpected {effect!r}")]


@dataclass(frozen=True, slots=True, kw_only=True)
class Transcript:
    """Everything an exchange emitted, checked for order on the way in."""

    effects: tuple[ResponseEffect, ...]
    read_body: bool
    """Whether the exchange asked for the request body at all."""
    work: tuple[WorkEffect, ...] = ()
    """The work effects it handed out, in order."""
    notes: tuple[str, ...] = ()
    """The warnings it left for the log."""

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


def check_order(effects: Sequence[Effect]) -> None:
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
    world: World = empty_store,
    started: float | None = None,
    access: AccessGate | None = None,
    request_id: str = "req_test",
) -> Transcript:
    """Run one request through a fresh exchange, the way an adapter would.

    ``body`` is fed as one chunk (bytes) or as the given chunks; a ``content-length``
    header is added for a bytes body unless the caller sent one (chunked otherwise).
    Work effects are answered by ``world``, one result per ``NEED_RESULT``, all at
    ``NOW``; ``started`` is when the request arrived; ``access`` the server's gate.
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
        request_id=request_id,
        now=started,
        access=access,
    )
    effects: list[ResponseEffect] = []
    work: list[WorkEffect] = []
    results: Iterable[Result] = iter(())
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
        if effect is Wait.NEED_RESULT:
            exchange.receive_result(next(iter(results)), now=NOW)
            continue
        if isinstance(effect, StartResponse | SendBody | EndResponse):
            effects.append(effect)
        else:
            work.append(effect)
            results = iter(world(effect))
    check_order(effects)
    return Transcript(
        effects=tuple(effects),
        read_body=read_body,
        work=tuple(work),
        notes=exchange.notes,
    )
