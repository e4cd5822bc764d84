"""Blob transfers: resumable ranged downloads into the store, chunked uploads.

A download writes ``blobs/sha256-<hex>-partial`` in place (each part at its own
offset, several parts at once) and keeps each part's progress in
``sha256-<hex>-partial.json`` beside it, written only after the bytes it counts. A
pull that is killed leaves both; the next pull of that blob asks only for the bytes
each part still lacks (``Range``). When every part is in, the file is hashed, and
only a file with the announced digest is renamed to its blob name: nothing a
lookup can see is ever half-written or wrong. A wrong file is deleted, so the next
pull starts clean.

The store's own names never look like these, and its temp-file sweep leaves them
alone: a partial download is kept until a pull finishes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.abc
import anyio.to_thread
import httpx

from gateway_core import (
    RegistryReference,
    Result,
    TransferDone,
    TransferProgress,
    WorkFailed,
)
from gateway_core._registry._transfer import Part, plan_chunks, plan_parts, valid_resume

from ..model_store import ModelStore
from ..store_files import StoreError, fsync_dir
from .client import RegistryClient, RegistryError, raise_for_status

__all__ = ["Registry", "TransferWatch"]

_log = logging.getLogger("adapters.registry")

_REPORT_INTERVAL = 0.1
"""Seconds between progress lines: enough for a live bar, few enough to be cheap."""
_HASH_CHUNK = 1 << 20


class TransferWatch:
    """Progress of one running transfer, read by the exchange that asked for it.

    The transfer (a task of its own) counts bytes and finishes with a result; the
    exchange takes the newest count whenever it is ready for one, so a slow client
    never slows the transfer down.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.completed = 0
        self._outcome: Result | None = None
        self._reported = 0  # the first line comes with the first bytes (or resume)
        self._changed = anyio.Event()
        self.scope = anyio.CancelScope()

    def advance(self, count: int) -> None:
        self.completed = min(self.total, self.completed + count)
        self._changed.set()

    def finish(self, outcome: Result) -> None:
        self._outcome = outcome
        self._changed.set()

    async def next(self) -> Result:
        """The next progress count, or the outcome once the transfer has ended."""
        while True:
            if self._outcome is not None:
                return self._outcome
            if self.completed != self._reported:
                self._reported = self.completed
                return TransferProgress(completed=self.completed, total=self.total)
            await self._changed.wait()
            self._changed = anyio.Event()
            if self._outcome is None:
                # Let bytes pile up a little: one line per interval, not per chunk.
                with anyio.move_on_after(_REPORT_INTERVAL):
                    await self._changed.wait()


class Registry:
    """Pulls and pushes of one server: the HTTP client, and one transfer per blob
    at a time (a second pull of the same blob waits, then finds it in place)."""

    def __init__(self, store: ModelStore, client: RegistryClient | None = None) -> None:
        self.store = store
        self.client = client or RegistryClient()
        self._locks: dict[str, anyio.Lock] = {}

    async def aclose(self) -> None:
        await self.client.aclose()

    def start(
        self,
        tasks: anyio.abc.TaskGroup,
        size: int,
        transfer: Callable[[TransferWatch], Awaitable[bool]],
    ) -> TransferWatch:
        """Run ``transfer`` in ``tasks``; its watch reports it. Cancel the watch's
        scope to stop it (the exchange ended)."""
        watch = TransferWatch(size)

        async def run() -> None:
            with watch.scope:
                try:
                    existed = await transfer(watch)
                except (RegistryError, StoreError) as exc:
                    watch.finish(WorkFailed(status=exc.status, message=exc.message))
                except Exception as exc:
                    _log.exception("registry transfer failed")
                    watch.finish(
                        WorkFailed(status=500, message=f"transfer failed: {exc}")
                    )
                else:
                    watch.finish(TransferDone(existed=existed))

        tasks.start_soon(run)
        return watch

    def _lock(self, digest: str) -> anyio.Lock:
        return self._locks.setdefault(digest, anyio.Lock())

    # -- download ------------------------------------------------------------------

    async def download(
        self, reference: RegistryReference, digest: str, size: int, watch: TransferWatch
    ) -> bool:
        """Download blob ``digest`` unless the store has it; True if it had."""
        final = self.store.blob_path(digest)
        async with self._lock(digest):
            if final.is_file():
                return True
            partial = final.with_name(final.name + "-partial")
            record = final.with_name(final.name + "-partial.json")
            parts = _read_record(record, size)
            options = self.client.options
            if parts is None:
                parts = list(
                    plan_parts(
                        size,
                        parts=options.download_parts,
                        min_part=options.min_part_size,
                        max_part=options.max_part_size,
                    )
                )
                partial.unlink(missing_ok=True)
            watch.advance(sum(part.done for part in parts))
            fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                os.ftruncate(fd, size)
                download = _Download(self.client, reference, digest, fd, parts, record)
                async with anyio.create_task_group() as tasks:
                    for index, part in enumerate(parts):
                        if not part.finished:
                            tasks.start_soon(download.fetch, index, watch)
            finally:
                os.close(fd)
            await anyio.to_thread.run_sync(
                lambda: self._install(partial, record, final, digest)
            )
            return False

    def _install(self, partial: Path, record: Path, final: Path, digest: str) -> None:
        hasher = hashlib.sha256()
        with partial.open("rb") as file:
            while chunk := file.read(_HASH_CHUNK):
                hasher.update(chunk)
            os.fsync(file.fileno())
        got = "sha256:" + hasher.hexdigest()
        if got != digest:
            partial.unlink(missing_ok=True)
            record.unlink(missing_ok=True)
            raise RegistryError(
                502,
                "digest mismatch, file must be downloaded again: "
                f"want {digest}, got {got}",
            )
        with self.store.lock:
            os.replace(partial, final)
        record.unlink(missing_ok=True)
        fsync_dir(final.parent)

    # -- upload ------------------------------------------------------------------

    async def upload(
        self, reference: RegistryReference, digest: str, size: int, watch: TransferWatch
    ) -> bool:
        """Upload blob ``digest`` unless the registry has it; True if it had."""
        client, scope = self.client, reference.scope(push=True)
        path = self.store.blob_path(digest)
        async with client.request("HEAD", reference.blob_url(digest), scope=scope) as r:
            if r.status_code == 200:
                return True
            if r.status_code != 404:
                await raise_for_status(r, f"check blob {digest}")
        async with client.request("POST", reference.upload_url, scope=scope) as r:
            await raise_for_status(r, "start upload")
            if r.status_code == 201:  # mounted from another repository
                return True
            location = _location(r, reference.upload_url)
        with path.open("rb") as file:
            for start, length in plan_chunks(size, client.options.upload_chunk_size):
                data = await anyio.to_thread.run_sync(file.read, length)
                if len(data) != length:
                    raise StoreError(500, f"blob {digest} changed during the push")
                headers = {
                    "content-type": "application/octet-stream",
                    "content-range": f"{start}-{start + length - 1}",
                }
                async with client.request(
                    "PATCH", location, scope=scope, headers=headers, content=data
                ) as r:
                    await raise_for_status(r, f"upload blob {digest}")
                    location = _location(r, location)
                watch.advance(length)
        separator = "&" if "?" in location else "?"
        async with client.request(
            "PUT", f"{location}{separator}digest={digest}", scope=scope, content=b""
        ) as r:
            await raise_for_status(r, f"finish upload of blob {digest}")
        return False


def _location(response: httpx.Response, base: str) -> str:
    location = response.headers.get("location")
    if not location:
        raise RegistryError(502, "the registry gave no upload location")
    return str(httpx.URL(base).join(location))


class _Download:
    """The parts of one blob download, fetched concurrently into one file."""

    def __init__(
        self,
        client: RegistryClient,
        reference: RegistryReference,
        digest: str,
        fd: int,
        parts: list[Part],
        record: Path,
    ) -> None:
        self.client, self.reference, self.digest = client, reference, digest
        self.fd, self.parts, self.record = fd, parts, record

    async def fetch(self, index: int, watch: TransferWatch) -> None:
        attempts = self.client.options.part_attempts
        for attempt in range(1, attempts + 1):
            try:
                await self._fetch_once(index, watch)
            except RegistryError as exc:
                # Only a broken connection is worth another try; it resumes.
                if attempt == attempts or exc.status not in (502, 504):
                    raise
                _log.info("part %d of %s: %s; resuming", index, self.digest, exc)
            else:
                return
            finally:
                self._checkpoint()

    async def _fetch_once(self, index: int, watch: TransferWatch) -> None:
        part = self.parts[index]
        headers = {"range": f"bytes={part.next_byte}-{part.last_byte}"}
        url = self.reference.blob_url(self.digest)
        scope = self.reference.scope(push=False)
        async with self.client.request("GET", url, scope=scope, headers=headers) as r:
            await raise_for_status(r, f"pull blob {self.digest}")
            whole = r.status_code == 200
            if whole and part.next_byte != 0:
                raise RegistryError(
                    502, "the registry ignored a Range request; cannot resume"
                )
            unsaved = 0
            try:
                async for chunk in r.aiter_raw():
                    part = self.parts[index]
                    room = part.size - part.done
                    if room <= 0:
                        if whole:
                            break  # the rest belongs to other parts, sent anyway
                        raise RegistryError(502, "the registry sent too many bytes")
                    chunk = chunk[:room] if whole else chunk
                    if len(chunk) > room:
                        raise RegistryError(502, "the registry sent too many bytes")
                    os.pwrite(self.fd, chunk, part.next_byte)
                    self.parts[index] = Part(
                        part.start, part.size, part.done + len(chunk)
                    )
                    watch.advance(len(chunk))
                    unsaved += len(chunk)
                    if unsaved >= self.client.options.checkpoint_bytes:
                        self._checkpoint()
                        unsaved = 0
            except httpx.TimeoutException:
                raise RegistryError(504, "the registry timed out") from None
            except httpx.TransportError as exc:
                raise RegistryError(502, f"the download broke off: {exc}") from None
        if not self.parts[index].finished:
            raise RegistryError(502, f"the registry ended blob {self.digest} early")

    def _checkpoint(self) -> None:
        """Record every part's progress (after the bytes it counts are written)."""
        data = json.dumps([[p.start, p.size, p.done] for p in self.parts])
        temp = self.record.with_name(self.record.name + ".new")
        temp.write_text(data)
        os.replace(temp, self.record)


def _read_record(record: Path, size: int) -> list[Part] | None:
    """The parts a killed download left, if its record is sound; else None."""
    try:
        parts = tuple(Part(*entry) for entry in json.loads(record.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return list(parts) if valid_resume(parts, size) else None
