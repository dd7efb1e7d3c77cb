"""Memory over time: the resident size (RSS) of the engine answering questions over a large
index, and of indexing a long 1280x720 video with the demo model, sampled while they run.
Both should stay flat: what a question or a stroke takes is given back.

    python -m tests.benchmarks.bench_memory [--strokes 100000] [--questions 400] [--minutes 10]

1. An annotation-only index of `--strokes` strokes (real ShuttleSet sets, replicated), opened by
   an Engine; `--questions` questions of every kind asked in turn; RSS after each block of 50.
2. A synthetic `--minutes`-long 1280x720 H.264 video (a hit every 2 s) indexed with the demo
   model; RSS sampled twice a second. `--minutes 60` is the hour-long case.
Not a test: it prints figures, it asserts nothing; the last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from tests.benchmarks.bench_index_query import EXCERPT, SHARED, build_index, load_sources

REPO = Path(__file__).resolve().parents[2]
QUESTIONS = ["When does the bottom player hits a smash in the backcourt?", "Momota's drops in set 2",
             "errors into the net", "rallies of more than 20 shots", "who hit more clears",
             "what does the upper player play after a smash", "a powerful overhead attack",
             "smashes or drops except in set 1", "the last shot of each rally", "backhand net shots"]
BLOCK = 50


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def questions_over_time(strokes: int, n: int, tmp: Path) -> dict:
    from core.engine import Engine

    data = SHARED if SHARED.is_dir() else EXCERPT
    workspace = tmp / "questions"
    workspace.mkdir()
    build_index(workspace / "index.sqlite", load_sources(data), strokes).close()
    engine = Engine(workspace, demo_match=tmp / "no-demo")
    engine.ask(QUESTIONS[0])  # the arrays and the sentence model loaded
    series = [rss_mib()]
    for i in range(n):
        engine.ask(QUESTIONS[i % len(QUESTIONS)])
        if (i + 1) % BLOCK == 0:
            series.append(rss_mib())
    print(f"questions over {strokes:,} strokes: RSS after each {BLOCK} (MiB): " + ", ".join(f"{v:.0f}" for v in series))
    return {"questions_rss_start_mib": round(series[0]), "questions_rss_end_mib": round(series[-1]),
            "questions_rss_growth_mib": round(series[-1] - series[1 if len(series) > 2 else 0], 1)}


def synthetic_video(path: Path, minutes: float, fps: float = 25.0) -> list[int]:
    """A 1280x720 video of a moving bright block over a dark court; its hit frames (every 2 s)."""
    from core.encode import Writer

    n = int(minutes * 60 * fps)
    frame = np.full((720, 1280, 3), 40, np.uint8)
    with Writer(path, (1280, 720), fps) as w:
        for i in range(n):
            x = 100 + (i * 7) % 1000
            frame[300:380, x:x + 80] = 230
            w.write(frame)
            frame[300:380, x:x + 80] = 40
    return list(range(25, n - 25, int(2 * fps)))


def indexing_over_time(minutes: float, tmp: Path) -> dict:
    from core.indexer import add_match
    from core.loader import load_any
    from core.store import StrokeStore

    video = tmp / "long.mp4"
    t = time.perf_counter()
    hits = synthetic_video(video, minutes)
    print(f"wrote a {minutes:g}-minute 1280x720 video in {time.perf_counter() - t:.0f} s ({len(hits)} hits)")
    model = load_any(str(REPO / "assets" / "demo-model"))
    store = StrokeStore(tmp / "long.sqlite")
    samples, done = [], threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.perf_counter(), rss_mib()))
            done.wait(0.5)

    watcher = threading.Thread(target=sample, daemon=True)
    start = rss_mib()
    t = time.perf_counter()
    watcher.start()
    add_match(store, frames=hits, video=video, model=model)
    done.set()
    watcher.join()
    took = time.perf_counter() - t
    values = [v for _, v in samples]
    half = len(values) // 2
    first, second = max(values[:half] or values), max(values[half:] or values)
    print(f"indexing it: {took:.0f} s; RSS before {start:.0f} MiB, peak in the first half {first:.0f} MiB, "
          f"in the second half {second:.0f} MiB, at the end {values[-1]:.0f} MiB")
    return {"indexing_minutes": minutes, "indexing_rss_start_mib": round(start),
            "indexing_rss_peak_first_half_mib": round(first), "indexing_rss_peak_second_half_mib": round(second),
            "indexing_rss_second_over_first_half": round(second / first, 3)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_memory", description=__doc__.split("\n")[0])
    p.add_argument("--strokes", type=int, default=100_000, help="strokes in the question index")
    p.add_argument("--questions", type=int, default=400, help="questions asked in turn")
    p.add_argument("--minutes", type=float, default=10.0, help="length of the indexed video (60: an hour)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        figures = {**indexing_over_time(args.minutes, Path(tmp)),
                   **questions_over_time(args.strokes, args.questions, Path(tmp))}
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
