"""Serve gateway_core from the standard library's blocking ``http.server``.

The whole binding between an HTTP server and the core: build a ``RequestHead``, make an
``Exchange``, and carry out its effects until it says it is finished. No trio, no h11.
Limits of this sketch: ``http.server`` cannot read chunked request bodies, and it has
no model store or runner, so it answers every piece of work with a failure, which the
exchange turns into a proper error response (``/api/tags`` gets a 501).

Run it with ``python docs/examples/blocking_server.py`` and try
``curl -i localhost:8080/api/version``.
"""

from __future__ import annotations

import secrets
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gateway_core import (
    EndResponse,
    Exchange,
    GatewayConfig,
    RequestHead,
    SendBody,
    StartResponse,
    Wait,
    WorkFailed,
)

CONFIG = GatewayConfig()
NO_MODELS = WorkFailed(status=501, message="this server runs no models")


class GatewayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so Content-Length must be right

    def handle_any(self) -> None:
        head = RequestHead(
            method=self.command, target=self.path, headers=tuple(self.headers.items())
        )
        exchange = Exchange(head, config=CONFIG, request_id=secrets.token_hex(8))
        unread = int(self.headers.get("content-length") or 0)
        while True:
            effect = exchange.next_effect()
            if effect is Wait.NEED_BODY:
                chunk = self.rfile.read(min(unread, 65536)) if unread else b""
                unread -= len(chunk)
                if chunk:
                    exchange.receive_body(chunk)
                else:
                    exchange.end_body()
            elif effect is Wait.NEED_RESULT:
                exchange.receive_result(NO_MODELS, now=time.time())
            elif effect is Wait.FINISHED:
                break
            elif isinstance(effect, StartResponse):
                self.send_response(effect.status)
                for name, value in effect.headers:
                    self.send_header(name, value)
                if unread or effect.header("content-length") is None:
                    # An unread body, or a body of unknown length: the connection
                    # can't be reused after this response.
                    self.send_header("connection", "close")
                    self.close_connection = True
                self.end_headers()
            elif isinstance(effect, SendBody):
                self.wfile.write(effect.data)
            elif isinstance(effect, EndResponse):
                self.wfile.flush()
            # Anything else is work (LookupModel, Generate, ...): nothing to start
            # here; its result is the failure fed in at NEED_RESULT.

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", 8080), GatewayHandler).serve_forever()
