"""Models served elsewhere: upstream pools and remote models (docs/scaling.md).

``_table`` (the upstreams file, remote hosts), ``_router`` (which upstream: the
policy and each upstream's health), ``_requests`` (the canonical request in an
upstream's dialect), ``_streams`` (its answer read back), ``_effects`` (the work
effect the adapter performs), ``_proxy`` (the flow). The names the adapters use
are exported by ``gateway_core``; nothing is imported here, so that ``_config``
can take ``_table`` without the flow.
"""
