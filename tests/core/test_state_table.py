"""Each (phase, input) pair follows its table row or is adapter misuse (fail closed)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_core import (
    EXCHANGE_TRANSITIONS,
    EndResponse,
    Exchange,
    GatewayConfig,
    Input,
    ListModels,
    LocalProtocolError,
    ModelList,
    Phase,
    RequestHead,
    SendBody,
    StartResponse,
    Tokens,
    Wait,
)

from .helpers import drain

CONFIG = GatewayConfig()


def _exchange(method: str, target: str) -> Exchange:
    return Exchange(
        RequestHead(method=method, target=target), config=CONFIG, request_id="r"
    )


def _receiving_body() -> Exchange:
    return _exchange("POST", "/api/chat")


def _waiting() -> Exchange:
    exchange = _exchange("GET", "/api/tags")
    assert drain(exchange) == [ListModels()]  # handed out; now it waits
    return exchange


def _responding() -> Exchange:
    return _exchange("GET", "/api/version")


def _finished() -> Exchange:
    exchange = _responding()
    drain(exchange)
    return exchange


def _aborted() -> Exchange:
    exchange = _receiving_body()
    exchange.abort("test")
    return exchange


def _error() -> Exchange:
    exchange = _receiving_body()
    with pytest.raises(LocalProtocolError):
        exchange.receive_result(Tokens(ids=(1,)), now=0.0)
    return exchange


# How to bring a fresh exchange into each phase an adapter can observe. HANDLING is
# transient: it begins and ends inside one end_body() or receive_result() call.
REACH: dict[Phase, Callable[[], Exchange]] = {
    Phase.RECEIVING_BODY: _receiving_body,
    Phase.WAITING: _waiting,
    Phase.RESPONDING: _responding,
    Phase.FINISHED: _finished,
    Phase.ABORTED: _aborted,
    Phase.ERROR: _error,
}

# The inputs an adapter can cause, and how. RESPOND and DRAINED are the core's own.
APPLY: dict[Input, Callable[[Exchange], None]] = {
    Input.BODY: lambda e: e.receive_body(b"{}"),
    Input.END_BODY: lambda e: e.end_body(),
    # The answer to the one effect a fresh exchange can wait on (ListModels).
    Input.RESULT: lambda e: e.receive_result(ModelList(records=()), now=0.0),
    Input.ABORT: lambda e: e.abort("test"),
    Input.INTERRUPT: lambda e: e.interrupt(503, "test"),
}


def test_every_phase_but_the_transient_one_is_reachable() -> None:
    for phase, reach in REACH.items():
        assert reach().phase is phase
    assert set(REACH) == set(Phase) - {Phase.HANDLING}


def test_table_targets_are_phases_and_error_is_a_sink() -> None:
    assert all(isinstance(target, Phase) for target in EXCHANGE_TRANSITIONS.values())
    assert not any(phase is Phase.ERROR for phase, _ in EXCHANGE_TRANSITIONS)


@given(
    phase=st.sampled_from(sorted(REACH, key=lambda p: p.value)),
    event=st.sampled_from(list(APPLY)),
)
def test_each_pair_follows_the_table_or_fails_closed(
    phase: Phase, event: Input
) -> None:
    exchange = REACH[phase]()
    expected = EXCHANGE_TRANSITIONS.get((phase, event))
    if expected is None:
        with pytest.raises(LocalProtocolError):
            APPLY[event](exchange)
        assert exchange.phase is Phase.ERROR
        with pytest.raises(LocalProtocolError):
            exchange.next_effect()
        return
    APPLY[event](exchange)
    if expected is Phase.HANDLING:
        # HANDLING answers at once: the body "{}" lacks a model, so a 400 is queued;
        # the model list is complete, so the tags are.
        assert exchange.phase is Phase.RESPONDING
    else:
        assert exchange.phase is expected
    # What the adapter is told next follows from the phase alone.
    after = exchange.next_effect()
    if exchange.phase is Phase.RECEIVING_BODY:
        assert after is Wait.NEED_BODY
    elif exchange.phase is Phase.WAITING:
        assert after is Wait.NEED_RESULT
    elif exchange.phase is Phase.RESPONDING:
        assert isinstance(after, StartResponse | SendBody | EndResponse)
    else:
        assert after is Wait.FINISHED


def test_waits_match_phases() -> None:
    assert _receiving_body().next_effect() is Wait.NEED_BODY
    assert _waiting().next_effect() is Wait.NEED_RESULT
    assert _finished().next_effect() is Wait.FINISHED
    assert _aborted().next_effect() is Wait.FINISHED
