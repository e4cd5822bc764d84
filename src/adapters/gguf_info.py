"""GGUF metadata as plain Python values, and a check that a file is a usable model.

gguf's ``GGUFReader`` maps the file and hands back numpy scalars and arrays. The
store needs JSON-ready values (``/api/show`` serves them) and must never keep a view
into a mapping of a file that may be deleted, so everything is copied out here.

Reading is also the store's validation at create time: a blob that is not GGUF, or is
truncated, must be refused with a message then, not discovered by llama.cpp at the
first chat. ``GGUFReader`` fails on such files with whatever exception its parsing
hits (IndexError, ValueError, ...), so every failure is turned into ``GgufError``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import numpy.typing as npt

from gateway_core._json import JsonValue

__all__ = ["GgufError", "GgufInfo", "read_gguf"]

_MAGIC = b"GGUF"

_INTEGER_TYPES = frozenset(
    {
        gguf.GGUFValueType.UINT8,
        gguf.GGUFValueType.INT8,
        gguf.GGUFValueType.UINT16,
        gguf.GGUFValueType.INT16,
        gguf.GGUFValueType.UINT32,
        gguf.GGUFValueType.INT32,
        gguf.GGUFValueType.UINT64,
        gguf.GGUFValueType.INT64,
    }
)


class GgufError(Exception):
    """The file is not a GGUF model this gateway can describe; the message says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GgufInfo:
    """What the store needs from a GGUF file, copied out of it.

    Attributes:
        metadata: every key/value pair, as JSON values. Arrays longer than the
            ``max_array`` the file was read with are ``[]``. Like Ollama, adds
            ``general.parameter_count`` when the file does not have it.
        parameter_count: elements in all tensors (what ``parameter_size`` shows).
        bos_token, eos_token: the texts of the BOS and EOS tokens, "" if undeclared.
    """

    metadata: Mapping[str, JsonValue]
    parameter_count: int
    bos_token: str
    eos_token: str

    @property
    def architecture(self) -> str:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else ""

    def arch_int(self, key: str) -> int:
        """``<architecture>.<key>`` as an int, 0 when absent (``context_length``)."""
        value = self.metadata.get(f"{self.architecture}.{key}")
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    def has_arch_key(self, key: str) -> bool:
        return f"{self.architecture}.{key}" in self.metadata


def read_gguf(path: Path, *, max_array: int | None = None) -> GgufInfo:
    """Read the metadata of the GGUF file at ``path``.

    ``max_array`` skips converting long arrays (a vocabulary of 150,000 strings takes
    a while and is rarely wanted); ``None`` converts everything.

    Raises:
        GgufError: not a GGUF file, truncated, corrupt, or no architecture declared.
        OSError: the file cannot be opened (missing, unreadable).
    """
    with path.open("rb") as file:
        magic = file.read(4)
        size = os.fstat(file.fileno()).st_size
    if magic != _MAGIC:
        raise GgufError("not a GGUF file (it does not start with 'GGUF')")
    try:
        reader = gguf.GGUFReader(path)
        info = _extract(reader, max_array=max_array, size=size)
    except GgufError:
        raise
    except Exception as exc:  # whatever the parser trips on
        raise GgufError(f"corrupt GGUF file: {type(exc).__name__}: {exc}") from None
    if not info.architecture:
        raise GgufError("the GGUF file declares no general.architecture")
    return info


def _extract(reader: gguf.GGUFReader, *, max_array: int | None, size: int) -> GgufInfo:
    parameter_count = 0
    for tensor in reader.tensors:
        # GGUFReader does not notice tensor data past the end of a truncated file.
        if tensor.data_offset + tensor.n_bytes > size:
            raise GgufError(f"truncated GGUF file: tensor {tensor.name!r} is cut off")
        parameter_count += int(tensor.n_elements)
    metadata: dict[str, JsonValue] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):  # the reader's own header entries
            continue
        metadata[key] = _field_value(field, max_array)
    # Ollama's model_info always has it; few converters write it.
    metadata.setdefault("general.parameter_count", parameter_count)
    return GgufInfo(
        metadata=metadata,
        parameter_count=parameter_count,
        bos_token=_token_text(reader, "tokenizer.ggml.bos_token_id"),
        eos_token=_token_text(reader, "tokenizer.ggml.eos_token_id"),
    )


def _field_value(field: gguf.ReaderField, max_array: int | None) -> JsonValue:
    kind = field.types[0]
    if kind != gguf.GGUFValueType.ARRAY:
        return _scalar(field.parts[-1], kind)
    if max_array is not None and len(field.data) > max_array:
        return []
    # Nested arrays come out flattened, as GGUFReader itself reads them.
    item_kind = field.types[-1]
    return [_scalar(field.parts[index], item_kind) for index in field.data]


def _scalar(part: npt.NDArray[Any], kind: gguf.GGUFValueType) -> JsonValue:
    if kind == gguf.GGUFValueType.STRING:
        return bytes(part).decode("utf-8", errors="replace")
    if kind == gguf.GGUFValueType.BOOL:
        return bool(part[0])
    if kind in _INTEGER_TYPES:
        return int(part[0])
    number = float(part[0])
    if not math.isfinite(number):
        return None  # JSON has no NaN or infinity
    if kind == gguf.GGUFValueType.FLOAT32:
        # The shortest text that reads back as the same float32: 1e-05, not
        # 9.999999747378752e-06.
        return float(str(np.float32(number)))
    return number


def _token_text(reader: gguf.GGUFReader, id_key: str) -> str:
    id_field = reader.get_field(id_key)
    tokens = reader.get_field("tokenizer.ggml.tokens")
    if id_field is None or tokens is None:
        return ""
    token_id = _field_value(id_field, None)
    if not isinstance(token_id, int) or not 0 <= token_id < len(tokens.data):
        return ""
    return bytes(tokens.parts[tokens.data[token_id]]).decode("utf-8", errors="replace")
