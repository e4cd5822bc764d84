"""``python -m adapters serve ...``: the same command line as ``gateway-core``."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
