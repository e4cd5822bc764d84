"""The CLI's verbs against a live server: each one as a user runs it, its output
and its exit code. ``run`` is also driven as a process, through a pipe and through
a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import ollama
import pytest

from gateway_core_adapters.cli import main

from .live import LiveServer
from .ollama_setup import call

SRC = Path(__file__).resolve().parents[2] / "src"


async def _cli(
    live: LiveServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *argv: str,
) -> tuple[int, str, str]:
    monkeypatch.setenv("GATEWAY_HOST", f"127.0.0.1:{live.port}")
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    code = await call(lambda: main(list(argv)))
    out, err = capsys.readouterr()
    return code, out, err


async def test_list_show_cp_rm(
    served: tuple[LiveServer, ollama.Client],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    live, _ = served
    code, out, _ = await _cli(live, monkeypatch, capsys, "ls")
    header, row = out.splitlines()
    assert header.split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert row.startswith("tiny:latest")

    code, out, _ = await _cli(live, monkeypatch, capsys, "show", "tiny")
    assert code == 0
    assert "architecture        llama" in out
    assert "completion" in out
    code, out, _ = await _cli(live, monkeypatch, capsys, "show", "tiny", "--template")
    assert "<|im_start|>" in out
    code, out, _ = await _cli(live, monkeypatch, capsys, "show", "tiny", "--modelfile")
    assert out.startswith("# Modelfile generated")

    code, out, _ = await _cli(live, monkeypatch, capsys, "cp", "tiny", "copy")
    assert (code, out) == (0, "copied 'tiny' to 'copy'\n")
    code, out, _ = await _cli(live, monkeypatch, capsys, "rm", "copy")
    assert (code, out) == (0, "deleted 'copy'\n")
    code, _, err = await _cli(live, monkeypatch, capsys, "rm", "copy")
    assert code == 1
    assert err.startswith("Error: ")
    assert "not found" in err


async def test_ps_and_stop(
    served: tuple[LiveServer, ollama.Client],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    live, client = served
    await call(
        lambda: client.generate(model="tiny", prompt="Hi", options={"num_predict": 1})
    )
    code, out, _ = await _cli(live, monkeypatch, capsys, "ps")
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["NAME", "ID", "SIZE"]
    assert out.splitlines()[1].startswith("tiny:latest")
    code, _, _ = await _cli(live, monkeypatch, capsys, "stop", "tiny")
    assert code == 0
    _, out, _ = await _cli(live, monkeypatch, capsys, "ps")
    assert len(out.splitlines()) == 1  # the header alone


async def test_create_from_a_modelfile_with_every_instruction(
    served: tuple[LiveServer, ollama.Client],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    gguf: Path,
    tmp_path: Path,
) -> None:
    live, client = served
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "weights.gguf").write_bytes(gguf.read_bytes())
    modelfile = folder / "Modelfile"
    modelfile.write_text(
        "# every instruction\n"
        "FROM ./weights.gguf\n"
        "PARAMETER temperature 0.25\n"
        "PARAMETER stop <|im_end|>\n"
        "PARAMETER num_ctx 512\n"
        'TEMPLATE """{% for m in messages %}{{ m.content }}\n{% endfor %}"""\n'
        "SYSTEM Be terse.\n"
        "MESSAGE user Hello\n"
        "MESSAGE assistant Hi!\n"
        "LICENSE MIT\n"
        "PARSER mistral\n"
    )
    code, out, err = await _cli(
        live, monkeypatch, capsys, "create", "mine", "-f", str(modelfile)
    )
    assert code == 0, err
    assert out.endswith("success\n")
    shown = await call(lambda: client.show("mine"))
    assert shown.license == "MIT"
    assert shown.template is not None
    assert shown.template.startswith("{% for m in messages %}")
    assert shown.parameters is not None
    assert "temperature" in shown.parameters
    assert "num_ctx" in shown.parameters
    assert shown.modelfile is not None
    for line in (
        'SYSTEM """Be terse."""',
        "MESSAGE user Hello",
        "MESSAGE assistant Hi!",
        "PARSER mistral",  # kept in the config blob, as Ollama keeps it
    ):
        assert line in shown.modelfile
    # The blob was uploaded once: a second create finds it on the server.
    code, _, _ = await _cli(
        live, monkeypatch, capsys, "create", "again", "-f", str(modelfile)
    )
    assert code == 0
    based = folder / "Based"
    based.write_text("FROM mine\nSYSTEM Be verbose.\n")
    code, _, _ = await _cli(
        live, monkeypatch, capsys, "create", "based", "-f", str(based)
    )
    assert code == 0
    based_modelfile = (await call(lambda: client.show("based"))).modelfile
    assert based_modelfile is not None
    assert 'SYSTEM """Be verbose."""' in based_modelfile


async def test_a_bad_modelfile_is_an_error_naming_the_line(
    served: tuple[LiveServer, ollama.Client],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    live, _ = served
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM tiny\nADAPTER ./lora.gguf\n")
    code, _, err = await _cli(
        live, monkeypatch, capsys, "create", "x", "-f", str(modelfile)
    )
    assert code == 1
    assert "line 2: ADAPTER is not supported" in err


async def test_no_server_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_HOST", "127.0.0.1:9")  # discard: nothing listens
    assert main(["list"]) == 1
    err = capsys.readouterr().err
    assert "could not reach gateway-core at http://127.0.0.1:9" in err


def test_no_arguments_prints_help_and_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for verb in ("serve", "run", "pull", "push", "list", "ps", "show", "create"):
        assert verb in out


def _process_env(live: LiveServer) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
        "GATEWAY_HOST": f"127.0.0.1:{live.port}",
    }


def _run_piped(
    live: LiveServer, stdin: str, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapters", "run", "tiny", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=_process_env(live),
        timeout=60,
        check=False,
    )


async def test_run_answers_a_prompt_and_piped_input_once(
    served: tuple[LiveServer, ollama.Client],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    live, _ = served
    code, out, _ = await _cli(live, monkeypatch, capsys, "run", "tiny", "Say", "hi")
    assert code == 0
    assert out.endswith("\n")
    assert len(out) > 1
    piped = await call(lambda: _run_piped(live, "Say hi\n"))
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.strip()
    assert ">>>" not in piped.stdout  # no prompts when not on a terminal


def _terminal_session(live: LiveServer, typed: list[str]) -> tuple[int, str]:
    """``run`` on a pseudo-terminal: type each line after the prompt appears."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "adapters", "run", "tiny", "--think", "false"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=_process_env(live),
        close_fds=True,
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 60

    def prompts() -> int:
        return seen.count(b">>> ") + seen.count(b"... ")  # a message, a line of one

    def wait_for_prompt(count: int) -> None:
        """Read until the ``count``-th prompt is on the screen."""
        nonlocal seen
        while prompts() < count and process.poll() is None:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                seen += os.read(leader, 4096)

    try:
        for number, line in enumerate(typed, start=1):
            wait_for_prompt(number)
            os.write(leader, line.encode() + b"\n")
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)
    return code, seen.decode(errors="replace")


async def test_run_on_a_terminal_is_a_conversation(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    live, _ = served
    typed = [
        "/set parameter num_predict 4",
        "Hello",
        '"""First line',
        'second line"""',
        "/show info",
        "/bye",
    ]
    code, seen = await call(lambda: _terminal_session(live, typed))
    assert code == 0, seen
    assert "Set parameter 'num_predict' to '4'" in seen
    assert "... " in seen  # the continuation prompt of the multi-line message
    assert "architecture" in seen  # /show info
    assert seen.count(">>> ") >= 5


async def test_a_reader_that_goes_away_ends_run_quietly(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    """``gateway-core run tiny ... | head -c 1``: no traceback, SIGPIPE's status."""
    live, _ = served

    def piped_to_head() -> tuple[int, str]:
        run = subprocess.Popen(
            [sys.executable, "-m", "adapters", "run", "tiny", "Say", "hi"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_process_env(live),
        )
        assert run.stdout is not None
        assert run.stderr is not None
        run.stdout.read(1)
        run.stdout.close()  # the reader goes away after one byte
        with run.stderr:
            err = run.stderr.read().decode()
        return run.wait(timeout=60), err

    code, err = await call(piped_to_head)
    assert code in (0, 141)  # 0 if the whole answer fit the pipe before it closed
    assert "Traceback" not in err
