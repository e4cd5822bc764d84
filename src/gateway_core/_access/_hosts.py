"""The Host check: what stops DNS rebinding against a server on loopback.

A web page at ``http://evil.example`` can make its own name resolve to 127.0.0.1 a
moment after the page loaded (DNS rebinding). The browser then sends the page's
requests to the gateway as same-origin requests, with ``Host: evil.example``: no CORS
check stops them. The only tell is that Host header, so a server that listens on
loopback answers only requests whose Host names this machine. Ollama does the same
(its ``allowedHostsMiddleware``), and the rules below are its rules:

- an IP literal that is loopback, private, link-local or unspecified: a rebinding
  attack needs a name the attacker controls, and no one controls an address literal;
- ``localhost``, and names under the ``localhost``, ``local`` and ``internal``
  domains, which public DNS never serves;
- the machine's own host name (the adapter passes it in ``extra``), and whatever the
  operator allows (``GATEWAY_ALLOWED_HOSTS``: names, or patterns with ``*``);
- no Host at all (HTTP/1.0 clients), which no browser sends.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from ._patterns import matches_any

__all__ = ["host_allowed", "host_name", "is_loopback_address"]

_LOCAL_SUFFIXES = (".localhost", ".local", ".internal")


def host_name(header: str) -> str:
    """The name or address of a Host header, without its port, lower-cased.

    ``[::1]:11434`` gives ``::1``; ``Example.COM.:80`` gives ``example.com`` (a
    trailing dot names the same host).
    """
    text = header.strip().lower()
    if text.startswith("["):
        inside, bracket, _ = text[1:].partition("]")
        return inside if bracket else text
    if text.count(":") == 1:
        text = text.partition(":")[0]
    return text.removesuffix(".")


def is_loopback_address(host: str) -> bool:
    """True for the addresses a listener can bind that only this machine reaches:
    ``127.0.0.0/8``, ``::1`` and ``localhost``."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_allowed(header: str | None, extra: Sequence[str] = ()) -> bool:
    """May a request with this Host header reach a server listening on loopback?"""
    if header is None or not header.strip():
        return True
    name = host_name(header)
    if _is_local_address(name):
        return True
    if name == "localhost" or name.endswith(_LOCAL_SUFFIXES):
        return True
    return matches_any(name, extra)


def _is_local_address(name: str) -> bool:
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_unspecified
    )
