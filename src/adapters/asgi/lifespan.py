"""``lifespan(app)``: run any ASGI app's lifespan protocol around a block.

ASGI servers do this for the apps they serve; code that calls an app without a
server (httpx's ``ASGITransport``, ``adapters.asgi.inprocess``, a test) must do it
itself, or the gateway's model service never starts. It works for any app, so a
FastAPI host that starts the gateway from its own lifespan is covered too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from .scope import ASGIApp, Message

__all__ = ["LifespanFailed", "lifespan"]


class LifespanFailed(RuntimeError):
    """The app answered ``lifespan.startup.failed`` or ``lifespan.shutdown.failed``."""


@asynccontextmanager
async def lifespan(app: ASGIApp) -> AsyncIterator[dict[str, Any]]:
    """Start ``app`` (``lifespan.startup``), run the block, stop it
    (``lifespan.shutdown``). Yields the lifespan ``state``, which a caller copies
    into each request's scope (ASGI's lifespan state extension).

    An app that does not speak lifespan (it raises on the scope, as the spec
    allows) runs without: the block still runs.

    Raises:
        LifespanFailed: the app reported that its startup or shutdown failed.
    """
    state: dict[str, Any] = {}
    to_app, app_inbox = anyio.create_memory_object_stream[Message](1)
    app_outbox, from_app = anyio.create_memory_object_stream[Message](1)
    scope = {
        "type": "lifespan",
        "asgi": {"version": "3.0", "spec_version": "2.0"},
        "state": state,
    }

    async def run() -> None:
        async with app_inbox, app_outbox:
            try:
                await app(scope, app_inbox.receive, app_outbox.send)
            except Exception:
                # Lifespan is optional in ASGI: an app that refuses it simply
                # returns or raises before answering startup.
                return

    async def exchange(message: str) -> None:
        try:
            await to_app.send({"type": message})
            reply = await from_app.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return  # the app does not speak lifespan
        if reply["type"].endswith(".failed"):
            raise LifespanFailed(f"{message}: {reply.get('message', '')}".strip())

    async with anyio.create_task_group() as tasks, to_app, from_app:
        tasks.start_soon(run)
        await exchange("lifespan.startup")
        try:
            yield state
        finally:
            with anyio.CancelScope(shield=True):
                await exchange("lifespan.shutdown")
