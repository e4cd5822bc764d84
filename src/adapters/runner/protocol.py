"""The wire between the server and a runner process: values in length-prefixed frames.

Why a protocol of values, not shared objects: llama.cpp may abort or crash the process
it runs in, so it runs in a process of its own, and everything the two sides say to
each other is a message of this module. Nothing in it is specific to a pipe: the same
frames could cross a TCP connection to a runner on another machine.

A frame is a 4-byte big-endian length, then that many bytes of MessagePack: an array
whose first element is the message's ``CODE`` and whose others are its fields in
declaration order. Nested values (``LoadParams``, ``Sampling``, ...) are arrays of
their fields in the same way, without a code (their type is the field's). Tuples stay
tuples; ``bytes`` stay bytes. Decoding checks the code, the field count and, through
each value's ``__post_init__``, the values themselves; anything else is a
``ProtocolError``.

The conversation (``PROTOCOL_VERSION`` 3):

- the runner starts with ``Hello``; the server checks the version and sends ``Load``;
  the runner answers ``Loaded`` or ``Failed`` (id 0), then serves requests until
  ``Shutdown`` or the end of its input;
- each request carries an ``id`` the server chose, and every reply to it the same id:
  ``Tokenize`` → ``TokenIds``; ``Detokenize`` → ``TextBytes``; ``Embed`` →
  ``Vectors``; ``Generate`` → ``PromptDone``, then ``Pieces`` (one or more tokens
  each), then ``Ended``; any request may instead end with ``Failed``;
- a generation makes at most ``credit`` tokens beyond those the server has taken;
  ``Credit`` grants more (how a slow client slows its own generation, and only its
  own); ``Cancel`` ends it (an ``Ended`` with reason ``cancelled`` follows, unless
  it had ended already);
- ``Log`` carries the runner's log lines, which the server logs as its own.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal, TypeAlias

import msgpack

from .values import (
    GenerationConstraint,
    LoadParams,
    ModelInfo,
    Sampling,
    TokenLogprobs,
    ToolCallTrigger,
)

__all__ = [
    "HEADER",
    "MAX_FRAME",
    "PROTOCOL_VERSION",
    "Cancel",
    "Credit",
    "Detokenize",
    "Embed",
    "Ended",
    "Failed",
    "FailureKind",
    "FrameReader",
    "Generate",
    "Hello",
    "Load",
    "Loaded",
    "Log",
    "Message",
    "Pieces",
    "PromptDone",
    "ProtocolError",
    "Shutdown",
    "TextBytes",
    "TokenIds",
    "Tokenize",
    "Vectors",
    "decode",
    "encode",
]

PROTOCOL_VERSION: Final = 3
HEADER: Final = struct.Struct(">I")
MAX_FRAME: Final = 256 * 1024 * 1024
"""Largest frame either side accepts: far above any real message (a big batch of
embeddings is a few MB), far below what would hurt to buffer."""


class ProtocolError(Exception):
    """A frame that is not a valid message of this protocol: a bug or a stranger."""


# -- messages ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """The runner's first words: its protocol version and process id."""

    CODE: ClassVar[int] = 1
    version: int
    pid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Load:
    CODE: ClassVar[int] = 2
    params: LoadParams
    log_level: int = 20
    """The least severe ``logging`` level the runner sends as ``Log``."""
    compile_timeout: float = 10.0
    """Seconds a constraint may take to compile before its request fails."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Loaded:
    CODE: ClassVar[int] = 3
    info: ModelInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class Tokenize:
    """Text to tokens, special tokens parsed; BOS/EOS only where the vocabulary
    wants them and ``add_bos`` allows."""

    CODE: ClassVar[int] = 4
    id: int
    text: str
    add_bos: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenIds:
    CODE: ClassVar[int] = 5
    id: int
    tokens: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Detokenize:
    CODE: ClassVar[int] = 6
    id: int
    tokens: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TextBytes:
    CODE: ClassVar[int] = 7
    id: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Embed:
    """Token ids exactly as embedded (BOS/EOS are the caller's), one list per input."""

    CODE: ClassVar[int] = 8
    id: int
    inputs: tuple[tuple[int, ...], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Vectors:
    """One pooled, unnormalized vector per input, in input order."""

    CODE: ClassVar[int] = 9
    id: int
    vectors: tuple[tuple[float, ...], ...]
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Generate:
    CODE: ClassVar[int] = 10
    id: int
    prompt: tuple[int, ...]
    sampling: Sampling
    constraint: GenerationConstraint | None
    credit: int
    """Tokens it may make before the server grants more (``Credit``)."""
    limit: int = 0
    """Tokens it makes at most, then it ends with ``length``; 0: no limit."""
    logprobs: int | None = None
    """Report each token's logprob and this many alternatives; None: none."""
    constraint_prefix: tuple[int, ...] = ()
    """Tokens of an answer already begun (a prefill): the constraint accepts them
    before the first token is sampled."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptDone:
    """The prompt is in the slot's cache: ``evaluated`` tokens decoded now,
    ``reused`` found there already (together: the prompt's length)."""

    CODE: ClassVar[int] = 11
    id: int
    evaluated: int
    reused: int
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Pieces:
    """Tokens of one generation, in order: ids, their bytes and their durations,
    and their logprobs when the generation asked for them (else empty)."""

    CODE: ClassVar[int] = 12
    id: int
    tokens: tuple[int, ...]
    data: tuple[bytes, ...]
    durations: tuple[float, ...]
    logprobs: tuple[TokenLogprobs, ...] = ()

    def __post_init__(self) -> None:
        if not len(self.tokens) == len(self.data) == len(self.durations):
            raise ValueError("Pieces needs one byte string and duration per token")
        if self.logprobs and len(self.logprobs) != len(self.tokens):
            raise ValueError("Pieces needs no logprobs or one per token")


@dataclass(frozen=True, slots=True, kw_only=True)
class Ended:
    CODE: ClassVar[int] = 13
    id: int
    reason: Literal["stop", "length", "cancelled"]
    made: int = 0
    """Tokens the generation made, those sent ahead and never taken included."""


FailureKind: TypeAlias = Literal[
    "bad_request",  # the request cannot be run as it is (400)
    "prompt_too_long",  # more tokens than a slot's context (400)
    "context_overflow",  # an input to embed is over the context: ``index``, ``count``
    "unsupported_schema",  # the constraint cannot be compiled or enforced (400)
    "compile_timeout",  # compiling the constraint took too long (400)
    "constraint",  # the constraint failed while generating (500)
    "runner",  # llama.cpp failed (500)
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed:
    CODE: ClassVar[int] = 14
    id: int
    kind: FailureKind
    message: str
    index: int = -1
    count: int = -1


@dataclass(frozen=True, slots=True, kw_only=True)
class Credit:
    CODE: ClassVar[int] = 15
    id: int
    tokens: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel:
    CODE: ClassVar[int] = 16
    id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Shutdown:
    CODE: ClassVar[int] = 17


@dataclass(frozen=True, slots=True, kw_only=True)
class Log:
    CODE: ClassVar[int] = 18
    level: int
    message: str


Message: TypeAlias = (
    Hello
    | Load
    | Loaded
    | Tokenize
    | TokenIds
    | Detokenize
    | TextBytes
    | Embed
    | Vectors
    | Generate
    | PromptDone
    | Pieces
    | Ended
    | Failed
    | Credit
    | Cancel
    | Shutdown
    | Log
)

_MESSAGES: Final[tuple[type[Message], ...]] = (
    Hello,
    Load,
    Loaded,
    Tokenize,
    TokenIds,
    Detokenize,
    TextBytes,
    Embed,
    Vectors,
    Generate,
    PromptDone,
    Pieces,
    Ended,
    Failed,
    Credit,
    Cancel,
    Shutdown,
    Log,
)
_BY_CODE: Final[Mapping[int, type[Message]]] = {m.CODE: m for m in _MESSAGES}

# The nested values, by the message fields that hold them. A value's own nested
# values are listed under the value's type.
_NESTED: Final[Mapping[tuple[type, str], type]] = {
    (Load, "params"): LoadParams,
    (Loaded, "info"): ModelInfo,
    (Generate, "sampling"): Sampling,
    (Generate, "constraint"): GenerationConstraint,
    (GenerationConstraint, "tool_calls"): ToolCallTrigger,
}


# -- encoding ----------------------------------------------------------------------


def encode(message: Message) -> bytes:
    """One frame: the length, then the message as MessagePack."""
    payload: bytes = _packer().pack([message.CODE, *_fields_of(message)])
    return HEADER.pack(len(payload)) + payload


def _fields_of(value: object) -> list[object]:
    out: list[object] = []
    for spec in dataclasses.fields(value):  # type: ignore[arg-type]
        item = getattr(value, spec.name)
        if dataclasses.is_dataclass(item):
            item = _fields_of(item)
        out.append(item)
    return out


def _packer() -> msgpack.Packer:
    # A packer keeps an internal buffer: one per call keeps encode() thread-safe
    # (the runner's engine and its reader thread both send).
    return msgpack.Packer(use_bin_type=True)


# -- decoding ----------------------------------------------------------------------


def decode(payload: bytes) -> Message:
    """The message in one frame's payload (without the length); ProtocolError if it
    is not one."""
    try:
        items = msgpack.unpackb(payload, use_list=False, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError) as exc:
        raise ProtocolError(f"undecodable frame: {exc}") from None
    if not isinstance(items, tuple) or not items or type(items[0]) is not int:
        raise ProtocolError("a frame must be an array that starts with a message code")
    kind = _BY_CODE.get(items[0])
    if kind is None:
        raise ProtocolError(f"unknown message code {items[0]}")
    message: Message = _build(kind, items[1:])
    return message


def _build(kind: type[Any], values: tuple[object, ...]) -> Any:
    specs = dataclasses.fields(kind)
    if len(values) != len(specs):
        raise ProtocolError(
            f"{kind.__name__} has {len(specs)} fields, the frame {len(values)}"
        )
    arguments: dict[str, object] = {}
    for spec, value in zip(specs, values, strict=True):
        nested = _NESTED.get((kind, spec.name))
        if nested is not None and value is not None:
            if not isinstance(value, tuple):
                raise ProtocolError(f"{kind.__name__}.{spec.name} must be an array")
            value = _build(nested, value)
        arguments[spec.name] = value
    try:
        return kind(**arguments)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"invalid {kind.__name__}: {exc}") from None


class FrameReader:
    """Splits a byte stream into messages, whatever the chunks it arrives in.

    ``feed(data)`` keeps the bytes; iterating yields every whole frame's message
    and leaves a partial frame for the next feed.
    """

    def __init__(self, *, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max_frame = max_frame

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def __iter__(self) -> Iterator[Message]:
        return self._messages()

    @property
    def pending(self) -> int:
        """Bytes held back: the start of a frame not whole yet."""
        return len(self._buffer)

    def _messages(self) -> Iterator[Message]:
        buffer = self._buffer
        start = 0
        try:
            while len(buffer) - start >= HEADER.size:
                (size,) = HEADER.unpack_from(buffer, start)
                if size > self._max_frame:
                    raise ProtocolError(f"a frame of {size} bytes is over the limit")
                end = start + HEADER.size + size
                if len(buffer) < end:
                    break
                payload = bytes(buffer[start + HEADER.size : end])
                start = end
                yield decode(payload)
        finally:
            del buffer[:start]


Sender: TypeAlias = Callable[[Message], None]
"""Something that sends a message (the runner's writer, a test's list.append)."""
