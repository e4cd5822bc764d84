"""The official ``ollama`` Python client against the real server and real llama.cpp.

Nothing is mocked: a live server on a loopback port, a model store in a temporary
directory, and the project's tiny generated GGUF model (random weights, so these
tests check structure, never wording). The client is synchronous (httpx), so each
call runs in a worker thread while the server runs in the test's trio loop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import h11
import ollama
import pytest
import trio

from gateway_core_adapters.demo_model import write_demo_model
from gateway_core_adapters.model_work import LOOKAHEAD
from gateway_core_adapters.runner.errors import RunnerError

from .conftest import LiveServer
from .helpers import ENDLESS_SCHEMA, H11Client, request
from .ollama_setup import QUICK, call, install, load, ollama_server


async def test_create_list_show_copy_delete(
    nursery: trio.Nursery, clients: list[ollama.Client], tmp_path: Path, gguf: Path
) -> None:
    _, client = await ollama_server(nursery, clients, tmp_path / "models")
    digest = await call(lambda: client.create_blob(gguf))
    assert digest.startswith("sha256:")
    progress = await call(
        lambda: list(
            client.create(
                model="Tiny:v1",
                files={"tiny.gguf": digest},
                system="You are terse.",
                parameters={"temperature": 0.5, "stop": ["<|im_end|>"]},
                stream=True,
            )
        )
    )
    assert progress[-1].status == "success"
    assert len(progress) > 1  # real progress lines before the success

    listed = await call(lambda: client.list())
    assert [m.model for m in listed.models] == ["Tiny:v1"]
    assert listed.models[0].details is not None
    assert listed.models[0].details.family == "llama"
    # Every layer counts: the GGUF file plus the template, system and params.
    assert listed.models[0].size is not None
    assert listed.models[0].size > gguf.stat().st_size

    shown = await call(lambda: client.show("tiny:V1"))  # names are case-insensitive
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == "llama"
    assert "tokenizer.chat_template" not in shown.modelinfo
    assert shown.capabilities is not None
    assert "completion" in shown.capabilities
    assert shown.template is not None
    assert "<|im_start|>" in shown.template
    assert shown.modelfile is not None
    assert 'SYSTEM """You are terse."""' in shown.modelfile
    assert shown.parameters is not None
    assert "temperature" in shown.parameters

    assert (await call(lambda: client.copy("tiny:v1", "copied"))).status == "success"
    names = {m.model for m in (await call(lambda: client.list())).models}
    assert names == {"Tiny:v1", "copied:latest"}
    assert (await call(lambda: client.delete("copied"))).status == "success"
    names = {m.model for m in (await call(lambda: client.list())).models}
    assert names == {"Tiny:v1"}

    with pytest.raises(ollama.ResponseError) as missing:
        await call(lambda: client.show("copied"))
    assert missing.value.status_code == 404


async def test_generate_streaming_and_not(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    _, client = served
    whole = await call(
        lambda: client.generate(model="tiny", prompt="Hello", options=QUICK)
    )
    assert whole.done is True
    assert whole.done_reason == "length"
    assert whole.eval_count == 8
    assert whole.prompt_eval_count is not None
    assert whole.prompt_eval_count > 0
    assert whole.total_duration is not None
    assert whole.eval_duration is not None
    assert 0 < whole.eval_duration <= whole.total_duration
    assert whole.context is not None
    assert len(whole.context) == whole.prompt_eval_count + 8

    chunks = await call(
        lambda: list(
            client.generate(model="tiny", prompt="Hello", options=QUICK, stream=True)
        )
    )
    assert [c.done for c in chunks] == [False] * (len(chunks) - 1) + [True]
    # Same seed, same prompt: the stream spells out the same answer.
    assert "".join(c.response or "" for c in chunks) == whole.response
    assert chunks[-1].eval_count == 8


async def test_chat_streaming_and_not(served: tuple[LiveServer, ollama.Client]) -> None:
    _, client = served
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"},
    ]
    whole = await call(
        lambda: client.chat(model="tiny", messages=messages, options=QUICK)
    )
    assert whole.message.role == "assistant"
    assert whole.done_reason == "length"
    assert whole.eval_count == 8
    chunks = await call(
        lambda: list(
            client.chat(model="tiny", messages=messages, options=QUICK, stream=True)
        )
    )
    assert chunks[-1].done is True
    assert "".join(c.message.content or "" for c in chunks) == whole.message.content


async def test_ps_shows_the_loaded_model_and_keep_alive_0_unloads_it(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    _, client = served
    assert (await call(lambda: client.ps())).models == []
    loaded = await call(lambda: client.generate(model="tiny", prompt=""))
    assert loaded.done_reason == "load"
    running = (await call(lambda: client.ps())).models
    assert [m.model for m in running] == ["tiny:latest"]
    assert running[0].context_length == 4096
    unloaded = await call(
        lambda: client.generate(model="tiny", prompt="", keep_alive=0)
    )
    assert unloaded.done_reason == "unload"
    assert (await call(lambda: client.ps())).models == []


async def test_an_expired_keep_alive_unloads_with_no_request(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    _, client = served
    await call(lambda: client.chat(model="tiny", messages=[], keep_alive="1s"))
    assert len((await call(lambda: client.ps())).models) == 1
    # No request arrives from here on until the model is gone.
    with trio.fail_after(20):
        while (await call(lambda: client.ps())).models:
            await trio.sleep(0.2)


async def test_client_errors_have_ollamas_statuses(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    _, client = served
    cases: list[tuple[Callable[[], object], int, str]] = [
        (lambda: client.chat(model="nope", messages=[]), 404, "model 'nope' not found"),
        (
            lambda: client.generate(
                model="tiny", prompt="x", options={"num_ctx": "big"}
            ),
            400,
            'option "num_ctx" must be of type integer',
        ),
        (lambda: client.show("bad name!"), 400, "invalid model name"),
        (
            lambda: client.generate(model="tiny", prompt="x", keep_alive="5"),
            400,
            "missing unit",
        ),
    ]
    for function, status, message in cases:
        with pytest.raises(ollama.ResponseError) as caught:
            await call(function)
        assert caught.value.status_code == status
        assert message in caught.value.error


async def test_a_corrupt_blob_is_refused_at_create_time(
    served: tuple[LiveServer, ollama.Client], tmp_path: Path
) -> None:
    _, client = served
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\xff" * 100)
    digest = await call(lambda: client.create_blob(junk))
    with pytest.raises(ollama.ResponseError) as caught:
        await call(lambda: client.create(model="junk", files={"junk.gguf": digest}))
    assert caught.value.status_code == 400
    assert "GGUF" in caught.value.error


async def test_a_model_file_removed_behind_the_servers_back(
    served: tuple[LiveServer, ollama.Client], tmp_path: Path, gguf: Path
) -> None:
    _, client = served
    blobs = tmp_path / "models" / "blobs"
    (model_blob,) = (
        p for p in blobs.iterdir() if p.stat().st_size == gguf.stat().st_size
    )
    model_blob.unlink()
    with pytest.raises(ollama.ResponseError) as caught:
        await call(
            lambda: client.chat(
                model="tiny", messages=[{"role": "user", "content": "x"}]
            )
        )
    assert caught.value.status_code == 500
    assert "tiny" in caught.value.error
    # The server keeps serving.
    assert (await call(lambda: client.list())).models is not None


async def test_two_concurrent_requests_are_both_served_in_full(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    _, client = served
    answers: list[ollama.GenerateResponse] = []

    async def one(prompt: str) -> None:
        chunks = await call(
            lambda: list(
                client.generate(
                    model="tiny",
                    prompt=prompt,
                    options={"num_predict": 64, "seed": 1},
                    stream=True,
                )
            )
        )
        assert [c.done for c in chunks].count(True) == 1
        answers.append(chunks[-1])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "first")
        nursery.start_soon(one, "second")
    assert len(answers) == 2
    for final in answers:
        assert final.done_reason in ("length", "stop")
        assert final.eval_count is not None


async def _stream_generate(live: LiveServer, body: dict[str, object]) -> H11Client:
    client = H11Client(await trio.open_tcp_stream(live.host, live.port))
    data = json.dumps(body).encode()
    await client.send(
        request("POST", "/api/generate", headers=[("content-length", str(len(data)))]),
        h11.Data(data=data),
        h11.EndOfMessage(),
    )
    head = await client.next_event()
    assert isinstance(head, h11.Response)
    assert head.status_code == 200
    return client


async def _first_line(client: H11Client) -> dict[str, object]:
    event = await client.next_event()
    assert isinstance(event, h11.Data)
    line = bytes(event.data).split(b"\n")[0]
    parsed: dict[str, object] = json.loads(line)
    return parsed


class _GenerationClosed(logging.Handler):
    """Collects what the model service says when it closes a generation: how many
    tokens the runner made and how many the exchange took."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.closed: list[tuple[int, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("generation closed"):
            made, taken = record.args  # type: ignore[misc]
            assert isinstance(made, int)
            assert isinstance(taken, int)
            self.closed.append((made, taken))


async def test_a_client_that_disconnects_stops_generation_at_once(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    """The runner works ahead of the client by its credit window at most; once the
    server sees the client go, the runner is told to stop and the slot is free
    within a decode step (the engine's own tests count the steps)."""
    live, client = served
    streaming = await _stream_generate(
        live,
        {
            "model": "tiny",
            "prompt": "Go on",
            # Without the format, a random model may end on its own before the
            # client goes, and the test would see a natural end, not an abort.
            "format": ENDLESS_SCHEMA,
            "options": {"num_predict": 3000},
        },
    )
    assert (await _first_line(streaming))["done"] is False
    models = live.server.models
    assert models is not None
    probe = _GenerationClosed()
    service_log = logging.getLogger("adapters.models")
    old_level = service_log.level
    service_log.setLevel(logging.DEBUG)
    service_log.addHandler(probe)
    try:
        await streaming.stream.aclose()
        with trio.fail_after(10):
            while any(view.busy for view in models.pool.running()) or not probe.closed:
                await trio.sleep(0.01)
    finally:
        service_log.removeHandler(probe)
        service_log.setLevel(old_level)
    ((made, taken),) = probe.closed
    assert made < 3000, "the generation ran to its end"
    assert made - taken <= LOOKAHEAD, f"{made - taken} tokens made past the window"
    # The model is free again at once: another request gets it.
    done = await call(
        lambda: client.generate(model="tiny", prompt="again", options=QUICK)
    )
    assert done.eval_count == 8


async def test_the_request_past_the_queue_limit_gets_503(
    nursery: trio.Nursery, clients: list[ollama.Client], tmp_path: Path, gguf: Path
) -> None:
    # One slot: the test's own lease below holds the whole model.
    live, client = await ollama_server(
        nursery, clients, tmp_path / "models", max_queue=1, num_parallel=1
    )
    await install(client, "tiny", gguf)
    await load(client, "tiny")
    models = live.server.models
    assert models is not None
    (loaded,) = models.pool.running()
    waiting: list[ollama.GenerateResponse] = []

    async def second() -> None:
        answer = await call(
            lambda: client.generate(model="tiny", prompt="b", options=QUICK)
        )
        waiting.append(answer)

    # The test holds the model itself, through the server's own pool, the way a
    # long generation would: no timing decides who has it. Leaving the block gives
    # it back (the lease exits first), and the waiting request then finishes.
    async with (
        trio.open_nursery() as inner,
        models.pool.lease(loaded.key, loaded.spec, None, slots=1),
    ):
        inner.start_soon(second)
        with trio.fail_after(10):
            while models.pool.waiting() < 1:
                await trio.sleep(0.01)
        with pytest.raises(ollama.ResponseError) as busy:
            await call(lambda: client.generate(model="tiny", prompt="c", options=QUICK))
        assert busy.value.status_code == 503
        assert busy.value.error == (
            "server busy, please try again.  maximum pending requests exceeded"
        )
        assert not waiting  # still queued behind the holder
    assert waiting[0].eval_count == 8


async def test_a_new_load_time_option_reloads_the_model(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    _, client = served
    for num_ctx in (512, 1024):
        await load(client, "tiny", {"num_ctx": num_ctx})
        (running,) = (await call(lambda: client.ps())).models
        assert running.context_length == num_ctx


async def test_the_least_recently_used_idle_model_makes_room(
    nursery: trio.Nursery, clients: list[ollama.Client], tmp_path: Path
) -> None:
    _, client = await ollama_server(
        nursery, clients, tmp_path / "models", max_loaded_models=2
    )
    for seed, name in enumerate(("a", "b", "c")):
        path = tmp_path / f"{name}.gguf"
        write_demo_model(path, seed=seed)  # different weights: different files
        await install(client, name, path)

    async def loaded() -> set[str]:
        return {m.model or "" for m in (await call(lambda: client.ps())).models}

    await load(client, "a")
    await load(client, "b")
    await load(client, "a")  # a is now the more recently used
    await load(client, "c")  # room for c: b goes, not a
    assert await loaded() == {"a:latest", "c:latest"}
    await load(client, "b")  # a was used before c, so a makes room now
    assert await loaded() == {"c:latest", "b:latest"}


async def test_a_tiny_context_keeps_the_last_message_of_a_long_chat(
    served: tuple[LiveServer, ollama.Client], tmp_path: Path
) -> None:
    _, client = served
    small = tmp_path / "small.gguf"
    write_demo_model(small, context_length=64)
    await install(client, "small", small)
    history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " * 4}
        for i in range(12)
    ]
    answer = await call(
        lambda: client.chat(
            model="small", messages=history, options={"num_predict": 4, "seed": 1}
        )
    )
    assert answer.done is True
    assert answer.prompt_eval_count is not None
    assert answer.prompt_eval_count < 64  # older turns were dropped to fit
    (running,) = [
        m for m in (await call(lambda: client.ps())).models if m.model == "small:latest"
    ]
    assert running.context_length == 64  # clamped to what the model was trained for


async def test_token_ids_outside_the_vocabulary_are_a_400(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    _, client = served
    with pytest.raises(ollama.ResponseError) as caught:
        await call(
            lambda: client.generate(model="tiny", prompt="hi", context=[99_999_999])
        )
    assert caught.value.status_code == 400
    assert "vocabulary" in caught.value.error


async def test_stopping_the_server_unloads_every_model(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    live, client = served
    await load(client, "tiny")
    models = live.server.models
    assert models is not None
    (running,) = models.pool.running()
    live.server.shutdown()
    with trio.fail_after(10):
        await live.done.wait()
    assert models.pool.running() == []
    # The runner was closed, not just forgotten: its process is gone.
    assert not running.runner.alive
    assert running.runner.death is not None
    assert "status 0" in running.runner.death
    with pytest.raises(RunnerError):
        await running.runner.tokenize("x", add_bos=False)
