"""Pull and push over HTTP: the registry client and the blob transfers.

``RegistryClient`` speaks the OCI distribution API (httpx, under whatever loop anyio
runs: trio here) with Bearer-token challenges and careful redirects; ``transfers``
downloads blobs into the model store in resumable ranged parts and uploads them in
chunks. The core decides what to move (``gateway_core._registry``); this package
moves it. See docs/registry.md.
"""

from __future__ import annotations

from .client import RegistryClient, RegistryError, RegistryOptions
from .transfers import Registry, TransferWatch

__all__ = [
    "Registry",
    "RegistryClient",
    "RegistryError",
    "RegistryOptions",
    "TransferWatch",
]
