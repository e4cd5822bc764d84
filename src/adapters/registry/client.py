"""An OCI distribution client: requests, Bearer challenges, redirects and errors.

A registry answers 401 with ``WWW-Authenticate: Bearer realm=...,service=...,
scope=...``: the client fetches an anonymous token from the realm (credentials are
not supported yet) and retries once. Redirects are followed for GET and HEAD only
(registries send blob downloads to storage), to http(s) only, never from https down
to http, and the registry's token is not sent to another host. Every registry
answer that is not what the protocol promises becomes a ``RegistryError`` with the
status this server answers it with and a message in the registry's own words.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlencode, urljoin, urlsplit

import httpx

from gateway_core import RegistryReference

__all__ = ["RegistryClient", "RegistryError", "RegistryOptions"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
_MAX_ERROR_BODY = 64 * 1024
_MAX_TOKEN_BODY = 64 * 1024
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(Exception):
    """The registry failed us; ``status`` is what this server answers with.

    404: no such model or tag. 401: the registry refused access. 502: it answered
    something the protocol does not allow (a wrong blob, a broken manifest). 504:
    it did not answer in time.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryOptions:
    """Limits of the registry client; the part sizes are Ollama's."""

    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    """Seconds a registry may stay silent mid-answer before the transfer fails."""
    max_manifest_bytes: int = 4 * 1024 * 1024
    download_parts: int = 16
    min_part_size: int = 100 * 1000 * 1000
    max_part_size: int = 1000 * 1000 * 1000
    upload_chunk_size: int = 64 * 1024 * 1024
    part_attempts: int = 3
    """Tries per download part when the connection breaks (each resumes)."""
    checkpoint_bytes: int = 1024 * 1024
    """How often (bytes) a part's progress is written next to the partial file."""


def _registry_message(body: bytes) -> str:
    """The first error of an OCI error body, or the start of the body as text."""
    try:
        value = json.loads(body)
        first = value["errors"][0]
        return f"{first['code']}: {first['message']}"[:300]
    except (ValueError, KeyError, IndexError, TypeError):
        text = body.decode("utf-8", "replace").strip()
        return text[:300] or "no details"


def parse_challenge(header: str) -> dict[str, str] | None:
    """The parameters of a Bearer challenge, or None for another scheme."""
    scheme, _, params = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return {key.lower(): value for key, value in _CHALLENGE_PARAM.findall(params)}


class RegistryClient:
    """HTTP to registries, for every pull and push of one server."""

    def __init__(self, options: RegistryOptions | None = None) -> None:
        self.options = options or RegistryOptions()
        timeout = httpx.Timeout(
            self.options.read_timeout, connect=self.options.connect_timeout
        )
        self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._tokens: dict[tuple[str, str], str] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- requests ------------------------------------------------------------------

    @asynccontextmanager
    async def request(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """Send a request and hold its streamed response open; 401 challenges are
        answered once. Raises ``RegistryError`` for a transport failure only: the
        caller judges the status."""
        for attempt in range(2):
            response = await self._send_following(method, url, scope, headers, content)
            if response.status_code == 401 and attempt == 0:
                challenge = response.headers.get("www-authenticate", "")
                await response.aclose()
                await self._authorize(url, challenge, scope)
                continue
            try:
                yield response
            finally:
                await response.aclose()
            return

    async def _send_following(
        self,
        method: str,
        url: str,
        scope: str,
        headers: Mapping[str, str] | None,
        content: bytes | None,
    ) -> httpx.Response:
        registry_host = urlsplit(url).netloc
        for _ in range(_MAX_REDIRECTS + 1):
            sent = dict(headers or {})
            token = self._tokens.get((registry_host, scope))
            # The token is the registry's: storage a blob redirects to never sees it.
            if token is not None and urlsplit(url).netloc == registry_host:
                sent["authorization"] = f"Bearer {token}"
            try:
                request = self._http.build_request(
                    method, url, headers=sent, content=content
                )
            except (httpx.InvalidURL, UnicodeError) as exc:
                # A redirect or token realm the server sent, or a name the core
                # let through: never a crash of the request.
                raise RegistryError(502, f"invalid registry address: {exc}") from None
            response = await self._send(request)
            location = response.headers.get("location")
            if (
                method not in ("GET", "HEAD")
                or response.status_code not in _REDIRECTS
                or location is None
            ):
                return response
            await response.aclose()
            target = urljoin(url, location)
            scheme = urlsplit(target).scheme
            if scheme not in ("http", "https") or (
                scheme == "http" and urlsplit(url).scheme == "https"
            ):
                raise RegistryError(502, f"the registry redirected to {scheme!r}")
            url = target
        raise RegistryError(502, "the registry redirected too many times")

    async def _send(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        try:
            return await self._http.send(request, stream=True)
        except httpx.TimeoutException:
            raise RegistryError(504, f"the registry at {host} timed out") from None
        except httpx.TransportError as exc:
            raise RegistryError(
                502, f"cannot reach the registry at {host}: {exc}"
            ) from None

    async def _authorize(self, url: str, challenge: str, scope: str) -> None:
        """Answer a Bearer challenge with an anonymous token from its realm."""
        params = parse_challenge(challenge)
        if params is None or not params.get("realm"):
            raise RegistryError(401, "unauthorized: the registry requires credentials")
        realm = params["realm"]
        if urlsplit(realm).scheme not in ("http", "https"):
            raise RegistryError(502, "the registry's token realm is not http(s)")
        query = {
            "service": params.get("service", ""),
            "scope": params.get("scope") or scope,
        }
        target = realm + ("&" if "?" in realm else "?") + urlencode(query)
        response = await self._send(self._http.build_request("GET", target))
        try:
            body = await read_bounded(response, _MAX_TOKEN_BODY, "token answer")
        finally:
            await response.aclose()
        if response.status_code != 200:
            raise RegistryError(
                401, f"unauthorized: the token server answered {response.status_code}"
            )
        try:
            value = json.loads(body)
            token = value.get("token") or value.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(502, "the token server's answer holds no token")
        self._tokens[(urlsplit(url).netloc, scope)] = token

    # -- the protocol ----------------------------------------------------------

    async def fetch_manifest(self, reference: RegistryReference) -> bytes:
        async with self.request(
            "GET",
            reference.manifest_url,
            scope=reference.scope(push=False),
            headers={"accept": "application/vnd.docker.distribution.manifest.v2+json"},
        ) as response:
            if response.status_code == 404:
                raise RegistryError(404, "pull model manifest: file does not exist")
            await raise_for_status(response, "pull model manifest")
            return await read_bounded(
                response, self.options.max_manifest_bytes, "manifest"
            )

    async def put_manifest(self, reference: RegistryReference, data: bytes) -> None:
        async with self.request(
            "PUT",
            reference.manifest_url,
            scope=reference.scope(push=True),
            headers={
                "content-type": "application/vnd.docker.distribution.manifest.v2+json"
            },
            content=data,
        ) as response:
            await raise_for_status(response, "push manifest")


async def read_bounded(response: httpx.Response, limit: int, what: str) -> bytes:
    """The whole body, or a 502 once it passes ``limit`` bytes."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RegistryError(502, f"the registry's {what} is over {limit} bytes")
    data = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > limit:
                raise RegistryError(502, f"the registry's {what} is over {limit} bytes")
    except httpx.TimeoutException:
        raise RegistryError(504, "the registry timed out") from None
    except httpx.TransportError as exc:
        raise RegistryError(502, f"the registry's answer broke off: {exc}") from None
    return bytes(data)


async def raise_for_status(response: httpx.Response, what: str) -> None:
    """A ``RegistryError`` for any status but 2xx, in the registry's words."""
    status = response.status_code
    if 200 <= status < 300:
        return
    message = _registry_message(
        await read_bounded(response, _MAX_ERROR_BODY, "error answer")
    )
    if status in (401, 403):
        raise RegistryError(401, f"{what}: unauthorized: {message}")
    if status == 404:
        raise RegistryError(404, f"{what}: not found: {message}")
    if status == 429:
        raise RegistryError(429, f"{what}: the registry is rate limiting: {message}")
    raise RegistryError(502, f"{what}: the registry answered {status}: {message}")
