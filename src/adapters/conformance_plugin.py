"""The conformance checks as pytest tests: ``pytest --conformance-url URL`` (add
``--conformance-model NAME`` and ``--conformance-read-only`` as needed).

The installed package registers this module through the ``pytest11`` entry point,
so it loads in every pytest run of that environment; from a source tree that is
not installed, load it with ``-p adapters.conformance_plugin`` (not both: pytest
refuses a plugin registered twice).

Without ``--conformance-url`` the plugin adds nothing to a run, and it imports the
kit (and httpx) only when asked to run it. That is why it lives outside the
``adapters.conformance`` package: importing a module of that package imports the
kit, and this module loads in every pytest run of the environment, including
ones that installed the core alone and have no httpx.
"""

from __future__ import annotations

from typing import Any

import pytest

__all__ = ["ConformanceItem", "pytest_addoption", "pytest_collection_modifyitems"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "gateway-core conformance checks")
    group.addoption("--conformance-url", help="run the conformance checks against URL")
    group.addoption("--conformance-model", help="the model the checks generate with")
    group.addoption(
        "--conformance-read-only",
        action="store_true",
        help="skip the checks that change the store",
    )


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    url = config.getoption("--conformance-url")
    if not url:
        return
    from .conformance import CHECKS, Target

    target = Target(
        url,
        model=config.getoption("--conformance-model"),
        write=not config.getoption("--conformance-read-only"),
    )
    config.add_cleanup(target.close)
    for check in CHECKS:
        items.append(
            ConformanceItem.from_parent(
                session,
                name=f"conformance::{check.area}::{check.name}",
                check=check,
                target=target,
            )
        )


class ConformanceItem(pytest.Item):
    """One check, run as a test."""

    def __init__(self, *, check: Any, target: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check
        self.target = target

    def runtest(self) -> None:
        from .conformance import Skipped

        try:
            self.check.run(self.target)
        except Skipped as exc:
            pytest.skip(str(exc))

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, self.name
