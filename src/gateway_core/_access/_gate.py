"""``AccessGate``: who may make a request, decided from its head alone.

One gate serves the whole server: it holds the policy (``AccessPolicy``, pure data)
and the one piece of state access control needs, how many requests each key has in
flight. The exchange asks it once per request, before reading the body::

    decision = gate.admit(head)

and gets one of three answers:

- ``Refused(status, message, headers)``: answer this error, do nothing else;
- ``Preflight(headers)``: a browser's CORS preflight from an allowed origin: 204;
- ``Admitted``: go ahead; its ``headers`` go on the response (CORS), its ``key``
  says which models may be used, and its ``release()`` (idempotent) must be called
  when the request is over, which the exchange does.

The checks run in this order, each before any work: the Host (DNS rebinding, only
while listening on loopback), the Origin (CORS), then the key. Preflights come
before the key because browsers never send credentials with them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .._head import RequestHead
from ._hosts import host_allowed
from ._keys import ApiKey, KeyRing
from ._origins import ALLOWED_METHODS, allowed_request_headers, origin_allowed

__all__ = [
    "AccessDecision",
    "AccessGate",
    "AccessPolicy",
    "Admitted",
    "Preflight",
    "Refused",
]

Headers = tuple[tuple[str, str], ...]

# Paths anyone may ask without a key: the liveness answers of load balancers and
# of Ollama's clients ("Ollama is running").
_OPEN_PATHS = frozenset({"/", "/health", "/healthz"})
# How long a browser may reuse a preflight's answer (Chrome caps it at 2 hours).
_PREFLIGHT_MAX_AGE = "7200"
# A key at its concurrency limit: one of its requests usually ends within a second.
_RETRY_AFTER_SECONDS = "1"
_BEARER = "bearer "


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessPolicy:
    """What the gate enforces. The default enforces nothing but CORS.

    Attributes:
        check_host: refuse Hosts that do not name this machine; set it when the
            server listens on loopback only (DNS rebinding; see ``_hosts``).
        allowed_hosts: more Host names or ``*`` patterns to accept; ``*`` turns the
            check off.
        allowed_origins: more browser origins to accept (``GATEWAY_ORIGINS``).
        keys: with a key ring, every request but ``GET /`` and the health check
            needs one of its keys.
    """

    check_host: bool = False
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    keys: KeyRing | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    status: int
    message: str
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class Preflight:
    headers: Headers


@dataclass(slots=True, kw_only=True)
class Admitted:
    """A request allowed in; ``release()`` when it is over (idempotent)."""

    headers: Headers = ()
    key: ApiKey | None = None
    _on_release: Callable[[], None] | None = field(default=None, repr=False)

    def allows_model(self, name: str) -> bool:
        return self.key is None or self.key.allows_model(name)

    def release(self) -> None:
        on_release, self._on_release = self._on_release, None
        if on_release is not None:
            on_release()


AccessDecision = Refused | Preflight | Admitted


class AccessGate:
    """The policy, and each key's requests in flight."""

    def __init__(self, policy: AccessPolicy | None = None) -> None:
        self.policy = policy or AccessPolicy()
        self._in_flight: dict[str, int] = {}

    def in_flight(self, key_name: str) -> int:
        """Requests of the named key now admitted and not yet released."""
        return self._in_flight.get(key_name, 0)

    def admit(self, head: RequestHead) -> AccessDecision:
        policy = self.policy
        if policy.check_host and not host_allowed(
            head.header("host"), policy.allowed_hosts
        ):
            return Refused(
                403,
                "this server answers only requests addressed to this machine "
                "(the Host header names another); allow the name with "
                "GATEWAY_ALLOWED_HOSTS",
            )
        cors: Headers = ()
        origin = head.header("origin")
        if origin is not None:
            if not origin_allowed(origin, policy.allowed_origins):
                return Refused(
                    403,
                    f"requests from the web origin {origin!r} are not allowed; "
                    "allow it with GATEWAY_ORIGINS",
                )
            cors = (("access-control-allow-origin", origin), ("vary", "Origin"))
            if head.method == "OPTIONS" and head.header(
                "access-control-request-method"
            ):
                return Preflight(cors + _preflight_headers(head))
        if policy.keys is None or head.path in _OPEN_PATHS:
            return Admitted(headers=cors)
        return self._admit_key(head, policy.keys, cors)

    def _admit_key(
        self, head: RequestHead, keys: KeyRing, cors: Headers
    ) -> AccessDecision:
        secret = _presented_key(head)
        challenge = (("www-authenticate", 'Bearer realm="gateway-core"'),)
        if secret is None:
            return Refused(
                401,
                "an API key is required: send it as 'Authorization: Bearer KEY' "
                "(or 'x-api-key: KEY')",
                (*cors, *challenge),
            )
        key = keys.find(secret)
        if key is None:
            return Refused(401, "the API key is not valid", (*cors, *challenge))
        count = self._in_flight.get(key.name, 0)
        if key.max_concurrent is not None and count >= key.max_concurrent:
            return Refused(
                429,
                f"this API key already has {count} requests in progress, its limit; "
                "retry when one has finished",
                (*cors, ("retry-after", _RETRY_AFTER_SECONDS)),
            )
        self._in_flight[key.name] = count + 1
        return Admitted(headers=cors, key=key, _on_release=lambda: self._release(key))

    def _release(self, key: ApiKey) -> None:
        left = self._in_flight.get(key.name, 0) - 1
        if left > 0:
            self._in_flight[key.name] = left
        else:
            self._in_flight.pop(key.name, None)


def _presented_key(head: RequestHead) -> str | None:
    authorization = head.header("authorization")
    if authorization is not None and authorization[: len(_BEARER)].lower() == _BEARER:
        token = authorization[len(_BEARER) :].strip()
        if token:
            return token
    api_key = head.header("x-api-key")
    if api_key is not None and api_key.strip():
        return api_key.strip()
    return None


def _preflight_headers(head: RequestHead) -> Headers:
    return (
        ("access-control-allow-methods", ALLOWED_METHODS),
        (
            "access-control-allow-headers",
            allowed_request_headers(head.header("access-control-request-headers")),
        ),
        ("access-control-max-age", _PREFLIGHT_MAX_AGE),
    )
