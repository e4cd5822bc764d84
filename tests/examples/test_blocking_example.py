"""The example in docs/architecture.md runs, and the doc shows it as it is."""

from __future__ import annotations

import http.client
import importlib.util
import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
EXAMPLE = DOCS / "examples" / "blocking_server.py"


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("blocking_server", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    example = _load_example()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), example.GatewayHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_the_example_serves_real_requests(server: ThreadingHTTPServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    conn.request("GET", "/api/version")
    response = conn.getresponse()
    assert response.status == 200
    assert "version" in json.loads(response.read())
    # Same connection, kept alive: a malformed body gets its 400.
    conn.request("POST", "/api/chat", body=b"{bad json")
    response = conn.getresponse()
    assert response.status == 400
    assert "invalid JSON" in json.loads(response.read())["error"]
    # Work the sketch cannot do fails cleanly, in the exchange's own words.
    conn.request("GET", "/api/tags")
    response = conn.getresponse()
    assert response.status == 501
    assert json.loads(response.read()) == {"error": "this server runs no models"}
    conn.close()


def test_architecture_doc_shows_the_example_verbatim() -> None:
    doc = (DOCS / "architecture.md").read_text(encoding="utf-8")
    assert EXAMPLE.read_text(encoding="utf-8") in doc
