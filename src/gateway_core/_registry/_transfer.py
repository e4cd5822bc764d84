"""How a blob is cut for transfer: ranged download parts and upload chunks.

Ollama downloads a blob in up to 16 parts at once, each 100 MB to 1 GB, so a big
file uses several connections while a small one stays a single request; the same
plan decides what a resumed download still lacks. Uploads go in order (the OCI
spec's chunked upload appends), so they only need chunk boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DOWNLOAD_PARTS",
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "Part",
    "plan_chunks",
    "plan_parts",
    "valid_resume",
]

MB = 1000 * 1000
DOWNLOAD_PARTS = 16
MIN_PART_SIZE = 100 * MB
MAX_PART_SIZE = 1000 * MB


@dataclass(frozen=True, slots=True)
class Part:
    """Bytes ``start`` to ``start + size`` of a blob, of which ``done`` have arrived."""

    start: int
    size: int
    done: int = 0

    def __post_init__(self) -> None:
        if self.start < 0 or self.size < 1 or not 0 <= self.done <= self.size:
            raise ValueError(f"invalid part {self!r}")

    @property
    def finished(self) -> bool:
        return self.done == self.size

    @property
    def next_byte(self) -> int:
        """The first byte still missing: where a ``Range`` request resumes."""
        return self.start + self.done

    @property
    def last_byte(self) -> int:
        """The part's last byte, inclusive, as ``Range`` counts."""
        return self.start + self.size - 1


def plan_parts(
    size: int,
    *,
    parts: int = DOWNLOAD_PARTS,
    min_part: int = MIN_PART_SIZE,
    max_part: int = MAX_PART_SIZE,
) -> tuple[Part, ...]:
    """Cut ``size`` bytes into consecutive parts: ``size / parts`` each, kept within
    ``[min_part, max_part]``; the last part takes what is left. Empty for 0 bytes."""
    if size < 0 or parts < 1 or not 1 <= min_part <= max_part:
        raise ValueError("invalid part plan")
    part_size = min(max(size // parts, min_part), max_part)
    return tuple(
        Part(start, min(part_size, size - start)) for start in range(0, size, part_size)
    )


def plan_chunks(size: int, chunk: int) -> tuple[tuple[int, int], ...]:
    """``(start, length)`` of each upload chunk, in order."""
    if size < 0 or chunk < 1:
        raise ValueError("invalid chunk plan")
    return tuple((start, min(chunk, size - start)) for start in range(0, size, chunk))


def valid_resume(parts: tuple[Part, ...], size: int) -> bool:
    """Whether parts read back from a partial download cover ``size`` bytes exactly,
    in order, with nothing overlapping: only then is resuming from them safe."""
    position = 0
    for part in parts:
        if part.start != position:
            return False
        position += part.size
    return position == size
