"""Items made by one worker thread, taken one at a time by an async consumer.

Why not one ``anyio.to_thread.run_sync`` per item: each such call is a round trip
through the thread pool (250 to 330 µs on this project's machines), paid on the event
loop and serialized with the work itself. A generation's tokens cost llama.cpp less
than that on a small model. Here the thread keeps going while the event loop sends
what it has, and the consumer picks up whatever is ready without any hop.

Flow control is by credit: the thread may make an item only while it has made fewer
than the consumer has asked for plus ``lookahead``. With ``lookahead=0`` nothing is
made before it is asked for, exactly as a call per item would behave; a positive
``lookahead`` lets the thread work while the consumer is busy with the previous
items. ``close()`` withdraws every credit: a thread that checks ``wait_for_credit()``
before each item stops after the one it is making.

The thread wakes the consumer through a socket pair (``anyio.wait_readable``), so it
never blocks on the event loop, under trio or asyncio alike; an item rings only when
the consumer is actually waiting for one.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

import anyio

__all__ = ["Handoff", "HandoffClosed"]

_T = TypeVar("_T")


class HandoffClosed(Exception):
    """``get()`` after the thread ended and every item was taken."""


class Handoff(Generic[_T]):
    """A credit-bounded queue from one worker thread to one async consumer.

    Thread side: ``wait_for_credit()`` before making each item, ``put(item)`` after,
    and ``finish(error)`` exactly once at the end (in a ``finally``). Consumer side:
    ``await get()`` for the next item, ``take_ready()`` for one without waiting,
    ``close()`` to stop the thread and ``await finished()`` to wait until it has.
    """

    def __init__(self, *, lookahead: int = 0) -> None:
        if lookahead < 0:
            raise ValueError(f"lookahead must be 0 or more, not {lookahead}")
        self._lookahead = lookahead
        self._lock = threading.Lock()
        self._credit = threading.Condition(self._lock)
        self._ready: deque[_T] = deque()
        self._asked = 0
        self._made = 0
        self._closed = False
        self._finished = False
        self._error: BaseException | None = None
        self._consumer_waiting = False
        self._bell_lock: anyio.Lock | None = None  # one task at a time on the bell
        self._wake, self._bell = socket.socketpair()
        self._wake.setblocking(False)
        self._bell.setblocking(False)

    # -- the thread's side -------------------------------------------------------

    def wait_for_credit(self) -> bool:
        """Block until the next item is wanted; False once ``close()`` was called."""
        with self._credit:
            while not self._closed and self._made >= self._asked + self._lookahead:
                self._credit.wait()
            return not self._closed

    def put(self, item: _T) -> None:
        """Hand over one item (even after ``close()``: it is then dropped)."""
        with self._lock:
            self._made += 1
            if self._closed:
                return
            self._ready.append(item)
            ring = self._consumer_waiting
            self._consumer_waiting = False
        if ring:
            self._ring()

    def finish(self, error: BaseException | None = None) -> None:
        """The thread makes no more items; ``error`` is raised to the consumer after
        the items already made."""
        with self._lock:
            self._finished = True
            self._error = error
            self._consumer_waiting = False
        self._ring()

    # -- the consumer's side ------------------------------------------------------

    def take_ready(self) -> _T | None:
        """The next item if it is already here, else None (never waits)."""
        with self._credit:
            if not self._ready:
                return None
            self._asked += 1  # taking an item asks for it, as get() does
            self._credit.notify()
            return self._ready.popleft()

    async def get(self) -> _T:
        """The next item, waiting for the thread if need be.

        Raises:
            HandoffClosed: the thread finished cleanly and every item was taken.
            BaseException: the error the thread finished with, once.
        """
        with self._credit:
            self._asked += 1
            self._credit.notify()
        await self._wait_until(lambda: bool(self._ready) or self._finished)
        with self._lock:
            if self._ready:
                return self._ready.popleft()
            error, self._error = self._error, None
        if error is not None:
            raise error
        raise HandoffClosed

    def close(self) -> None:
        """Ask the thread to stop making items; drop the ones not taken."""
        with self._credit:
            self._closed = True
            self._ready.clear()
            self._credit.notify()

    async def finished(self) -> None:
        """Wait until the thread has called ``finish``."""
        await self._wait_until(lambda: self._finished)

    def release(self) -> None:
        """Close the socket pair; call once the thread has finished."""
        self._wake.close()
        self._bell.close()

    def _ring(self) -> None:
        # A full buffer already holds a wake-up; a closed one has no listener.
        with contextlib.suppress(OSError):
            self._bell.send(b"\0")

    async def _wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait for the thread to make ``condition`` (read under the lock) true."""
        # A pull and a close() from another task may both wait; trio allows one task
        # per socket, so the others queue on this lock. A waiter woken by the bell
        # whose own condition is still false gives the lock up before waiting again,
        # so that those queued check theirs: the ring may have been for them. (The
        # lock is fair; uncontended, it is taken without a checkpoint.)
        if self._bell_lock is None:
            self._bell_lock = anyio.Lock()
        while True:
            try:
                self._bell_lock.acquire_nowait()
            except anyio.WouldBlock:
                await self._bell_lock.acquire()
            try:
                with self._lock:
                    if condition():
                        return
                    self._consumer_waiting = True
                await anyio.wait_readable(self._wake)
                try:
                    while self._wake.recv(4096):
                        pass
                except BlockingIOError:
                    pass
            finally:
                self._bell_lock.release()
