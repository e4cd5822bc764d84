"""Logging that never blocks the event loop, in text or JSON lines.

A ``StreamHandler`` on stderr writes from whatever thread logs; when stderr is a
pipe nobody reads (a paused terminal, a stalled log shipper), the write blocks,
and the server's one event loop with it: every connection stalls. So records go
through a bounded queue to one writer thread (``logging.handlers.QueueListener``);
when the queue is full, records are dropped and counted, and the count is reported
once the writer catches up. Losing log lines under a stalled reader is the price of
a server that keeps answering.

``--log-format json`` writes one JSON object per line. Access lines carry their
fields (method, path, status, bytes, duration, model, tokens, request id) as keys;
other records carry ``time``, ``level``, ``logger`` and ``message``.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import sys
import threading
from typing import Final, TextIO

__all__ = ["LOG_FORMATS", "LogPipeline", "start_logging"]

LOG_FORMATS: Final = ("text", "json")
_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Enough for a burst of access lines (a few hundred bytes each) while the reader
# catches up; bounded, so a reader that never comes back costs a few MB at most.
_QUEUE_RECORDS = 10_000


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            line.update(access)
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """Puts records on the queue, or drops them when it is full: never waits."""

    def __init__(self, records: queue.Queue[logging.LogRecord]) -> None:
        super().__init__(records)
        self.dropped = 0
        self._lock = threading.Lock()

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            with self._lock:
                self.dropped += 1

    def take_dropped(self) -> int:
        with self._lock:
            dropped, self.dropped = self.dropped, 0
        return dropped


class _ReportingStreamHandler(logging.StreamHandler[TextIO]):
    """Writes records, first saying how many were dropped since the last write."""

    def __init__(self, stream: TextIO, source: _DroppingQueueHandler) -> None:
        super().__init__(stream)
        self._source = source

    def emit(self, record: logging.LogRecord) -> None:
        dropped = self._source.take_dropped()
        if dropped:
            notice = logging.LogRecord(
                "adapters.logs",
                logging.WARNING,
                __file__,
                0,
                "%d log records dropped: the log's reader fell behind",
                (dropped,),
                None,
            )
            super().emit(notice)
        super().emit(record)


class LogPipeline:
    """The queue, its writer thread, and how to stop them (flushing the queue)."""

    def __init__(
        self, listener: logging.handlers.QueueListener, handler: logging.Handler
    ) -> None:
        self._listener = listener
        self._handler = handler

    def stop(self) -> None:
        logging.getLogger().removeHandler(self._handler)
        self._listener.stop()


def start_logging(
    level: int, log_format: str = "text", stream: TextIO | None = None
) -> LogPipeline:
    """Send every log record to ``stream`` (stderr) through the bounded queue."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    records: queue.Queue[logging.LogRecord] = queue.Queue(_QUEUE_RECORDS)
    enqueue = _DroppingQueueHandler(records)
    writer = _ReportingStreamHandler(stream or sys.stderr, enqueue)
    formatter = (
        JsonFormatter() if log_format == "json" else logging.Formatter(_TEXT_FORMAT)
    )
    writer.setFormatter(formatter)
    root = logging.getLogger()
    # Added, not instead: handlers already there (a test's log capture) stay.
    root.addHandler(enqueue)
    root.setLevel(level)
    # gguf's writer logs each file it writes at info (the demo model on a first
    # start): a library's chatter, not the gateway's news.
    logging.getLogger("gguf").setLevel(max(level, logging.WARNING))
    listener = logging.handlers.QueueListener(
        records, writer, respect_handler_level=False
    )
    listener.start()
    return LogPipeline(listener, enqueue)
