"""How soon the app serves on an empty workspace, and how soon its demo match is ready.

    python -m tests.benchmarks.bench_startup [--runs 3]

Each run starts `python app.py` on a fresh workspace and a free port and times (1) the first page
the server answers, (2) the model loaded and the demo match indexed in the background (the index
lists it). Not a test: it prints figures, it asserts nothing; the last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGET_S = 5.0  # the page serves within this on a fresh workspace


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _indexed(index: Path) -> bool:
    if not index.is_file():
        return False
    try:
        with sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=0.2) as db:
            return db.execute("SELECT count(*) FROM strokes").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def one_start(timeout_s: float = 300.0) -> tuple[float, float]:
    """(seconds to the first page, seconds to the demo match in the index) of one fresh start."""
    with tempfile.TemporaryDirectory() as tmp:
        port, workspace = _free_port(), Path(tmp) / "workspace"
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "app.py", "--workspace", str(workspace), "--port", str(port)],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            served = ready = None
            while time.perf_counter() - t0 < timeout_s and ready is None:
                if served is None:
                    try:
                        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
                        served = time.perf_counter() - t0
                    except OSError:
                        pass
                if served is not None and _indexed(workspace / "index.sqlite"):
                    ready = time.perf_counter() - t0
                time.sleep(0.05)
            return served if served is not None else float("nan"), ready if ready is not None else float("nan")
        finally:
            proc.terminate()
            proc.wait(30)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_startup", description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3, help="fresh starts to time (the median is reported)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runs = [one_start() for _ in range(max(1, args.runs))]
    for i, (served, ready) in enumerate(runs, 1):
        print(f"start {i}: page served after {served:.2f} s, demo match indexed after {ready:.2f} s")
    served = statistics.median(r[0] for r in runs)
    ready = statistics.median(r[1] for r in runs)
    print(f"median: page {served:.2f} s (target {TARGET_S:.0f} s), demo ready {ready:.2f} s")
    print(json.dumps({"page_served_s": round(served, 2), "demo_ready_s": round(ready, 2),
                      "page_served_over_target": round(served / TARGET_S, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
