"""Access control, decided from the request head: Host, CORS and API keys.

Pure policy, like the rest of the core: the adapter says where it listens and what
the keys file holds; the gate says who may come in. See docs/security.md.
"""

from __future__ import annotations

from ._gate import (
    AccessDecision,
    AccessGate,
    AccessPolicy,
    Admitted,
    Preflight,
    Refused,
)
from ._hosts import host_allowed, is_loopback_address
from ._keys import ApiKey, KeyRing, KeysFileError, hash_api_key
from ._origins import DEFAULT_ORIGINS, origin_allowed

__all__ = [
    "DEFAULT_ORIGINS",
    "AccessDecision",
    "AccessGate",
    "AccessPolicy",
    "Admitted",
    "ApiKey",
    "KeyRing",
    "KeysFileError",
    "Preflight",
    "Refused",
    "hash_api_key",
    "host_allowed",
    "is_loopback_address",
    "origin_allowed",
]
