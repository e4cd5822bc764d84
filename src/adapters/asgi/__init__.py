"""The gateway as an ASGI 3 application, for uvicorn, hypercorn and host apps.

``create_app(settings)`` builds a ``GatewayApp`` that drives the same ``Exchange``
as the trio server (``adapters.server``), with the same model service. It runs on
asyncio or trio (it uses anyio only). ``app`` is a factory for ASGI servers that
take one::

    GATEWAY_MODELS=~/models uvicorn adapters.asgi:app --factory --port 11434

See docs/embedding.md for mounting it in Starlette or FastAPI, and for calling it
in-process (``adapters.asgi.inprocess``).
"""

from __future__ import annotations

import os

from ..settings import resolve_settings
from .app import GatewayApp, create_app
from .lifespan import lifespan

__all__ = ["GatewayApp", "app", "create_app", "lifespan"]


def app() -> GatewayApp:
    """A ``GatewayApp`` configured from ``GATEWAY_*`` variables, as
    ``gateway-core serve`` reads them (flags aside): for ``--factory``."""
    return create_app(resolve_settings({}, os.environ))
