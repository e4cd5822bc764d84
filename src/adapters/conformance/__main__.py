"""``python -m adapters.conformance URL``: run the checks, print each outcome."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import httpx

from . import CHECKS, Outcome, Result, Target, run_checks


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m adapters.conformance",
        description="Check that a server speaks the Ollama, OpenAI and Anthropic "
        "APIs as they are specified, with no regard to what its model says.",
    )
    parser.add_argument(
        "url", help="the server's base URL, e.g. http://127.0.0.1:11434"
    )
    parser.add_argument(
        "--model", help="the model to generate with (default: the first installed)"
    )
    parser.add_argument(
        "--read-only",
        action="store_true",
        help="skip the checks that change the store (copy and delete a model)",
    )
    parser.add_argument(
        "--only", nargs="+", metavar="AREA_OR_NAME", help="run only these checks"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds per request"
    )
    args = parser.parse_args(argv)

    chosen = [
        c for c in CHECKS if not args.only or c.name in args.only or c.area in args.only
    ]
    if not chosen:
        parser.error(f"no check matches {args.only}")
    target = Target(
        args.url, model=args.model, write=not args.read_only, timeout=args.timeout
    )
    print(f"conformance checks against {args.url}")
    try:
        results = run_checks(target, chosen, report=_print)
    except httpx.HTTPError as exc:  # pragma: no cover - run_checks catches these
        print(f"cannot reach {args.url}: {exc}", file=sys.stderr)
        return 2
    finally:
        target.close()
    counts = {
        outcome: sum(r.outcome is outcome for r in results) for outcome in Outcome
    }
    print(
        f"{counts[Outcome.PASSED]} passed, {counts[Outcome.FAILED]} failed, "
        f"{counts[Outcome.SKIPPED]} skipped"
    )
    return 1 if counts[Outcome.FAILED] else 0


def _print(result: Result) -> None:
    line = f"{result.outcome.value:4}  {result.name}  ({result.seconds:.2f} s)"
    if result.detail:
        line += f"\n      {result.detail}"
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
