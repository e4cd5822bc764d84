"""The conformance kit against the project's own servers, and against a broken one.

Every check must pass against the trio server and the ASGI app under uvicorn (the
kit's checks are part of this suite that way); against a server that answers 500
to everything, every check must fail, and say so.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import trio

from gateway_core_adapters.asgi.scope import Message, Receive, Scope, Send
from gateway_core_adapters.asgi.serve import UvicornThread
from gateway_core_adapters.conformance import CHECKS, Outcome, Target, run_checks
from gateway_core_adapters.conformance.__main__ import main
from gateway_core_adapters.settings import ServerSettings

from .asgi_live import LiveAsgi
from .live import LiveServer
from .test_clients_both_servers import served

REUSED = (served,)


@pytest.mark.slow
async def test_every_check_passes_against_our_servers(
    served: tuple[LiveServer | LiveAsgi, object], capsys: pytest.CaptureFixture[str]
) -> None:
    live, _ = served
    url = f"http://127.0.0.1:{live.port}"
    status = await trio.to_thread.run_sync(main, [url])
    printed = capsys.readouterr().out
    assert status == 0, printed
    for item in CHECKS:
        assert f"pass  {item.name}" in printed
    assert f"{len(CHECKS)} passed, 0 failed, 0 skipped" in printed


async def _fail_everything(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    message: Message = {
        "type": "http.response.start",
        "status": 500,
        "headers": [(b"content-type", b"text/plain")],
    }
    await send(message)
    await send({"type": "http.response.body", "body": b"broken"})


async def test_a_server_that_answers_500_fails_every_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = ServerSettings(host="127.0.0.1", port=0)
    with UvicornThread(_fail_everything, settings, lifespan="off") as server:
        status = await trio.to_thread.run_sync(main, [server.url, "--timeout", "10"])
        target = Target(server.url, timeout=10)
        try:
            results = await trio.to_thread.run_sync(run_checks, target)
        finally:
            target.close()
    printed = capsys.readouterr().out
    assert status == 1
    assert f"0 passed, {len(CHECKS)} failed, 0 skipped" in printed
    for item in CHECKS:
        assert f"FAIL  {item.name}" in printed
    assert {result.outcome for result in results} == {Outcome.FAILED}
    assert all("500" in result.detail for result in results), results


async def test_the_pytest_plugin_runs_each_check_as_a_test(tmp_path: Path) -> None:
    """``pytest --conformance-url URL``, in a directory of its own, collects one
    test per check (the plugin comes with the installed package, through its
    ``pytest11`` entry point); against a broken server all of them fail."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    settings = ServerSettings(host="127.0.0.1", port=0)
    with UvicornThread(_fail_everything, settings, lifespan="off") as server:
        command = [
            sys.executable, "-m", "pytest",
            "--conformance-url", server.url, "-p", "no:cacheprovider", "-q",
        ]  # fmt: skip
        done = await trio.run_process(
            command, cwd=tmp_path, capture_stdout=True, check=False, env=_with_src()
        )
    out = done.stdout.decode()
    assert done.returncode == 1, out
    assert f"{len(CHECKS)} failed" in out
    assert "::conformance::errors::bad_json_is_a_400_with_an_error" in out


def _with_src() -> dict[str, str]:
    """This interpreter's environment, with the project's sources importable."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    return env
