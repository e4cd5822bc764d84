"""``python -m benchmarks [--quick] [--out FILE] [--only NAME ...]``.

Why one entry point: figures are only comparable when they come from the same run on
the same machine, so every benchmark is run from here and lands in one JSON file,
next to what the machine was (CPU count, Python, platform). ``--quick`` shortens
every loop; its numbers are for checking that the suite works, not for publishing.
``http_layer`` and ``streaming`` also measure llama-cpp-python's own server, the
peer, whose dependencies come with the ``bench`` extra that ``nox -s bench``
installs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import (
    asgi,
    core_micro,
    embed_batch,
    http_layer,
    metrics_cost,
    runner_engine,
    streaming,
    structured,
    upstream_proxy,
)

BENCHMARKS: dict[str, Callable[[bool], dict[str, object]]] = {
    "core_micro": lambda quick: core_micro.run(quick=quick),
    "http_layer": lambda quick: http_layer.run(quick=quick),
    "embed_batch": lambda quick: embed_batch.run(rounds=1 if quick else 5),
    "streaming": lambda quick: streaming.run(quick=quick),
    "runner_engine": lambda quick: runner_engine.run(quick=quick),
    "structured": lambda quick: structured.run(quick=quick),
    "metrics_cost": lambda quick: metrics_cost.run(quick=quick),
    "asgi": lambda quick: asgi.run(quick=quick),
    "upstream_proxy": lambda quick: upstream_proxy.run(quick=quick),
}


def machine() -> dict[str, object]:
    """What the figures depend on besides the code."""
    return {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }


def _summary(name: str, figures: dict[str, object], indent: str = "  ") -> None:
    print(f"{indent}{name}:" if indent else f"{name}:")
    for key, value in figures.items():
        if isinstance(value, dict):
            _summary(key, value, indent + "  ")
        else:
            print(f"{indent}  {key}: {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="short loops, to check the suite runs"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("benchmark-results.json"),
        help="where to write the JSON results [default: %(default)s]",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only these benchmarks (of {', '.join(BENCHMARKS)})",
    )
    args = parser.parse_args(argv)
    chosen: list[str] = args.only or list(BENCHMARKS)
    results: dict[str, object] = {}
    for name in chosen:
        print(f"running {name}...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        figures = BENCHMARKS[name](args.quick)
        figures["wall_s"] = round(time.perf_counter() - started, 2)
        results[name] = figures
        _summary(name, figures, indent="")
    report = {"machine": machine(), "quick": args.quick, "benchmarks": results}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
