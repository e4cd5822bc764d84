"""Files that are never seen half-written: atomic writes and streamed blob uploads.

Every file goes to a temporary name in its final directory, is checked (read back,
or hashed against its digest), fsynced, then ``os.replace``d, and the directory is
fsynced too: a crash or a concurrent reader sees the old file or the new one, never
a mix. The temporary names start with a dot, so directory scans skip them.

A crash (kill -9 mid-upload) leaves its temporary file behind: ``sweep_temp_files``
removes those, by name and age, when a store is opened.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

__all__ = [
    "BlobWriter",
    "StoreError",
    "disk_errors",
    "fsync_dir",
    "is_temp_name",
    "sweep_temp_files",
    "temp_path",
    "write_file",
]

# A temporary file is stale once nothing has written to it for this long. Age decides,
# not the writer's pid: two servers may share a store from different containers or
# hosts (a network file system), where a live writer's pid is invisible or names
# another process, so "that pid is gone" would delete uploads in progress. An upload
# touches its file with every chunk and a manifest is written in milliseconds, so an
# hour without a write (far more than any clock skew between hosts) means the writer
# is gone (Ollama's start-up prune gives files the same hour). A wrong guess can only
# fail an upload stalled for an hour (its rename fails), never damage a model.
STALE_TEMP_AGE = 3600.0

# What ``temp_path`` makes, and nothing else: ``.<final name>.<16 hex digits>.tmp``.
_TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{16}\.tmp", re.DOTALL)


class StoreError(Exception):
    """A store operation failed; ``status`` is the HTTP status it deserves.

    400: the client's input (bad digest, bad upload, a file that is not GGUF).
    404: no such model. 500: the store itself is damaged (a missing model file).
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def temp_path(final: Path) -> Path:
    """A fresh name next to ``final``; the leading dot keeps it out of every scan."""
    return final.with_name(f".{final.name}.{secrets.token_hex(8)}.tmp")


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one ``temp_path`` could have made."""
    return _TEMP_NAME.fullmatch(name) is not None


def sweep_temp_files(
    directory: Path,
    *,
    depth: int = 0,
    max_age: float = STALE_TEMP_AGE,
    now: float | None = None,
) -> tuple[int, int]:
    """Remove the stale temporary files a crashed writer left in ``directory``.

    Only regular files named as ``temp_path`` names them and untouched for
    ``max_age`` seconds go; subdirectories are searched ``depth`` levels down.
    Symbolic links are neither followed nor removed, so nothing outside
    ``directory`` is touched. Returns how many files and bytes were removed.
    """
    now = time.time() if now is None else now
    files = size = 0
    try:
        with os.scandir(directory) as scan:
            entries = list(scan)
    except OSError:
        return 0, 0
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                if depth > 0:
                    more = sweep_temp_files(
                        Path(entry.path), depth=depth - 1, max_age=max_age, now=now
                    )
                    files, size = files + more[0], size + more[1]
            elif _is_stale_temp(entry, max_age, now):
                removed = entry.stat(follow_symlinks=False).st_size
                os.unlink(entry.path)
                files, size = files + 1, size + removed
        except OSError:
            continue  # gone meanwhile (another server swept it) or unreadable
    return files, size


def _is_stale_temp(entry: os.DirEntry[str], max_age: float, now: float) -> bool:
    return (
        is_temp_name(entry.name)
        and entry.is_file(follow_symlinks=False)
        and now - entry.stat(follow_symlinks=False).st_mtime >= max_age
    )


def fsync_dir(directory: Path) -> None:
    """Make a rename durable. Not possible on every platform; best effort there."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_file(final: Path, data: bytes) -> None:
    """Write ``data`` to ``final`` atomically, reading it back before the rename."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path(final)
    try:
        with temp.open("xb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        _check_readback(temp, data)
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)


def _check_readback(path: Path, data: bytes) -> None:
    if path.read_bytes() != data:
        raise OSError(f"{path} does not read back as written")


class BlobWriter:
    """Streams one blob upload to a temporary file; ``commit`` verifies and installs it.

    Use it as a context manager, or call ``abort`` on failure: a writer that is left
    neither committed nor aborted leaves its temporary file behind.
    """

    def __init__(self, final: Path, digest: str, *, lock: threading.RLock) -> None:
        self._lock = lock
        self._digest = digest
        self._final = final
        self._temp = temp_path(self._final)
        with disk_errors():
            self._file = self._temp.open("xb")
        self._hash = hashlib.sha256()
        self._done = False

    def write(self, data: bytes) -> None:
        if self._done:
            raise RuntimeError("write() after commit() or abort()")
        try:
            with disk_errors():
                self._file.write(data)
        except StoreError:
            self.abort()
            raise
        self._hash.update(data)

    def commit(self) -> bool:
        """Install the blob. True if it was created, False if it was already there.

        Raises:
            StoreError(400): the bytes written do not have the announced digest.
            StoreError(500): the disk failed.
        """
        if self._done:
            raise RuntimeError("commit() after commit() or abort()")
        self._done = True
        try:
            with disk_errors():
                return self._finish()
        except BaseException:
            self._file.close()
            self._temp.unlink(missing_ok=True)
            raise

    def _finish(self) -> bool:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._check_digest()
        with self._lock:
            if self._final.is_file():
                self._temp.unlink()
                return False
            os.replace(self._temp, self._final)
        fsync_dir(self._final.parent)
        return True

    def _check_digest(self) -> None:
        got = "sha256:" + self._hash.hexdigest()
        if got != self._digest:
            raise StoreError(
                400, f'digest mismatch, expected "{self._digest}", got "{got}"'
            )

    def abort(self) -> None:
        """Drop the upload. Harmless after ``commit`` or a second ``abort``."""
        if not self._done:
            self._done = True
            self._file.close()
            self._temp.unlink(missing_ok=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()


@contextlib.contextmanager
def disk_errors() -> Iterator[None]:
    """A failing disk (full, read-only, ...) is the store's failure: a 500."""
    try:
        yield
    except OSError as exc:
        raise StoreError(500, f"the model store could not be written: {exc}") from exc
