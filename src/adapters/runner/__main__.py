"""``python -m adapters.runner --fd N``: a runner process (see ``process``)."""

from __future__ import annotations

from .process import main

raise SystemExit(main())
