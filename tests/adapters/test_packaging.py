"""The installed distribution: its import names cannot clash with another
package's (issue 19: AdapterHub's ``adapters``)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path


def test_the_install_has_no_top_level_adapters_module() -> None:
    files = importlib.metadata.files("gateway-core") or []
    top_level = {path.parts[0] for path in files if path.suffix == ".py"}
    assert "adapters" not in top_level
    assert {"gateway_core", "gateway_core_adapters"} <= top_level


def test_the_entry_points_name_the_installed_package() -> None:
    (script,) = importlib.metadata.entry_points(
        group="console_scripts", name="gateway-core"
    )
    assert script.value == "gateway_core_adapters.cli:main"
    assert callable(script.load())
    (plugin,) = importlib.metadata.entry_points(
        group="pytest11", name="gateway_core_conformance"
    )
    assert plugin.value.startswith("gateway_core_adapters.")


def test_another_top_level_adapters_package_and_this_one_import_side_by_side(
    tmp_path: Path,
) -> None:
    """AdapterHub's ``adapters`` needs torch and transformers, which this machine
    does not install: a package of the same top-level name stands in for it."""
    other = tmp_path / "adapters"
    other.mkdir()
    (other / "__init__.py").write_text("WHOSE = 'AdapterHub'\n")
    code = (
        "import adapters, gateway_core_adapters.asgi, gateway_core\n"
        "print(adapters.WHOSE, gateway_core_adapters.__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["AdapterHub", "gateway_core_adapters"]
