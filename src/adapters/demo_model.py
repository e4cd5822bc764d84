"""A tiny llama-architecture GGUF model, written from code, for tests and demos.

``write_demo_model`` builds a model of about 0.45 MB in a few milliseconds: random
weights, a byte-level vocabulary and a ChatML chat template that knows ``<think>``
and ``<tool_call>``. Its text is noise, but llama.cpp loads it like any real model,
so the runner, the scheduler and the server can be exercised end to end without
downloading anything.

The vocabulary is GPT-2-style byte-level BPE (``tokenizer.ggml.model = "gpt2"``), not
the ``<0xNN>`` byte tokens of a SentencePiece vocab. llama.cpp's SPM tokenizer turns
every space into U+2581 and optionally prefixes one, and decodes ``<0xNN>`` tokens
to raw bytes but U+2581 to a space: the text ``"a▁b"`` comes back as ``"a b"`` and a
leading space can appear or vanish. In byte-level BPE each of the 256 bytes has its
own printable stand-in character and llama.cpp maps them back one for one, so any
UTF-8 text survives ``tokenize`` then ``detokenize`` byte for byte. (llama.cpp aborts
if a BPE vocab marks a token as a byte token, which is why no ``<0xNN>`` appears.)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import gguf
import numpy as np
import numpy.typing as npt

__all__ = [
    "BLOCK_COUNT",
    "BOS_TOKEN",
    "CHAT_TEMPLATE",
    "DEFAULT_CONTEXT_LENGTH",
    "DEFAULT_NAME",
    "DEMO_VOCABULARY",
    "EMBEDDING_LENGTH",
    "EOS_TOKEN",
    "HEAD_COUNT",
    "HEAD_COUNT_KV",
    "IM_START_TOKEN",
    "SPECIAL_TOKENS",
    "THINK_END_TOKEN",
    "THINK_START_TOKEN",
    "TINY",
    "TOOL_CALL_END_TOKEN",
    "TOOL_CALL_START_TOKEN",
    "VOCAB_SIZE",
    "ModelShape",
    "Vocabulary",
    "write_demo_model",
]

ARCHITECTURE: Final = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA]

# Large enough for multi-turn chat tests, small enough that a runner that sizes its
# context from the model (n_ctx=0) allocates a KV cache of one megabyte.
DEFAULT_CONTEXT_LENGTH: Final = 4096
DEFAULT_NAME: Final = "gateway-demo"

# The smallest shape that still has every feature a runner meets in real models:
# more than one block, several heads, grouped-query attention (fewer KV heads than
# query heads) and a gated feed-forward. Embedding tests see vectors of this length.
EMBEDDING_LENGTH: Final = 64
BLOCK_COUNT: Final = 2
HEAD_COUNT: Final = 4
HEAD_COUNT_KV: Final = 2
FEED_FORWARD_LENGTH: Final = 128
_HEAD_DIM: Final = EMBEDDING_LENGTH // HEAD_COUNT


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelShape:
    """The dimensions of a llama-architecture model with the demo vocabulary.

    The demo model is ``TINY``; the benchmarks write bigger ones (a model whose
    matrix products dominate, as a user's real model's do) with the same writer.
    """

    embedding_length: int
    block_count: int
    head_count: int
    head_count_kv: int
    feed_forward_length: int

    def __post_init__(self) -> None:
        if self.embedding_length % self.head_count:
            raise ValueError("embedding_length must be a multiple of head_count")
        if self.head_count % self.head_count_kv:
            raise ValueError("head_count must be a multiple of head_count_kv")

    @property
    def head_dim(self) -> int:
        return self.embedding_length // self.head_count


TINY: Final = ModelShape(
    embedding_length=EMBEDDING_LENGTH,
    block_count=BLOCK_COUNT,
    head_count=HEAD_COUNT,
    head_count_kv=HEAD_COUNT_KV,
    feed_forward_length=FEED_FORWARD_LENGTH,
)
_ROPE_FREQ_BASE: Final = 10000.0
_RMS_NORM_EPS: Final = 1e-5
# Small enough that activations stay tame through the blocks; the value matters
# little, since nothing is trained.
_WEIGHT_STD: Final = 0.02

# ChatML's turn markers are control tokens: they only come out of tokenize() when the
# caller asks for special tokens, so a user who types "<|im_start|>" gets plain text,
# and detokenize() drops them unless asked. The reasoning and tool-call tags are
# user-defined tokens, as in Qwen3: always one token, always rendered as text, so the
# gateway's tag parsers see them in ordinary detokenized output.
BOS_TOKEN: Final = "<|endoftext|>"
IM_START_TOKEN: Final = "<|im_start|>"
EOS_TOKEN: Final = "<|im_end|>"
THINK_START_TOKEN: Final = "<think>"
THINK_END_TOKEN: Final = "</think>"
TOOL_CALL_START_TOKEN: Final = "<tool_call>"
TOOL_CALL_END_TOKEN: Final = "</tool_call>"
_SPECIAL_TOKEN_TYPES: Final[dict[str, gguf.TokenType]] = {
    BOS_TOKEN: gguf.TokenType.CONTROL,
    IM_START_TOKEN: gguf.TokenType.CONTROL,
    EOS_TOKEN: gguf.TokenType.CONTROL,
    THINK_START_TOKEN: gguf.TokenType.USER_DEFINED,
    THINK_END_TOKEN: gguf.TokenType.USER_DEFINED,
    TOOL_CALL_START_TOKEN: gguf.TokenType.USER_DEFINED,
    TOOL_CALL_END_TOKEN: gguf.TokenType.USER_DEFINED,
}
SPECIAL_TOKENS: Final = tuple(_SPECIAL_TOKEN_TYPES)


def _byte_symbols() -> list[str]:
    """GPT-2's byte-level alphabet: the stand-in character of each byte, in order.

    Printable Latin-1 bytes stand for themselves; the other 68 (controls, space, NBSP,
    soft hyphen) are moved, in byte order, to U+0100 and up, so that space is "Ġ"
    and newline is "Ċ". llama.cpp holds the same table; tokens must use it exactly.
    """
    printable = {*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    symbols: list[str] = []
    moved = 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(0x100 + moved))
            moved += 1
    return symbols


_BYTE_SYMBOLS: Final = _byte_symbols()
# llama.cpp refuses a BPE vocab without merges, and gguf's writer drops empty arrays,
# so there must be at least one. Runs of spaces and blank lines are the commonest
# pairs in chat text; each merge needs its result in the vocab as well.
_MERGES: Final = (
    f"{_BYTE_SYMBOLS[0x20]} {_BYTE_SYMBOLS[0x20]}",
    f"{_BYTE_SYMBOLS[0x0A]} {_BYTE_SYMBOLS[0x0A]}",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Vocabulary:
    """A model family's tokens and chat template, over the byte-level alphabet.

    The demo model's is ChatML's (``DEMO_VOCABULARY``); tests of other families
    (harmony, DeepSeek, Mistral, Llama 3...) write the same random-weight model with
    that family's special tokens and a template in its format.

    Attributes:
        special: the family's special tokens and their types, in vocabulary order
            after the byte symbols and merges.
        bos, eos: which of them begin a text and end a turn.
        chat_template: the Jinja template stored in the GGUF.
        add_bos: whether tokenizing adds ``bos`` (a template that writes it itself
            says False).
    """

    special: tuple[tuple[str, gguf.TokenType], ...]
    bos: str
    eos: str
    chat_template: str
    add_bos: bool = False

    def __post_init__(self) -> None:
        names = [token for token, _ in self.special]
        if len(set(names)) != len(names):
            raise ValueError("special tokens must be distinct")
        if self.bos not in names or self.eos not in names:
            raise ValueError("bos and eos must be special tokens of the vocabulary")

    @property
    def tokens(self) -> tuple[str, ...]:
        return (
            *_BYTE_SYMBOLS,
            *(merge.replace(" ", "") for merge in _MERGES),
            *(token for token, _ in self.special),
        )

    @property
    def token_types(self) -> tuple[gguf.TokenType, ...]:
        normal = len(_BYTE_SYMBOLS) + len(_MERGES)
        return (
            *(gguf.TokenType.NORMAL for _ in range(normal)),
            *(kind for _, kind in self.special),
        )

    @property
    def size(self) -> int:
        return len(_BYTE_SYMBOLS) + len(_MERGES) + len(self.special)


# ChatML, Qwen3-style. Every tag trims the whitespace around it and all output comes
# from expressions, so the result does not depend on trim_blocks/lstrip_blocks.
# tojson's output is never concatenated with `+`: plain jinja2 returns it as Markup,
# and Markup + str HTML-escapes the str ("<tool_call>" becomes "&lt;tool_call&gt;").
# - The first system message and the tool list share one system turn.
# - Assistant reasoning is read from `thinking` (Ollama) or `reasoning_content`
#   (OpenAI-style servers) and rendered as a <think> block before the content.
# - Tool calls may be OpenAI-shaped ({"function": {...}}, arguments a JSON string)
#   or Ollama-shaped (arguments an object); both render as the same JSON.
# - The generation prompt leaves <think> to the model, so the gateway's parser finds
#   the tag in the output; enable_thinking=false prefills an empty block instead.
CHAT_TEMPLATE: Final = r"""
{%- set thinking_enabled = enable_thinking is not defined or enable_thinking -%}
{%- set system_first = messages and messages[0].role == 'system' -%}
{%- if system_first or tools -%}
    {{- '<|im_start|>system\n' -}}
    {%- if system_first -%}
        {{- messages[0].content or '' -}}
        {%- if tools -%}
            {{- '\n\n' -}}
        {%- endif -%}
    {%- endif -%}
    {%- if tools -%}
        {{- '# Tools\n\nThese tools are available, one JSON schema per line:\n'
            + '<tools>' -}}
        {%- for tool in tools -%}
            {{- '\n' -}}
            {{- tool | tojson -}}
        {%- endfor -%}
        {{- '\n</tools>\n\nTo call a tool, reply with its name and arguments as a'
            + ' JSON object inside <tool_call></tool_call> tags, one call per pair of'
            + ' tags:\n'
            + '<tool_call>\n{"name": <tool name>, "arguments": <arguments object>}\n'
            + '</tool_call>' -}}
    {%- endif -%}
    {{- '<|im_end|>\n' -}}
{%- endif -%}
{%- for message in messages -%}
    {%- if loop.first and system_first -%}
    {%- elif message.role == 'assistant' -%}
        {{- '<|im_start|>assistant\n' -}}
        {%- set reasoning = message.thinking or message.reasoning_content or '' -%}
        {%- if reasoning -%}
            {{- '<think>\n' + (reasoning | trim) + '\n</think>\n\n' -}}
        {%- endif -%}
        {{- message.content or '' -}}
        {%- for call in message.tool_calls or [] -%}
            {%- set function = call.function if call.function is defined else call -%}
            {%- if message.content or not loop.first -%}
                {{- '\n' -}}
            {%- endif -%}
            {{- '<tool_call>\n{"name": ' -}}
            {{- function.name | tojson -}}
            {{- ', "arguments": ' -}}
            {%- if function.arguments is string -%}
                {{- function.arguments -}}
            {%- else -%}
                {{- (function.arguments or {}) | tojson -}}
            {%- endif -%}
            {{- '}\n</tool_call>' -}}
        {%- endfor -%}
        {{- '<|im_end|>\n' -}}
    {%- else -%}
        {{- '<|im_start|>' + message.role + '\n' + (message.content or '') -}}
        {{- '<|im_end|>\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|im_start|>assistant\n' -}}
    {%- if not thinking_enabled -%}
        {{- '<think>\n\n</think>\n\n' -}}
    {%- endif -%}
{%- endif -%}
""".strip()

DEMO_VOCABULARY: Final = Vocabulary(
    special=tuple(_SPECIAL_TOKEN_TYPES.items()),
    bos=BOS_TOKEN,
    eos=EOS_TOKEN,
    chat_template=CHAT_TEMPLATE,
)
_TOKENS: Final = DEMO_VOCABULARY.tokens
VOCAB_SIZE: Final = DEMO_VOCABULARY.size


def write_demo_model(
    path: Path,
    *,
    context_length: int = DEFAULT_CONTEXT_LENGTH,
    seed: int = 0,
    name: str = DEFAULT_NAME,
    pooling: gguf.PoolingType | None = None,
    shape: ModelShape = TINY,
    vocabulary: Vocabulary = DEMO_VOCABULARY,
) -> None:
    """Write the demo model to ``path``, replacing any file there.

    The same arguments give a byte-identical file (with the same numpy version: its
    random streams are only promised stable within a release). ``context_length`` is
    the model's trained context (``n_ctx_train``); a small one lets tests reach
    context overflow cheaply. ``pooling`` declares a pooling type, which makes it an
    embedding-only model to Ollama (and to this gateway); ``shape`` makes a bigger
    model with the same vocabulary and template; ``vocabulary`` gives it another
    family's special tokens and chat template. The file is written under a
    temporary name in the same directory, read back and checked, and only then
    renamed into place, so ``path`` never holds a partial model.
    """
    if context_length < 1:
        raise ValueError(f"context_length must be positive, got {context_length}")
    if not name:
        raise ValueError("name must not be empty")
    # Exclusive creation reserves the name against a concurrent writer and, unlike
    # mkstemp's 0600, gives the permissions the umask gives any other file.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    tmp.touch(exist_ok=False)
    try:
        _write(
            tmp,
            context_length=context_length,
            seed=seed,
            name=name,
            pooling=pooling,
            shape=shape,
            vocabulary=vocabulary,
        )
        _verify(
            tmp,
            context_length=context_length,
            name=name,
            shape=shape,
            vocabulary=vocabulary,
        )
        _fsync(tmp)
        # No fsync of the directory: the model can always be written again, and a
        # rename lost in a crash leaves the old file or none, never a torn one.
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write(
    path: Path,
    *,
    context_length: int,
    seed: int,
    name: str,
    pooling: gguf.PoolingType | None,
    shape: ModelShape,
    vocabulary: Vocabulary,
) -> None:
    writer = gguf.GGUFWriter(path, ARCHITECTURE)
    try:
        if pooling is not None:
            writer.add_pooling_type(pooling)
        writer.add_name(name)
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)
        writer.add_context_length(context_length)
        writer.add_embedding_length(shape.embedding_length)
        writer.add_block_count(shape.block_count)
        writer.add_feed_forward_length(shape.feed_forward_length)
        writer.add_head_count(shape.head_count)
        writer.add_head_count_kv(shape.head_count_kv)
        writer.add_rope_dimension_count(shape.head_dim)
        writer.add_rope_freq_base(_ROPE_FREQ_BASE)
        writer.add_layer_norm_rms_eps(_RMS_NORM_EPS)
        writer.add_vocab_size(vocabulary.size)

        writer.add_tokenizer_model("gpt2")
        # The pre-tokenizer only decides where BPE may merge; with a byte-level
        # vocab any choice round-trips. Naming one avoids llama.cpp's warning.
        writer.add_tokenizer_pre("gpt-2")
        tokens = vocabulary.tokens
        writer.add_token_list(tokens)
        writer.add_token_types(vocabulary.token_types)
        writer.add_token_merges(_MERGES)
        writer.add_bos_token_id(tokens.index(vocabulary.bos))
        writer.add_eos_token_id(tokens.index(vocabulary.eos))
        writer.add_eot_token_id(tokens.index(vocabulary.eos))
        writer.add_pad_token_id(tokens.index(vocabulary.bos))
        # ChatML needs no BOS: the template starts every prompt with <|im_start|>.
        writer.add_add_bos_token(vocabulary.add_bos)
        writer.add_add_eos_token(False)
        writer.add_chat_template(vocabulary.chat_template)

        rng = np.random.default_rng(seed)
        for tensor_name, tensor in _tensors(shape, vocabulary.size, rng):
            writer.add_tensor(tensor_name, tensor)

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def _tensors(
    shape: ModelShape, vocab_size: int, rng: np.random.Generator
) -> Iterator[tuple[str, npt.NDArray[np.float32]]]:
    """Every weight, in a fixed order, since the order decides what the rng draws.

    Shapes are numpy's (rows, columns); GGUF stores them reversed, which gives the
    (n_in, n_out) order llama.cpp expects.
    """

    def matrix(rows: int, columns: int) -> npt.NDArray[np.float32]:
        values = rng.standard_normal((rows, columns), dtype=np.float32)
        return values * np.float32(_WEIGHT_STD)

    def norm() -> npt.NDArray[np.float32]:
        # RMS norm weights of one, as in an untrained model: the norm only rescales.
        return np.ones(width, dtype=np.float32)

    width, ff = shape.embedding_length, shape.feed_forward_length
    kv_width = shape.head_dim * shape.head_count_kv
    tensor = gguf.MODEL_TENSOR
    yield _name(tensor.TOKEN_EMBD), matrix(vocab_size, width)
    for block in range(shape.block_count):
        yield _name(tensor.ATTN_NORM, block), norm()
        yield _name(tensor.ATTN_Q, block), matrix(width, width)
        yield _name(tensor.ATTN_K, block), matrix(kv_width, width)
        yield _name(tensor.ATTN_V, block), matrix(kv_width, width)
        yield _name(tensor.ATTN_OUT, block), matrix(width, width)
        yield _name(tensor.FFN_NORM, block), norm()
        yield _name(tensor.FFN_GATE, block), matrix(ff, width)
        yield _name(tensor.FFN_UP, block), matrix(ff, width)
        yield _name(tensor.FFN_DOWN, block), matrix(width, ff)
    yield _name(tensor.OUTPUT_NORM), norm()
    yield _name(tensor.OUTPUT), matrix(vocab_size, width)


def _name(tensor: gguf.MODEL_TENSOR, block: int | None = None) -> str:
    base = gguf.TENSOR_NAMES[tensor]
    return f"{base.format(bid=block) if block is not None else base}.weight"


def _verify(
    path: Path,
    *,
    context_length: int,
    name: str,
    shape: ModelShape,
    vocabulary: Vocabulary,
) -> None:
    """Read the file back and check what a loader keys on, before anyone can see it."""
    reader = gguf.GGUFReader(path)
    expected: dict[str, object] = {
        gguf.Keys.General.ARCHITECTURE: ARCHITECTURE,
        gguf.Keys.General.NAME: name,
        gguf.Keys.LLM.CONTEXT_LENGTH.format(arch=ARCHITECTURE): context_length,
        gguf.Keys.LLM.BLOCK_COUNT.format(arch=ARCHITECTURE): shape.block_count,
        gguf.Keys.Tokenizer.LIST: list(vocabulary.tokens),
        gguf.Keys.Tokenizer.CHAT_TEMPLATE: vocabulary.chat_template,
    }
    for key, value in expected.items():
        field = reader.get_field(key)
        found = None if field is None else field.contents()
        if found != value:
            raise OSError(f"{path}: {key} reads back as {found!r:.80}")
    tensor_count = 2 + 9 * shape.block_count + 1
    if len(reader.tensors) != tensor_count:
        raise OSError(f"{path}: {len(reader.tensors)} tensors, expected {tensor_count}")


def _fsync(path: Path) -> None:
    # Without it a crash soon after the rename can leave the final name pointing at
    # a file whose data never reached the disk.
    with path.open("rb+") as file:
        os.fsync(file.fileno())
