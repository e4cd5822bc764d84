"""docs/machines.md is the transition tables of the code, drawn by docs/machines.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_machines_page_matches_the_code() -> None:
    spec = importlib.util.spec_from_file_location("machines", DOCS / "machines.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    drawn = module.render()
    assert "| `WAITING` | `RESULT` | `HANDLING` |" in drawn  # the drawing has rows
    assert (DOCS / "machines.md").read_text(encoding="utf-8") == drawn, (
        "docs/machines.md is stale: run python docs/machines.py > docs/machines.md"
    )
