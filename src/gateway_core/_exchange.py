"""``Exchange``: one HTTP request turned into response effects, with no I/O.

This is the counterpart of h11's ``Connection``, one level up: h11 (or any HTTP server)
parses the wire; the exchange decides what the request means and what to answer. The
adapter feeds it the request head at construction, then the body, and pulls effects
until it is told to wait::

    exchange = Exchange(head, config=config, request_id=rid, now=time.time())
    while True:
        effect = exchange.next_effect()
        if effect is Wait.NEED_BODY:
            ... read; exchange.receive_body(chunk) ... or exchange.end_body()
        elif effect is Wait.NEED_RESULT:
            ... exchange.receive_result(next result of the work, now=time.time())
        elif effect is Wait.FINISHED:
            break
        elif it is a work effect:
            ... start the work (look a model up, load it, generate)
        else:
            ... perform the response effect (send the head, the bytes, end it)

Every failure of the client (unknown path, wrong method, oversized or malformed body)
and of the work (a model that is gone, a full queue) becomes an error response in the
dialect of the API that was called. Only adapter misuse raises, as
``LocalProtocolError``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from typing import assert_never

from ._access import AccessGate, Admitted, Preflight, Refused
from ._config import GatewayConfig
from ._dialects import DIALECTS
from ._effects import Effect, EndResponse, ResponseEffect, Wait
from ._errors import ClientError, LocalProtocolError
from ._flow import Flow, More, StreamItem, StreamOpen, Timeline
from ._head import RequestHead
from ._json import JsonValue, parse_body
from ._operations import Request, handle
from ._replies import EmptyReply, ErrorReply, JsonReply, Reply, TextReply
from ._response import TEXT_MEDIA_TYPE, ResponseWriter
from ._routes import Body, Route, RouteMatch, dialect_for_path, match_route
from ._shapes import check_shape
from ._state import EXCHANGE_TRANSITIONS, Input, Phase
from ._work import (
    AcquireRunner,
    CopyModel,
    CreateModel,
    DeleteModel,
    LookupModel,
    ModelList,
    Result,
    RunningList,
    UnloadModel,
    WorkEffect,
    WorkFailed,
)

__all__ = ["Exchange", "error_response"]


class Exchange:
    """One request and its response.

    Args:
        head: the request line and headers.
        config: the gateway's limits and defaults.
        request_id: an identifier the adapter chose for this request; it appears in
            Anthropic error bodies and is meant for the adapter's logs.
        now: the wall-clock time the request arrived, in unix seconds; durations in
            responses count from it. Without it, they count from the first result.
        access: the server's ``AccessGate`` (Host, CORS and API keys), asked before
            anything else; None admits everyone (an embedder doing its own).
        shutting_down: the server has begun a graceful shutdown; ``/health``
            answers 503 so that load balancers stop sending.
    """

    def __init__(
        self,
        head: RequestHead,
        *,
        config: GatewayConfig,
        request_id: str,
        now: float | None = None,
        access: AccessGate | None = None,
        shutting_down: bool = False,
    ) -> None:
        self._head = head
        self._shutting_down = shutting_down
        self._access = access
        self._admission: Admitted | None = None
        self._config = config
        self._request_id = request_id
        self._phase = Phase.RECEIVING_BODY
        self._queue: deque[Effect] = deque()
        self._body = bytearray()
        self._timeline = Timeline(now)
        self._flow: Flow | None = None
        self._outstanding: WorkEffect | None = None
        # Set when an interrupt dropped outstanding work: its result may already be
        # on its way to the adapter, and is dropped when it comes.
        self._work_dropped = False
        self._notes: list[str] = []
        self._match: RouteMatch | None = match_route(head.path)
        dialect = (
            self._match.route.dialect
            if self._match is not None
            else dialect_for_path(head.path)
        )
        self._writer = ResponseWriter(
            DIALECTS[dialect], request_id=request_id, head_only=head.method == "HEAD"
        )
        self.abort_reason: str | None = None
        """Why the exchange was aborted, once it has been."""
        self._begin()

    # -- what the adapter can see ----------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def route(self) -> Route | None:
        """The matched route, or None when the path matched none (a 404)."""
        return self._match.route if self._match is not None else None

    @property
    def request_id(self) -> str:
        return self._request_id

    @property
    def response_started(self) -> bool:
        """True once ``StartResponse`` has been queued: errors now go in-band."""
        return self._writer.started

    # -- inputs ------------------------------------------------------------------

    def receive_body(self, data: bytes) -> None:
        """Feed the next piece of the request body. Empty pieces are ignored."""
        self._transition(Input.BODY)
        if self._phase is not Phase.RECEIVING_BODY or not data:
            return
        if len(self._body) + len(data) > self._config.max_body_bytes:
            # Chunked bodies announce no size; stop buffering the moment it is known
            # to be too big, and drop what we hold.
            self._body = bytearray()
            self._respond_error(413, self._too_large_message())
            return
        self._body += data

    def end_body(self) -> None:
        """The request body is complete."""
        self._transition(Input.END_BODY)
        if self._phase is Phase.HANDLING:
            body, self._body = bytes(self._body), bytearray()
            self._handle(body)

    @property
    def notes(self) -> tuple[str, ...]:
        """Warnings worth a line in the server's log (unknown options ignored, a
        prompt truncated to fit); they do not change the response."""
        return tuple(self._notes)

    @property
    def outstanding(self) -> WorkEffect | None:
        """The work effect whose results the exchange takes, if any."""
        return self._outstanding

    def receive_result(self, result: Result, *, now: float) -> None:
        """Feed the next result of the outstanding work effect.

        Args:
            result: one of the effect's ``answers``, or ``WorkFailed``.
            now: the wall-clock time, in unix seconds (``created_at`` of what follows).

        Raises:
            LocalProtocolError: no result was asked for, or this one does not answer
                the outstanding effect.
        """
        if self._work_dropped and self._phase in (Phase.RESPONDING, Phase.FINISHED):
            self._work_dropped = False
            return
        self._transition(Input.RESULT)
        if self._phase is Phase.ABORTED:
            return
        effect = self._outstanding
        assert effect is not None  # WAITING is entered only with an effect out
        if not isinstance(result, (*effect.answers, WorkFailed)):
            self._phase = Phase.ERROR
            raise LocalProtocolError(
                f"{type(result).__name__} does not answer {type(effect).__name__}"
            )
        self._timeline.advance(now)
        self._advance(self._visible(result))

    def abort(self, reason: str) -> None:
        """The client went away, or a send failed: stop producing anything.

        Safe to call at any point, any number of times; after it, ``next_effect``
        returns ``Wait.FINISHED``.
        """
        self._transition(Input.ABORT)
        if self._phase is Phase.ABORTED and self.abort_reason is None:
            self.abort_reason = reason
            self._queue.clear()
            self._outstanding = None
            if self._flow is not None:
                self._flow.close()
                self._flow = None

    def interrupt(self, status: int, message: str) -> None:
        """The server ends this request early (its shutdown deadline has come).

        The work is dropped and the answer becomes an error: a ``status`` response if
        none has started, else the dialect's in-band error and the stream's proper
        end (an NDJSON error line; an OpenAI error event then ``[DONE]``; an
        Anthropic ``error`` event). Response effects already queued are kept, so no
        frame is lost; the adapter sends what ``next_effect`` now returns. Harmless
        once the response is complete or the exchange aborted.
        """
        before = self._phase
        self._transition(Input.INTERRUPT)
        if before not in (Phase.RECEIVING_BODY, Phase.WAITING):
            return
        if self._flow is not None:
            self._flow.close()
            self._flow = None
        self._work_dropped = self._outstanding is not None
        self._outstanding = None
        self._body = bytearray()
        kept = [effect for effect in self._queue if isinstance(effect, ResponseEffect)]
        self._queue = deque(kept)
        self._queue.extend(self._writer.error(status, message))

    # -- output ------------------------------------------------------------------

    def next_effect(self) -> Effect | Wait:
        """The next thing to do, or what the exchange is waiting for."""
        if self._phase is Phase.ERROR:
            raise LocalProtocolError("the exchange failed earlier and can't continue")
        if self._queue:
            effect = self._queue.popleft()
            if isinstance(effect, EndResponse):
                self._transition(Input.DRAINED)
            return effect
        if self._phase is Phase.RECEIVING_BODY:
            return Wait.NEED_BODY
        if self._phase is Phase.WAITING:
            return Wait.NEED_RESULT
        # RESPONDING always leaves effects queued; the rest are over.
        return Wait.FINISHED

    # -- internals ---------------------------------------------------------------

    def _transition(self, event: Input) -> None:
        try:
            self._phase = EXCHANGE_TRANSITIONS[self._phase, event]
        except KeyError:
            old, self._phase = self._phase, Phase.ERROR
            self._release()
            raise LocalProtocolError(
                f"can't handle {event.value} in phase {old.value}"
            ) from None
        if self._phase in (Phase.FINISHED, Phase.ABORTED):
            self._release()

    def _release(self) -> None:
        """The request no longer counts against its key's concurrency limit."""
        if self._admission is not None:
            self._admission.release()

    def _begin(self) -> None:
        """Decide everything the head alone decides."""
        if not self._admit():
            return
        head, match = self._head, self._match
        if match is None:
            self._respond_error(404, f"unknown endpoint: {head.method} {head.path}")
            return
        route = match.route
        if head.method not in route.methods:
            self._respond_error(
                405,
                f"method {head.method} is not allowed for {head.path}; "
                f"allowed: {route.allow}",
                headers=(("allow", route.allow),),
            )
            return
        if route.body_for(head.method) is Body.JSON:
            self._check_declared_size()
        else:
            # Nothing for the exchange to read: GET-like routes, and blob uploads,
            # whose body the adapter streams straight into the store.
            self._reply(handle(self._request(body=None)))

    def _admit(self) -> bool:
        """Ask the access gate; False when it has answered the request itself."""
        if self._access is None:
            return True
        match self._access.admit(self._head):
            case Refused(status=status, message=message, headers=headers):
                self._respond_error(status, message, headers=headers)
                return False
            case Preflight(headers=headers):
                self._respond(self._writer.complete(204, b"", None, headers))
                return False
            case Admitted() as admission:
                self._admission = admission
                self._writer.extra_headers = admission.headers
                return True

    def _refusal(self, effect: WorkEffect) -> str | None:
        """Why the request's key may not touch the model ``effect`` names, if so."""
        admission = self._admission
        if admission is None or admission.key is None:
            return None
        names: tuple[str, ...]
        match effect:
            case LookupModel(name=name) | DeleteModel(name=name):
                names = (name.display,)
            case CopyModel(source=source, destination=destination):
                names = (source.display, destination.display)
            case CreateModel(name=name, base=base):
                names = (
                    (name.display,) if base is None else (name.display, base.display)
                )
            case AcquireRunner(model=record) | UnloadModel(model=record):
                names = (record.name,)
            case _:
                return None
        for named in names:
            if not admission.allows_model(named):
                return f"this API key may not use the model {named!r}"
        return None

    def _visible(self, result: Result) -> Result:
        """Lists of models cut to those the request's key may use."""
        admission = self._admission
        if admission is None or admission.key is None:
            return result
        match result:
            case ModelList(records=records):
                kept = tuple(r for r in records if admission.allows_model(r.name))
                return replace(result, records=kept)
            case RunningList(models=models):
                seen = tuple(m for m in models if admission.allows_model(m.record.name))
                return replace(result, models=seen)
            case _:
                return result

    def _check_declared_size(self) -> None:
        declared = self._head.header("content-length")
        if declared is None:
            return  # chunked: counted as it arrives
        if not declared.isdigit():
            # The HTTP layer should have refused this already; don't trust it to.
            self._respond_error(400, f"invalid content-length: {declared!r}")
        elif int(declared) > self._config.max_body_bytes:
            self._respond_error(413, self._too_large_message(int(declared)))

    def _too_large_message(self, size: int | None = None) -> str:
        limit = self._config.max_body_bytes
        if size is None:
            return f"request body exceeds the limit of {limit} bytes"
        return f"request body of {size} bytes exceeds the limit of {limit} bytes"

    def _handle(self, body: bytes) -> None:
        assert self._match is not None  # only matched routes ask for a body
        operation = self._match.route.methods[self._head.method]
        try:
            decoded = check_shape(operation, parse_body(body))
        except ClientError as exc:
            self._respond_error(exc.status, exc.message, param=exc.param, code=exc.code)
            return
        self._reply(handle(self._request(body=decoded)))

    def _request(self, *, body: Mapping[str, JsonValue] | None) -> Request:
        assert self._match is not None
        return Request(
            operation=self._match.route.methods[self._head.method],
            method=self._head.method,
            path=self._head.path,
            param=self._match.param,
            body=body,
            config=self._config,
            request_id=self._request_id,
            timeline=self._timeline,
            session_id=self._head.header("x-session-id"),
            shutting_down=self._shutting_down,
            notes=self._notes,
        )

    def _reply(self, reply: Reply | Flow) -> None:
        if isinstance(reply, JsonReply | TextReply | EmptyReply | ErrorReply):
            self._answer(reply)
        else:
            self._flow = reply
            self._advance(None)

    def _answer(self, reply: Reply) -> None:
        match reply:
            case JsonReply(value=value, status=status):
                self._respond(self._writer.json(status, value))
            case TextReply(text=text, status=status, media_type=media_type):
                data = text.encode("utf-8")
                media_type = media_type or TEXT_MEDIA_TYPE
                self._respond(self._writer.complete(status, data, media_type))
            case EmptyReply(status=status):
                self._respond(self._writer.complete(status, b"", None))
            case ErrorReply(status=status, message=message, param=param):
                self._respond_error(status, message, param=param)
            case _:
                assert_never(reply)

    def _advance(self, sent: Result | None) -> None:
        """Run the flow until it waits for work or is over."""
        flow = self._flow
        assert flow is not None
        while True:
            try:
                step = flow.send(sent)
            except StopIteration:
                self._flow = self._outstanding = None
                if not self._writer.started:
                    raise RuntimeError(
                        "core bug: a flow ended without an answer"
                    ) from None
                self._respond(self._writer.end_stream())
                return
            except ClientError as exc:  # FlowError included
                self._flow = self._outstanding = None
                self._respond_error(
                    exc.status, exc.message, param=exc.param, code=exc.code
                )
                return
            sent = None
            match step:
                case StreamOpen():
                    self._queue.extend(self._writer.start_stream())
                case StreamItem(data=data):
                    self._queue.extend(self._writer.frame(data))
                case More.MORE:
                    if self._outstanding is None:
                        raise RuntimeError("core bug: MORE with no work outstanding")
                    self._transition(Input.AWAIT)
                    return
                case JsonReply() | TextReply() | EmptyReply() | ErrorReply():
                    flow.close()
                    self._flow = self._outstanding = None
                    self._answer(step)
                    return
                case _:
                    refusal = self._refusal(step)
                    if refusal is not None:
                        flow.close()
                        self._flow = self._outstanding = None
                        self._respond_error(403, refusal)
                        return
                    self._outstanding = step
                    self._queue.append(step)
                    self._transition(Input.AWAIT)
                    return

    def _respond_error(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._respond(
            self._writer.error(status, message, param=param, code=code, headers=headers)
        )

    def _respond(self, effects: list[ResponseEffect]) -> None:
        self._transition(Input.RESPOND)
        self._queue.extend(effects)


def error_response(
    status: int, message: str, *, path: str | None, request_id: str
) -> tuple[ResponseEffect, ...]:
    """A complete error response for failures found below the exchange.

    The adapter's HTTP layer meets errors no ``Exchange`` sees: a malformed request
    line, headers too large (431), a client too slow to send its head (408), or a bug
    in the adapter (500). This dresses them in the envelope of the API that ``path``
    belongs to (native when the path is unknown), so that no adapter writes error JSON
    of its own.
    """
    spec = DIALECTS[dialect_for_path(path)]
    writer = ResponseWriter(spec, request_id=request_id, head_only=False)
    return tuple(writer.error(status, message))
