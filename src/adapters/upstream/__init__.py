"""Upstream servers behind the gateway: the HTTP calls and health checks that carry
out the core's routing (``gateway_core._upstream``); see docs/scaling.md."""

from __future__ import annotations

from .calls import OpenStream, Upstreams

__all__ = ["OpenStream", "Upstreams"]
