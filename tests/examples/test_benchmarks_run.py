"""``python -m benchmarks`` runs and writes the JSON it promises.

Structure only: the figures must exist and be positive numbers, but how big they are
is never asserted here. Speed targets belong to the benchmark report, not to tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CORE_FIGURES = {
    "ndjson_frames_per_s",
    "sse_frames_per_s",
    "ndjson_decode_mb_per_s",
    "sse_decode_mb_per_s",
    "openai_chat_translations_per_s",
    "native_chat_translations_per_s",
    "version_exchanges_per_s",
}


def test_quick_core_run_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    env = {**os.environ}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")])
    )
    command = [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)]
    completed = subprocess.run(
        [*command, "--only", "core_micro"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "ndjson_frames_per_s" in completed.stdout  # the printed summary

    report = json.loads(out.read_text())
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
