"""``python -m benchmarks`` runs and writes the JSON it promises.

Structure only: the figures must exist and be positive numbers, but how big they are
is never asserted here. Speed targets belong to the benchmark report, not to tests.
The peer, llama_cpp.server, is never started here (its dependencies come only with
the ``bench`` extra); how its streams are read and compared is checked on lines and
figures written out by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from benchmarks.streaming import Stream, _compare_with_peer, _Reading

ROOT = Path(__file__).resolve().parents[2]

CORE_FIGURES = {
    "ndjson_frames_per_s",
    "sse_frames_per_s",
    "ndjson_decode_mb_per_s",
    "sse_decode_mb_per_s",
    "openai_chat_translations_per_s",
    "native_chat_translations_per_s",
    "version_exchanges_per_s",
    "generate_tokens_per_s",
    "openai_stream_tokens_per_s",
}


def _quick(tmp_path: Path, *names: str) -> tuple[dict[str, Any], str]:
    """Run ``python -m benchmarks --quick --only NAMES``; its report and what it
    printed."""
    out = tmp_path / "results.json"
    env = {**os.environ}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")])
    )
    command = [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)]
    completed = subprocess.run(
        [*command, "--only", *names],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report: dict[str, Any] = json.loads(out.read_text())
    return report, completed.stdout


def test_quick_core_run_writes_every_figure(tmp_path: Path) -> None:
    report, printed = _quick(tmp_path, "core_micro")
    assert "ndjson_frames_per_s" in printed  # the printed summary

    assert report["quick"] is True
    machine = report["machine"]
    assert isinstance(machine["cpu_count"], int)
    assert machine["cpu_count"] > 0
    assert machine["python"] == ".".join(map(str, sys.version_info[:3]))
    assert machine["platform"]
    assert set(report["benchmarks"]) == {"core_micro"}
    core = report["benchmarks"]["core_micro"]
    assert set(core) >= CORE_FIGURES
    for name in CORE_FIGURES:
        value = core[name]
        assert isinstance(value, int | float), name
        assert not isinstance(value, bool), name
        assert value > 0, name


def _read(api: str, lines: list[bytes]) -> Stream:
    """Feed ``lines`` one second apart, from a request sent at 0."""
    reading = _Reading(api=api, started=0.0)
    for now, line in enumerate(lines, start=1):
        assert reading.feed(line, float(now))
    return reading.stream(float(len(lines) + 1))


def _data(chunk: dict[str, object]) -> bytes:
    return b"data: " + json.dumps(chunk).encode()


def _delta(delta: dict[str, str], finish_reason: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    return _data({"object": "chat.completion.chunk", "choices": [choice]})


# How llama_cpp.server starts a chat stream: a chunk with the role, then one per token.
PEER_START = [
    _delta({"role": "assistant"}),
    _delta({"content": "Once"}),
    _delta({"content": ""}),  # a token with no text of its own is a chunk too
    _delta({"content": " upon"}),
]


def test_a_peer_stream_counts_its_content_chunks_as_tokens() -> None:
    stream = _read("peer_sse", [*PEER_START, _delta({}, "length"), b"data: [DONE]"])
    assert stream.complete
    assert stream.error is None
    assert stream.tokens == 3
    assert stream.ttft == 2.0  # the first chunk with text, not the role's
    assert stream.decode == 2.0


def test_a_peer_stream_interrupted_by_a_waiting_request_is_truncated() -> None:
    # Under its default interrupt_requests the peer ends the stream with [DONE] alone.
    stream = _read("peer_sse", [*PEER_START, b"data: [DONE]"])
    assert not stream.complete
    assert stream.error is None
    assert stream.tokens == 3


def test_gateway_sse_tokens_come_from_usage_not_chunks() -> None:
    usage = {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}
    finish = [_delta({}, "stop"), _data({"choices": [], "usage": usage})]
    stream = _read("sse", [*PEER_START, *finish, b"data: [DONE]"])
    assert stream.complete
    assert stream.tokens == 5
    assert _read("sse", [*PEER_START, _delta({}, "stop"), b"data: [DONE]"]).tokens == 0


def test_gateway_levels_are_compared_with_the_peer_at_the_same_concurrency() -> None:
    # One stream compares through the figures paired with raw.
    one = {"tokens_per_s_vs_raw": 0.9, "ttft_minus_raw_ms": 12.5}
    many = {"aggregate_tokens_per_s": 120.0}
    levels: dict[str, dict[str, object]] = {
        "ndjson_c1": dict(one),
        "sse_c1": {"tokens_per_s_vs_raw": 0.45, "ttft_minus_raw_ms": 10.0},
        "peer_c1": {"tokens_per_s_vs_raw": 0.6, "ttft_minus_raw_ms": 20.0},
        "ndjson_c4": dict(many),
        "sse_c4": dict(many),
        "peer_c4": {"aggregate_tokens_per_s": 40.0},
        "ndjson_c16": dict(many),
        "sse_c16": dict(many),
        "peer_c16": {"aggregate_tokens_per_s": 0.0},  # every stream cut short
    }
    _compare_with_peer(levels)
    assert levels["ndjson_c1"]["tokens_per_s_vs_peer"] == 1.5
    assert levels["ndjson_c1"]["ttft_minus_peer_ms"] == -7.5
    assert levels["sse_c1"]["tokens_per_s_vs_peer"] == 0.75
    assert levels["ndjson_c4"]["aggregate_vs_peer"] == 3.0
    assert levels["sse_c4"]["aggregate_vs_peer"] == 3.0
    assert "aggregate_vs_peer" not in levels["sse_c16"]
    assert "tokens_per_s_vs_peer" not in levels["peer_c1"]


@pytest.mark.slow
def test_quick_runner_engine_run_measures_every_level(tmp_path: Path) -> None:
    engine = _quick(tmp_path, "runner_engine")[0]["benchmarks"]["runner_engine"]
    tiny = engine["tiny"]
    for level in ("c1", "c4", "c16"):
        assert tiny["raw_batched"][level]["aggregate_tokens_per_s"] > 0
        assert tiny["raw_batched"][level]["step_ms"] > 0
        served = tiny["gateway"][level]
        assert served["aggregate_tokens_per_s"] > 0
        assert served["errors"] == served["truncated"] == 0
    targets = tiny["targets"]
    assert targets["aggregate_c16_vs_raw_batched"] > 0
    assert targets["ttft_c16_budget_ms"] > 0
    assert tiny["contention"]["busy_tokens_per_s_vs_raw"] > 0
    assert "skipped" in engine["smollm2"]  # quick runs skip the real model


@pytest.mark.slow
def test_quick_structured_run_measures_compile_mask_and_decode(
    tmp_path: Path,
) -> None:
    demo = _quick(tmp_path, "structured")[0]["benchmarks"]["structured"]["demo"]
    assert demo["n_vocab"] > 0
    assert demo["compile"]["ms"]["count"] > 0
    assert demo["compile"]["ms"]["p50"] > 0
    assert set(demo["compile"]["p50_ms_by_schema"]) == {
        "Person",
        "Event",
        "Tree",
        "Pet",
    }
    assert demo["mask"]["mask_us"]["count"] > 0
    assert demo["mask"]["mask_us"]["p50"] > 0
    assert demo["decode"]["pairs"] > 0
    assert demo["decode"]["constrained_vs_unconstrained"] > 0


@pytest.mark.slow
def test_quick_paired_server_runs_report_both_sides_and_their_ratios(
    tmp_path: Path,
) -> None:
    """The metrics-cost and ASGI benchmarks start both variants as real servers,
    measure both figures on each in alternation, and report the ratios."""
    benchmarks = _quick(tmp_path, "metrics_cost", "asgi")[0]["benchmarks"]
    for name, (a, b) in {
        "metrics_cost": ("off", "on"),
        "asgi": ("trio", "asgi"),
    }.items():
        figures = benchmarks[name]
        assert figures["bursts"] == 2
        assert 0 < figures["streams"] <= 4
        for side in (a, b):
            assert figures[f"{side}_rps"] > 0
            assert figures[f"{side}_tokens_per_s"] > 0
        for figure in (
            "rps",
            "tokens_per_s",
            "server_cpu_us_per_request",
            "server_cpu_us_per_token",
        ):
            assert figures[f"{figure}_{b}_vs_{a}"] > 0
