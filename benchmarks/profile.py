"""Where a streamed token's time goes on the tiny model: the server, profiled.

Why: on the tiny model llama.cpp makes a token in about 0.1 ms, so anything the
server does per token shows. This runs a real ``gateway-core serve`` (``--src`` picks
the source tree, so an older checkout can be profiled the same way for a before and
after), streams long ``/api/generate`` answers from it, and reports:

- CPU microseconds per token, per server thread (read from ``/proc``): the event
  loop's thread, and the generation threads together;
- the client's decode rate and time to first token;
- with ``--py-spy`` (the ``bench`` extra), a sampling profile of the server: the
  functions the event loop's thread spends its samples in, by self and by total.

Greedy sampling with a presence penalty on every token seen keeps the random-weight
model from ending early, so each stream is long. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from .embed_batch import SRC, start_server
from .models import write_model
from .streaming import install

__all__ = ["cpu_seconds", "profile"]

OPTIONS = {"temperature": 0.0, "repeat_last_n": -1, "presence_penalty": 1e9}


def cpu_seconds(pid: int, *, thread: int | None = None) -> float:
    """CPU seconds (user + system) of process ``pid``, ended threads included, or of
    its thread ``thread`` alone (the event loop's is ``pid`` itself)."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stream(port: int, tokens: int, seed: int) -> tuple[int, float, float]:
    """One long stream: (tokens, decode tokens/s, time to first token in s)."""
    options = {**OPTIONS, "num_predict": tokens, "seed": seed}
    body = {"model": "tiny", "prompt": "hi", "options": options}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.perf_counter()
    conn.request("POST", "/api/generate", body=json.dumps(body))
    response = conn.getresponse()
    first = last = None
    count = 0
    while line := response.readline():
        chunk = json.loads(line)
        if chunk.get("done"):
            count = int(chunk["eval_count"])
            break
        if chunk.get("response"):
            last = time.perf_counter()
            first = first or last
    conn.close()
    if first is None or last is None or count < 2:
        raise RuntimeError("a profiling stream ended before its second token")
    return count, (count - 1) / (last - first), first - started


def _aggregate(raw: Path, thread: str, top: int) -> dict[str, list[list[object]]]:
    """py-spy's raw stacks for ``thread``: top functions by self and total share."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not frames or thread not in frames[0]:
            continue
        n = int(count)
        samples += n
        names = [_frame(frame) for frame in frames[1:]]
        if names:
            own[names[-1]] += n
        for name in set(names):
            total[name] += n

    def table(counter: collections.Counter[str]) -> list[list[object]]:
        share = max(samples, 1)
        return [[name, round(n / share, 3)] for name, n in counter.most_common(top)]

    return {"self": table(own), "total": table(total)}


def _frame(frame: str) -> str:
    """``function (path/to/file.py:12)`` -> ``function (file.py)``."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.split(':')[0]).name})" if where else name


def profile(
    *, src: Path, streams: int, tokens: int, py_spy: bool, top: int = 25
) -> dict[str, object]:
    """Run the server from ``src`` and profile ``streams`` streams of ``tokens``."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        process, port = start_server(tmp / "models", src=src)
        try:
            install(port, write_model(tmp / "tiny.gguf", "tiny"), "tiny")
            _stream(port, 16, 0)  # load the model
            spy = None
            if py_spy:
                command = ["py-spy", "record", "--pid", str(process.pid), "--threads"]
                command += ["--nonblocking", "--rate", "1000", "--format", "raw"]
                command += ["--output", str(tmp / "raw.txt")]
                spy = subprocess.Popen(command, stderr=subprocess.DEVNULL)
                time.sleep(1.0)  # py-spy attaches
            pid = process.pid
            loop_before, all_before = cpu_seconds(pid, thread=pid), cpu_seconds(pid)
            client_before = resource.getrusage(resource.RUSAGE_SELF)
            results = [_stream(port, tokens, seed) for seed in range(1, streams + 1)]
            client_after = resource.getrusage(resource.RUSAGE_SELF)
            loop_after, all_after = cpu_seconds(pid, thread=pid), cpu_seconds(pid)
            if spy is not None:
                spy.send_signal(2)  # SIGINT: py-spy writes its file and exits
                spy.wait(timeout=60)
        finally:
            process.terminate()
            process.wait(timeout=30)
        made = sum(count for count, _, _ in results)
        loop = loop_after - loop_before
        client = (client_after.ru_utime + client_after.ru_stime) - (
            client_before.ru_utime + client_before.ru_stime
        )
        report: dict[str, object] = {
            "src": str(src),
            "streams": streams,
            "tokens": made,
            "tokens_per_s_p50": round(statistics.median(r for _, r, _ in results)),
            "ttft_p50_ms": round(statistics.median(t for _, _, t in results) * 1e3, 2),
            "cpu_us_per_token": {
                "event_loop_thread": round(loop / made * 1e6),
                "other_server_threads": round(
                    (all_after - all_before - loop) / made * 1e6
                ),
                "client": round(client / made * 1e6),
            },
        }
        if py_spy:
            report["event_loop_profile"] = _aggregate(
                tmp / "raw.txt", "MainThread", top
            )
    return report


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--src", type=Path, default=SRC)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--py-spy", action="store_true", help="sample with py-spy")
    parser.add_argument("--out", type=Path, help="also write the report here (JSON)")
    args = parser.parse_args()
    report = profile(
        src=args.src.resolve(),
        streams=args.streams,
        tokens=args.tokens,
        py_spy=args.py_spy,
    )
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
