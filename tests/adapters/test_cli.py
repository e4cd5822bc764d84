"""The command line: ``--help``, bad input, and the real entry point under SIGINT."""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
from pathlib import Path

import h11
import pytest
import trio

from gateway_core import KeyRing
from gateway_core_adapters.cli import main
from gateway_core_adapters.settings import OPTIONS

from .helpers import expecting_continue, request
from .processes import server_process

SRC = Path(__file__).resolve().parents[2] / "src"


def test_help_lists_every_flag_with_its_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    for option in OPTIONS:
        shown = f"{option.flag} {option.metavar}".strip()
        assert re.search(rf"{shown} .*?\[env {option.env}; default ", text), option.flag
    assert "--log-level LEVEL" in text
    assert "GATEWAY_LOG_LEVEL" in text


def test_bad_values_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", "[::1"]) == 2
    assert "--host: invalid address '[::1'" in capsys.readouterr().err
    assert main(["serve", "--log-level", "loud"]) == 2
    assert "--log-level: 'loud' is not one of" in capsys.readouterr().err
    assert main(["serve", "--no-such-flag"]) == 2
    assert main(["list", "--bogus"]) == 2


def test_an_address_in_use_exits_1_with_a_message(
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("GATEWAY_MODELS", str(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR, logger="adapters"):
            assert main(["serve", "--host", f"127.0.0.1:{port}"]) == 1
    assert f"cannot listen on http://127.0.0.1:{port}" in caplog.text


def test_keys_new_prints_the_key_once_and_an_entry_that_accepts_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["keys", "new", "ali ce", "--models", "demo", "qwen*"]) == 0
    out, err = capsys.readouterr()
    secret = err.strip().rsplit(" ", 1)[-1]
    assert secret.startswith("gk-")
    assert secret not in out  # the file holds only the hash
    ring = KeyRing.from_toml(out)
    found = ring.find(secret)
    assert found is not None
    assert found.name == "ali ce"
    assert found.allows_model("qwen3:8b")
    assert not found.allows_model("llama3")
    assert main(["keys", "new", "bob"]) == 0
    again = capsys.readouterr().err.strip().rsplit(" ", 1)[-1]
    assert again != secret
    assert main(["keys", "new", "x", "--max-concurrent", "0"]) == 2


def test_a_bad_keys_file_stops_the_server_with_a_message(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text('[[key]]\nname = "a"\n', encoding="utf-8")
    argv = ["serve", "--host", "127.0.0.1:0", "--models", str(tmp_path / "m")]
    with caplog.at_level(logging.ERROR, logger="adapters"):
        assert main([*argv, "--api-keys-file", str(keys)]) == 2
        assert main([*argv, "--api-keys-file", str(tmp_path / "missing.toml")]) == 2
    assert "sha256 is required" in caplog.text
    assert "cannot read the API keys file" in caplog.text


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM], ids=lambda signum: signum.name
)
async def test_the_console_entry_serves_then_exits_0_on_a_signal(
    signum: signal.Signals, tmp_path: Path
) -> None:
    async with server_process(tmp_path) as server:
        client = await server.connect()
        reply = await client.exchange(request("GET", "/api/version"))
        await client.stream.aclose()
        assert reply.status == 200
        assert reply.json() == {"version": "0.33.0"}

        server.process.send_signal(signum)
        sent = trio.current_time()
        code = await server.exit_code()
        elapsed = trio.current_time() - sent
    log = server.log.decode()
    assert code == 0, log
    assert elapsed < 2.0
    assert '"GET /api/version HTTP/1.1" 200' in log
    assert f"{signum.name}: finishing requests in flight" in log
    assert log.rstrip().endswith("stopped")


async def test_a_second_sigint_stops_without_waiting_for_requests_in_flight(
    tmp_path: Path,
) -> None:
    async with server_process(tmp_path) as server:
        client = await server.connect()
        await client.send(expecting_continue("/api/chat", 10))
        # The 100 shows the request is in flight; its body never comes, so a graceful
        # shutdown would wait the full 25 s default.
        assert isinstance(await client.next_event(), h11.InformationalResponse)
        server.process.send_signal(signal.SIGINT)
        await server.wait_for(b"finishing requests in flight")
        server.process.send_signal(signal.SIGINT)
        sent = trio.current_time()
        code = await server.exit_code()
        elapsed = trio.current_time() - sent
        assert await client.read_to_eof() == b""  # cut off, no response
        await client.stream.aclose()
    log = server.log.decode()
    assert code == 0, log
    assert elapsed < 2.0
    assert "SIGINT again: stopping now" in log


async def test_an_empty_store_gets_the_demo_model_and_chat_works_at_once(
    tmp_path: Path,
) -> None:
    async with server_process(tmp_path / "models") as server:
        client = await server.connect()
        body = json.dumps(
            {
                "model": "demo",
                "messages": [{"role": "user", "content": "Hello"}],
                "stream": False,
                "options": {"num_predict": 4},
            }
        ).encode()
        reply = await client.exchange(
            request("POST", "/api/chat", headers=[("content-length", str(len(body)))]),
            body,
        )
        await client.stream.aclose()
        server.process.send_signal(signal.SIGTERM)
        assert await server.exit_code() == 0
    log = server.log.decode()
    assert reply.status == 200, log
    answer = reply.json()
    assert answer["model"] == "demo"
    assert answer["message"]["role"] == "assistant"
    assert answer["done_reason"] in ("length", "stop")
    assert "registered a tiny demo model as 'demo'" in log
    assert "gguf" not in log  # the writer's chatter about the demo model's file


async def test_serve_asgi_uvicorn_runs_the_asgi_app_then_exits_0_on_sigterm(
    tmp_path: Path,
) -> None:
    async with server_process(tmp_path, args=["--asgi", "uvicorn"]) as server:
        client = await server.connect()
        version = await client.exchange(request("GET", "/api/version"))
        tags = await client.exchange(request("GET", "/api/tags"))
        await client.stream.aclose()
        server.process.send_signal(signal.SIGTERM)
        code = await server.exit_code()
    log = server.log.decode()
    assert code == 0, log
    assert version.status == 200
    assert version.json() == {"version": "0.33.0"}
    # The same first run as the trio server: an empty store gets the demo model.
    assert [model["name"] for model in tags.json()["models"]] == ["demo:latest"]
    assert "registered a tiny demo model as 'demo'" in log
    assert "gguf" not in log  # the writer's chatter about the demo model's file
    # The app's own access line, not uvicorn's.
    assert '"GET /api/tags HTTP/1.1" 200' in log
