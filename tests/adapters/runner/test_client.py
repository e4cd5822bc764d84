"""Runner processes seen from the server: start, load, serve, die, stop.

Real processes (``python -m adapters.runner``) with the demo model. What matters
most here is what happens when a runner dies: its requests end with a clear
error, the server side keeps nothing of it, and the server process lives on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from gateway_core_adapters.runner.client import RunnerProcess
from gateway_core_adapters.runner.errors import (
    BadRequest,
    ContextOverflow,
    LoadFailed,
    PromptTooLong,
    RunnerDied,
)
from gateway_core_adapters.runner.values import LoadParams, Sampling

from .conftest import CHAT, write_aborting_model

NON_ENDING = Sampling(temperature=0.0, repeat_last_n=-1, presence_penalty=1e9)


@pytest.fixture
async def runner(
    model_file: Path, nursery: trio.Nursery
) -> AsyncIterator[RunnerProcess]:
    params = LoadParams(model_file=str(model_file), n_ctx=512, slots=2)
    runner = await RunnerProcess.start(params, task_group=nursery)
    yield runner
    await runner.close()


async def test_a_runner_reports_its_model_and_tokenizes(runner: RunnerProcess) -> None:
    info = runner.model_info
    assert (info.n_ctx, info.slots, info.n_vocab) == (512, 2, 265)
    assert info.load_seconds > 0
    tokens = await runner.tokenize(CHAT, add_bos=False)
    assert await runner.detokenize(tokens) == CHAT.encode()
    with pytest.raises(BadRequest, match="token ids must be in"):
        await runner.detokenize([999_999])


async def test_generations_stream_and_report_their_prompt(
    runner: RunnerProcess,
) -> None:
    prompt = await runner.tokenize(CHAT, add_bos=False)
    async with runner.generate(prompt, Sampling(seed=1), lookahead=4) as generation:
        pieces = [piece async for piece in generation]
    assert generation.done_reason in ("stop", "length")
    assert generation.prompt_eval_count == len(prompt)
    assert generation.eval_count == len(pieces)
    async with runner.generate(prompt, Sampling(seed=1)) as again:
        same = [piece async for piece in again]
    assert [p.token for p in same] == [p.token for p in pieces]
    assert again.prompt_reused_count == len(prompt) - 1


async def test_request_errors_come_back_as_exceptions(runner: RunnerProcess) -> None:
    with pytest.raises(PromptTooLong):
        async for _ in runner.generate([65] * 600, Sampling()):
            pass
    with pytest.raises(BadRequest, match="cannot embed"):
        await runner.embed([[1, 2]])


async def test_a_slow_consumer_holds_back_only_its_own_generation(
    runner: RunnerProcess,
) -> None:
    prompt = await runner.tokenize(CHAT, add_bos=False)
    slow = runner.generate(prompt, NON_ENDING, lookahead=2)
    fast = runner.generate(prompt, NON_ENDING, lookahead=64)
    async with slow, fast:
        first = await slow.__anext__()
        count = 0
        async for _ in fast:
            count += 1
            if count == 150:
                break
        # The slow one made at most its window beyond what it took.
        await trio.sleep(0.05)
        assert first is not None
        assert len(slow._pieces) <= 2


async def test_an_embedding_runner_embeds(
    model_file: Path, nursery: trio.Nursery
) -> None:
    params = LoadParams(model_file=str(model_file), n_ctx=256, embedding=True)
    runner = await RunnerProcess.start(params, task_group=nursery)
    try:
        vectors = await runner.embed([[65, 66], [67]])
        assert len(vectors.vectors) == 2
        assert all(
            len(v) == runner.model_info.embedding_length for v in vectors.vectors
        )
        with pytest.raises(ContextOverflow) as overflow:
            await runner.embed([[65], [66] * 300])
        assert (overflow.value.index, overflow.value.count) == (1, 300)
    finally:
        await runner.close()


# -- loads that fail ------------------------------------------------------------------


async def test_a_missing_or_broken_file_fails_the_load(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model")
    for path, words in ((tmp_path / "none.gguf", "not found"), (junk, "cannot load")):
        params = LoadParams(model_file=str(path), n_ctx=256)
        with pytest.raises(LoadFailed, match=words):
            await RunnerProcess.start(params, task_group=nursery)


async def test_a_model_that_aborts_llama_cpp_fails_the_load_not_the_server(
    model_file: Path, tmp_path: Path, nursery: trio.Nursery
) -> None:
    broken = write_aborting_model(model_file, tmp_path / "abort.gguf")
    params = LoadParams(model_file=str(broken), n_ctx=256)
    with pytest.raises(LoadFailed, match="SIGABRT"):
        await RunnerProcess.start(params, task_group=nursery)


async def test_a_load_that_hangs_is_killed_at_its_deadline(
    model_file: Path, nursery: trio.Nursery
) -> None:
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    params = LoadParams(model_file=str(model_file), n_ctx=256)
    with pytest.raises(LoadFailed, match=r"took longer than 0\.5 s"):
        await RunnerProcess.start(
            params, task_group=nursery, load_timeout=0.5, command=sleeper
        )


async def test_a_runner_that_speaks_another_protocol_is_refused(
    model_file: Path, nursery: trio.Nursery
) -> None:
    # A runner of a future version: says Hello with version 99, then waits.
    stranger = [
        sys.executable,
        "-c",
        "import socket, sys, time\n"
        "from gateway_core_adapters.runner.protocol import Hello, encode\n"
        "fd = int(sys.argv[1].split('=')[1])\n"
        "socket.socket(fileno=fd).sendall(encode(Hello(version=99, pid=1)))\n"
        "time.sleep(60)\n",
    ]
    params = LoadParams(model_file=str(model_file), n_ctx=256)
    with pytest.raises(LoadFailed, match="another protocol"):
        await RunnerProcess.start(params, task_group=nursery, command=stranger)


# -- a runner that dies ----------------------------------------------------------------


async def test_a_runner_killed_mid_stream_fails_its_requests_clearly(
    model_file: Path, nursery: trio.Nursery
) -> None:
    died: list[RunnerProcess] = []
    params = LoadParams(model_file=str(model_file), n_ctx=512, slots=2)
    runner = await RunnerProcess.start(params, task_group=nursery, on_exit=died.append)
    prompt = await runner.tokenize(CHAT, add_bos=False)
    generation = runner.generate(prompt, NON_ENDING, lookahead=2)
    await generation.__anext__()
    os.kill(runner.pid, signal.SIGKILL)
    with pytest.raises(RunnerDied, match="SIGKILL"):
        async for _ in generation:
            pass
    assert died == [runner]
    assert not runner.alive
    with pytest.raises(RunnerDied):
        await runner.tokenize("x", add_bos=False)
    await runner.close()  # closing a dead runner is harmless


_PARENT = """
import sys, trio
from gateway_core_adapters.runner.client import RunnerProcess
from gateway_core_adapters.runner.values import LoadParams

async def main():
    async with trio.open_nursery() as nursery:
        params = LoadParams(model_file=sys.argv[1], n_ctx=256)
        runner = await RunnerProcess.start(params, task_group=nursery)
        print(runner.pid, flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            return "\tZ" in next(x for x in status if x.startswith("State:"))
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
async def test_a_runner_whose_server_dies_exits_by_itself(
    model_file: Path, how: signal.Signals
) -> None:
    """Killed (SIGKILL: no cleanup at all) or stopped, the server takes its
    runners with it."""
    parent = await trio.lowlevel.open_process(
        [sys.executable, "-c", _PARENT, str(model_file)], stdout=subprocess.PIPE
    )
    assert parent.stdout is not None
    with trio.fail_after(30):
        line = b""
        while not line.endswith(b"\n"):
            line += await parent.stdout.receive_some(64)
    runner_pid = int(line)
    assert not _gone(runner_pid)
    parent.send_signal(how)
    await parent.wait()
    with trio.fail_after(10):
        while not _gone(runner_pid):
            await trio.sleep(0.02)


def test_a_runner_outlives_the_thread_that_started_it(model_file: Path) -> None:
    """The server starts runners from worker threads that come and go (trio runs
    ``Popen`` in one): a runner must follow the server *process*, not the thread
    (Linux's PR_SET_PDEATHSIG follows the thread, and killed runners mid-request)."""
    import socket
    import threading
    import time

    ours, theirs = socket.socketpair()
    started: list[subprocess.Popen[bytes]] = []

    def spawn() -> None:
        started.append(
            subprocess.Popen(
                [sys.executable, "-m", "gateway_core_adapters.runner",
                 f"--fd={theirs.fileno()}", f"--parent={os.getpid()}"],
                pass_fds=(theirs.fileno(),),
            )
        )  # fmt: skip

    thread = threading.Thread(target=spawn)
    thread.start()
    thread.join()  # the thread that started it is gone
    (runner,) = started
    try:
        ours.settimeout(30)
        assert ours.recv(64)  # its Hello: alive and speaking
        time.sleep(1.5)  # three of the watchdog's looks at its parent
        assert runner.poll() is None
    finally:
        ours.close()  # end of its input: it exits
        assert runner.wait(timeout=30) == 0
        theirs.close()
