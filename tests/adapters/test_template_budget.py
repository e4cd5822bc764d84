"""Chat-template bombs against a live server: refused with 400, naming the limit,
while the event loop goes on serving a stream on another connection.

The server runs in the test's own trio loop (and each model in a runner process of
its own), so the stream's reader below shares the loop the templates are rendered
on: what the loop's thread did between two chunks of the stream is what a render
held it for. For the same reason the memory a render takes shows in this process.
"""

from __future__ import annotations

import json
import time
from itertools import pairwise
from pathlib import Path

import h11
import ollama
import trio

from gateway_core._template_budget import MAX_CHARS, MAX_STEPS
from gateway_core_adapters.demo_model import write_demo_model

from .conftest import LiveServer
from .helpers import H11Client, Reply, request
from .ollama_setup import install

# 60 million loop iterations (1.8 s of the event loop without a budget), and a
# padding of 300 million characters (24 GB of memory without one).
LOOP_BOMB = (
    "{% for i in range(100000) %}{% for j in range(600) %}{% endfor %}{% endfor %}"
    "{{ prompt }}"
)
PADDING_BOMB = "{{ 'a'.ljust(300000000) }}{{ prompt }}"

# A template in the request, and one stored with a model (created below).
BOMBS: tuple[tuple[str, dict[str, object]], ...] = (
    ("/api/generate", {"model": "tiny", "prompt": "hi", "template": LOOP_BOMB}),
    ("/api/generate", {"model": "tiny", "prompt": "hi", "template": PADDING_BOMB}),
    ("/api/chat", {"model": "bomb", "messages": [{"role": "user", "content": "hi"}]}),
)
STEPS = f"template error: the template took more than {MAX_STEPS} steps"
CHARS = f"template error: the template built a value of more than {MAX_CHARS}"
ERRORS = (STEPS, CHARS, STEPS)

# The most work the loop's thread may do between two chunks of the stream, or
# between two ticks of a task that only yields: a render must stay well under it.
# Counted in the thread's CPU time, as on a shared machine the wall clock also
# counts whatever else ran (46 ms gaps with no bomb at all, on a busy 2-CPU
# machine); the wall clock gets a looser bound, far below the seconds an unbounded
# render takes.
MAX_BUSY = 0.050
MAX_WALL_GAP = 0.500
MAX_GROWTH = 100 * 1024 * 1024

# One llama.cpp thread, so that the runner generating the stream leaves a CPU to the
# server; every request loads with the same options, as one with other load options
# would reload its runner.
LOAD = {"num_thread": 1}


def resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def post(live: LiveServer, path: str, body: dict[str, object]) -> Reply:
    client = H11Client(await trio.open_tcp_stream(live.host, live.port))
    try:
        data = json.dumps(body).encode()
        head = request(
            "POST",
            path,
            [("content-type", "application/json"), ("content-length", str(len(data)))],
        )
        return await client.exchange(head, data)
    finally:
        await client.stream.aclose()


async def open_stream(live: LiveServer) -> H11Client:
    """A streaming generation on the stream's own model, its first chunk read."""
    client = H11Client(await trio.open_tcp_stream(live.host, live.port))
    options = {"num_predict": 3000, **LOAD}
    data = json.dumps({"model": "stream", "prompt": "Go on", "options": options})
    await client.send(
        request("POST", "/api/generate", [("content-length", str(len(data)))]),
        h11.Data(data=data.encode()),
        h11.EndOfMessage(),
    )
    head = await client.next_event()
    assert isinstance(head, h11.Response)
    assert head.status_code == 200
    first = await client.next_event()
    assert isinstance(first, h11.Data)
    return client


async def send_bombs(live: LiveServer) -> None:
    for (path, body), error in zip(BOMBS, ERRORS, strict=True):
        reply = await post(live, path, {**body, "options": LOAD, "stream": False})
        assert reply.status == 400, reply.body
        assert reply.json()["error"].startswith(error), reply.body
        # Room for the stream between bombs, so that a gap between its chunks
        # measures one render, not several.
        await trio.sleep(0.02)


async def test_template_bombs_get_400_and_the_loop_keeps_serving(
    served: tuple[LiveServer, ollama.Client], tmp_path: Path
) -> None:
    live, client = served
    created = await post(
        live,
        "/api/create",
        {"model": "bomb", "from": "tiny", "template": LOOP_BOMB, "stream": False},
    )
    assert created.status == 200, created.body
    # The stream runs on a model of its own: a generation takes a slot of its
    # model's runner before it renders its prompt, which pauses that runner.
    other = tmp_path / "other.gguf"
    write_demo_model(other, seed=8)
    await install(client, "stream", other)
    # Once outside the measurement: that loads the models and compiles the templates.
    await send_bombs(live)

    arrivals: list[tuple[float, float]] = []  # wall clock, the loop thread's CPU
    ticks: list[tuple[float, float]] = []
    streaming = trio.Event()
    bombs_done = trio.Event()

    def now() -> tuple[float, float]:
        return time.perf_counter(), time.thread_time()

    async def read_streams() -> None:
        # The demo model streams a few hundred tokens a second and stops early: as
        # one generation ends, the next begins, until the bombs are answered.
        while not bombs_done.is_set():
            stream = await open_stream(live)
            streaming.set()
            try:
                while not bombs_done.is_set():
                    event = await stream.next_event()
                    arrivals.append(now())
                    if isinstance(event, h11.EndOfMessage):
                        break
            finally:
                await stream.stream.aclose()

    async def tick() -> None:
        while not bombs_done.is_set():
            ticks.append(now())
            await trio.sleep(0)

    before = resident_bytes()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_streams)
        await streaming.wait()
        nursery.start_soon(tick)
        await trio.sleep(0.05)
        start = now()
        for _ in range(3):
            await send_bombs(live)
        end = now()
        bombs_done.set()
    grown = resident_bytes() - before

    assert grown < MAX_GROWTH, f"the process grew by {grown / 2**20:.0f} MB"
    during = [a for a in arrivals if start[0] <= a[0] <= end[0]]
    assert len(during) >= 5, "the stream stalled while the bombs were answered"
    gaps = list(pairwise([start, *during, end]))
    stall = max(b[1] - a[1] for a, b in pairwise(t for t in ticks if t >= start))
    busy = max(b[1] - a[1] for a, b in gaps)
    wall = max(b[0] - a[0] for a, b in gaps)
    assert stall < MAX_BUSY, f"the loop was held for {stall * 1000:.0f} ms"
    assert busy < MAX_BUSY, f"the loop worked {busy * 1000:.0f} ms between chunks"
    assert wall < MAX_WALL_GAP, f"the stream waited {wall * 1000:.0f} ms"
