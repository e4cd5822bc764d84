"""The JSON-Schema-Test-Suite's draft 2020-12 schemas, for the structured-output
tests. ``tests/fetch_schema_suite.py`` puts them in place (``nox -s tests`` runs it
before the tests); without them the tests that need them fail, saying so."""

from __future__ import annotations

import json

from gateway_core._json import JsonValue

from .fetch_schema_suite import TARGET


def suite_schemas() -> list[tuple[str, JsonValue]]:
    """Every test group's schema, as ``("file.json#index: description", schema)``,
    in file order."""
    folder = TARGET / "draft2020-12"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"the JSON-Schema-Test-Suite is not in {folder}: run"
            " `python tests/fetch_schema_suite.py` (nox -s tests does)"
        )
    found: list[tuple[str, JsonValue]] = []
    for path in sorted(folder.glob("*.json")):
        for index, group in enumerate(json.loads(path.read_text())):
            found.append(
                (f"{path.name}#{index}: {group['description']}", group["schema"])
            )
    return found
