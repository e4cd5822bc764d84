"""The cost of ``--metrics``: the same server with metrics off and on, paired.

Why: metrics are counted on the request path (a tally per token, histograms per
request and per write), and the target is that turning them on keeps at least 0.98
of the streaming tokens/s and of the requests/s. ``paired_servers`` alternates the
two and reports each side's medians and the on/off ratios.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .embed_batch import start_server
from .paired_servers import ServerStart, compare_servers

__all__ = ["run"]


def _with_metrics(on: bool) -> ServerStart:
    def start(models: Path) -> tuple[subprocess.Popen[bytes], int]:
        return start_server(models, env={"GATEWAY_METRICS": "1" if on else "0"})

    return start


def run(*, quick: bool = False) -> dict[str, object]:
    return compare_servers(
        ("off", _with_metrics(False)), ("on", _with_metrics(True)), quick=quick
    )
