"""Model names and blob digests: what a client may call a model, and what it may not.

A model name is ``[host/][namespace/]model[:tag]`` (Ollama's rules): the missing parts
default to ``registry.ollama.ai``, ``library`` and ``latest``. The parts also become
directory names in the model store, so a name that could escape it (``..``, ``/``,
``\\``, a drive letter, a NUL) must not exist at all: ``ModelName`` checks every part on
construction, and the character rules below leave no such name possible. Only ASCII is
allowed, so a name means the same thing on every file system and in every log.

Names are case-preserving but looked up case-insensitively, like Ollama: a model pulled
as ``Llama3`` is found as ``llama3``. The store compares ``lookup_key``s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_NAMESPACE",
    "DEFAULT_TAG",
    "InvalidDigest",
    "InvalidModelName",
    "ModelName",
    "parse_digest",
]

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

# Every part starts with a letter, digit or underscore: so no part is ".", "..", or
# hidden, and none starts with "-" (an option to some tool). After that: "_", "-" and
# "." (but a namespace has no "."), and ":" only in the host, for its port.
_FIRST = "A-Za-z0-9_"
_STARTS_WELL = re.compile(rf"[{_FIRST}]")
_PART_PATTERNS = {
    "host": re.compile(rf"[{_FIRST}][{_FIRST}.:-]*"),
    "namespace": re.compile(rf"[{_FIRST}][{_FIRST}-]*"),
    "model": re.compile(rf"[{_FIRST}][{_FIRST}.-]*"),
    "tag": re.compile(rf"[{_FIRST}][{_FIRST}.-]*"),
}
_ALLOWED_AFTER_FIRST = {
    "host": "letters, digits, '_', '-', '.' and ':'",
    "namespace": "letters, digits, '_' and '-'",
    "model": "letters, digits, '_', '-' and '.'",
    "tag": "letters, digits, '_', '-' and '.'",
}
# Ollama's limits (isValidLen in its types/model/name.go).
_MAX_LENGTH = {"host": 350, "namespace": 80, "model": 80, "tag": 80}
# The store keeps every part as one directory or file name, and Linux, macOS and
# Windows allow at most 255 in one (bytes or UTF-16 units: the same, as names are
# ASCII). Only a host can be longer; Ollama's own store fails on such a host too.
_MAX_STORED_LENGTH = 255
# Anything longer cannot be valid; refusing it early keeps error messages short.
_MAX_NAME_LENGTH = sum(_MAX_LENGTH.values()) + len("https://") + 3


class InvalidModelName(ValueError):
    """The text is not a valid model name. The message says which rule it broke."""


class InvalidDigest(ValueError):
    """The text is not a sha256 digest in a form the blob API accepts."""


def _quoted(text: str, limit: int = 80) -> str:
    """``text`` for an error message, cut short so a hostile input cannot flood it."""
    shown = text if len(text) <= limit else text[:limit] + "..."
    return '"' + shown.encode("unicode_escape").decode("ascii") + '"'


def _part_problem(kind: str, value: str) -> str | None:
    """Why ``value`` is not a valid ``kind`` part, or None when it is."""
    if not value:
        return f"the {kind} is empty"
    if len(value) > _MAX_LENGTH[kind]:
        return f"the {kind} is longer than {_MAX_LENGTH[kind]} characters"
    if len(value) > _MAX_STORED_LENGTH:
        return (
            f"the {kind} is longer than {_MAX_STORED_LENGTH} characters, the most a"
            " directory name in the model store may have"
        )
    if _PART_PATTERNS[kind].fullmatch(value):
        return None
    if not _STARTS_WELL.match(value):
        return f"the {kind} must start with a letter, a digit or '_'"
    return f"the {kind} may only contain {_ALLOWED_AFTER_FIRST[kind]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelName:
    """A fully qualified model name. Every part is valid, or the value cannot exist.

    Build one from client text with ``ModelName.parse``; construct it directly only
    from parts you already hold (the store, reading its directories back).
    """

    host: str = DEFAULT_HOST
    namespace: str = DEFAULT_NAMESPACE
    model: str
    tag: str = DEFAULT_TAG

    def __post_init__(self) -> None:
        for kind in ("host", "namespace", "model", "tag"):
            value = getattr(self, kind)
            if not isinstance(value, str):
                raise InvalidModelName(f"the {kind} must be a string")
            problem = _part_problem(kind, value)
            if problem is not None:
                raise InvalidModelName(f"invalid model name: {problem}")

    @classmethod
    def parse(cls, text: str) -> ModelName:
        """Read a name as a client writes it, filling in the default parts.

        ``https://`` or ``http://`` in front of the host is dropped, as Ollama does,
        so names copied from a registry URL work.

        Raises:
            InvalidModelName: saying what is wrong, e.g.
                ``invalid model name "a/b/c/d": ...``.
        """
        if len(text) > _MAX_NAME_LENGTH:
            raise InvalidModelName(
                f"invalid model name {_quoted(text)}: longer than "
                f"{_MAX_NAME_LENGTH} characters"
            )
        rest, tag = text, DEFAULT_TAG
        # ":" also separates a host from its port, so it starts a tag only after the
        # last "/".
        if rest.rfind(":") > rest.rfind("/"):
            rest, _, tag = rest.rpartition(":")
        if "://" in rest:
            scheme, _, rest = rest.partition("://")
            if scheme not in ("http", "https") or rest.count("/") != 2:
                raise InvalidModelName(
                    f"invalid model name {_quoted(text)}: a name with a scheme must "
                    "be http(s)://host/namespace/model"
                )
        parts = rest.split("/")
        if len(parts) > 3:
            raise InvalidModelName(
                f"invalid model name {_quoted(text)}: at most three '/'-separated "
                "parts are allowed (host/namespace/model)"
            )
        host, namespace = DEFAULT_HOST, DEFAULT_NAMESPACE
        if len(parts) == 3:
            host, namespace, model = parts
        elif len(parts) == 2:
            namespace, model = parts
        else:
            (model,) = parts
        values = {"host": host, "namespace": namespace, "model": model, "tag": tag}
        for kind, value in values.items():
            problem = _part_problem(kind, value)
            if problem is not None:
                raise InvalidModelName(f"invalid model name {_quoted(text)}: {problem}")
        return cls(host=host, namespace=namespace, model=model, tag=tag)

    @property
    def display(self) -> str:
        """The short form clients show: ``llama3.2:latest``, ``ns/m:tag``.

        The default host and namespace are left out. With a host of its own the
        namespace always stays, or the host would read as a namespace. The defaults
        are compared exactly, not case-insensitively (unlike Ollama), so that
        ``parse(name.display) == name`` always holds.
        """
        if self.host != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    @property
    def full(self) -> str:
        """Every part spelled out: ``registry.ollama.ai/library/llama3.2:latest``."""
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    @property
    def lookup_key(self) -> str:
        """Equal for two names that differ only in letter case (the parts are ASCII)."""
        return self.full.lower()

    @property
    def path_parts(self) -> tuple[str, str, str, str]:
        """Host, namespace, model and tag, each usable as one directory name.

        Safe by construction: no part is empty, ``.`` or ``..``, or holds a
        separator. A host's ``:port`` is kept, as Ollama does; Windows would need it
        escaped.
        """
        return (self.host, self.namespace, self.model, self.tag)

    def __str__(self) -> str:
        return self.display


_DIGEST = re.compile(r"sha256[:-]([0-9a-fA-F]{64})")


def parse_digest(text: str) -> str:
    """Normalize a blob digest to ``sha256:<64 lower-case hex digits>``.

    Ollama writes digests as ``sha256:<hex>`` on the wire but names blob files
    ``sha256-<hex>``, and clients send both; upper-case hex is the same digest.

    Raises:
        InvalidDigest: for anything else, including other hash algorithms.
    """
    match = _DIGEST.fullmatch(text)
    if match is None:
        raise InvalidDigest(
            f"invalid digest {_quoted(text)}: expected sha256:<64 hex digits>"
        )
    return "sha256:" + match.group(1).lower()
