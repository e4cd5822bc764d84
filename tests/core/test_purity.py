"""The core never touches the outside world: checked statically and at run time.

Statically, every import under src/gateway_core must come from an allow-list of pure
standard-library modules (or the package itself). At run time, importing gateway_core in
a fresh interpreter must not load any module that does I/O or reads ambient state.
jinja2 and jsonschema are the third-party dependencies: the core uses jinja2's sandbox,
with no loader, to render chat templates, and jsonschema to check structured answers.
jinja2 itself loads ``random`` (for a filter the core removes) and ``threading`` (for
its cache's lock), so the run-time check measures what the core loads beyond jinja2.
The core_only nox session adds a third check: the core's tests pass in an environment
where trio, anyio, h11 and llama_cpp are not installed at all.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import gateway_core

CORE = Path(gateway_core.__file__).parent

# Pure modules: data types, text, math. Nothing that opens, waits, reads a clock or
# the environment, or picks random numbers.
ALLOWED = {
    "__future__",
    "base64",
    "codecs",
    "collections",
    "dataclasses",
    "datetime",  # arithmetic and formatting; the time itself comes in as a value
    "decimal",  # exact multipleOf in answers
    "enum",
    "functools",
    "contextlib",
    "http",  # HTTPStatus only; http.client and http.server are refused below
    "hashlib",  # digests of bytes the adapter hands in
    "hmac",  # compare_digest: API keys compared in constant time
    "ipaddress",  # parsing Host headers; no lookups
    "itertools",
    "jinja2.exceptions",
    "jinja2.sandbox",
    "json",
    "jsonschema",  # validates structured answers; pure Python, no I/O at import
    "math",
    "re",
    "struct",
    "tomllib",  # the API keys file's text, which the adapter reads
    "types",
    "typing",
    "urllib.parse",
}

# Named by the design as never to appear in the core, whatever the allow-list says.
FORBIDDEN = {
    "anyio",
    "asyncio",
    "h11",
    "llama_cpp",
    "logging",
    "os",
    "random",
    "socket",
    "threading",
    "time",
    "trio",
}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in {
            "__import__",
            "exec",
            "eval",
        }:
            names.append(f"<call to {node.func.id}>")  # type: ignore[attr-defined]
    return names


def _allowed(module: str) -> bool:
    if module.split(".")[0] in FORBIDDEN:
        return False
    top = module.split(".")[0]
    return module in ALLOWED or top in ALLOWED - {"http"}


SOURCES = sorted(CORE.rglob("*.py"))


def test_the_core_has_sources_to_check() -> None:
    assert len(SOURCES) > 5


# Test tooling shipped with the core for its users' property tests; nothing in the
# core imports it, and importing gateway_core does not load it (checked below).
TEST_TOOLING = {"strategies.py": {"hypothesis"}}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_imports_only_pure_modules(path: Path) -> None:
    extra = TEST_TOOLING.get(str(path.relative_to(CORE)), set())
    bad = [
        name
        for name in _imports(path)
        if not _allowed(name) and name.split(".")[0] not in extra
    ]
    assert not bad, f"{path.name} imports {bad}"


def test_the_checker_catches_what_it_should() -> None:
    assert not _allowed("os")
    assert not _allowed("os.path")
    assert not _allowed("asyncio.streams")
    assert not _allowed("http.client")
    assert not _allowed("urllib.request")
    assert _allowed("collections.abc")
    assert _allowed("http")
    assert _allowed("jinja2.sandbox")
    assert not _allowed("jinja2.loaders")


def test_importing_the_core_loads_no_io_module() -> None:
    # Measured in a fresh interpreter: the test process has trio loaded already.
    probe = (
        "import sys, jinja2.sandbox; before = set(sys.modules); import gateway_core; "
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "gateway_core" in out
    loaded = {name.split(".")[0] for name in out}
    assert not loaded & (FORBIDDEN | {"subprocess", "selectors", "select", "signal"})


_DIALECT_MODULES = {
    "openai": ("_compat_openai", "_dialects/_openai"),
    "anthropic": ("_compat_anthropic", "_dialects/_anthropic"),
}


def _dialect_of(path: Path) -> str | None:
    relative = str(path.relative_to(CORE).with_suffix(""))
    for dialect, prefixes in _DIALECT_MODULES.items():
        if relative.startswith(prefixes):
            return dialect
    return None


def _relative_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]


@pytest.mark.parametrize(
    "path",
    [p for p in SOURCES if _dialect_of(p)],
    ids=lambda p: str(p.relative_to(CORE)),
)
def test_each_dialect_knows_nothing_of_the_others(path: Path) -> None:
    mine = _dialect_of(path)
    others = [d for d in _DIALECT_MODULES if d != mine]
    imported = _relative_imports(path)
    leaks = [m for m in imported if any(d in m for d in others)]
    assert not leaks, f"{path.name} ({mine}) imports {leaks}"


def test_the_dialect_check_sees_every_dialect() -> None:
    found = {_dialect_of(p) for p in SOURCES} - {None}
    assert found == set(_DIALECT_MODULES)
