"""``Handoff``: items from a real worker thread to an async consumer, under credit.

The producer here is a real OS thread, which trio's ``wait_all_tasks_blocked`` cannot
see. So that counts are read at a moment when they cannot change, ``Producer`` records
where its thread is, and ``reached`` waits until it is somewhere it cannot leave
without the test: waiting for credit that nobody gave, or at a gate the test holds.
Every wait on the thread has a deadline that turns a hang into a failure.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import anyio
import anyio.to_thread
import pytest
import trio
import trio.testing

from adapters.handoff import Handoff, HandoffClosed

# The longest a test waits for the thread to get somewhere; only a bug takes that long.
THREAD_DEADLINE = 10.0

Place = Literal["credit", "gate", "done"]


class Producer:
    """A worker thread that makes the items 1, 2, 3, ... through ``handoff``.

    Before each item it calls ``wait_for_credit()`` (place "credit"); when ``gated``,
    it then waits for ``open_gate()`` before making the item (place "gate"), which
    holds an item "in the making". It stops after ``count`` items (then finishes
    with ``error``) or when refused credit (``refused``).
    """

    def __init__(
        self,
        handoff: Handoff[int],
        *,
        count: int | None = None,
        error: BaseException | None = None,
        gated: bool = False,
    ) -> None:
        self.handoff = handoff
        self.count = count
        self.error = error
        self._gate = threading.Event()
        if not gated:
            self._gate.set()
        self.made = 0
        self.refused = False
        self._place: Place | None = None
        self._moved = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="producer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    def open_gate(self) -> None:
        self._gate.set()

    def close_gate(self) -> None:
        self._gate.clear()

    async def reached(self, place: Place, *, made: int) -> None:
        """Wait until the thread is at ``place`` having made ``made`` items.

        Fails at once if the thread has made more: an overshoot is caught when the
        thread got past ``made`` before this looked (one that has not woken up yet
        is not seen), and correct code never fails it.
        """

        def wait() -> tuple[Place | None, int]:
            with self._moved:
                self._moved.wait_for(
                    lambda: (
                        self.made > made or (self._place == place and self.made == made)
                    ),
                    timeout=THREAD_DEADLINE,
                )
                return self._place, self.made

        assert await anyio.to_thread.run_sync(wait) == (place, made)

    def _move(self, place: Place | None, *, made: int = 0) -> None:
        with self._moved:
            self._place = place
            self.made += made
            self._moved.notify_all()

    def _run(self) -> None:
        try:
            while self.count is None or self.made < self.count:
                self._move("credit")
                granted = self.handoff.wait_for_credit()
                self._move(None)
                if not granted:
                    self.refused = True
                    return
                self._move("gate")
                self._gate.wait()
                self._move(None, made=1)
                self.handoff.put(self.made)
        finally:
            self.handoff.finish(None if self.refused else self.error)
            self._move("done")


@asynccontextmanager
async def producing(
    handoff: Handoff[int],
    *,
    count: int | None = None,
    error: BaseException | None = None,
    gated: bool = False,
) -> AsyncIterator[Producer]:
    """Run a ``Producer`` for the block; then stop it as a consumer would: close,
    wait for the thread to finish, release the socket pair."""
    producer = Producer(handoff, count=count, error=error, gated=gated)
    producer.start()
    try:
        yield producer
    finally:
        with anyio.CancelScope(shield=True), anyio.fail_after(THREAD_DEADLINE):
            handoff.close()
            producer.open_gate()
            await handoff.finished()
            producer.join()
            handoff.release()


async def test_without_lookahead_nothing_is_made_before_it_is_asked_for() -> None:
    handoff: Handoff[int] = Handoff()
    async with producing(handoff) as producer:
        await producer.reached("credit", made=0)
        # Finding nothing ready is not asking: still nothing is made.
        assert handoff.take_ready() is None
        await producer.reached("credit", made=0)
        assert await handoff.get() == 1
        await producer.reached("credit", made=1)
        assert await handoff.get() == 2
        await producer.reached("credit", made=2)


@pytest.mark.parametrize("lookahead", [1, 3])
async def test_lookahead_lets_the_thread_make_that_many_beyond_those_asked(
    lookahead: int,
) -> None:
    handoff: Handoff[int] = Handoff(lookahead=lookahead)
    async with producing(handoff) as producer:
        await producer.reached("credit", made=lookahead)
        assert await handoff.get() == 1
        await producer.reached("credit", made=lookahead + 1)
        assert await handoff.get() == 2
        await producer.reached("credit", made=lookahead + 2)


async def test_take_ready_hands_out_made_items_in_order_and_asks_for_more() -> None:
    handoff: Handoff[int] = Handoff(lookahead=3)
    async with producing(handoff) as producer:
        await producer.reached("credit", made=3)
        assert handoff.take_ready() == 1
        # Taking an item asks for one, as get() does: the thread makes a fourth.
        await producer.reached("credit", made=4)
        assert [handoff.take_ready() for _ in range(3)] == [2, 3, 4]
        await producer.reached("credit", made=7)
        # get() goes on where take_ready() left off.
        assert await handoff.get() == 5


async def test_an_error_from_the_thread_comes_after_the_items_made_before_it() -> None:
    error = RuntimeError("the model failed")
    handoff: Handoff[int] = Handoff(lookahead=2)
    async with producing(handoff, count=2, error=error):
        # With lookahead 2 the thread makes both items and ends, unasked.
        await handoff.finished()
        assert handoff.take_ready() == 1
        assert await handoff.get() == 2
        with pytest.raises(RuntimeError) as caught:
            await handoff.get()
        assert caught.value is error
        # Raised once; after it the handoff ends as after a clean finish.
        with pytest.raises(HandoffClosed):
            await handoff.get()
        assert handoff.take_ready() is None


async def test_a_clean_finish_ends_every_later_pull_with_handoff_closed() -> None:
    handoff: Handoff[int] = Handoff()
    async with producing(handoff, count=2):
        assert await handoff.get() == 1
        assert await handoff.get() == 2
        for _ in range(2):
            with pytest.raises(HandoffClosed):
                await handoff.get()


async def test_close_refuses_credit_and_drops_the_items_not_taken() -> None:
    handoff: Handoff[int] = Handoff(lookahead=2)
    async with producing(handoff) as producer:
        await producer.reached("credit", made=2)
        handoff.close()
        await producer.reached("done", made=2)
        assert producer.refused
        assert handoff.wait_for_credit() is False  # and never blocks again
        assert handoff.take_ready() is None
        with pytest.raises(HandoffClosed):
            await handoff.get()


async def test_the_item_in_the_making_when_close_is_called_is_dropped() -> None:
    """A pull waits while its item is being made; ``close()`` from another task (a
    generation's ``aclose``) ends the pull with HandoffClosed, not that item."""
    handoff: Handoff[int] = Handoff()
    async with producing(handoff, gated=True) as producer:
        async with trio.open_nursery() as nursery:

            async def pull() -> None:
                with pytest.raises(HandoffClosed):
                    await handoff.get()

            nursery.start_soon(pull)
            await producer.reached("gate", made=0)
            handoff.close()
            producer.open_gate()
        await producer.reached("done", made=1)
        assert producer.refused
        assert handoff.take_ready() is None


@pytest.mark.parametrize("first", ["get", "finished"])
async def test_a_pull_and_a_wait_for_the_end_may_wait_at_once(
    first: Literal["get", "finished"],
) -> None:
    """trio lets one task at a time wait on a socket (else BusyResourceError): a
    pull waiting in one task and ``finished()`` in another share the thread's bell.
    Both complete when the thread puts its last item and finishes."""
    handoff: Handoff[int] = Handoff()
    got: list[int] = []

    async def pull() -> None:
        got.append(await handoff.get())

    waiters = {"get": pull, "finished": handoff.finished}
    second = "finished" if first == "get" else "get"
    async with producing(handoff, count=1, gated=True) as producer:
        async with trio.open_nursery() as nursery:
            for name in (first, second):
                nursery.start_soon(waiters[name])
                await trio.testing.wait_all_tasks_blocked()
            # The pull asked: the thread holds its item at the gate, so both tasks
            # are waiting for the thread now.
            await producer.reached("gate", made=0)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []
            producer.open_gate()
        await producer.reached("done", made=1)
    assert got == [1]


async def test_a_pull_queued_behind_a_wait_for_the_end_gets_its_item() -> None:
    # finished() waits first, without close(); then get() asks for an item and
    # queues behind it for the bell. The ring for the item wakes finished(), whose
    # condition is still false: it must let get() look before it waits again.
    handoff: Handoff[int] = Handoff(lookahead=0)

    def produce() -> None:
        made = 0
        try:
            while handoff.wait_for_credit():
                made += 1
                handoff.put(made)
        finally:
            handoff.finish()

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(handoff.finished)
            await trio.testing.wait_all_tasks_blocked()
            with trio.fail_after(10):
                assert await handoff.get() == 1
            nursery.cancel_scope.cancel()
    finally:
        handoff.close()
        thread.join()
        handoff.release()


def test_lookahead_cannot_be_negative() -> None:
    with pytest.raises(ValueError, match="lookahead must be 0 or more, not -1"):
        Handoff[int](lookahead=-1)


def test_works_under_asyncio() -> None:
    """The bell is ``anyio.wait_readable`` and its lock ``anyio.Lock``: the same
    flow under asyncio, a pull and a close from another task waiting at once
    included (as a generation's ``aclose`` during a pull)."""

    async def main() -> tuple[list[int], int | None, bool]:
        handoff: Handoff[int] = Handoff(lookahead=1)
        # Gated, but the gate is closed for the last item only.
        async with producing(handoff, gated=True) as producer:
            producer.open_gate()
            await producer.reached("credit", made=1)
            items = [await handoff.get()]
            await producer.reached("credit", made=2)
            taken = handoff.take_ready()
            await producer.reached("credit", made=3)
            producer.close_gate()
            ended = False
            async with anyio.create_task_group() as group:

                async def pull() -> None:
                    nonlocal ended
                    items.append(await handoff.get())  # made ahead: no wait
                    try:
                        await handoff.get()
                    except HandoffClosed:
                        ended = True

                group.start_soon(pull)
                await producer.reached("gate", made=3)
                await anyio.wait_all_tasks_blocked()
                handoff.close()
                producer.open_gate()
                await handoff.finished()
            return items, taken, ended

    items, taken, ended = anyio.run(main, backend="asyncio")
    assert (items, taken) == ([1, 3], 2)
    assert ended
