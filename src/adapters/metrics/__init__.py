"""The server's Prometheus metrics (``GET /metrics``, on with ``--metrics``).

The core decides and reports values (results carry token counts and durations); this
package only counts what the driver and the runner pool report, on a registry of its
own, so that several servers in one process keep separate books. Every name and its
meaning is listed in docs/operations.md.
"""

from __future__ import annotations

from .exchange import ExchangeTally
from .registry import GatewayMetrics

__all__ = ["ExchangeTally", "GatewayMetrics"]
