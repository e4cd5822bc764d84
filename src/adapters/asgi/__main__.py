"""``python -m adapters.asgi``: the gateway's ASGI app under uvicorn."""

from __future__ import annotations

import sys

from .serve import main

sys.exit(main())
