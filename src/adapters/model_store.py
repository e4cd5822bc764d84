"""The model store: Ollama's on-disk layout, read and written safely.

``<root>/blobs/sha256-<hex>`` holds content-addressed blobs (GGUF weights, config,
template, ...) and ``<root>/manifests/<host>/<namespace>/<model>/<tag>`` the JSON
manifests that name them (see ``gateway_core._manifest``). Being Ollama's layout, a
store can be shared with, or copied from, an Ollama installation.

Safety rules, and why:
- Every file is written under a temporary name in its final directory, checked,
  fsynced and then ``os.replace``d: a crash or a concurrent reader never sees half a
  file, only the old one or the new one. A crash leaves the temporary file
  behind; opening the store removes those that are stale (``ModelStore.sweep``).
- Paths are built only from ``ModelName.path_parts`` (valid by construction) and
  normalized digests, so no client text can name a file outside the root.
- Mutations take one lock; readers take none and rely on the atomic renames. The
  store is blocking code: async callers run it in a worker thread.
- A model whose files were removed behind the store's back answers with a
  ``StoreError(500)`` naming the model; ``list_models`` still lists it (from its
  manifest alone), so it can be seen and deleted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from gateway_core._json import JsonValue
from gateway_core._manifest import (
    LICENSE_MEDIA_TYPE,
    MAX_SHOWN_ARRAY,
    MESSAGES_MEDIA_TYPE,
    PARAMS_MEDIA_TYPE,
    SYSTEM_MEDIA_TYPE,
    TEMPLATE_MEDIA_TYPE,
    Manifest,
    ManifestError,
    ModelConfig,
    blob_file_name,
    digest_of,
    parse_messages,
    parse_params,
    shape_model_info,
)
from gateway_core._models import ModelRecord
from gateway_core._names import ModelName
from gateway_core._templates import is_go_template

from .gguf_info import GgufError, GgufInfo, read_gguf
from .store_files import (
    BlobWriter,
    StoreError,
    disk_errors,
    fsync_dir,
    sweep_temp_files,
    write_file,
)
from .store_layers import LayerEditor, checked_digest, gguf_layers
from .store_layers import damaged as _damaged

__all__ = ["BlobWriter", "ModelStore", "StoreError"]

_log = logging.getLogger("adapters.model_store")

_CHUNK = 1 << 20
_READ_ATTEMPTS = 5
# Temporary files are written in blobs/ itself and in manifests/<host>/<namespace>/
# <model>/: three levels below manifests/.
_MANIFEST_DEPTH = 3


class _Changed(Exception):
    """A model's manifest changed while it was being read: read it again."""


_FileIdentity = tuple[int, int, int, int]


def _identity(stat: os.stat_result) -> _FileIdentity:
    """What changes whenever a file is replaced or rewritten."""
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


class ModelStore:
    """Installed models under ``root``, in Ollama's layout. See the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._blobs = root / "blobs"
        self._manifests = root / "manifests"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._manifests.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        """Held by every mutation. Reentrant so a mutation can call another."""
        # GGUF metadata by blob digest: the content of a digest never changes.
        self._infos: dict[str, GgufInfo] = {}
        # Records by manifest path, with the manifest's identity when it was read.
        # Every change through the store drops the record and counts in _changes,
        # so the cache never rests on timestamps for changes made here (a coarse
        # clock and a reused inode can make a new manifest look like the old one);
        # the identity catches changes made behind the store's back.
        self._records: dict[Path, tuple[_FileIdentity, ModelRecord]] = {}
        self._changes = 0
        self.sweep()

    def sweep(self, now: float | None = None) -> tuple[int, int]:
        """Remove the temporary files crashed writers left; how many, how many bytes.

        Called when the store is opened. Only the store's own temporary names, in
        its own directories, and only stale ones (``STALE_TEMP_AGE``), since another
        server sharing the store may be writing its own right now.
        """
        blobs = sweep_temp_files(self._blobs, now=now)
        manifests = sweep_temp_files(self._manifests, depth=_MANIFEST_DEPTH, now=now)
        files, size = blobs[0] + manifests[0], blobs[1] + manifests[1]
        _log.log(
            logging.INFO if files else logging.DEBUG,
            "removed %d stale temporary files (%d bytes) from the model store %s",
            files,
            size,
            self.root,
        )
        return files, size

    # -- blobs -----------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        """Where blob ``digest`` lives. Any accepted digest form; 400 for others."""
        return self._blobs / blob_file_name(checked_digest(digest))

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def blob_writer(self, digest: str) -> BlobWriter:
        """Start an upload of blob ``digest`` (a size is not needed: it streams)."""
        digest = checked_digest(digest)
        return BlobWriter(self.blob_path(digest), digest, lock=self.lock)

    def _put_blob(self, data: bytes, statuses: list[str]) -> str:
        digest = digest_of(data)
        path = self.blob_path(digest)
        if path.is_file():
            statuses.append(f"using existing layer {digest}")
        else:
            write_file(path, data)
            statuses.append(f"creating new layer {digest}")
        return digest

    def _read_blob(self, digest: str, owner: ModelName) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except OSError as exc:
            raise _damaged(owner, f"its blob {digest} cannot be read ({exc})") from None

    # -- reading models ------------------------------------------------------------

    def _manifest_path(self, name: ModelName) -> Path:
        return self._manifests.joinpath(*name.path_parts)

    def _scan(self) -> Iterator[tuple[ModelName, Path]]:
        """Every manifest on disk with a valid name; stray files are skipped."""

        def subdirs(path: Path) -> Iterator[Path]:
            with contextlib.suppress(OSError):
                for entry in sorted(path.iterdir()):
                    if not entry.name.startswith(".") and entry.is_dir():
                        yield entry

        for host in subdirs(self._manifests):
            for namespace in subdirs(host):
                for model in subdirs(namespace):
                    with contextlib.suppress(OSError):
                        for tag in sorted(model.iterdir()):
                            if tag.name.startswith(".") or not tag.is_file():
                                continue
                            with contextlib.suppress(ValueError):
                                yield (
                                    ModelName(
                                        host=host.name,
                                        namespace=namespace.name,
                                        model=model.name,
                                        tag=tag.name,
                                    ),
                                    tag,
                                )

    def _find(self, name: ModelName) -> tuple[ModelName, Path] | None:
        """The installed spelling of ``name`` and its manifest, ignoring case."""
        exact = self._manifest_path(name)
        if exact.is_file():
            return name, exact
        key = name.lookup_key
        return next(
            ((found, path) for found, path in self._scan() if found.lookup_key == key),
            None,
        )

    def _read_manifest(
        self, name: ModelName, path: Path
    ) -> tuple[Manifest, bytes, float]:
        """The manifest, its bytes (hashed for the model digest) and its mtime."""
        try:
            with path.open("rb") as file:
                data = file.read()
                modified_at = os.fstat(file.fileno()).st_mtime
        except FileNotFoundError:
            raise _not_found(name) from None
        except OSError as exc:
            raise _damaged(name, f"its manifest cannot be read ({exc})") from None
        try:
            return Manifest.from_bytes(data), data, modified_at
        except ManifestError as exc:
            raise _damaged(name, f"its manifest is invalid ({exc})") from None

    def _gguf(self, name: ModelName, digest: str) -> tuple[GgufInfo, Path]:
        path = self.blob_path(digest)
        if not path.is_file():
            raise _damaged(name, f"its model file {path.name} is missing")
        info = self._infos.get(digest)
        if info is None:
            try:
                info = read_gguf(path, max_array=MAX_SHOWN_ARRAY)
            except (OSError, GgufError) as exc:
                raise _damaged(name, f"its model file {path.name}: {exc}") from None
            self._infos[digest] = info
        return info, path

    def _layer_text(self, manifest: Manifest, media_type: str, name: ModelName) -> str:
        """The last layer of ``media_type``: a later layer overrides an earlier one."""
        layers = manifest.layers_of(media_type)
        if not layers:
            return ""
        return self._read_blob(layers[-1].digest, name).decode("utf-8", "replace")

    def _config(self, manifest: Manifest, name: ModelName) -> ModelConfig:
        try:
            return ModelConfig.from_bytes(self._read_blob(manifest.config.digest, name))
        except ManifestError as exc:
            raise _damaged(name, f"its config is invalid ({exc})") from None

    def cached_lookup(self, name: ModelName) -> ModelRecord | None:
        """``lookup(name)`` if nothing it read has changed since, else None.

        It reads no file: ``stat`` of the manifest and of the model file. That is
        cheap enough for an event loop, where ``lookup`` (reading and parsing five
        files) belongs in a worker thread. Only the exact spelling of a name is
        found here; any other spelling returns None.
        """
        path = self._manifest_path(name)
        try:
            identity = _identity(path.stat())
        except OSError:
            return None
        return self._unchanged(path, identity)

    def _record(self, name: ModelName, path: Path) -> ModelRecord:
        """The model of manifest ``path``, read again only if the manifest changed.

        Every write replaces a manifest by renaming a new file over it, and blobs
        never change under their digest, so a manifest with the same inode, size and
        mtime describes the same record. The model file is still checked, so one
        deleted behind the server's back is reported as damage, as without the
        cache.
        """
        changes = self._changes
        try:
            identity = _identity(path.stat())
        except FileNotFoundError:
            raise _not_found(name) from None
        except OSError as exc:
            raise _damaged(name, f"its manifest cannot be read ({exc})") from None
        record = self._unchanged(path, identity)
        if record is None:
            record = self._read_fresh(name, path)
            if changes == self._changes:  # else a writer may have raced this read
                self._records[path] = (identity, record)
        return record

    def _forget(self, path: Path) -> None:
        """Drop the cached record of manifest ``path``; called under the lock."""
        self._changes += 1
        self._records.pop(path, None)

    def _unchanged(self, path: Path, identity: _FileIdentity) -> ModelRecord | None:
        cached = self._records.get(path)
        if cached is None or cached[0] != identity:
            return None
        record = cached[1]
        return record if Path(record.model_file).is_file() else None

    def _read_fresh(self, name: ModelName, path: Path) -> ModelRecord:
        """Read a model without the lock: retried when a writer changed it meanwhile.

        A writer replaces the manifest first and prunes the old blobs after, so a
        reader can find a blob of the manifest it read already gone. That is only
        damage if the manifest is still the one it read. (``_record`` caches a
        record under the manifest's identity from before the read, and not at all if
        the store changed something meanwhile, so a record read across a change is
        read again next time.)
        """
        for _ in range(_READ_ATTEMPTS - 1):
            try:
                return self._read_record(name, path)
            except _Changed:
                continue
        return self._read_record(name, path, retry=False)

    def _read_record(
        self, name: ModelName, path: Path, *, retry: bool = True
    ) -> ModelRecord:
        manifest, data, modified_at = self._read_manifest(name, path)
        try:
            return self._build(name, manifest, data, modified_at)
        except StoreError as exc:
            if not retry or exc.status != 500:
                raise
            try:
                unchanged = path.read_bytes() == data
            except OSError:
                unchanged = False
            if unchanged:
                raise
            raise _Changed from None

    def _build(
        self, name: ModelName, manifest: Manifest, data: bytes, modified_at: float
    ) -> ModelRecord:
        config = self._config(manifest, name)
        params = self._layer_text(manifest, PARAMS_MEDIA_TYPE, name)
        messages = self._layer_text(manifest, MESSAGES_MEDIA_TYPE, name)
        try:
            # What the manifest says, every model alike; a remote model is that
            # and where it runs, a local one adds what its GGUF file says.
            record = ModelRecord(
                name=name.display,
                digest=hashlib.sha256(data).hexdigest(),
                size=manifest.size,
                modified_at=modified_at,
                model_file="",
                model_digest="",
                template=self._layer_text(manifest, TEMPLATE_MEDIA_TYPE, name) or None,
                system=self._layer_text(manifest, SYSTEM_MEDIA_TYPE, name) or None,
                parameters=parse_params(params.encode()) if params else {},
                messages=parse_messages(messages.encode()) if messages else (),
                license=tuple(
                    self._read_blob(layer.digest, name).decode("utf-8", "replace")
                    for layer in manifest.layers_of(LICENSE_MEDIA_TYPE)
                ),
                details=config.details(),
                parser=config.parser,
                remote_host=config.remote_host,
                remote_model=config.remote_model,
            )
        except ManifestError as exc:
            raise _damaged(name, str(exc)) from None
        if manifest.is_remote:
            if not config.remote_host:
                raise _damaged(name, "it has no model file and names no remote host")
            return record
        model_layer = manifest.model_layer
        info, model_file = self._gguf(name, model_layer.digest)
        found = info.metadata.get("tokenizer.chat_template")
        own = found if isinstance(found, str) else ""
        template, source, go_template = _chosen_template(record.template or "", own)
        return dataclasses.replace(
            record,
            model_file=str(model_file),
            model_digest=model_layer.digest,
            template=template or None,
            template_source=source,
            go_template=go_template,
            details=config.details(parent_model=model_layer.parent),
            model_info=shape_model_info(info.metadata, verbose=False),
            context_length=info.arch_int("context_length"),
            embedding_length=info.arch_int("embedding_length"),
            bos_token=info.bos_token,
            eos_token=info.eos_token,
            is_embedding=info.has_arch_key("pooling_type"),
        )

    def _bare_record(self, name: ModelName, path: Path) -> ModelRecord:
        """What the manifest alone says, for listing a model whose blobs are damaged."""
        manifest, data, modified_at = self._read_manifest(name, path)
        try:
            details = self._config(manifest, name).details()
        except StoreError:
            details = ModelConfig().details()
        return ModelRecord(
            name=name.display,
            digest=hashlib.sha256(data).hexdigest(),
            size=manifest.size,
            modified_at=modified_at,
            model_file=""
            if manifest.is_remote
            else str(self.blob_path(manifest.model_layer.digest)),
            model_digest="" if manifest.is_remote else manifest.model_layer.digest,
            details=details,
        )

    def lookup(self, name: ModelName) -> ModelRecord:
        """The installed model called ``name`` (any letter case).

        Raises:
            StoreError(404): no such model.
            StoreError(500): the model is installed but its files are damaged.
        """
        found = self._find(name)
        if found is None:
            raise _not_found(name)
        return self._record(*found)

    def list_models(self) -> list[ModelRecord]:
        """Every installed model, newest first.

        A damaged model is listed from its manifest alone (so it can be seen and
        deleted); one whose manifest is unreadable is skipped with a warning.
        """
        records = []
        for name, path in self._scan():
            try:
                records.append(self._record(name, path))
            except StoreError as exc:
                if exc.status == 404:  # deleted since the scan
                    continue
                _log.warning("model %s: %s", name.display, exc.message)
                with contextlib.suppress(StoreError):
                    records.append(self._bare_record(name, path))
        records.sort(key=lambda record: (-record.modified_at, record.name))
        return records

    def show_info(self, record: ModelRecord, verbose: bool) -> dict[str, JsonValue]:
        """``model_info`` for ``/api/show``; ``verbose`` keeps the long arrays."""
        if not verbose or record.remote_host:
            return dict(record.model_info)
        try:
            info = read_gguf(Path(record.model_file))
        except (OSError, GgufError) as exc:
            raise StoreError(
                500, f"model '{record.name}' is damaged: its model file: {exc}"
            ) from None
        return shape_model_info(info.metadata, verbose=True)

    # -- writing models ------------------------------------------------------------

    def create(
        self,
        name: ModelName,
        *,
        files: Mapping[str, str] | None = None,
        base: ModelName | None = None,
        template: str | None = None,
        system: str | None = None,
        parameters: Mapping[str, JsonValue] | None = None,
        messages: Sequence[Mapping[str, JsonValue]] | None = None,
        license: Sequence[str] | None = None,
        parser: str | None = None,
        remote: tuple[str, str] | None = None,
    ) -> list[str]:
        """Install ``name`` from one GGUF blob (``files``) or another model
        (``base``), or as a remote model: ``remote`` is (host, model there).

        ``template``, ``system``, ``messages`` and ``license`` replace what the base
        has (an empty one removes it); ``parameters`` are merged over the base's,
        and must already be validated. Returns the progress statuses, without the
        final "success".

        Raises:
            StoreError(400): both or neither of files and base, a bad digest or file
                name, a blob that is missing or not a GGUF model.
            StoreError(404): the base model is not installed.
        """
        if (bool(files) + (base is not None) + (remote is not None)) != 1:
            raise StoreError(400, "give either files or a base model (from), not both")
        with self.lock, disk_errors():
            statuses: list[str] = []
            owner = base or name
            editor = LayerEditor(
                owner,
                put=lambda data: self._put_blob(data, statuses),
                read=lambda digest: self._read_blob(digest, owner),
            )
            if remote is not None:
                config, layers = editor.remote_config(*remote), []
            elif base is not None:
                found = self._find(base)
                if found is None:
                    raise _not_found(base)
                manifest = self._read_manifest(*found)[0]
                config, layers = manifest.config, list(manifest.layers)
                if not manifest.is_remote:
                    model = manifest.model_layer
                    layers[layers.index(model)] = dataclasses.replace(
                        model, parent=model.parent or found[0].display
                    )
                statuses.extend(f"using existing layer {lay.digest}" for lay in layers)
            else:
                assert files is not None
                info, config, layers = gguf_layers(
                    files,
                    blob_path=self.blob_path,
                    put=lambda data: self._put_blob(data, statuses),
                    note=statuses.append,
                )
                self._infos[layers[0].digest] = info
            if parser is not None:
                config = editor.with_parser(config, parser)
            layers = editor.apply(
                layers,
                template=template,
                system=system,
                parameters=parameters,
                messages=messages,
                license=license,
            )
            statuses.append("writing manifest")
            self._install(name, Manifest(config=config, layers=tuple(layers)))
            return statuses

    def _install(
        self, name: ModelName, manifest: Manifest, data: bytes | None = None
    ) -> None:
        """Write ``name``'s manifest, replacing any spelling of it in another case.

        ``data``: the manifest's bytes as a registry served them (a pull), kept as
        they are so that the model's digest stays the registry's.
        """
        with self.lock:
            previous = self._find(name)
            old = None
            if previous is not None:
                with contextlib.suppress(StoreError):
                    old = self._read_manifest(*previous)[0]
            path = self._manifest_path(name)
            write_file(path, manifest.to_bytes() if data is None else data)
            self._forget(path)
            if previous is not None and not _same_file(previous[1], path):
                self._remove_manifest(previous[1])
            if old is not None:
                self._prune(old.digests)

    def manifest_data(self, name: ModelName) -> bytes:
        """The stored manifest of ``name``, byte for byte (a push sends it as is)."""
        with disk_errors():
            found = self._find(name)
            if found is None:
                raise _not_found(name)
            return self._read_manifest(*found)[1]

    def install_pulled(self, name: ModelName, data: bytes) -> None:
        """Install a pulled manifest once every blob it names is in the store.

        The last step of a pull: the blobs were verified as they arrived, so a
        missing one is this server's bug or a concurrent delete, never the
        registry's; 500 then, and nothing is written.
        """
        try:
            manifest = Manifest.from_bytes(data)
        except ManifestError as exc:
            raise StoreError(400, f"invalid manifest: {exc}") from None
        with self.lock, disk_errors():
            missing = sorted(d for d in manifest.digests if not self.has_blob(d))
            if missing:
                raise StoreError(500, f"blob {missing[0]} vanished during the pull")
            self._install(name, manifest, data)

    def copy(self, source: ModelName, destination: ModelName) -> None:
        """Install ``destination`` as the same model as ``source`` (404 if missing).

        A ``destination`` that names the source itself, in any letter case, is
        left as it is, as Ollama does: installing it would replace the source's
        spelling, which is a rename, and a copy must never take the source away.
        (The API refuses a case-variant destination before it gets here.)
        """
        with self.lock, disk_errors():
            found = self._find(source)
            if found is None:
                raise StoreError(404, f'model "{source.display}" not found')
            if destination.lookup_key == found[0].lookup_key:
                return
            self._install(destination, self._read_manifest(*found)[0])

    def delete(self, name: ModelName) -> str | None:
        """Remove ``name`` and the blobs only it used (404 if missing).

        Returns the digest of the model's GGUF file, which names its runners, so
        the caller can unload them; None if the manifest was too damaged to say.
        """
        with self.lock, disk_errors():
            found = self._find(name)
            if found is None:
                raise _not_found(name)
            try:
                manifest: Manifest | None = self._read_manifest(*found)[0]
            except StoreError:
                manifest = None  # a damaged manifest: just remove it
            self._remove_manifest(found[1])
            if manifest is None:
                return None
            self._prune(manifest.digests)
            return None if manifest.is_remote else manifest.model_layer.digest

    def _remove_manifest(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self._forget(path)
        # Empty model, namespace and host directories go too, as Ollama's do.
        for directory in (path.parent, path.parent.parent, path.parent.parent.parent):
            try:
                directory.rmdir()
            except OSError:
                break
        fsync_dir(path.parent)

    def _prune(self, candidates: frozenset[str]) -> None:
        """Delete those of ``candidates`` no manifest refers to any more.

        Only a removed manifest's blobs are candidates, never every unreferenced
        blob: a client uploads blobs first and creates the model after, and a
        delete in between must not take its uploads away.
        """
        in_use: set[str] = set()
        for name, path in self._scan():
            try:
                in_use |= self._read_manifest(name, path)[0].digests
            except StoreError as exc:
                # Its references are unknown: keep every blob rather than guess.
                _log.warning("not pruning blobs: model %s: %s", name, exc.message)
                return
        for digest in candidates - in_use:
            self.blob_path(digest).unlink(missing_ok=True)
            self._infos.pop(digest, None)


def _same_file(a: Path, b: Path) -> bool:
    """Whether two manifest paths are one file: two spellings are, on a
    case-insensitive file system (macOS, Windows), and removing the other spelling
    would then remove the manifest just written."""
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _chosen_template(layer: str, own: str) -> tuple[str, str, str | None]:
    """The template a model renders with, where it came from, and the Go template
    it stands in for: the template layer, unless it is an Ollama Go template and
    the GGUF carries a Jinja one (models from Ollama's library: their layer is Go,
    their GGUF Jinja). A Go layer with nothing to stand in is kept, and its first
    render says so (400)."""
    if layer and (not is_go_template(layer) or not own):
        return layer, "modelfile", None
    if own:
        return own, "gguf", layer or None
    return "", "", None


def _not_found(name: ModelName) -> StoreError:
    return StoreError(404, f"model '{name.display}' not found")
