"""Sending completions to upstream servers, for the core's ``ProxyCompletion``.

``Upstreams`` is one per server: an httpx client (on anyio, so it runs under trio
and asyncio alike), the core's ``Router`` (which upstream, and their health), and
the background health checks. ``open`` tries the pool's upstreams in the router's
order until one starts its answer: a refused connection, a timeout, a 429 or a 5xx
moves the request to the next one, so a client sees an error only when every
upstream failed. An ``OpenStream`` then hands out the answer's bytes, each read
within the idle timeout; closing it closes the connection, which is how a client
that went away stops the upstream's work.

What is never done: following a redirect, contacting a host the upstreams file or
the remote allow-list does not name, forwarding the client's ``Authorization``
(an upstream's own key comes from the environment variable the file names).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from urllib.parse import urlsplit

import anyio
import httpx

from gateway_core import (
    Pool,
    ProxyCompletion,
    Result,
    Router,
    Upstream,
    UpstreamBytes,
    UpstreamEnded,
    UpstreamKind,
    UpstreamTable,
    WorkFailed,
)
from gateway_core._upstream._streams import error_text
from gateway_core._upstream._table import remote_host_allowed

__all__ = ["OpenStream", "Upstreams"]

logger = logging.getLogger("adapters.upstream")

# The most of an upstream's error body read to find its message.
_MAX_ERROR_BYTES = 64 * 1024
# What a health check may take before it counts as failed.
_HEALTH_TIMEOUT = 5.0
# Each kind's cheapest endpoint that proves it serves.
_HEALTH_PATHS = {
    UpstreamKind.OLLAMA: "/api/version",
    UpstreamKind.GATEWAY: "/api/version",
    UpstreamKind.OPENAI: "/v1/models",
}


class _Failed(Exception):
    """One upstream did not start its answer. ``result`` is what the client gets
    if no other upstream does; ``final``: no other is tried (the upstream refused
    the request itself, a 4xx other than 429)."""

    def __init__(
        self, result: WorkFailed, *, down: bool = False, final: bool = False
    ) -> None:
        super().__init__(result.message)
        self.result, self.down, self.final = result, down, final


class OpenStream:
    """An upstream's answer that has started: its bytes, then its end."""

    def __init__(
        self,
        response: httpx.Response,
        chunks: AsyncIterator[bytes],
        first: bytes,
        idle: float,
        release: Callable[[], None],
        name: str,
        kind: UpstreamKind,
    ) -> None:
        self._response = response
        self._chunks = chunks
        self._first: bytes | None = first or None
        self._idle = idle
        self._release: Callable[[], None] | None = release
        self.name = name
        """``pool/upstream``: which upstream is answering."""
        self.kind = kind

    async def next(self) -> Result:
        if self._first is not None:
            data, self._first = self._first, None
            return UpstreamBytes(data=data)
        try:
            with anyio.fail_after(self._idle):
                data = await anext(self._chunks, b"")
        except TimeoutError:
            await self.aclose()
            return WorkFailed(
                status=504,
                message=f"upstream {self.name} sent nothing for {self._idle:g} s",
            )
        except httpx.HTTPError as exc:
            await self.aclose()
            return WorkFailed(
                status=502, message=f"upstream {self.name} failed mid-answer: {exc}"
            )
        if not data:
            await self.aclose()
            return UpstreamEnded()
        return UpstreamBytes(data=data)

    async def aclose(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()
            with anyio.CancelScope(shield=True):
                # The reading generator first (left to the garbage collector, it
                # warns, and closes its connection late), then the response.
                close_chunks = getattr(self._chunks, "aclose", None)
                if close_chunks is not None:
                    await close_chunks()
                await self._response.aclose()


class Upstreams:
    """The upstream pools of one server, and the remote models' hosts."""

    def __init__(
        self,
        table: UpstreamTable,
        *,
        remotes: Sequence[str] = (),
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = table
        self._remotes = tuple(remotes)
        self.router = Router()
        for pool in table.pools:  # known (and shown) before their first request
            for upstream in pool.upstreams:
                self.router.state(pool, upstream)
        self._environ = os.environ if environ is None else environ
        self._clock = clock
        # No redirects (a redirect could point anywhere), no proxies or netrc
        # from the environment, no overall timeout: each phase has its own.
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )
        self.on_failover: Callable[[str, str], None] | None = None
        """Called with (pool, upstream) when a request leaves an upstream for
        another (metrics)."""

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- requests ------------------------------------------------------------------

    async def open(self, effect: ProxyCompletion) -> OpenStream | WorkFailed:
        """Start the answer at the first upstream that gives one."""
        pool, tried = effect.pool, set[str]()
        failure = WorkFailed(
            status=503, message=f"no upstream of pool {pool.name} is available"
        )
        while True:
            upstream = self.router.pick(
                pool, now=self._clock(), session=effect.session, tried=tried
            )
            if upstream is None:
                return failure
            tried.add(upstream.name)
            self.router.started(pool, upstream)
            try:
                return await self._start(effect, pool, upstream)
            except _Failed as failed:
                self.router.ended(pool, upstream)
                more = not failed.final and len(tried) < len(pool.upstreams)
                self.router.failed(
                    pool, upstream, now=self._clock(), down=failed.down, failover=more
                )
                logger.warning(
                    "upstream %s of pool %s failed for %s: %s%s",
                    upstream.name,
                    pool.name,
                    effect.model,
                    failed.result.message,
                    "; trying the next" if more else "",
                )
                if more and self.on_failover is not None:
                    self.on_failover(pool.name, upstream.name)
                if failed.final:
                    return failed.result
                failure = failed.result

    async def _start(
        self, effect: ProxyCompletion, pool: Pool, upstream: Upstream
    ) -> OpenStream:
        url, wire = effect.request_for(upstream)
        if not self._may_contact(url):
            # The core allows only these; this is the last line, before a socket.
            raise _Failed(
                WorkFailed(
                    status=403, message=f"{upstream.host} is not an allowed host"
                ),
                final=True,
            )
        headers = {"content-type": "application/json", "accept": "*/*"}
        key = self._key(upstream)
        if key:
            headers["authorization"] = f"Bearer {key}"
        timeouts = pool.timeouts
        request = self._client.build_request(
            "POST",
            url,
            content=wire.body,
            headers=headers,
            timeout=httpx.Timeout(
                connect=timeouts.connect, read=None, write=timeouts.idle, pool=None
            ),
        )
        name = f"{pool.name}/{upstream.name}"
        response: httpx.Response | None = None
        try:
            with anyio.fail_after(timeouts.first_byte):
                response = await self._client.send(request, stream=True)
                if response.status_code != 200:
                    raise await self._refused(response, name)
                chunks = response.aiter_raw()
                first = await anext(chunks, b"")
        except TimeoutError:
            await _close(response)
            raise _Failed(
                WorkFailed(
                    status=504,
                    message=f"upstream {name} did not answer within "
                    f"{timeouts.first_byte:g} s",
                )
            ) from None
        except httpx.ConnectError as exc:
            raise _Failed(
                WorkFailed(status=502, message=f"cannot reach upstream {name}: {exc}"),
                down=True,
            ) from None
        except httpx.HTTPError as exc:
            await _close(response)
            raise _Failed(
                WorkFailed(status=502, message=f"upstream {name} failed: {exc}")
            ) from None
        except _Failed:
            await _close(response)
            raise
        self.router.succeeded(pool, upstream)
        return OpenStream(
            response,
            chunks,
            first,
            timeouts.idle,
            lambda: self.router.ended(pool, upstream),
            name,
            upstream.kind,
        )

    def _may_contact(self, url: str) -> bool:
        """Whether ``url``'s host is one the upstreams file names or the remote
        allow-list allows."""
        return (urlsplit(url).hostname or "").lower() in self.table.hosts or (
            remote_host_allowed(url, self._remotes)
        )

    def _key(self, upstream: Upstream) -> str | None:
        if upstream.api_key_env is None:
            return None
        return self._environ.get(upstream.api_key_env) or None

    async def _refused(self, response: httpx.Response, name: str) -> _Failed:
        """The failure a non-200 answer is: retried elsewhere for 429, 5xx and
        redirects; the upstream's own status and message for another 4xx (the
        request itself is at fault, another upstream would refuse it too)."""
        status = response.status_code
        message = await _error_message(response)
        if 300 <= status < 400:
            return _Failed(
                WorkFailed(
                    status=502,
                    message=f"upstream {name} answered with a redirect, "
                    "which is not followed",
                )
            )
        if status == 429 or status >= 500:
            return _Failed(
                WorkFailed(
                    status=502 if status >= 500 else 503,
                    message=f"upstream {name} answered {status}: {message}",
                )
            )
        shown = status if 400 <= status < 500 else 502
        return _Failed(WorkFailed(status=shown, message=message), final=True)

    # -- health --------------------------------------------------------------------

    async def watch(self) -> None:
        """Check every upstream of the upstreams file, each pool at its own
        interval, until cancelled."""
        async with anyio.create_task_group() as tasks:
            for pool in self.table.pools:
                tasks.start_soon(self._watch_pool, pool)

    async def _watch_pool(self, pool: Pool) -> None:
        while True:
            async with anyio.create_task_group() as checks:
                for upstream in pool.upstreams:
                    checks.start_soon(self._check, pool, upstream)
            await anyio.sleep(pool.health_interval)

    async def _check(self, pool: Pool, upstream: Upstream) -> None:
        headers = {}
        key = self._key(upstream)
        if key:
            headers["authorization"] = f"Bearer {key}"
        healthy = False
        try:
            with anyio.fail_after(_HEALTH_TIMEOUT):
                response = await self._client.get(
                    _health_url(upstream), headers=headers
                )
            healthy = response.status_code == 200
        except (TimeoutError, httpx.HTTPError):
            healthy = False
        state = self.router.state(pool, upstream)
        if state.up != healthy:
            logger.warning(
                "upstream %s of pool %s is %s",
                upstream.name,
                pool.name,
                "up" if healthy else "down",
            )
        self.router.checked(pool, upstream, healthy=healthy)


def _health_url(upstream: Upstream) -> str:
    path = _HEALTH_PATHS[upstream.kind]
    if path.startswith("/v1/") and upstream.url.endswith("/v1"):
        path = path[len("/v1") :]  # a base URL given with OpenAI's /v1
    return upstream.url + path


async def _error_message(response: httpx.Response) -> str:
    """The ``error`` of an upstream's error body (Ollama's or OpenAI's shape), or
    its text, read up to a bound."""
    data = bytearray()
    chunks = response.aiter_raw()
    try:
        async for chunk in chunks:
            data += chunk
            if len(data) >= _MAX_ERROR_BYTES:
                break
    except httpx.HTTPError:
        pass
    finally:
        close_chunks = getattr(chunks, "aclose", None)
        if close_chunks is not None:
            await close_chunks()
    text = bytes(data[:_MAX_ERROR_BYTES]).decode("utf-8", "replace")
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict) and value.get("error"):
        return error_text(value)
    return text.strip()[:500] or f"status {response.status_code}"


async def _close(response: httpx.Response | None) -> None:
    if response is not None:
        with anyio.CancelScope(shield=True):
            await response.aclose()
