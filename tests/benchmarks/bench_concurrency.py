"""Question latency with several clients, with and without a match being indexed meanwhile.

    python -m tests.benchmarks.bench_concurrency [--model DIR] [--sets 12] [--data ../shared/data/shuttleset]

An app engine over a workspace with --sets real ShuttleSet sets (annotations only) answers
structured and semantic questions (`Engine.ask`) from 1 and from 8 client threads at once, first
with nothing else running, then while a background thread indexes one new match after another
(a synthetic video and its annotations, through the model: decoding, vision, captions). Each case
answers 540 questions not asked before (dealt out to the clients, each asking one after another);
p50 and p95 of their latencies are printed beside the idle single-client figure. The model is a tiny random one of the product's shape (16 frames per
clip) unless --model names an adapter folder. Not a test: it prints figures, it asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from core.engine import Engine  # noqa: E402
from core.video import write_video  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared" / "data" / "shuttleset"  # beside the repository
QUESTIONS = ["When does the bottom player hit a smash in the backcourt?", "drops by the upper player in rally 5",
             "net shots at the right side", "a powerful overhead attack", "a high defensive shot",
             "clears in set 2"]
HIT_FRAMES = range(20, 380, 12)  # 30 strokes per indexed match


def percentiles(values: list[float]) -> tuple[float, float]:
    v = sorted(values)
    return statistics.median(v) * 1e3, v[int(0.95 * (len(v) - 1))] * 1e3


def question_pool(lead: str) -> list[str]:
    """540 questions, none asked before in this run (the sentence model remembers what it embedded)."""
    return [f"{lead} {q[0].lower()}{q[1:]} in rally {r} of set {n}" for q in QUESTIONS for r in range(1, 31)
            for n in (1, 2, 3)]


def latencies(engine: Engine, clients: int, questions: list[str]) -> list[float]:
    """Seconds of every question, the questions dealt out to `clients` threads that ask at once."""
    out: list[float] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        for q in questions[k::clients]:
            t = time.perf_counter()
            engine.ask(q)
            with lock:
                out.append(time.perf_counter() - t)
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def keep_indexing(engine: Engine, folder: Path, stop: threading.Event, indexed: list[int]) -> None:
    """New matches one after another until `stop`: a fresh video each (so nothing is cached)."""
    rng = np.random.default_rng(0)
    n = 0
    while not stop.is_set():
        n += 1
        video = write_video(folder / f"bench{n}.mp4",
                            rng.integers(0, 255, (400, 64, 96, 3), dtype=np.uint8), fps=25)
        lines = ["id,rally,ball_round,upper,type,backhand,relabel_hit_area,split"]
        lines += [f"bench{n}_1_{f},1,{i + 1},{i % 2},殺球,0,9,test" for i, f in enumerate(HIT_FRAMES)]
        (folder / f"bench{n}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        engine.add_match(str(folder / f"bench{n}.csv"), str(video))
        indexed.append(n)


def setup(tmp: Path, data: Path, sets: int, model: str | None) -> Engine:
    engine = Engine(tmp / "ws", demo_match=tmp / "no-demo")
    root = engine.workspace.uploads / "shuttleset"
    root.mkdir()
    for name in ("match.csv", "homography.csv"):
        shutil.copy(data / name, root / name)
    files = sorted(data.glob("*/set*.csv"))[:sets]
    for f in files:
        (root / f.parent.name).mkdir(exist_ok=True)
        engine.add_match(str(shutil.copy(f, root / f.parent.name / f.name)))
    if model is None:
        model = str(tiny_adapters(tmp))
    engine.load(model, trusted=True)
    return engine


def tiny_adapters(tmp: Path) -> Path:
    from core.config import LoraSettings, ModelSettings
    from core.loader import build_model, save_adapters
    from core.tiny import TinySpec, build_tiny_base

    base = build_tiny_base(tmp / "tiny_base", TinySpec())
    model = build_model(ModelSettings(base=str(base), num_frames=16, lora=LoraSettings.experiment(3)))
    return save_adapters(model, tmp / "tiny_adapters")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_concurrency",
                                description=__doc__.splitlines()[0])
    p.add_argument("--model", help="adapter folder (default: a tiny random model of the product's shape)")
    p.add_argument("--data", default=str(SHARED), help="ShuttleSet folder (match.csv, <match>/setN.csv)")
    p.add_argument("--sets", type=int, default=12, help="set files in the index (default 12)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        engine = setup(Path(tmp), Path(args.data), args.sets, args.model)
        strokes = sum(m["strokes"] for m in engine.matches())
        engine.ask(QUESTIONS[0])  # the embedder and the arrays, once
        leads = iter(["Show", "Find", "List", "Where are"])  # a new pool of questions per case
        figures = {("idle", c): latencies(engine, c, question_pool(next(leads))) for c in (1, 8)}
        stop, indexed = threading.Event(), []
        folder = engine.workspace.uploads / "indexing"
        folder.mkdir()
        worker = threading.Thread(target=keep_indexing, args=(engine, folder, stop, indexed), daemon=True)
        worker.start()
        time.sleep(2)  # the first match's model pass under way
        for c in (1, 8):
            figures[("indexing", c)] = latencies(engine, c, question_pool(next(leads)))
        stop.set()
        worker.join()
    base = percentiles(figures[("idle", 1)])[0]
    print(f"[question latency: {strokes} strokes in the index, {os.cpu_count()} CPUs]")
    for (state, c), values in figures.items():
        p50, p95 = percentiles(values)
        print(f"  {state:8s} {c} client{'s' if c > 1 else ' '}  p50 {p50:8.1f} ms  p95 {p95:8.1f} ms  "
              f"(p50 {p50 / base:4.1f}x the idle single client; {len(values)} questions)")
    print(f"  {len(indexed)} matches indexed while the questions ran ({len(HIT_FRAMES)} strokes each)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
