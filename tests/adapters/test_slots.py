"""Parallel slots over real HTTP: many users at once, the same answers as alone,
a newcomer served at once, and a conversation's next turn served from the cache.

The demo model's random weights make every answer noise; these tests compare token
streams and counts, never wording.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import ollama
import openai
import trio

from .live import LiveServer
from .ollama_setup import call

MESSAGES = [{"role": "user", "content": "Tell me something."}]


def _asking(user: int) -> list[dict[str, str]]:
    """What user number ``user`` asks: every user asks something else."""
    return [{"role": "user", "content": f"I am user {user}. Tell me something."}]


def _sampling(seed: int | None) -> dict[str, Any]:
    return {"temperature": 0.0} if seed is None else {"seed": seed}


def _native(live: LiveServer, user: int, seed: int | None, stream: bool) -> str:
    options: dict[str, Any] = {"num_predict": 40, **_sampling(seed)}
    body = {"model": "tiny", "messages": _asking(user), "options": options,
            "stream": stream}  # fmt: skip
    with httpx.Client(base_url=f"http://{live.host}:{live.port}", timeout=60) as http:
        response = http.post("/api/chat", json=body)
        response.raise_for_status()
        if not stream:
            return str(response.json()["message"]["content"])
        lines = [json.loads(line) for line in response.text.splitlines()]
        assert lines[-1]["done"] is True
        return "".join(line["message"]["content"] for line in lines[:-1])


def _openai(live: LiveServer, user: int, seed: int | None, stream: bool) -> str:
    base = f"http://{live.host}:{live.port}/v1"
    messages: Any = _asking(user)
    with openai.OpenAI(base_url=base, api_key="x") as client:
        if not stream:
            reply = client.chat.completions.create(
                model="tiny",
                messages=messages,
                max_tokens=40,
                extra_body=_sampling(seed),
            )
            return reply.choices[0].message.content or ""
        chunks = client.chat.completions.create(
            model="tiny",
            messages=messages,
            max_tokens=40,
            stream=True,
            extra_body=_sampling(seed),
        )
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def _anthropic(live: LiveServer, user: int, seed: int | None, stream: bool) -> str:
    base = f"http://{live.host}:{live.port}"
    messages: Any = _asking(user)
    # Anthropic's API has no seed: greedy only.
    with anthropic.Anthropic(base_url=base, api_key="x") as client:
        if not stream:
            reply = client.messages.create(
                model="tiny",
                messages=messages,
                max_tokens=40,
                extra_body=_sampling(None),
            )
            return "".join(b.text for b in reply.content if b.type == "text")
        with client.messages.stream(
            model="tiny", messages=messages, max_tokens=40, extra_body=_sampling(None)
        ) as events:
            return "".join(events.text_stream)


Ask = Callable[[LiveServer, int, int | None, bool], str]


async def test_sixteen_concurrent_streams_get_what_they_get_alone(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    """Greedy and seeded, in all three dialects: each of 16 users asking at once
    gets exactly the text they get when they ask alone, whatever shares the
    decode batch with them."""
    live, _ = served
    requests: list[tuple[Ask, int | None, bool]] = []
    for index in range(16):
        dialect: Ask = (_native, _openai, _anthropic)[index % 3]
        seed = None if dialect is _anthropic or index % 4 == 0 else index
        requests.append((dialect, seed, index % 2 == 0))

    async def ask(user: int) -> str:
        dialect, seed, stream = requests[user]
        return await call(lambda: dialect(live, user, seed, stream))

    alone = [await ask(user) for user in range(len(requests))]
    assert all(alone), "every user gets some text"
    together: list[str | None] = [None] * len(requests)

    async def one(index: int) -> None:
        together[index] = await ask(index)

    async with trio.open_nursery() as nursery:
        for index in range(len(requests)):
            nursery.start_soon(one, index)
    assert together == alone


async def test_a_newcomer_starts_while_three_others_stream(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    """With 4 slots, a request that arrives while 3 long streams run gets its
    answer while they are still running, not after them."""
    live, _ = served
    long = {"num_predict": 400, "seed": 1, "temperature": 0.0, "repeat_last_n": -1,
            "presence_penalty": 1e9}  # fmt: skip
    finished: list[str] = []
    started = [threading.Event() for _ in range(3)]

    def consume(
        name: str, options: dict[str, Any], first: threading.Event, pause: float = 0
    ) -> None:
        # A client of its own in each thread, closed here: one client shared by
        # threads leaves pooled sockets for the garbage collector.
        client = ollama.Client(host=f"http://{live.host}:{live.port}")
        try:
            chunks = client.chat(
                model="tiny", messages=MESSAGES, options=options, stream=True
            )
            for _ in chunks:
                first.set()
                time.sleep(pause)  # a slow reader: its stream lasts, its slot held
            finished.append(name)  # before closing, which takes its own time
        finally:
            client.close()  # type: ignore[no-untyped-call]

    async with trio.open_nursery() as nursery:
        for index in range(3):
            nursery.start_soon(
                call, lambda i=index: consume(f"long{i}", long, started[i], 0.02)
            )
        with trio.fail_after(30):  # until all three are streaming
            while not all(event.is_set() for event in started):
                await trio.sleep(0.005)
        await call(lambda: consume("newcomer", {"num_predict": 5}, threading.Event()))
    assert finished[0] == "newcomer"


async def test_the_next_turn_of_a_chat_evaluates_only_the_new_messages(
    served: tuple[LiveServer, ollama.Client],
) -> None:
    live, client = served
    # A long first message and a short answer: the first turn is most of the
    # second turn's prompt, whatever the random model wrote.
    opening = [{"role": "user", "content": "Here is what happened. " * 12}]
    first = await call(
        lambda: client.chat(
            model="tiny", messages=opening, options={"num_predict": 3, "seed": 1}
        )
    )
    assert first.prompt_eval_count
    turn: list[Any] = [
        *opening,
        {"role": "assistant", "content": first.message.content},
        {"role": "user", "content": "And then?"},
    ]
    second = await call(
        lambda: client.chat(model="tiny", messages=turn, options={"num_predict": 4})
    )
    # The OpenAI API tells the prompt's length, and how much of it was cached: the
    # same turn again finds all of it but the last token in its slot.
    with openai.OpenAI(
        base_url=f"http://{live.host}:{live.port}/v1", api_key="x"
    ) as openai_client:
        again = await call(
            lambda: openai_client.chat.completions.create(
                model="tiny", messages=turn, max_tokens=4
            )
        )
    usage = again.usage
    assert usage is not None
    assert usage.prompt_tokens_details is not None
    total = usage.prompt_tokens
    assert usage.prompt_tokens_details.cached_tokens == total - 1
    # The second turn evaluated only what follows the first turn's prompt (the
    # answer as the template writes it back, and the new message).
    assert first.prompt_eval_count is not None
    assert second.prompt_eval_count is not None
    assert second.prompt_eval_count <= total - first.prompt_eval_count + 1
