"""The trio HTTP/1.1 server: listeners, connections, keep-alive, graceful shutdown.

The shape is that of h11's ``examples/trio-server.py``, typed and with its policy
filled in. One task per connection runs a loop: wait for a request (quietly closing an
idle connection), read its head under a deadline, hand it to an ``Exchange`` through
``drive_exchange``, then either start the next cycle or close. Every failure of one
connection ends in that connection's ``except``; none reaches the listener or another
client.

Shutdown is hypercorn's pattern. ``Server.shutdown()`` stops the accept loops and
closes the listeners at once, closes connections that are idle between requests, and
lets requests in flight finish with ``connection: close``. At ``shutdown_timeout``
the requests still running are interrupted: their work stops and their answers end
with an error, in-band when they were streaming, so no client mistakes a cut stream
for a whole one. ``_INTERRUPT_GRACE`` later, the connection nursery's deadline
cancels whatever is left (a client that stopped reading).
"""

from __future__ import annotations

import errno
import logging
import time
from typing import Final, TypeAlias, final

import h11
import trio

from gateway_core import (
    Exchange,
    RequestHead,
    client_request_id,
)

from .assembly import ServerParts, gateway_config, new_request_id
from .driver import ExchangeRecord, drive_exchange, send_error_response
from .h11_transport import H11Transport
from .metrics import ExchangeTally
from .model_service import ModelService
from .settings import ServerSettings

__all__ = ["Address", "Server", "serve"]

logger = logging.getLogger("adapters.server")
access_logger = logging.getLogger("adapters.access")

Address: TypeAlias = tuple[str, int]

# accept() failing for lack of file descriptors or memory is a passing condition: log
# it and retry shortly instead of crashing the server (trio's serve_listeners does so).
_ACCEPT_CAPACITY_ERRNOS: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)
_ACCEPT_BACKOFF: Final = 0.1

# Freeing a llama.cpp model takes milliseconds; ten seconds means something is stuck.
_UNLOAD_TIMEOUT: Final = 10.0
# Time for interrupted requests to send their final error after the shutdown
# deadline: a few hundred bytes each, to clients that are reading.
_INTERRUPT_GRACE: Final = 2.0


@final
class Server:
    """The gateway's HTTP server; ``serve()`` runs it, ``shutdown()`` stops it.

    Connections can also be handed over directly with ``handle_connection``, which is
    how the in-memory tests drive it without sockets.

    The model store and runners come from ``settings.models``; ``models`` passes a
    ready ``ModelService`` instead. With neither, every model request fails with a
    clear 500 (tests of the HTTP layer run that way). ``serve()`` runs the service's
    timers and unloads every model when it stops.
    """

    def __init__(
        self, settings: ServerSettings, *, models: ModelService | None = None
    ) -> None:
        self.settings = settings
        self.config = gateway_config(settings)
        parts = ServerParts.assemble(settings, models)
        self.models, self.access, self.metrics = (
            parts.models,
            parts.access,
            parts.metrics,
        )
        self._shutdown_requested = trio.Event()
        self._deadline_passed = trio.Event()
        self._not_accepting = trio.Event()
        self._idle_scopes: set[trio.CancelScope] = set()
        self._stop_scope = trio.CancelScope()
        self._open_connections = 0

    @property
    def shutting_down(self) -> bool:
        return self._shutdown_requested.is_set()

    def shutdown(self) -> None:
        """Begin a graceful shutdown. Returns at once; calling it again is harmless."""
        if not self.shutting_down:
            logger.info("shutting down")
        self._shutdown_requested.set()
        for scope in self._idle_scopes:
            scope.cancel()

    def stop_now(self) -> None:
        """Cancel everything at once, in-flight requests included."""
        self.shutdown()
        self._stop_scope.cancel()

    async def wait_not_accepting(self) -> None:
        """Return once the listeners are closed (after ``shutdown``)."""
        await self._not_accepting.wait()

    async def serve(
        self,
        *,
        task_status: trio.TaskStatus[tuple[Address, ...]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen and serve until shut down; report the bound addresses on start.

        Raises:
            OSError: the address could not be bound (in use, not ours, ...).
        """
        # Bound first, outside any nursery, so that "address in use" reaches the
        # caller as the plain OSError it is.
        listeners = await trio.open_tcp_listeners(
            self.settings.port, host=self.settings.host
        )
        if self.models is None:
            await self._serve(listeners, task_status)
            return
        async with trio.open_nursery() as background:
            background.start_soon(self.models.run)
            try:
                await self._serve(listeners, task_status)
            finally:
                # Unloading needs the pool's task, so it comes before cancelling it;
                # shielded, because this also runs when serving was cancelled, and
                # bounded, so that a stuck unload cannot hold the process.
                with trio.CancelScope(shield=True) as unloading:
                    unloading.deadline = trio.current_time() + _UNLOAD_TIMEOUT
                    await self.models.aclose()
                if unloading.cancelled_caught:
                    logger.warning("models still loaded after %g s", _UNLOAD_TIMEOUT)
                background.cancel_scope.cancel()

    async def _serve(
        self,
        listeners: list[trio.SocketListener],
        task_status: trio.TaskStatus[tuple[Address, ...]],
    ) -> None:
        settings = self.settings
        with self._stop_scope:
            addresses = tuple(_local_address(listener) for listener in listeners)
            async with trio.open_nursery() as timers:
                async with trio.open_nursery() as connections:
                    try:
                        async with trio.open_nursery() as acceptors:
                            for listener in listeners:
                                acceptors.start_soon(
                                    self._accept_loop, listener, connections
                                )
                            for host, port in addresses:
                                logger.info(
                                    "listening on http://%s",
                                    _format_address(host, port),
                                )
                            task_status.started(addresses)
                            await self._shutdown_requested.wait()
                            acceptors.cancel_scope.cancel()
                    finally:
                        for listener in listeners:
                            await trio.aclose_forcefully(listener)
                        self._not_accepting.set()
                    if self._open_connections:
                        logger.info(
                            "waiting up to %g s for %d connection(s) to finish",
                            settings.shutdown_timeout,
                            self._open_connections,
                        )
                    interrupt_at = trio.current_time() + settings.shutdown_timeout
                    timers.start_soon(self._interrupt_at, interrupt_at)
                    connections.cancel_scope.deadline = interrupt_at + _INTERRUPT_GRACE
                timers.cancel_scope.cancel()  # every connection is closed
            if connections.cancel_scope.cancelled_caught:
                logger.warning(
                    "cancelled connections still open %g s after the shutdown deadline",
                    _INTERRUPT_GRACE,
                )
        logger.info("stopped")

    async def _interrupt_at(self, deadline: float) -> None:
        """At the shutdown deadline, tell every request in flight to end now."""
        await trio.sleep_until(deadline)
        if self._open_connections:
            logger.warning(
                "interrupting the requests still running after %g s",
                self.settings.shutdown_timeout,
            )
        self._deadline_passed.set()

    async def _accept_loop(
        self, listener: trio.SocketListener, connections: trio.Nursery
    ) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    raise
                logger.error("accept failed (%s); retrying", exc)  # noqa: TRY400
                await trio.sleep(_ACCEPT_BACKOFF)
                continue
            connections.start_soon(self.handle_connection, stream)

    # -- one connection ------------------------------------------------------------

    async def handle_connection(self, stream: trio.abc.Stream) -> None:
        """Serve one client until it leaves, idles out, or the server shuts down.

        Never raises anything but cancellation: one client's failure stays here.
        """
        transport = H11Transport(
            stream,
            max_header_bytes=self.settings.max_header_bytes,
            send_timeout=self.settings.send_timeout,
        )
        peer = _peer_name(stream)
        self._open_connections += 1
        try:
            await self._serve_requests(transport, peer)
        except Exception:
            logger.exception("connection from %s failed", peer)
            await self._send_internal_error(transport, None, new_request_id())
        finally:
            self._open_connections -= 1
            await transport.aclose()

    async def _serve_requests(self, transport: H11Transport, peer: str) -> None:
        conn = transport.conn
        while True:
            request = await self._read_request(transport, peer)
            if request is None or not await self._respond(transport, request, peer):
                return
            if self.shutting_down:
                return
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return  # someone said "close", or the response was cut short
            conn.start_next_cycle()

    async def _wait_for_request(self, transport: H11Transport) -> bool:
        """Wait until a request starts to arrive; False to close quietly.

        Only this wait is idle: once a byte has come in, the request is in flight and
        shutdown lets it finish. That is why the idle scope covers one read and no more.
        """
        if transport.has_buffered_data or transport.peer_closed:
            return True  # h11 will tell what it has: a request, or ConnectionClosed
        if self.shutting_down:
            return False
        with trio.move_on_after(self.settings.keep_alive_timeout) as idle:
            self._idle_scopes.add(idle)
            try:
                await transport.read_more()
            finally:
                self._idle_scopes.discard(idle)
        return not idle.cancelled_caught

    async def _read_request(
        self, transport: H11Transport, peer: str
    ) -> h11.Request | None:
        """The next request head, or None if the connection is to close."""
        if not await self._wait_for_request(transport):
            return None
        settings = self.settings
        started = trio.current_time()
        try:
            # The deadline counts from the head's first byte, so a client trickling
            # one byte at a time still runs out of time.
            with trio.fail_after(settings.header_timeout):
                event = await transport.next_event()
        except trio.TooSlowError:
            message = f"request head not received within {settings.header_timeout:g} s"
            await self._reject(transport, peer, 408, message, started)
            return None
        except h11.RemoteProtocolError as exc:
            if transport.peer_closed:
                return None  # the client left halfway through its head
            status = exc.error_status_hint
            if status == 431:
                message = f"request head larger than {settings.max_header_bytes} bytes"
            else:
                message = f"malformed request: {exc}"
            await self._reject(transport, peer, status, message, started)
            return None
        if isinstance(event, h11.ConnectionClosed):
            return None
        if not isinstance(event, h11.Request):
            raise TypeError(f"h11 produced {event!r} where a request head belongs")
        return event

    async def _reject(
        self,
        transport: H11Transport,
        peer: str,
        status: int,
        message: str,
        started: float,
    ) -> None:
        """Answer a request that never became an exchange, and log it."""
        request_id = new_request_id()
        tally = ExchangeTally(self.metrics, time.perf_counter())
        record = await send_error_response(
            transport, status, message, path=None, request_id=request_id
        )
        tally.finish(route="-", method="-", status=record.status, dialect="ollama")
        self._log_access(peer, "-", record, started, request_id, tally)

    async def _respond(
        self, transport: H11Transport, request: h11.Request, peer: str
    ) -> bool:
        """Run one exchange; False if the connection must close because of it."""
        started = trio.current_time()
        tally = ExchangeTally(self.metrics, time.perf_counter())
        request_id = new_request_id()
        # h11 has checked the syntax; latin-1 maps every byte, so nothing is lost.
        method = request.method.decode("latin-1")
        target = request.target.decode("latin-1")
        line = f"{method} {target} HTTP/{request.http_version.decode('latin-1')}"
        try:
            head = RequestHead(
                method=method,
                target=target,
                headers=tuple(
                    (name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in request.headers
                ),
            )
        except ValueError as exc:
            await self._reject(
                transport, peer, 400, f"malformed request: {exc}", started
            )
            return False
        request_id = client_request_id(head) or request_id
        exchange: Exchange | None = None
        record = ExchangeRecord(aborted="cancelled at the shutdown deadline")
        try:
            exchange = Exchange(
                head,
                config=self.config,
                request_id=request_id,
                now=time.time(),
                access=self.access,
                shutting_down=self.shutting_down,
            )
            record = await drive_exchange(
                exchange,
                transport,
                path=head.path,
                body_timeout=self.settings.body_timeout,
                closing=lambda: self.shutting_down,
                work=None if self.models is None else self.models.work(),
                stop=self._deadline_passed,
                observer=tally,
            )
        except Exception:
            logger.exception("request %s (%s) failed", request_id, line)
            record = await self._send_internal_error(transport, head.path, request_id)
            return False
        finally:
            route = exchange.route if exchange is not None else None
            tally.finish(
                route=route.path if route is not None else "unmatched",
                method=method,
                status=record.status,
                dialect=route.dialect.value if route is not None else "ollama",
            )
            self._log_access(peer, line, record, started, request_id, tally)
        return record.aborted is None

    async def _send_internal_error(
        self, transport: H11Transport, path: str | None, request_id: str
    ) -> ExchangeRecord:
        # Even this must not fail outward: it runs in the handler of a failure.
        try:
            return await send_error_response(
                transport,
                500,
                "internal server error",
                path=path,
                request_id=request_id,
            )
        except Exception:
            logger.exception("could not send a 500")
            return ExchangeRecord(aborted="internal server error")

    def _log_access(
        self,
        peer: str,
        line: str,
        record: ExchangeRecord,
        started: float,
        request_id: str,
        tally: ExchangeTally,
    ) -> None:
        elapsed_ms = (trio.current_time() - started) * 1000
        status = "-" if record.status is None else str(record.status)
        model = f" model={tally.model}" if tally.model else ""
        tokens = tally.prompt_tokens + tally.generated_tokens
        counted = (
            f" tokens={tally.prompt_tokens}+{tally.generated_tokens}" if tokens else ""
        )
        method, _, rest = line.partition(" ")
        # The fields of one line, for --log-format json (see adapters.logs).
        fields = {
            "peer": peer,
            "method": method,
            "path": rest.rpartition(" ")[0] or "-",
            "status": record.status,
            "bytes": record.body_bytes,
            "duration_ms": round(elapsed_ms, 3),
            "model": tally.model,
            "prompt_tokens": tally.prompt_tokens,
            "generated_tokens": tally.generated_tokens,
            "request_id": request_id,
            "outcome": _outcome(record).strip(" ()") or None,
        }
        access_logger.info(
            '%s "%s" %s %d %.1fms id=%s%s%s%s',
            peer,
            line,
            status,
            record.body_bytes,
            elapsed_ms,
            request_id,
            model,
            counted,
            _outcome(record),
            extra={"access": fields},
        )


async def serve(
    settings: ServerSettings,
    *,
    task_status: trio.TaskStatus[tuple[Address, ...]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a ``Server`` until cancelled; see ``Server.serve``."""
    await Server(settings).serve(task_status=task_status)


def _outcome(record: ExchangeRecord) -> str:
    """The access log's note on a request that did not end normally."""
    if record.interrupted:
        return " (cut at the shutdown deadline)"
    return f" ({record.aborted})" if record.aborted else ""


def _local_address(listener: trio.SocketListener) -> Address:
    name = listener.socket.getsockname()
    return str(name[0]), int(name[1])


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _peer_name(stream: trio.abc.Stream) -> str:
    if isinstance(stream, trio.SocketStream):
        try:
            name = stream.socket.getpeername()
        except OSError:
            return "-"
        if isinstance(name, tuple):
            return _format_address(str(name[0]), int(name[1]))
    return "-"
