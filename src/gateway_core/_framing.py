"""Stream framing: NDJSON and Server-Sent Events, written and read.

Every streaming endpoint frames its body with the writers here, so that a stream from
the Ollama dialect (NDJSON) and from the OpenAI and Anthropic dialects (SSE) is built
in exactly one way. The decoders are the other half: they read the same framings
back, for tests and for adapters that consume an upstream stream.

Both decoders are incremental in the Sans-IO sense: ``feed()`` takes whatever bytes
arrived, returns everything that became complete, and holds the rest; ``close()``
says the stream ended. Where the bytes are split never changes what comes out, and
each byte is examined a bounded number of times, so a peer that dribbles one byte at a
time costs us no more than one that sends everything at once.

Malformed input raises ``FramingError``. After that the decoder is broken for good:
every later call raises ``FramingError`` again, because nothing read after a framing
error can be trusted. Calling ``feed()`` after ``close()`` is a bug in the caller, not
bad input, so it raises a plain ``ValueError`` (deliberately not ``FramingError``,
which a caller may catch and report as the peer's fault).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Final, NoReturn

from ._errors import GatewayError
from ._json import JsonValue, dumps, encode_utf8, loads_strict

__all__ = [
    "SSE_DONE",
    "FramingError",
    "NdjsonDecoder",
    "SseDecoder",
    "SseEvent",
    "encode_ndjson",
    "encode_sse",
]

# OpenAI ends every chat/completions stream with this pseudo-event. It is not JSON;
# clients look for the literal text.
SSE_DONE: Final[bytes] = b"data: [DONE]\n\n"

# How much one NDJSON line or one SSE event may hold before we give up on the peer.
# The biggest honest frames are a whole non-streamed answer or a batch of embedding
# vectors, a few megabytes at most; the limit exists so that a peer that never sends
# a line end cannot make us buffer without bound.
_DEFAULT_MAX_BYTES: Final = 16 * 1024 * 1024

# SSE accepts all three line ends, and so does the SSE writer when it splits ``data``.
_LINE_END: Final = re.compile(r"\r\n|\r|\n")

# What json.loads treats as whitespace; a line of nothing else carries no value.
_JSON_WHITESPACE: Final = b" \t\r"


class FramingError(GatewayError, ValueError):
    """A stream is not well-formed NDJSON or SSE, or a frame exceeds its size limit.

    It derives from ``ValueError`` (bad data) and from ``GatewayError`` (like every
    exception this package raises on purpose). Whose fault it is depends on who sent
    the stream, so the caller decides how to report it.
    """


# ---------------------------------------------------------------------------------
# Writers


def encode_ndjson(value: object) -> bytes:
    """One NDJSON line: ``value`` as compact UTF-8 JSON, then ``\\n``.

    ``dumps`` never emits a raw newline (JSON escapes it inside strings), so the line
    end is unambiguous.
    """
    return dumps(value) + b"\n"


def encode_sse(data: str, *, event: str | None = None) -> bytes:
    """One Server-Sent Event, blank line included.

    Each line of ``data`` (split on CRLF, CR or LF, as the reader splits) becomes its
    own ``data:`` line, so a reader rebuilds ``data`` with every line end turned into
    ``\\n``. ``data=""`` still yields one ``data:`` line: an event without any is
    never dispatched by a reader.

    Raises:
        ValueError: ``event`` contains CR or LF, which would end the field early and
            let the rest be read as another field.
    """
    parts: list[str] = []
    if event is not None:
        if "\r" in event or "\n" in event:
            raise ValueError(f"an SSE event name cannot contain CR or LF: {event!r}")
        parts.append(f"event: {event}\n")
    # Always one space after the colon: the reader strips exactly one, so a line that
    # itself starts with a space keeps it.
    parts.extend(f"data: {line}\n" for line in _LINE_END.split(data))
    parts.append("\n")
    return encode_utf8("".join(parts))


# ---------------------------------------------------------------------------------
# NDJSON reader


class NdjsonDecoder:
    """Incremental reader of newline-delimited JSON.

    A line ends with LF; one CR before it is dropped. Lines holding only whitespace
    are skipped. Line numbers in errors count every line, blank ones included, from 1.

    Args:
        max_line_bytes: the most bytes one line may hold, not counting its LF or CRLF.
            A longer line raises ``FramingError`` as soon as it is known to be too
            long, even before it is complete.
    """

    __slots__ = ("_broken", "_closed", "_held", "_line_number", "_max_line_bytes")

    def __init__(self, *, max_line_bytes: int = _DEFAULT_MAX_BYTES) -> None:
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be positive, not {max_line_bytes}")
        self._max_line_bytes = max_line_bytes
        # The start of a line whose LF has not arrived yet; never contains an LF.
        self._held = bytearray()
        # Number of LF-terminated lines read so far.
        self._line_number = 0
        self._closed = False
        self._broken: FramingError | None = None

    def feed(self, data: bytes) -> list[JsonValue]:
        """Add received bytes; return the value of every line they complete.

        Raises:
            FramingError: a line is not one JSON value in UTF-8, or is too long.
            ValueError: called after ``close()``.
        """
        self._check_usable()
        if self._closed:
            raise ValueError("NdjsonDecoder.feed() called after close()")
        try:
            return self._feed(data)
        except FramingError as exc:
            self._broken = exc
            raise

    def close(self) -> list[JsonValue]:
        """End of stream: return the value of a final line that had no LF, if any.

        Most NDJSON writers end with LF, but a missing one at the very end loses
        nothing, so this is lenient. Calling ``close()`` again returns ``[]``.

        Raises:
            FramingError: the final line is not valid, or an earlier call failed.
        """
        self._check_usable()
        if self._closed:
            return []
        self._closed = True
        line = bytes(self._held)
        self._held.clear()
        try:
            return self._decode_line(line, self._line_number + 1)
        except FramingError as exc:
            self._broken = exc
            raise

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise FramingError(f"the stream already failed: {self._broken}")

    def _feed(self, data: bytes) -> list[JsonValue]:
        values: list[JsonValue] = []
        start = 0
        # Only the new bytes are searched: the held part is known to have no LF.
        end = data.find(b"\n")
        while end >= 0:
            line = data[start:end]
            if self._held:
                line = bytes(self._held) + line
                self._held.clear()
            self._line_number += 1
            values += self._decode_line(line, self._line_number)
            start = end + 1
            end = data.find(b"\n", start)
        self._held += data[start:]
        held = len(self._held)
        # A held CR may yet turn out to be the first half of CRLF, so it is not
        # counted; that keeps the verdict independent of where the bytes were split.
        if held > self._max_line_bytes and not (
            held == self._max_line_bytes + 1 and self._held.endswith(b"\r")
        ):
            self._too_long(self._line_number + 1)
        return values

    def _decode_line(self, line: bytes, number: int) -> list[JsonValue]:
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self._max_line_bytes:
            self._too_long(number)
        if not line.strip(_JSON_WHITESPACE):
            return []
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FramingError(
                f"NDJSON line {number} is not valid UTF-8 (byte {exc.start})"
            ) from None
        try:
            value = loads_strict(text)
        except ValueError as exc:
            raise FramingError(
                f"NDJSON line {number} is not valid JSON: {exc}"
            ) from None
        return [value]

    def _too_long(self, number: int) -> NoReturn:
        raise FramingError(
            f"NDJSON line {number} is longer than {self._max_line_bytes} bytes"
        )


# ---------------------------------------------------------------------------------
# SSE reader


@dataclass(frozen=True, slots=True, kw_only=True)
class SseEvent:
    """One dispatched Server-Sent Event, as a browser's ``EventSource`` sees it.

    Attributes:
        event: the event type; ``"message"`` when the stream named none.
        data: the ``data`` lines joined with ``\\n``.
        id: the stream's last event ID when the event was dispatched. Like
            ``MessageEvent.lastEventId`` it persists from earlier events until an
            ``id`` field changes it; None when it is unset or was reset to empty.
        retry: the reconnection time in milliseconds set by the latest valid
            ``retry`` field so far, or None if there was none. It too is stream state
            rather than part of one event.
    """

    event: str = "message"
    data: str
    id: str | None = None
    retry: int | None = None

    def __post_init__(self) -> None:
        # Only what could not have come off the wire is refused.
        if "\r" in self.event or "\n" in self.event:
            raise ValueError(
                f"an SSE event type cannot contain CR or LF: {self.event!r}"
            )
        if self.id is not None and any(ch in self.id for ch in "\r\n\x00"):
            raise ValueError(f"an SSE id cannot contain CR, LF or NUL: {self.id!r}")
        if self.retry is not None and self.retry < 0:
            raise ValueError(f"an SSE retry cannot be negative, not {self.retry}")


def _retry_value(value: str) -> int | None:
    # ASCII digits only: str.isdigit() alone would take "²" or "٣".
    if not (value.isascii() and value.isdigit()):
        return None
    try:
        number = int(value)
    except ValueError:
        return None  # Past Python's int digit limit: not a delay anyone means.
    return number


class SseDecoder:
    """Incremental reader of ``text/event-stream``, by the WHATWG HTML parsing rules.

    Bytes are decoded as UTF-8 (invalid sequences become U+FFFD) and one leading BOM
    is dropped. Lines end with CRLF, LF or CR. An event is dispatched at a blank line,
    and only if it had at least one ``data`` line; an unfinished event at the end of
    the stream is discarded, as the specification says.

    Args:
        max_event_bytes: the most bytes the lines of one pending event may hold, in
            UTF-8 and without line ends, counting every line since the last blank
            line (comments and ignored fields too). More raises ``FramingError``.
    """

    __slots__ = (
        "_after_cr",
        "_broken",
        "_closed",
        "_data",
        "_decoder",
        "_event_type",
        "_last_id",
        "_line",
        "_max_event_bytes",
        "_pending_bytes",
        "_retry",
        "_started",
    )

    def __init__(self, *, max_event_bytes: int = _DEFAULT_MAX_BYTES) -> None:
        if max_event_bytes < 1:
            raise ValueError(f"max_event_bytes must be positive, not {max_event_bytes}")
        self._max_event_bytes = max_event_bytes
        # Holds the first bytes of a character split across feeds.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # False until the first character, which may be the BOM to strip.
        self._started = False
        # The last line ended with a CR at the very end of the text seen so far. If
        # the next character is LF it belongs to that CR. The line itself has already
        # been processed: a lone CR ends it whatever follows, and processing it now
        # dispatches an event ended by CR CR without waiting for another packet.
        self._after_cr = False
        # Pieces of the line in progress (a list, so byte-at-a-time input stays linear).
        self._line: list[str] = []
        # Bytes of the pending event's lines, the one in progress included.
        self._pending_bytes = 0
        self._data: list[str] = []
        self._event_type = ""
        # Stream state: survives dispatch, unlike the two buffers above.
        self._last_id = ""
        self._retry: int | None = None
        self._closed = False
        self._broken: FramingError | None = None

    def feed(self, data: bytes) -> list[SseEvent]:
        """Add received bytes; return every event they complete, in order.

        Raises:
            FramingError: the pending event grew past ``max_event_bytes``.
            ValueError: called after ``close()``.
        """
        if self._broken is not None:
            raise FramingError(f"the stream already failed: {self._broken}")
        if self._closed:
            raise ValueError("SseDecoder.feed() called after close()")
        try:
            return self._feed_text(self._decoder.decode(data))
        except FramingError as exc:
            self._broken = exc
            raise

    def close(self) -> list[SseEvent]:
        """End of stream. Always returns ``[]``: an event not yet ended by a blank
        line is discarded, never dispatched. The list is there so both decoders can
        be driven the same way.

        Raises:
            FramingError: an earlier call failed.
        """
        if self._broken is not None:
            raise FramingError(f"the stream already failed: {self._broken}")
        self._closed = True
        self._decoder.reset()
        self._line.clear()
        self._data.clear()
        self._event_type = ""
        self._pending_bytes = 0
        return []

    def _feed_text(self, text: str) -> list[SseEvent]:
        if not text:
            # Nothing decoded yet (part of a character): a held CR still waits.
            return []
        if not self._started:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._after_cr and text[:1] == "\n":
            text = text[1:]
        self._after_cr = text.endswith("\r")
        events: list[SseEvent] = []
        start = 0
        for match in _LINE_END.finditer(text):
            self._extend_line(text[start : match.start()])
            line = "".join(self._line)
            self._line.clear()
            self._process_line(line, events)
            start = match.end()
        self._extend_line(text[start:])
        return events

    def _extend_line(self, piece: str) -> None:
        if not piece:
            return
        self._line.append(piece)
        self._pending_bytes += len(piece) if piece.isascii() else len(piece.encode())
        if self._pending_bytes > self._max_event_bytes:
            raise FramingError(
                f"SSE event is longer than {self._max_event_bytes} bytes"
            )

    def _process_line(self, line: str, events: list[SseEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line[0] == ":":
            return  # A comment; servers send them to keep idle connections open.
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        match name:
            case "data":
                self._data.append(value)
            case "event":
                self._event_type = value
            case "id":
                # The id is sent back in a Last-Event-ID header, where NUL can't go.
                if "\x00" not in value:
                    self._last_id = value
            case "retry":
                retry = _retry_value(value)
                if retry is not None:
                    self._retry = retry
            case _:
                pass  # Unknown fields are ignored, so the format can grow.

    def _dispatch(self, events: list[SseEvent]) -> None:
        if self._data:
            events.append(
                SseEvent(
                    event=self._event_type or "message",
                    data="\n".join(self._data),
                    id=self._last_id or None,
                    retry=self._retry,
                )
            )
        self._data.clear()
        self._event_type = ""
        self._pending_bytes = 0
