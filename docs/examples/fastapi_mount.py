"""The gateway mounted at ``/llm`` in a FastAPI app that has routes of its own.

Starlette (and so FastAPI) does not pass lifespan events to mounted apps, so the
host's lifespan runs the gateway's: ``gateway.running()`` starts its model service
and, at shutdown, unloads its models. Clients use ``http://HOST:PORT/llm`` as the
gateway's address; ``/llm/api/...`` reaches the gateway, which routes the path
without the prefix, and anything else is the host's.

Run it with ``uvicorn --app-dir docs/examples --factory fastapi_mount:app``; the
settings come from ``GATEWAY_*`` variables, as for ``gateway-core serve``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway_core_adapters.asgi import create_app
from gateway_core_adapters.settings import ServerSettings, resolve_settings


def build(settings: ServerSettings) -> FastAPI:
    gateway = create_app(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with gateway.running():
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "from the host app"}

    app.mount("/llm", gateway)
    return app


def app() -> FastAPI:
    """For ``uvicorn --factory``."""
    return build(resolve_settings({}, os.environ))
