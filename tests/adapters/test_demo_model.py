"""The generated demo model: the file, its metadata, llama.cpp, and its chat template.

The weights are random, so whatever the model generates is random text. These tests
assert counts, token ids and byte-exact round trips, never wording.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import gguf
import jinja2
import llama_cpp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.sandbox import ImmutableSandboxedEnvironment
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from gateway_core_adapters import demo_model
from gateway_core_adapters.demo_model import (
    BOS_TOKEN,
    CHAT_TEMPLATE,
    EOS_TOKEN,
    IM_START_TOKEN,
    SPECIAL_TOKENS,
    THINK_END_TOKEN,
    THINK_START_TOKEN,
    TOOL_CALL_END_TOKEN,
    TOOL_CALL_START_TOKEN,
    VOCAB_SIZE,
    write_demo_model,
)

ARCH = "llama"
SAMPLING_SEED = 1234


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo-model") / "demo.gguf"
    write_demo_model(path)
    return path


@pytest.fixture(scope="module")
def llm(model_path: Path) -> Iterator[llama_cpp.Llama]:
    model = llama_cpp.Llama(
        model_path=str(model_path), n_ctx=256, seed=SAMPLING_SEED, verbose=False
    )
    yield model
    model.close()


def _field(reader: gguf.GGUFReader, key: str) -> Any:
    field = reader.get_field(key)
    assert field is not None, key
    return field.contents()


def _token_id(token: str) -> int:
    return demo_model._TOKENS.index(token)


# --- the file -------------------------------------------------------------------------


def test_writes_one_file_of_about_half_a_megabyte(tmp_path: Path) -> None:
    path = tmp_path / "demo.gguf"
    write_demo_model(path)
    # Nothing else: the temporary file was renamed, not copied.
    assert list(tmp_path.iterdir()) == [path]
    assert 300_000 < path.stat().st_size < 700_000


def test_same_arguments_give_identical_bytes(tmp_path: Path) -> None:
    write_demo_model(tmp_path / "a.gguf", seed=7)
    write_demo_model(tmp_path / "b.gguf", seed=7)
    assert (tmp_path / "a.gguf").read_bytes() == (tmp_path / "b.gguf").read_bytes()


def test_another_seed_gives_other_weights(tmp_path: Path) -> None:
    write_demo_model(tmp_path / "a.gguf", seed=7)
    write_demo_model(tmp_path / "b.gguf", seed=8)
    a = gguf.GGUFReader(tmp_path / "a.gguf")
    b = gguf.GGUFReader(tmp_path / "b.gguf")
    assert (tmp_path / "a.gguf").read_bytes() != (tmp_path / "b.gguf").read_bytes()
    # Only the weights differ, and only the random ones (the norms are all ones).
    assert [t.name for t in a.tensors] == [t.name for t in b.tensors]
    for ta, tb in zip(a.tensors, b.tensors, strict=True):
        assert (ta.data == tb.data).all() == ta.name.endswith("norm.weight")


def test_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "demo.gguf"
    write_demo_model(path, seed=1)
    write_demo_model(tmp_path / "expected.gguf", seed=2)
    write_demo_model(path, seed=2)
    assert path.read_bytes() == (tmp_path / "expected.gguf").read_bytes()


def test_a_failed_write_keeps_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "demo.gguf"
    write_demo_model(path, seed=1)
    before = path.read_bytes()

    def corrupt(tmp: Path, **_: object) -> None:
        raise OSError(f"{tmp}: reads back wrong")

    monkeypatch.setattr(demo_model, "_verify", corrupt)
    with pytest.raises(OSError, match="reads back wrong"):
        write_demo_model(path, seed=2)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("context_length", [0, -1])
def test_rejects_a_context_length_below_one(
    tmp_path: Path, context_length: int
) -> None:
    with pytest.raises(ValueError, match="context_length"):
        write_demo_model(tmp_path / "demo.gguf", context_length=context_length)
    assert list(tmp_path.iterdir()) == []


def test_metadata_a_runner_needs(tmp_path: Path) -> None:
    path = tmp_path / "demo.gguf"
    write_demo_model(path, context_length=512, name="tiny")
    reader = gguf.GGUFReader(path)
    keys = gguf.Keys
    assert _field(reader, keys.General.ARCHITECTURE) == ARCH
    assert _field(reader, keys.General.NAME) == "tiny"
    assert _field(reader, keys.LLM.CONTEXT_LENGTH.format(arch=ARCH)) == 512
    assert _field(reader, keys.LLM.EMBEDDING_LENGTH.format(arch=ARCH)) == 64
    assert _field(reader, keys.LLM.BLOCK_COUNT.format(arch=ARCH)) == 2
    assert _field(reader, keys.LLM.FEED_FORWARD_LENGTH.format(arch=ARCH)) == 128
    assert _field(reader, keys.LLM.VOCAB_SIZE.format(arch=ARCH)) == VOCAB_SIZE
    assert _field(reader, keys.Attention.HEAD_COUNT.format(arch=ARCH)) == 4
    assert _field(reader, keys.Attention.HEAD_COUNT_KV.format(arch=ARCH)) == 2
    assert _field(reader, keys.Attention.LAYERNORM_RMS_EPS.format(arch=ARCH)) > 0
    assert _field(reader, keys.Rope.DIMENSION_COUNT.format(arch=ARCH)) == 16
    assert _field(reader, keys.Rope.FREQ_BASE.format(arch=ARCH)) == 10000.0

    assert _field(reader, keys.Tokenizer.MODEL) == "gpt2"
    assert _field(reader, keys.Tokenizer.PRE) == "gpt-2"
    tokens = _field(reader, keys.Tokenizer.LIST)
    types = _field(reader, keys.Tokenizer.TOKEN_TYPE)
    assert len(tokens) == len(types) == VOCAB_SIZE
    # 256 bytes in GPT-2's printable alphabet (space is "Ġ", newline "Ċ"), ...
    assert len(set(tokens[:256])) == 256
    assert (tokens[0x20], tokens[0x0A], tokens[ord("a")]) == ("Ġ", "Ċ", "a")
    # ... then the results of the merges, then the special tokens.
    merges = _field(reader, keys.Tokenizer.MERGES)
    assert tokens[256 : 256 + len(merges)] == [m.replace(" ", "") for m in merges]
    assert tokens[-len(SPECIAL_TOKENS) :] == list(SPECIAL_TOKENS)
    assert types[:256] == [gguf.TokenType.NORMAL] * 256
    control = [_token_id(t) for t in (BOS_TOKEN, IM_START_TOKEN, EOS_TOKEN)]
    assert all(types[i] == gguf.TokenType.CONTROL for i in control)
    tags = (THINK_START_TOKEN, THINK_END_TOKEN, TOOL_CALL_START_TOKEN)
    assert all(types[_token_id(t)] == gguf.TokenType.USER_DEFINED for t in tags)

    assert tokens[_field(reader, keys.Tokenizer.BOS_ID)] == BOS_TOKEN
    assert tokens[_field(reader, keys.Tokenizer.EOS_ID)] == EOS_TOKEN
    assert _field(reader, keys.Tokenizer.ADD_BOS) is False
    assert _field(reader, keys.Tokenizer.ADD_EOS) is False
    assert _field(reader, keys.Tokenizer.CHAT_TEMPLATE) == CHAT_TEMPLATE

    shapes = {t.name: t.shape.tolist() for t in reader.tensors}
    # GGUF lists dimensions innermost first: (n_embd, n_vocab) for the embeddings.
    assert shapes["token_embd.weight"] == [64, VOCAB_SIZE]
    assert shapes["output.weight"] == [64, VOCAB_SIZE]
    assert shapes["blk.1.attn_k.weight"] == [64, 32]
    assert shapes["blk.1.ffn_down.weight"] == [128, 64]
    assert {t.tensor_type for t in reader.tensors} == {gguf.GGMLQuantizationType.F32}


# --- llama.cpp ------------------------------------------------------------------------


def test_loads_in_llama_cpp(llm: llama_cpp.Llama) -> None:
    assert llm.n_vocab() == VOCAB_SIZE
    assert llm.n_embd() == demo_model.EMBEDDING_LENGTH
    assert llm.token_bos() == _token_id(BOS_TOKEN)
    assert llm.token_eos() == _token_id(EOS_TOKEN)
    assert llama_cpp.llama_model_n_ctx_train(llm.model) == 4096
    assert llm.metadata["general.name"] == "gateway-demo"


def test_generates_tokens(llm: llama_cpp.Llama) -> None:
    """Random weights give random text: count the tokens, never read them."""
    prompt = llm.tokenize(
        b"<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
        add_bos=False,
        special=True,
    )
    # generate() does not stop at end-of-generation tokens; the caller does.
    generated = list(itertools.islice(llm.generate(prompt), 32))
    assert len(generated) == 32
    assert all(0 <= token < VOCAB_SIZE for token in generated)

    # A completion stops early if it samples an end token; banning them makes the
    # count exact whatever the random weights prefer.
    never = -1e9
    banned = {_token_id(BOS_TOKEN): never, _token_id(EOS_TOKEN): never}
    completion = llm.create_completion(
        prompt, max_tokens=32, seed=SAMPLING_SEED, logit_bias=banned
    )
    assert not isinstance(completion, Iterator)
    assert completion["choices"][0]["finish_reason"] == "length"
    # llama-cpp-python finishes a UTF-8 character cut by max_tokens before it stops,
    # and here every non-ASCII character spans several byte tokens: up to 3 more.
    assert 32 <= completion["usage"]["completion_tokens"] <= 32 + 3


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain ASCII text",
        " leading and trailing spaces ",
        "two  spaces, a\ttab,\r\nCRLF and\n\nblank lines",
        "SentencePiece's space stand-in ▁ stays itself",
        "é, ß, ж, 日本語, 🦙 and a zero-width joiner: 👩\u200d💻",
        "\x00 NUL and \x7f DEL",
        "<|im_start|> and <|im_end|> typed by a user",
    ],
)
def test_text_round_trips(llm: llama_cpp.Llama, text: str) -> None:
    tokens = llm.tokenize(text.encode(), add_bos=False)
    assert llm.detokenize(tokens) == text.encode()


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_any_unicode_text_round_trips(llm: llama_cpp.Llama, text: str) -> None:
    tokens = llm.tokenize(text.encode(), add_bos=False)
    assert llm.detokenize(tokens) == text.encode()


def test_bytes_are_one_token_each(llm: llama_cpp.Llama) -> None:
    assert llm.tokenize("a€".encode(), add_bos=False) == [ord("a"), 0xE2, 0x82, 0xAC]
    # The merges are read: a blank line is one token.
    assert len(llm.tokenize(b"\n\n", add_bos=False)) == 1


@pytest.mark.parametrize("token", SPECIAL_TOKENS)
def test_special_tokens_are_single_tokens(llm: llama_cpp.Llama, token: str) -> None:
    ids = llm.tokenize(token.encode(), add_bos=False, special=True)
    assert ids == [_token_id(token)]
    assert llm.detokenize(ids, special=True) == token.encode()


@pytest.mark.parametrize(
    "token",
    [THINK_START_TOKEN, THINK_END_TOKEN, TOOL_CALL_START_TOKEN, TOOL_CALL_END_TOKEN],
)
def test_tags_are_tokens_and_text_even_without_special(
    llm: llama_cpp.Llama, token: str
) -> None:
    # The runner detokenizes without special tokens; the tag parsers still see tags.
    ids = llm.tokenize(token.encode(), add_bos=False, special=False)
    assert ids == [_token_id(token)]
    assert llm.detokenize(ids, special=False) == token.encode()


@pytest.mark.parametrize("token", [BOS_TOKEN, IM_START_TOKEN, EOS_TOKEN])
def test_control_tokens_stay_text_unless_asked(
    llm: llama_cpp.Llama, token: str
) -> None:
    # A user who types "<|im_end|>" must not end their own turn.
    assert len(llm.tokenize(token.encode(), add_bos=False, special=False)) > 1
    assert llm.detokenize([_token_id(token)], special=False) == b""


def test_tiny_context_variant(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    write_demo_model(path, context_length=64)
    model = llama_cpp.Llama(model_path=str(path), n_ctx=64, verbose=False)
    try:
        assert llama_cpp.llama_model_n_ctx_train(model.model) == 64
        # llama.cpp rounds the context it allocates up (to 256 in 0.3.x), so a
        # runner must enforce a small num_ctx itself rather than rely on n_ctx().
        assert model.n_ctx() >= 64
    finally:
        model.close()


# --- the chat template ----------------------------------------------------------------

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
SYSTEM = "You are a terse assistant."
QUESTION = "What is the weather in Paris?"
THOUGHT = "The user wants the weather, so call the tool."
TOOL_RESULT = '{"temperature": 21, "unit": "celsius"}'
EXPECTED_ASSISTANT = (
    "<think>\n" + THOUGHT + "\n</think>\n\n"
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
    "</tool_call>"
)
TURN = re.compile(r"<\|im_start\|>(\w+)\n(.*?)<\|im_end\|>\n", re.DOTALL)


def _conversation(
    *, thinking_key: str = "thinking", arguments: object = None
) -> list[dict[str, object]]:
    call = {"name": "get_weather", "arguments": arguments or {"city": "Paris"}}
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": QUESTION},
        {
            "role": "assistant",
            "content": "",
            thinking_key: THOUGHT,
            "tool_calls": [{"type": "function", "function": call}],
        },
        {"role": "tool", "content": TOOL_RESULT},
    ]


def _transformers_env() -> jinja2.Environment:
    # What transformers and llama-cpp-python render chat templates with.
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = lambda value: json.dumps(value, ensure_ascii=False)
    return env


ENVIRONMENTS: dict[str, Callable[[], jinja2.Environment]] = {
    "transformers": _transformers_env,
    # jinja2's own defaults: no block trimming, an HTML-safe, key-sorting tojson.
    "jinja2-defaults": jinja2.Environment,
}


def _render(env: str = "transformers", /, **context: object) -> str:
    return ENVIRONMENTS[env]().from_string(CHAT_TEMPLATE).render(**context)


def _turns(prompt: str) -> list[tuple[str, str]]:
    """The (role, body) turns of a ChatML prompt, checking nothing lies between them."""
    turns = [(m[1], m[2]) for m in TURN.finditer(prompt)]
    rebuilt = "".join(f"<|im_start|>{role}\n{body}<|im_end|>\n" for role, body in turns)
    assert prompt.startswith(rebuilt)
    assert prompt[len(rebuilt) :] in ("", "<|im_start|>assistant\n")
    return turns


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_chat_template_renders_chatml_with_tools_and_thinking(env: str) -> None:
    prompt = _render(
        env, messages=_conversation(), tools=[TOOL], add_generation_prompt=True
    )
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
    turns = _turns(prompt)
    assert [role for role, _ in turns] == ["system", "user", "assistant", "tool"]

    system = turns[0][1]
    assert system.startswith(SYSTEM + "\n\n# Tools\n")
    listed = re.search(r"<tools>\n(.*)\n</tools>", system, re.DOTALL)
    assert listed is not None
    assert [json.loads(line) for line in listed[1].splitlines()] == [TOOL]
    assert "<tool_call>" in system

    assert turns[1][1] == QUESTION
    assert turns[2][1] == EXPECTED_ASSISTANT
    assert turns[3][1] == TOOL_RESULT


@pytest.mark.parametrize("thinking_key", ["thinking", "reasoning_content"])
@pytest.mark.parametrize("arguments", [None, '{"city": "Paris"}'])
def test_chat_template_reads_ollama_and_openai_shapes(
    thinking_key: str, arguments: str | None
) -> None:
    messages = _conversation(thinking_key=thinking_key, arguments=arguments)
    assert _turns(_render(messages=messages))[2][1] == EXPECTED_ASSISTANT


def test_chat_template_puts_content_before_calls_and_calls_on_lines() -> None:
    call = {"name": "f", "arguments": {}}
    message = {"role": "assistant", "content": "Checking.", "tool_calls": [call, call]}
    body = '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>'
    assert _render(messages=[message]) == (
        f"<|im_start|>assistant\nChecking.\n{body}\n{body}<|im_end|>\n"
    )


def test_chat_template_without_system_or_tools() -> None:
    prompt = _render(messages=[{"role": "user", "content": "Hi"}])
    assert prompt == "<|im_start|>user\nHi<|im_end|>\n"


@pytest.mark.parametrize(
    ("variables", "prompt_end"),
    [
        ({}, "<|im_start|>assistant\n"),
        ({"enable_thinking": True}, "<|im_start|>assistant\n"),
        ({"enable_thinking": False}, "<|im_start|>assistant\n<think>\n\n</think>\n\n"),
    ],
)
def test_chat_template_generation_prompt_honours_enable_thinking(
    variables: dict[str, object], prompt_end: str
) -> None:
    messages = [{"role": "user", "content": "Hi"}]
    prompt = _render(messages=messages, add_generation_prompt=True, **variables)
    assert prompt == "<|im_start|>user\nHi<|im_end|>\n" + prompt_end


def test_llama_cpp_renders_the_template_the_same_way(llm: llama_cpp.Llama) -> None:
    formatter = Jinja2ChatFormatter(
        template=llm.metadata["tokenizer.chat_template"],
        eos_token=EOS_TOKEN,
        bos_token=BOS_TOKEN,
    )
    # llama-cpp-python types messages as OpenAI's; ours carry Ollama's "thinking".
    messages = cast("list[Any]", _conversation())
    response = formatter(messages=messages, tools=[cast("Any", TOOL)])
    expected = _render(
        messages=_conversation(), tools=[TOOL], add_generation_prompt=True
    )
    assert response.prompt == expected

    # Rendered prompts tokenize into real turn markers and back, byte for byte.
    tokens = llm.tokenize(expected.encode(), add_bos=False, special=True)
    assert tokens.count(_token_id(IM_START_TOKEN)) == 5
    assert tokens.count(_token_id(EOS_TOKEN)) == 4
    assert llm.detokenize(tokens, special=True) == expected.encode()
