"""The demo model: a tiny generated GGUF installed as ``demo`` in an empty store, so
that a first ``gateway-core serve`` answers at once."""

from __future__ import annotations

import hashlib

from gateway_core._names import ModelName

from .demo_model import write_demo_model
from .model_store import ModelStore
from .store_files import temp_path

__all__ = ["ensure_demo_model"]

_CHUNK = 1 << 20


def ensure_demo_model(store: ModelStore) -> bool:
    """Install the generated demo model as ``demo`` if the store has no models.

    Returns whether it did. The file is written next to the blobs and streamed in
    through a ``BlobWriter``, like an upload, so it is checked the same way.
    """
    with store.lock:
        if store.list_models():
            return False
        temp = temp_path(store.root / "blobs" / "demo.gguf")
        try:
            write_demo_model(temp)
            digest = hashlib.sha256()
            with temp.open("rb") as file:
                while chunk := file.read(_CHUNK):
                    digest.update(chunk)
            with store.blob_writer("sha256:" + digest.hexdigest()) as writer:
                with temp.open("rb") as file:
                    while chunk := file.read(_CHUNK):
                        writer.write(chunk)
                writer.commit()
        finally:
            temp.unlink(missing_ok=True)
        store.create(
            ModelName(model="demo"), files={"demo.gguf": "sha256:" + digest.hexdigest()}
        )
        return True
