"""/api/generate and /api/chat, driven through the Exchange with scripted results.

The "world" here plays the adapter: it answers each work effect with the results a
store and a runner would give. Tokens are characters (``ord``), so prompt lengths are
easy to reason about; generated pieces are scripted bytes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence

import pytest

from gateway_core import (
    AcquireRunner,
    CheckSchema,
    EndResponse,
    Exchange,
    Generate,
    GenerationDone,
    LocalProtocolError,
    LookupModel,
    ModelFound,
    ModelRecord,
    Phase,
    Piece,
    PromptEvaluated,
    RequestHead,
    Result,
    RunnerReady,
    SchemaSupported,
    SendBody,
    StartResponse,
    Tokenize,
    TokenizerInfo,
    Tokens,
    Unloaded,
    UnloadModel,
    Wait,
    WorkEffect,
    WorkFailed,
)

from .helpers import (
    CHATML,
    CONFIG,
    NOW,
    THINKING_TOOLS,
    Transcript,
    drain,
    model_record,
    run,
)

RECORD = model_record("tiny", CHATML)


class World:
    """A store holding one model, and a runner that says ``pieces``."""

    def __init__(
        self,
        pieces: Sequence[bytes] = (b"Hel", b"lo", b" there"),
        *,
        record: ModelRecord = RECORD,
        context_length: int = 4096,
        end: Result | None = None,
    ) -> None:
        self.pieces = pieces
        self.record = record
        self.context_length = context_length
        self.end = end or GenerationDone(reason="stop")
        self.prompts: list[str] = []

    def __call__(self, effect: WorkEffect) -> Sequence[Result]:
        match effect:
            case LookupModel(name=name):
                if name.model != "tiny":
                    return [WorkFailed(status=404, message="gone")]
                return [ModelFound(record=self.record)]
            case AcquireRunner():
                return [
                    RunnerReady(
                        load_duration=0.5,
                        tokenizer=TokenizerInfo(
                            context_length=self.context_length,
                            add_bos=False,
                            add_eos=False,
                        ),
                    )
                ]
            case UnloadModel():
                return [Unloaded()]
            case CheckSchema():
                return [SchemaSupported()]
            case Tokenize(text=text):
                self.prompts.append(text)
                return [Tokens(ids=tuple(map(ord, text)))]
            case Generate(prompt=prompt):
                pieces: list[Result] = [
                    PromptEvaluated(count=len(prompt), duration=0.25)
                ]
                pieces += [
                    Piece(token=1000 + i, data=data, duration=0.125)
                    for i, data in enumerate(self.pieces)
                ]
                return [*pieces, self.end]
        raise AssertionError(f"unexpected {effect!r}")


def post(
    path: str, body: Mapping[str, object], world: World | None = None
) -> Transcript:
    body_bytes = json.dumps(body).encode()
    # The request arrived two seconds before the results did.
    return run("POST", path, body_bytes, world=world or World(), started=NOW - 2)


def lines(t: Transcript) -> list[dict[str, object]]:
    return [json.loads(line) for line in t.body.splitlines()]


def test_generate_without_streaming_answers_one_object_with_every_field() -> None:
    t = post("/api/generate", {"model": "tiny", "prompt": "Hi", "stream": False})
    assert t.status == 200
    body = t.json()
    assert isinstance(body, dict)
    assert body["response"] == "Hello there"
    assert body["done"] is True
    assert body["done_reason"] == "stop"
    assert body["created_at"] == "2023-11-14T22:13:20Z"
    assert body["eval_count"] == 3
    assert body["total_duration"] == 2_000_000_000
    assert body["eval_duration"] == 375_000_000
    assert body["load_duration"] == 500_000_000
    assert body["prompt_eval_duration"] == 250_000_000
    context = body["context"]
    assert isinstance(context, list)
    assert context[-3:] == [1000, 1001, 1002]
    assert body["prompt_eval_count"] == len(context) - 3
    assert set(body) == {
        "model",
        "created_at",
        "response",
        "done",
        "done_reason",
        "context",
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    }
    assert [type(w) for w in t.work] == [LookupModel, AcquireRunner, Tokenize, Generate]


def test_generate_streams_ndjson_pieces_then_the_final_object() -> None:
    t = post("/api/generate", {"model": "tiny", "prompt": "Hi"})
    assert t.header("content-type") == "application/x-ndjson"
    objects = lines(t)
    assert [o["done"] for o in objects] == [False, False, False, True]
    assert "".join(str(o["response"]) for o in objects) == "Hello there"
    assert objects[-1]["done_reason"] == "stop"


def test_the_prompt_is_rendered_with_the_models_chat_template() -> None:
    world = World()
    post(
        "/api/generate", {"model": "tiny", "prompt": "Hi", "system": "Be kind."}, world
    )
    assert world.prompts == [
        "<|im_start|>system\nBe kind.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    ]


def test_raw_mode_sends_the_prompt_untouched_and_returns_no_context() -> None:
    world = World()
    t = post(
        "/api/generate",
        {"model": "tiny", "prompt": "x y", "raw": True, "stream": False},
        world,
    )
    assert world.prompts == ["x y"]
    body = t.json()
    assert isinstance(body, dict)
    assert "context" not in body


def test_a_stop_string_split_across_tokens_ends_the_answer_before_it() -> None:
    world = World([b"Hel", b"lo ST", b"OP more", b"never asked for"])
    t = post(
        "/api/chat",
        {
            "model": "tiny",
            "messages": [{"role": "user", "content": "Hi"}],
            "options": {"stop": ["STOP"]},
            "stream": False,
        },
        world,
    )
    body = t.json()
    assert isinstance(body, dict)
    assert body["message"] == {"role": "assistant", "content": "Hello "}
    assert body["done_reason"] == "stop"
    assert body["eval_count"] == 3  # the fourth piece was never asked for


def test_num_predict_stops_the_generation_with_length() -> None:
    t = post(
        "/api/generate",
        {"model": "tiny", "prompt": "Hi", "options": {"num_predict": 2}},
    )
    objects = lines(t)
    assert objects[-1]["done_reason"] == "length"
    assert objects[-1]["eval_count"] == 2
    assert "".join(str(o["response"]) for o in objects) == "Hello"


def test_a_character_split_across_tokens_arrives_whole() -> None:
    t = post(
        "/api/generate",
        {"model": "tiny", "prompt": "Hi", "stream": False},
        World([b"caf\xc3", b"\xa9!"]),
    )
    body = t.json()
    assert isinstance(body, dict)
    assert body["response"] == "café!"


def test_empty_requests_load_and_with_keep_alive_0_unload() -> None:
    loaded = post("/api/generate", {"model": "tiny", "prompt": ""})
    assert [type(w) for w in loaded.work] == [LookupModel, AcquireRunner]
    assert loaded.json() == {
        "model": "tiny",
        "created_at": "2023-11-14T22:13:20Z",
        "response": "",
        "done": True,
        "done_reason": "load",
        "total_duration": 2_000_000_000,
        "load_duration": 500_000_000,
    }
    unloaded = post("/api/chat", {"model": "tiny", "messages": [], "keep_alive": 0})
    assert [type(w) for w in unloaded.work] == [LookupModel, UnloadModel]
    body = unloaded.json()
    assert isinstance(body, dict)
    assert body["done_reason"] == "unload"
    assert body["message"] == {"role": "assistant", "content": ""}


def test_keep_alive_reaches_the_runner_in_seconds() -> None:
    t = post("/api/generate", {"model": "tiny", "prompt": "", "keep_alive": "1m30s"})
    acquire = t.work[1]
    assert isinstance(acquire, AcquireRunner)
    assert acquire.keep_alive == 90.0
    assert acquire.context_length == 4096


def test_model_errors_use_ollamas_statuses_and_words() -> None:
    cases: list[tuple[str, dict[str, object], int, str]] = [
        ("/api/generate", {"prompt": "x"}, 404, "model '' not found"),
        ("/api/chat", {"messages": []}, 400, "model is required"),
        ("/api/chat", {"model": "Nope", "messages": []}, 404, "model 'Nope' not found"),
        ("/api/chat", {"model": "a b", "messages": []}, 400, "invalid model name"),
        (
            "/api/generate",
            {"model": "tiny", "prompt": "x", "options": {"top_k": "many"}},
            400,
            'option "top_k" must be of type integer',
        ),
        (
            "/api/generate",
            {"model": "tiny", "prompt": "x", "raw": True, "system": "s"},
            400,
            "raw mode does not support template, system, or context",
        ),
        (
            "/api/chat",
            {"model": "tiny", "messages": [], "think": True},
            400,
            '"tiny" does not support thinking',
        ),
        (
            "/api/chat",
            {"model": "tiny", "messages": [], "tools": [{"type": "function"}]},
            400,
            "registry.ollama.ai/library/tiny:latest does not support tools",
        ),
        (
            "/api/generate",
            {"model": "tiny", "prompt": "x", "top_logprobs": 21},
            400,
            "top_logprobs must be between 0 and 20",
        ),
    ]
    for path, body, status, message in cases:
        t = post(path, body)
        assert (t.status, t.json()) == (status, {"error": message}), body


def test_a_thinking_template_accepts_think() -> None:
    world = World(record=_with_template(THINKING_TOOLS))
    t = post(
        "/api/chat",
        {
            "model": "tiny",
            "messages": [{"role": "USER", "content": "Hi"}],
            "think": "high",
            "stream": False,
        },
        world,
    )
    assert t.status == 200
    assert world.prompts[0].startswith("<|im_start|>user\nHi")  # role lower-cased


def _with_template(template: str) -> ModelRecord:
    return dataclasses.replace(RECORD, template=template)


def test_unknown_options_are_ignored_with_a_note() -> None:
    t = post(
        "/api/generate", {"model": "tiny", "prompt": "", "options": {"mirostat": 2}}
    )
    assert t.status == 200
    assert t.notes == ("ignoring unknown options: 'mirostat'",)


def test_a_long_history_drops_the_oldest_messages_but_keeps_the_system() -> None:
    messages = [
        {"role": "system", "content": "S"},
        *({"role": "user", "content": f"old message {i} " * 5} for i in range(4)),
        {"role": "user", "content": "last"},
    ]
    world = World(context_length=200)
    t = post("/api/chat", {"model": "tiny", "messages": messages}, world)
    assert t.status == 200
    final = world.prompts[-1]
    assert len(final) < 200
    assert final.startswith("<|im_start|>system\nS<|im_end|>")
    assert "last" in final
    assert "old message 0" not in final
    assert len(world.prompts) > 1  # it had to try shorter histories


def test_without_truncate_a_prompt_too_long_is_a_400() -> None:
    t = post(
        "/api/generate",
        {"model": "tiny", "prompt": "x" * 500, "truncate": False},
        World(context_length=100),
    )
    assert (t.status, t.json()) == (
        400,
        {
            "error": "the input length exceeds the context length: the prompt is "
            "550 tokens, and the context of 100 holds 75 once 25 are kept for "
            "the answer"
        },
    )


LONG_HISTORY = [
    {"role": "system", "content": "S"},
    *({"role": "user", "content": f"old message {i} " * 5} for i in range(4)),
    {"role": "user", "content": "last"},
]


def test_native_truncation_says_how_many_messages_it_dropped() -> None:
    body = {"model": "tiny", "messages": LONG_HISTORY, "stream": False}
    dropped = post("/api/chat", body, World(context_length=200)).json()
    kept = post("/api/chat", body, World(context_length=4096)).json()
    assert isinstance(dropped, dict)
    assert isinstance(kept, dict)
    assert dropped["truncated_messages"] == 4  # all but the system and the last
    assert "truncated_messages" not in kept


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_openai_routes_refuse_a_prompt_too_long_with_context_length_exceeded(
    path: str, stream: bool
) -> None:
    body: dict[str, object] = {"model": "tiny", "stream": stream}
    if path == "/v1/completions":
        body["prompt"] = "x" * 500
    else:
        body["messages"] = LONG_HISTORY
    world = World(context_length=100)
    t = post(path, body, world)
    error = t.json()
    assert isinstance(error, dict)
    assert t.status == 400  # before any stream opens
    assert error["error"]["code"] == "context_length_exceeded"
    assert "the context of 100 holds 75" in error["error"]["message"]
    assert not any(isinstance(work, Generate) for work in t.work)


def test_a_runner_failure_after_the_first_byte_is_an_error_line() -> None:
    world = World(end=WorkFailed(status=500, message="decode failed"))
    t = post("/api/generate", {"model": "tiny", "prompt": "Hi"}, world)
    assert t.status == 200
    objects = lines(t)
    assert objects[-1] == {"error": "decode failed"}
    assert all(o.get("done") is False for o in objects[:-1])


def test_a_full_queue_before_the_first_byte_is_a_503() -> None:
    class Busy(World):
        def __call__(self, effect: WorkEffect) -> Sequence[Result]:
            if isinstance(effect, AcquireRunner):
                return [WorkFailed(status=503, message="server busy")]
            return super().__call__(effect)

    t = post("/api/chat", {"model": "tiny", "messages": []}, Busy())
    assert (t.status, t.json()) == (503, {"error": "server busy"})


FIM = "<PRE>{{ prompt }}<SUF>{{ suffix }}<MID>"


def test_suffix_needs_a_template_that_knows_it() -> None:
    refused = post("/api/generate", {"model": "tiny", "prompt": "a", "suffix": "b"})
    assert (refused.status, refused.json()) == (
        400,
        {"error": "registry.ollama.ai/library/tiny:latest does not support insert"},
    )
    world = World(record=_with_template(FIM))
    body = {"model": "tiny", "prompt": "def f(", "suffix": "):", "stream": False}
    assert post("/api/generate", body, world).status == 200
    assert world.prompts == ["<PRE>def f(<SUF>):<MID>"]


def test_a_request_template_replaces_the_models() -> None:
    world = World()
    body = {
        "model": "tiny",
        "prompt": "Hi",
        "system": "S",
        "template": "[{{ system }}|{{ prompt }}|{{ messages | length }}]",
    }
    post("/api/generate", body, world)
    assert world.prompts == ["[S|Hi|2]"]
    broken = post("/api/generate", {**body, "template": "{{ .Prompt }}"})
    assert broken.status == 400
    assert "Go template" in str(broken.json())


def test_context_continues_a_conversation_token_for_token() -> None:
    world = World()
    t = post(
        "/api/generate",
        {"model": "tiny", "prompt": "more", "context": [7, 8, 9], "stream": False},
        world,
    )
    body = t.json()
    assert isinstance(body, dict)
    context = body["context"]
    assert isinstance(context, list)
    assert context[:3] == [7, 8, 9]  # the old conversation, then the new prompt
    assert len(context) == 3 + len(world.prompts[0]) + 3


def test_a_template_that_renders_nothing_is_a_400_not_a_crash() -> None:
    t = post("/api/generate", {"model": "tiny", "prompt": "hi", "template": "{# #}"})
    assert (t.status, t.json()) == (
        400,
        {"error": "the prompt is empty once the template is applied"},
    )


def test_a_long_raw_prompt_keeps_its_start_and_its_end() -> None:
    world = World(context_length=100)
    prompt = "S" * 10 + "m" * 300 + "END"
    t = post(
        "/api/generate",
        {"model": "tiny", "prompt": prompt, "raw": True, "options": {"num_keep": 10}},
        world,
    )
    assert t.status == 200
    (generate,) = [w for w in t.work if isinstance(w, Generate)]
    kept = "".join(map(chr, generate.prompt))
    assert len(kept) == 75  # a quarter of the context is left for the answer
    assert kept.startswith("S" * 10)
    assert kept.endswith("END")
    assert t.notes == (
        "truncating a prompt of 313 tokens to 75, "
        "leaving room to answer in num_ctx 100",
    )


def test_num_keep_minus_one_still_keeps_the_final_token() -> None:
    t = post(
        "/api/generate",
        {"model": "tiny", "prompt": "x" * 200 + "?", "raw": True,
         "options": {"num_keep": -1}},
        World(context_length=40),
    )  # fmt: skip
    (generate,) = [w for w in t.work if isinstance(w, Generate)]
    assert len(generate.prompt) == 30
    assert chr(generate.prompt[-1]) == "?"


def test_a_short_answer_leaves_more_room_for_the_prompt() -> None:
    # num_predict 5 needs only 5 free slots: 90 of 100 tokens fit untouched.
    body = {"model": "tiny", "prompt": "y" * 90, "raw": True}
    short = post("/api/generate", {**body, "options": {"num_predict": 5}},
                 World(context_length=100))  # fmt: skip
    assert short.notes == ()
    unbounded = post("/api/generate", body, World(context_length=100))
    assert unbounded.notes != ()  # a quarter is kept free instead


@pytest.mark.parametrize("num_predict", [0, -1, -2])
def test_num_predict_without_a_positive_limit_runs_to_the_models_end(
    num_predict: int,
) -> None:
    t = post(
        "/api/generate",
        {"model": "tiny", "prompt": "Hi", "stream": False,
         "options": {"num_predict": num_predict}},
    )  # fmt: skip
    body = t.json()
    assert isinstance(body, dict)
    assert (body["response"], body["done_reason"]) == ("Hello there", "stop")


def test_a_partial_stop_string_held_back_is_released_at_the_end() -> None:
    world = World([b"Hello S", b"TO"], end=GenerationDone(reason="length"))
    t = post(
        "/api/generate",
        {"model": "tiny", "prompt": "Hi", "stream": False,
         "options": {"stop": ["STOP"]}},
        world,
    )  # fmt: skip
    body = t.json()
    assert isinstance(body, dict)
    assert (body["response"], body["done_reason"]) == ("Hello STO", "length")


def test_checks_come_in_the_references_order() -> None:
    # The unload shortcut comes before the raw and format checks (ollama-api §1.4).
    unload = {"model": "tiny", "prompt": "", "keep_alive": 0}
    for extra in ({"format": "xml"}, {"raw": True, "system": "s"}):
        t = post("/api/generate", {**unload, **extra})
        assert t.status == 200, extra
    # And the model lookup before both.
    missing = post("/api/generate", {"model": "gone", "raw": True, "system": "s"})
    assert missing.status == 404
    fmt = post("/api/generate", {"model": "tiny", "prompt": "x", "format": "xml"})
    assert fmt.status == 400


def test_debug_render_only_returns_the_prompt_without_running_the_model() -> None:
    t = post(
        "/api/chat",
        {
            "model": "tiny",
            "messages": [{"role": "user", "content": "Hi"}],
            "_debug_render_only": True,
        },
    )
    assert [type(w) for w in t.work] == [LookupModel]
    body = t.json()
    assert isinstance(body, dict)
    assert body["_debug_info"] == {
        "rendered_template": "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        "image_count": 0,
    }
    assert body["done"] is True


def test_a_continued_conversation_adds_no_second_bos() -> None:
    world = World(record=_with_bos("<s>", "<s>" + CHATML))
    t = post("/api/generate", {"model": "tiny", "prompt": "more", "context": [1, 2]},
             world)  # fmt: skip
    (tokenize,) = [w for w in t.work if isinstance(w, Tokenize)]
    assert tokenize.add_bos is False
    assert not tokenize.text.startswith("<s>")
    fresh = post("/api/generate", {"model": "tiny", "prompt": "new"}, World(
        record=_with_bos("<s>", "<s>" + CHATML)))  # fmt: skip
    (first,) = [w for w in fresh.work if isinstance(w, Tokenize)]
    assert first.add_bos is False  # the template wrote it already
    assert first.text.startswith("<s>")


def _with_bos(bos: str, template: str) -> ModelRecord:
    return dataclasses.replace(RECORD, template=template, bos_token=bos)


def _interrupted_after_pieces(path: str, body: Mapping[str, object]) -> bytes:
    """Run a stream until two pieces are out, then interrupt it, as a server does
    at its shutdown deadline; the whole response body."""
    exchange = Exchange(
        RequestHead(method="POST", target=path), config=CONFIG, request_id="r"
    )
    exchange.receive_body(json.dumps(body).encode())
    exchange.end_body()
    world, sent, data = World(), 0, b""
    results: Iterator[Result] = iter(())
    while True:
        effect = exchange.next_effect()
        if effect is Wait.FINISHED:
            return data
        if effect is Wait.NEED_RESULT:
            result = next(results)
            sent += isinstance(result, Piece)
            exchange.receive_result(result, now=NOW)
            if sent == 2 and exchange.phase is Phase.WAITING:
                exchange.interrupt(503, "shutting down")
                sent += 1
        elif isinstance(effect, SendBody):
            data += effect.data
        elif not isinstance(effect, StartResponse | EndResponse | Wait):
            results = iter(world(effect))


def test_an_interrupted_stream_ends_with_each_dialects_in_band_error() -> None:
    hi = [{"role": "user", "content": "hi"}]
    native = _interrupted_after_pieces("/api/chat", {"model": "tiny", "messages": hi})
    *_, last = native.splitlines()
    assert json.loads(last) == {"error": "shutting down"}
    openai = _interrupted_after_pieces(
        "/v1/chat/completions", {"model": "tiny", "messages": hi, "stream": True}
    )
    assert openai.endswith(b"data: [DONE]\n\n")
    assert b'"message":"shutting down"' in openai.rsplit(b"data: ", 2)[1]
    anthropic = _interrupted_after_pieces(
        "/v1/messages",
        {"model": "tiny", "messages": hi, "stream": True, "max_tokens": 9},
    )
    assert anthropic.rstrip().rsplit(b"\n\n", 1)[-1].startswith(b"event: error")
    assert b"message_stop" not in anthropic


def test_a_result_already_on_its_way_at_an_interrupt_is_dropped() -> None:
    """An adapter may hold a result when the interrupt comes (its wait for the
    result had ended, the interrupt ran before it fed the result in): the late
    result is dropped, once, and the error answer goes out unchanged."""
    exchange = Exchange(
        RequestHead(method="POST", target="/api/generate"),
        config=CONFIG,
        request_id="r",
    )
    exchange.receive_body(b'{"model": "tiny", "prompt": "hi"}')
    exchange.end_body()
    (lookup,) = drain(exchange)
    assert isinstance(lookup, LookupModel)
    assert exchange.phase is Phase.WAITING
    exchange.interrupt(503, "shutting down")
    (late,) = World()(lookup)
    exchange.receive_result(late, now=NOW)
    effects = drain(exchange)
    head = effects[0]
    assert isinstance(head, StartResponse)
    assert head.status == 503
    with pytest.raises(LocalProtocolError):
        exchange.receive_result(late, now=NOW)  # only the one in flight is dropped


def test_an_interrupt_before_the_answer_starts_is_a_503() -> None:
    exchange = Exchange(
        RequestHead(method="GET", target="/api/tags"), config=CONFIG, request_id="r"
    )
    drain(exchange)  # ListModels is out
    exchange.interrupt(503, "shutting down")
    exchange.interrupt(503, "twice is harmless")
    effects = drain(exchange)
    head = effects[0]
    assert isinstance(head, StartResponse)
    assert head.status == 503
    assert exchange.next_effect() is Wait.FINISHED
