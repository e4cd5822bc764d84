"""Invariant: whatever a client sends, the exchange gives one well-formed response.

Arbitrary methods, paths, headers, body bytes and chunkings never raise out of the core
(only adapter misuse may), and always give: one StartResponse first, one EndResponse
last, a content-length equal to the body sent (HEAD aside), and for errors a JSON body.
"""

from __future__ import annotations

import itertools
import json
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_core import ROUTES, GatewayConfig

from .helpers import run

_METHODS = st.sampled_from(["GET", "HEAD", "POST", "DELETE", "PUT", "OPTIONS", "PATCH"])
_KNOWN_PATHS = st.sampled_from([r.path + ("x" if r.has_param else "") for r in ROUTES])
_ANY_PATH = st.text(
    alphabet=string.ascii_letters + string.digits + "/%:._-~?=&", max_size=40
).map(lambda s: "/" + s)
_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["model", "stream", "messages", "options", "think", "x"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=10,
)
_BODIES = st.one_of(
    st.binary(max_size=200),
    _JSONISH.map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=300)
@given(
    method=_METHODS,
    target=_KNOWN_PATHS | _ANY_PATH,
    body=_BODIES,
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=5),
    declare_length=st.booleans(),
    limit=st.integers(min_value=1, max_value=300),
)
def test_any_request_gets_one_well_formed_response(
    method: str,
    target: str,
    body: bytes,
    cuts: list[int],
    declare_length: bool,
    limit: int,
) -> None:
    edges = sorted({0, len(body), *(c for c in cuts if c <= len(body))})
    chunks = [body[a:b] for a, b in itertools.pairwise(edges)]
    headers = (("content-length", str(len(body))),) if declare_length else ()
    t = run(
        method,
        target,
        chunks,
        headers=headers,
        config=GatewayConfig(max_body_bytes=limit),
    )
    assert 200 <= t.status <= 599
    if method == "HEAD":
        assert t.body == b""
    else:
        assert t.header("content-length") == str(len(t.body))
    if t.status >= 400:
        assert t.header("content-type") == "application/json; charset=utf-8"
        if method != "HEAD":
            assert isinstance(json.loads(t.body), dict)
    if t.status == 413:
        assert len(body) > limit
