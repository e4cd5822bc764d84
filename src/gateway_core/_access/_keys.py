"""API keys: the keys file, how a key is checked, and what a key may do.

The keys file is TOML, one ``[[key]]`` table per key::

    [[key]]
    name = "alice"                 # shown in logs, never the key itself
    sha256 = "<64 hex digits>"     # the key's hash; the key is not stored
    models = ["demo", "llama3*"]   # optional: the models it may use (default: all)
    max_concurrent = 2             # optional: its requests at once (default: no limit)

Only hashes are stored, so a leaked file gives away no key. A plain SHA-256 is the
right hash for keys that ``gateway-core keys new`` makes: 256 random bits cannot be
guessed, so the slow, salted hashes that passwords need add nothing (GitHub and
Stripe store their tokens this way). Checking a key hashes it once and compares the
hash with every stored one in constant time, so the answer's timing says neither
whether a key matched nor which.

Model patterns are model names as clients write them (``demo``, ``demo:latest``,
``team/model:q4``), with ``*`` for any run of characters; a pattern without a tag
allows every tag. They match the name's short form, ignoring case.
"""

from __future__ import annotations

import hashlib
import hmac
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .._names import InvalidModelName, ModelName
from ._patterns import matches_any

__all__ = ["ApiKey", "KeyRing", "KeysFileError", "hash_api_key"]

_HASH_PREFIX = "sha256:"
_DIGEST_HEX_LENGTH = 64
_KEY_FIELDS = frozenset({"name", "sha256", "models", "max_concurrent"})


class KeysFileError(ValueError):
    """The keys file cannot be used; the message says which entry and why."""


def hash_api_key(secret: str) -> str:
    """The hex SHA-256 of a key, as the keys file stores it."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    """One key's entry: who it is and what it may do.

    Attributes:
        name: for logs and messages.
        digest: the SHA-256 of the key (32 bytes).
        models: patterns of the models it may use; empty means every model.
        max_concurrent: its requests in flight at once; None means no limit.
    """

    name: str
    digest: bytes
    models: tuple[str, ...] = ()
    max_concurrent: int | None = None

    def allows_model(self, name: str) -> bool:
        """May this key use the model ``name`` (any form a client writes)?"""
        if not self.models:
            return True
        try:
            short = ModelName.parse(name).display
        except InvalidModelName:
            short = name
        return matches_any(short, self.models)


@dataclass(frozen=True, slots=True)
class KeyRing:
    """Every configured key; ``find`` checks a key a client presents."""

    keys: tuple[ApiKey, ...]

    @classmethod
    def from_toml(cls, text: str) -> KeyRing:
        """Read a keys file's text.

        Raises:
            KeysFileError: naming the entry and field at fault.
        """
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise KeysFileError(f"not valid TOML: {exc}") from None
        unknown = set(document) - {"key"}
        if unknown:
            raise KeysFileError(f"unknown top-level entries {sorted(unknown)}")
        entries = document.get("key", [])
        if not isinstance(entries, list) or not entries:
            raise KeysFileError("no [[key]] entries: a keys file needs at least one")
        keys = tuple(_read_entry(index, entry) for index, entry in enumerate(entries))
        _check_unique(keys)
        return cls(keys)

    def find(self, secret: str) -> ApiKey | None:
        """The entry of ``secret``, or None; every entry is compared, always."""
        digest = hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()
        found: ApiKey | None = None
        for key in self.keys:
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found


def _read_entry(index: int, entry: object) -> ApiKey:
    where = f"[[key]] number {index + 1}"
    if not isinstance(entry, Mapping):
        raise KeysFileError(f"{where} is not a table")
    unknown = set(entry) - _KEY_FIELDS
    if unknown:
        raise KeysFileError(f"{where}: unknown fields {sorted(unknown)}")
    name = entry.get("name", f"key{index + 1}")
    if not isinstance(name, str) or not name.strip():
        raise KeysFileError(f"{where}: name must be a non-empty string")
    where = f"key {name!r}"
    return ApiKey(
        name=name,
        digest=_read_digest(where, entry.get("sha256")),
        models=_read_models(where, entry.get("models", [])),
        max_concurrent=_read_limit(where, entry.get("max_concurrent")),
    )


def _read_digest(where: str, value: object) -> bytes:
    if not isinstance(value, str):
        raise KeysFileError(
            f"{where}: sha256 is required (the key's hash, from gateway-core keys new)"
        )
    text = value.strip().lower().removeprefix(_HASH_PREFIX)
    if len(text) != _DIGEST_HEX_LENGTH or not all(
        c in "0123456789abcdef" for c in text
    ):
        raise KeysFileError(f"{where}: sha256 must be 64 hexadecimal digits")
    return bytes.fromhex(text)


def _read_models(where: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(
        isinstance(item, str) and item.strip() for item in value
    ):
        raise KeysFileError(f"{where}: models must be a list of model names")
    patterns: list[str] = []
    for item in value:
        pattern = item.strip()
        # "demo" means every tag of demo; "demo:q4" one tag. A ":" after the last "/"
        # is a tag separator (before it, a host's port).
        if pattern.rfind(":") <= pattern.rfind("/"):
            patterns.append(f"{pattern}:*")
        patterns.append(pattern)
    return tuple(patterns)


def _read_limit(where: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise KeysFileError(
            f"{where}: max_concurrent must be a whole number of 1 or more"
        )
    return value


def _check_unique(keys: Sequence[ApiKey]) -> None:
    seen: dict[bytes, str] = {}
    for key in keys:
        if key.digest in seen:
            raise KeysFileError(
                f"keys {seen[key.digest]!r} and {key.name!r} are the same key"
            )
        seen[key.digest] = key.name
    names = [key.name for key in keys]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise KeysFileError(f"key names must be unique; repeated: {duplicates}")
