"""Prefill: a trailing assistant message is continued, not closed, on all three
APIs; the reply holds only the continuation. Tokens are characters, so the prompt
the model saw is read back from the Generate effect."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from gateway_core import (
    AcquireRunner,
    CheckSchema,
    Generate,
    GenerationDone,
    LookupModel,
    ModelFound,
    Piece,
    PromptEvaluated,
    Result,
    RunnerReady,
    SchemaSupported,
    Tokenize,
    TokenizerInfo,
    Tokens,
    WorkEffect,
)

from .helpers import CHATML, THINKING_TOOLS, model_record, run

# A template that writes the last answer differently from the others cannot be
# continued: it drops the final assistant message entirely.
DROPS_LAST = (
    "{% for m in messages %}{% if not loop.last or m.role != 'assistant' %}"
    "<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TEMPLATES = {"chatml": CHATML, "thinker": THINKING_TOOLS, "drops": DROPS_LAST}


class World:
    def __init__(
        self, free: Sequence[bytes], constrained: Sequence[bytes] = ()
    ) -> None:
        self.scripts = {False: free, True: constrained}
        self.prompts: list[str] = []
        self.prefixes: list[str] = []

    def __call__(self, effect: WorkEffect) -> Sequence[Result]:
        match effect:
            case LookupModel(name=name):
                record = model_record(name.model, TEMPLATES[name.model])
                return [ModelFound(record=record)]
            case AcquireRunner():
                info = TokenizerInfo(context_length=4096, add_bos=False, add_eos=False)
                return [RunnerReady(load_duration=0.0, tokenizer=info)]
            case CheckSchema():
                return [SchemaSupported()]
            case Tokenize(text=text):
                return [Tokens(ids=tuple(map(ord, text)))]
            case Generate(format=fmt):
                self.prompts.append("".join(map(chr, effect.prompt)))
                self.prefixes.append("".join(map(chr, effect.constraint_prefix)))
                script = self.scripts[fmt is not None]
                results: list[Result] = [PromptEvaluated(count=3, duration=0.0)]
                results += [
                    Piece(token=900 + i, data=data, duration=0.0)
                    for i, data in enumerate(script)
                ]
                return [*results, GenerationDone(reason="stop")]
        raise AssertionError(effect)


PREFILLED = [
    {"role": "user", "content": "Name a tree."},
    {"role": "assistant", "content": "Whill"},
]
CONTINUED = "<|im_start|>user\nName a tree.<|im_end|>\n<|im_start|>assistant\nWhill"


def _native(world: World, model: str = "chatml", **fields: Any) -> Any:
    body = {"model": model, "messages": PREFILLED, "stream": False, **fields}
    return run("POST", "/api/chat", json.dumps(body).encode(), world=world).json()


def test_native_chat_continues_the_answer() -> None:
    world = World([b"ow", b" tree"])
    answer = _native(world)
    assert world.prompts == [CONTINUED]
    assert answer["message"]["content"] == "ow tree"  # the continuation only


def test_openai_chat_continues_the_answer() -> None:
    world = World([b"ow"])
    body = {"model": "chatml", "messages": PREFILLED}
    t = run("POST", "/v1/chat/completions", json.dumps(body).encode(), world=world)
    assert world.prompts == [CONTINUED]
    assert t.json()["choices"][0]["message"]["content"] == "ow"  # type: ignore[index]


def test_anthropic_messages_continue_the_answer() -> None:
    world = World([b"ow"])
    body = {"model": "chatml", "max_tokens": 10, "messages": PREFILLED}
    t = run("POST", "/v1/messages", json.dumps(body).encode(), world=world)
    assert world.prompts == [CONTINUED]
    assert t.json()["content"] == [{"type": "text", "text": "ow"}]  # type: ignore[index]


def test_an_earlier_assistant_message_stays_history() -> None:
    world = World([b"ok"])
    messages = [*PREFILLED, {"role": "user", "content": "And another?"}]
    _native(world, messages=messages)
    assert world.prompts[0].endswith(
        "Whill<|im_end|>\n<|im_start|>user\nAnd another?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


@pytest.mark.parametrize(
    "last",
    [
        {"role": "assistant", "content": ""},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "f", "arguments": {}}}],
        },
    ],
)
def test_an_empty_answer_or_a_call_is_not_continued(last: dict[str, Any]) -> None:
    world = World([b"ok"])
    _native(world, messages=[PREFILLED[0], last])
    assert world.prompts[0].endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_a_template_that_cannot_show_the_open_answer_opens_a_new_turn() -> None:
    world = World([b"ok"])
    _native(world, model="drops")
    assert world.prompts == [
        "<|im_start|>user\nName a tree.<|im_end|>\n<|im_start|>assistant\n"
    ]


def test_a_prefilled_answer_is_content_for_a_thinking_model() -> None:
    # The prompt ends inside the answer, not inside thinking: what follows is
    # content, even though the model can think.
    world = World([b"ow</think>?"])
    answer = _native(world, model="thinker")
    assert world.prompts == [CONTINUED]
    assert answer["message"]["content"] == "ow</think>?"
    assert "thinking" not in answer["message"]


def test_a_prefilled_structured_answer_is_constrained_from_where_it_stands() -> None:
    world = World([], constrained=[b' "a"}'])
    messages = [PREFILLED[0], {"role": "assistant", "content": '{"tree":'}]
    answer = _native(world, messages=messages, format="json", think=False)
    assert world.prompts == [
        '<|im_start|>user\nName a tree.<|im_end|>\n<|im_start|>assistant\n{"tree":'
    ]
    # The constraint starts past the prefill; the format judged the whole answer
    # ('{"tree": "a"}'); the reply holds the continuation only.
    assert world.prefixes == ['{"tree":']
    assert answer["message"]["content"] == ' "a"}'


def test_a_prefill_the_format_cannot_end_is_refused() -> None:
    world = World([], constrained=[b"}"])
    messages = [PREFILLED[0], {"role": "assistant", "content": "[1,"}]
    answer = _native(world, messages=messages, format="json", think=False)
    assert "not valid JSON" in answer["error"]
