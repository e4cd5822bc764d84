"""The runner protocol: every message survives encoding, frames split anywhere, and
bad frames are refused with ProtocolError, never a crash."""

from __future__ import annotations

import itertools

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_core_adapters.runner.protocol import (
    HEADER,
    PROTOCOL_VERSION,
    Cancel,
    Credit,
    Detokenize,
    Embed,
    Ended,
    Failed,
    FrameReader,
    Generate,
    Hello,
    Load,
    Loaded,
    Log,
    Message,
    Pieces,
    PromptDone,
    ProtocolError,
    Shutdown,
    TextBytes,
    TokenIds,
    Tokenize,
    Vectors,
    decode,
    encode,
)
from gateway_core_adapters.runner.values import (
    GenerationConstraint,
    LoadParams,
    ModelInfo,
    Sampling,
    ToolCallTrigger,
)

EXAMPLES: list[Message] = [
    Hello(version=PROTOCOL_VERSION, pid=1234),
    Load(params=LoadParams(model_file="/m.gguf", n_ctx=2048, slots=4)),
    Load(
        params=LoadParams(model_file="/m.gguf", n_ctx=64, embedding=True),
        log_level=10,
        compile_timeout=2.5,
    ),
    Loaded(
        info=ModelInfo(
            n_vocab=265,
            n_ctx=512,
            n_ctx_train=4096,
            n_batch=512,
            slots=4,
            bos=258,
            eos=260,
            add_bos=False,
            add_eos=False,
            embedding_length=64,
            load_seconds=0.25,
        )
    ),
    Tokenize(id=1, text="héllo <|im_end|>", add_bos=True),
    TokenIds(id=1, tokens=(1, 2, 3)),
    Detokenize(id=2, tokens=()),
    TextBytes(id=2, data=b"\xff\x00half a \xe2\x82"),
    Embed(id=3, inputs=((1, 2), (3,))),
    Vectors(id=3, vectors=((0.5, -1.25), (3.0, 0.0)), duration=0.01),
    Generate(
        id=4,
        prompt=(1, 2, 3),
        sampling=Sampling(seed=7, temperature=0.0),
        constraint=None,
        credit=64,
        logprobs=5,
    ),
    Generate(
        id=5,
        prompt=(9,),
        sampling=Sampling(),
        constraint=GenerationConstraint(json_schema='{"type":"object"}'),
        credit=1,
    ),
    Generate(
        id=6,
        prompt=(9,),
        sampling=Sampling(),
        constraint=GenerationConstraint(
            tool_calls=ToolCallTrigger(
                marker="<tool_call>", closing="</tool_call>", call_schema="{}"
            )
        ),
        credit=1,
    ),
    Generate(
        id=7,
        prompt=(9,),
        sampling=Sampling(),
        constraint=GenerationConstraint(call_forms='[[{"text": "<tool_call>"}]]'),
        credit=1,
    ),
    PromptDone(id=4, evaluated=2, reused=1, duration=0.5),
    Pieces(id=4, tokens=(5, 6), data=(b"a", b"\xe2"), durations=(0.1, 0.2)),
    Pieces(
        id=4,
        tokens=(5,),
        data=(b"a",),
        durations=(0.1,),
        logprobs=((-0.25, ((b"a", -0.25), (b"\xe2", -1.5))),),
    ),
    Ended(id=4, reason="length"),
    Failed(id=3, kind="context_overflow", message="too long", index=1, count=900),
    Credit(id=4, tokens=32),
    Cancel(id=4),
    Shutdown(),
    Log(level=30, message="llama.cpp: warning"),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_survives_a_round_trip(message: Message) -> None:
    frame = encode(message)
    (size,) = HEADER.unpack_from(frame)
    assert size == len(frame) - HEADER.size
    assert decode(frame[HEADER.size :]) == message


def test_frames_split_anywhere_give_the_same_messages() -> None:
    stream = b"".join(map(encode, EXAMPLES))
    whole = FrameReader()
    whole.feed(stream)
    assert list(whole) == EXAMPLES
    byte_by_byte = FrameReader()
    got: list[Message] = []
    for index in range(len(stream)):
        byte_by_byte.feed(stream[index : index + 1])
        got += byte_by_byte
    assert got == EXAMPLES
    assert byte_by_byte.pending == 0


@given(st.lists(st.integers(min_value=0, max_value=4000), max_size=8))
def test_frames_split_at_arbitrary_points(cuts: list[int]) -> None:
    stream = b"".join(map(encode, EXAMPLES[:8]))
    points = sorted({min(cut, len(stream)) for cut in cuts} | {0, len(stream)})
    reader = FrameReader()
    got: list[Message] = []
    for start, end in itertools.pairwise(points):
        reader.feed(stream[start:end])
        got += reader
    assert got == EXAMPLES[:8]


def test_a_partial_frame_is_kept_for_the_next_feed() -> None:
    frame = encode(Cancel(id=9))
    reader = FrameReader()
    reader.feed(frame + frame[:3])
    assert list(reader) == [Cancel(id=9)]
    assert reader.pending == 3
    reader.feed(frame[3:])
    assert list(reader) == [Cancel(id=9)]


def _payload(items: object) -> bytes:
    data: bytes = msgpack.packb(items, use_bin_type=True)
    return data


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"\xc1", "undecodable"),
        (_payload({"a": 1}), "must be an array"),
        (_payload([]), "must be an array"),
        (_payload(["hello"]), "must be an array"),
        (_payload([999]), "unknown message code"),
        (_payload([Cancel.CODE]), "has 1 fields, the frame 0"),
        (_payload([Cancel.CODE, 1, 2]), "has 1 fields, the frame 2"),
        (_payload([Load.CODE, "not a struct", 20, 1.0]), "must be an array"),
        (_payload([Load.CODE, ["/m", 0], 20, 1.0]), "LoadParams has"),
        (
            _payload([Pieces.CODE, 1, [1, 2], [b"a"], [0.1], []]),
            "one byte string and duration per token",
        ),
        (
            _payload([Pieces.CODE, 1, [1, 2], [b"a", b"b"], [0.1, 0.2], [[-0.5, []]]]),
            "no logprobs or one per token",
        ),
    ],
)
def test_bad_frames_are_protocol_errors(payload: bytes, words: str) -> None:
    with pytest.raises(ProtocolError, match=words):
        decode(payload)


def test_a_frame_over_the_limit_is_refused_before_it_is_read() -> None:
    reader = FrameReader(max_frame=100)
    reader.feed(HEADER.pack(101))
    with pytest.raises(ProtocolError, match="over the limit"):
        list(reader)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: LoadParams(model_file="m", n_ctx=0), "n_ctx must be in 1"),
        (lambda: LoadParams(model_file="m", n_ctx=8, n_batch=2**32), "n_batch"),
        (lambda: LoadParams(model_file="m", n_ctx=8, slots=0), "slots"),
        (
            lambda: LoadParams(model_file="m", n_ctx=8, embedding=True, slots=2),
            "one slot",
        ),
        (lambda: GenerationConstraint(), "one of a JSON schema, tool calls"),
        (
            lambda: GenerationConstraint(json_schema="json", call_forms="[]"),
            "one of a JSON schema, tool calls or call forms",
        ),
    ],
)
def test_invalid_values_cannot_exist(make: object, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        make()  # type: ignore[operator]
