"""Stop strings and UTF-8 text, found in output that arrives one token at a time.

A model's output reaches us in token-sized pieces that respect neither characters nor
stop strings: a token may end in the middle of a multi-byte character, and a stop
string may span several tokens. Both machines here hold back exactly what the next
piece could still change, and nothing more, so that text streams to the client as
early as possible and the result does not depend on where the pieces were cut.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence

__all__ = ["StopScanner", "Utf8Decoder"]


class StopScanner:
    """Cuts generated text at the first stop string, as the text streams.

    "First" means the stop string that is complete first, reading left to right
    (the earliest end; of two ending together, the longer). That is the only rule
    a streaming reader can follow without waiting for text that may never come,
    and it makes the result independent of how the text was split.

    Empty stop strings are ignored: they would end every output before it began.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(sorted({stop for stop in stops if stop}, key=len))
        self._held = ""
        self._stopped = False
        self._closed = False
        self._matched: str | None = None

    @property
    def stopped(self) -> bool:
        """A stop string was found; the output is over."""
        return self._stopped

    @property
    def matched(self) -> str | None:
        """The stop string that ended the output (Anthropic reports it)."""
        return self._matched

    def feed(self, text: str) -> tuple[str, bool]:
        """Take the next piece of output.

        Returns the text that is safe to emit now, and whether a stop string ended
        the output; then the text is everything before the stop string, which is
        itself dropped along with whatever follows it.

        Raises:
            RuntimeError: the output already ended (a stop, or ``flush``).
        """
        if self._stopped or self._closed:
            raise RuntimeError("feed after the output ended")
        buffer = self._held + text
        found = self._first_stop(buffer)
        if found is not None:
            cut, self._matched = found
            self._held = ""
            self._stopped = True
            return buffer[:cut], True
        keep = self._partial_stop_length(buffer)
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        """The output ended without a stop: release the text held back."""
        self._closed = True
        held, self._held = self._held, ""
        return held

    def _first_stop(self, buffer: str) -> tuple[int, str] | None:
        """Where the first stop string starts, and which one it is."""
        best: tuple[int, int, str] | None = None
        for stop in self._stops:
            start = buffer.find(stop)
            if start >= 0:
                candidate = (start + len(stop), start, stop)
                if best is None or candidate < best:
                    best = candidate
        return None if best is None else (best[1], best[2])

    def _partial_stop_length(self, buffer: str) -> int:
        """Length of the longest tail of ``buffer`` that begins some stop string."""
        longest = 0
        for stop in self._stops:
            for length in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:length]):
                    longest = length
                    break
        return longest


class Utf8Decoder:
    """Bytes of generated text to ``str``, across tokens that split characters.

    A token's bytes may end inside a multi-byte character; those bytes wait for the
    next token. Invalid bytes become U+FFFD, one per maximal invalid sequence, as
    decoding the whole output at once would give: a model emitting garbage must not
    fail the response.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        """The text that ``data`` completes; an unfinished character waits."""
        return self._decoder.decode(data)

    def flush(self) -> str:
        """End of output: an unfinished character becomes U+FFFD.

        The decoder is then empty, ready for another output.
        """
        return self._decoder.decode(b"", final=True)
