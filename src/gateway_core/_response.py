"""One response's effects, in order, and the error rule.

Everything the core sends goes through a ``ResponseWriter``, so two rules hold for every
endpoint:

- ordering: ``StartResponse`` first, ``EndResponse`` last, body in between;
- errors: before the first byte, an error is a real status with a JSON body in the
  dialect's envelope; after it, the status is gone, so the error travels in-band (an
  NDJSON error line, an OpenAI error event then ``[DONE]``, an Anthropic ``error``
  event) and the response ends. A stream never just stops.

HEAD requests get the headers a GET would get, ``content-length`` included, and no body.
Every response names its request in ``x-request-id``, so that a client can quote it
and an operator find it in the logs; every 503 says when to come back
(``retry-after``).
"""

from __future__ import annotations

from ._dialects import DialectSpec, ErrorInfo
from ._effects import EndResponse, ResponseEffect, SendBody, StartResponse
from ._json import dumps

__all__ = ["JSON_MEDIA_TYPE", "TEXT_MEDIA_TYPE", "ResponseWriter"]

JSON_MEDIA_TYPE = "application/json; charset=utf-8"
TEXT_MEDIA_TYPE = "text/plain; charset=utf-8"

Headers = tuple[tuple[str, str], ...]

# A 503 means "busy" (the queue is full) or "stopping"; either passes within
# seconds, and a client that retries at once only adds to the queue.
RETRY_AFTER_BUSY = "2"


class ResponseWriter:
    """Builds the effects of one response and remembers how far it has got."""

    def __init__(self, spec: DialectSpec, *, request_id: str, head_only: bool) -> None:
        self._spec = spec
        self._request_id = request_id
        self._head_only = head_only
        self.extra_headers: Headers = ()
        """Added to whatever response this writes (the CORS headers of the request)."""
        self.started = False
        self.finished = False

    def complete(
        self, status: int, body: bytes, media_type: str | None, headers: Headers = ()
    ) -> list[ResponseEffect]:
        """A whole response whose body is known now (no ``content-type`` if the media
        type is None: an empty success, as Ollama sends for copy and delete)."""
        typed = () if media_type is None else (("content-type", media_type),)
        head = (*typed, ("content-length", str(len(body))), *headers)
        effects: list[ResponseEffect] = [self._start(status, head)]
        if body and not self._head_only:
            effects.append(SendBody(data=body))
        effects.append(self._end())
        return effects

    def json(
        self, status: int, value: object, headers: Headers = ()
    ) -> list[ResponseEffect]:
        return self.complete(status, dumps(value), JSON_MEDIA_TYPE, headers)

    def error(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Headers = (),
    ) -> list[ResponseEffect]:
        """Report a failure the only way still open at this point of the response."""
        info = ErrorInfo(
            status=status,
            message=message,
            param=param,
            request_id=self._request_id,
            code=code,
        )
        if not self.started:
            if status == 503 and not any(n == "retry-after" for n, _ in headers):
                headers = (*headers, ("retry-after", RETRY_AFTER_BUSY))
            return self.json(status, self._spec.error_body(info), headers)
        effects: list[ResponseEffect] = []
        if not self._head_only:
            effects.append(SendBody(data=self._spec.stream_error(info)))
        effects.append(self._end())
        return effects

    def start_stream(self, headers: Headers = ()) -> list[ResponseEffect]:
        """Open a 200 streaming response in the dialect's framing (NDJSON or SSE)."""
        head = (
            ("content-type", self._spec.stream_media_type),
            # Proxies (nginx) buffer responses unless told not to; a stream of tokens
            # that arrives all at once is no stream.
            ("cache-control", "no-cache"),
            ("x-accel-buffering", "no"),
            *headers,
        )
        return [self._start(200, head)]

    def frame(self, data: bytes) -> list[ResponseEffect]:
        """One already-encoded frame of an open stream."""
        if not self.started or self.finished:
            raise RuntimeError("core bug: frame outside an open stream")
        return [] if self._head_only else [SendBody(data=data)]

    def end_stream(self) -> list[ResponseEffect]:
        if not self.started:
            raise RuntimeError("core bug: end_stream before start_stream")
        return [self._end()]

    def _start(self, status: int, headers: Headers) -> StartResponse:
        if self.started:
            raise RuntimeError("core bug: response started twice")
        self.started = True
        named = (("x-request-id", self._request_id),) if self._request_id else ()
        return StartResponse(
            status=status, headers=headers + self.extra_headers + named
        )

    def _end(self) -> EndResponse:
        if self.finished:
            raise RuntimeError("core bug: response ended twice")
        self.finished = True
        return EndResponse()
