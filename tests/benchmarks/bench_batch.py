"""Sets per minute of core.batch with 1 and 2 model actors, beside the single-process indexer.

    python -m tests.benchmarks.bench_batch [--model assets/demo-model] [--sets 4] [--rallies 1-8]

Renders --sets set files of the ShuttleSet annotations beside the repository (../shared/data/
shuttleset; else tests/data/shuttleset) with train.replay, then indexes them into a fresh index
three times: with core.indexer.add_match in this process, and with core.batch on a local Ray
instance (every CPU of this machine) with 1 and with 2 actors. Each figure is the time from the
first set to the last one written; the model load and Ray's start are printed apart (a season
pays them once). One torch thread everywhere (--threads), so that the actors do not fight over
the cores. Not a test: it prints figures, it asserts nothing; its last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ANNOTATIONS = (ROOT.parent / "shared" / "data" / "shuttleset", ROOT / "tests" / "data" / "shuttleset")


def render_season(out: Path, sets: int, rallies: str, size: tuple[int, int]) -> list[Path]:
    """The first `sets` set files (one per match while there are matches) rendered under `out`."""
    from train.replay import render_set

    root = next(p for p in ANNOTATIONS if p.is_dir())
    files = sorted(root.glob("*/set*.csv"), key=lambda p: (p.stem, p.parent.name))[:sets]
    return [render_set(f, out, rallies=rallies, seed=i, size=size, cutaways=False, audio=False)
            for i, f in enumerate(files)]


def single_process(rendered: list[Path], db: Path, model_dir: str, threads: int) -> dict:
    from core.device import set_threads
    from core.indexer import add_match
    from core.loader import load_model
    from core.store import StrokeStore

    set_threads(threads)
    t = time.perf_counter()
    model = load_model(model_dir)
    load_s = time.perf_counter() - t
    store = StrokeStore(db)
    t = time.perf_counter()
    for csv in rendered:
        add_match(store, csv, csv.with_suffix(".mp4"), model=model)
    return {"start_s": load_s, "index_s": time.perf_counter() - t, "strokes": len(store.strokes())}


def on_ray(folder: Path, db: Path, model_dir: str, actors: int, threads: int) -> dict:
    import ray

    from core.batch import SeasonIndexer, find_sets, start_workers
    from core.store import StrokeStore

    store = StrokeStore(db)
    jobs, problems = find_sets(store, folder, folder)
    if problems:
        raise SystemExit("\n".join(problems))
    t = time.perf_counter()
    workers, info = start_workers(actors, model_dir, None, threads=threads)
    start_s = time.perf_counter() - t
    t = time.perf_counter()
    done = SeasonIndexer(store, workers, info).run(jobs, lambda line, failed: None)
    index_s = time.perf_counter() - t
    for w in workers:
        ray.kill(w)
    return {"start_s": start_s, "index_s": index_s, "strokes": len(store.strokes()), "indexed": done["indexed"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_batch", description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "assets" / "demo-model"), help="adapter folder (default: the demo model)")
    p.add_argument("--sets", type=int, default=4, help="rendered sets (default 4)")
    p.add_argument("--rallies", default="1-8", help="rallies of each set to render (default 1-8)")
    p.add_argument("--size", default="320x180", help="render size WxH (default 320x180)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    args = p.parse_args(argv)
    import ray

    from core.batch import start_ray

    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        rendered = render_season(tmp / "season", args.sets, args.rallies, size)
        print(f"rendered {len(rendered)} sets at {args.size} in {time.perf_counter() - t:.1f} s")
        runs = {"single": single_process(rendered, tmp / "single.sqlite", args.model, args.threads)}
        t = time.perf_counter()
        start_ray(None, None)
        ray_start_s = time.perf_counter() - t
        print(f"Ray started on {os.cpu_count()} CPUs in {ray_start_s:.1f} s")
        for n in (1, 2):
            runs[f"ray_{n}"] = on_ray(tmp / "season", tmp / f"ray{n}.sqlite", args.model, n, args.threads)
        ray.shutdown()
    figures = {"sets": len(rendered), "strokes": runs["single"]["strokes"], "cpus": os.cpu_count(),
               "ray_start_s": round(ray_start_s, 2)}
    for name, run in runs.items():
        per_min = len(rendered) / run["index_s"] * 60
        figures[f"{name}_sets_per_min"] = round(per_min, 2)
        figures[f"{name}_strokes_per_s"] = round(run["strokes"] / run["index_s"], 2)
        figures[f"{name}_start_s"] = round(run["start_s"], 2)
        label = "single process" if name == "single" else f"Ray, {name[4:]} actor(s)"
        print(f"{label:>18}: {per_min:6.2f} sets/min, {run['strokes'] / run['index_s']:6.1f} strokes/s "
              f"({run['strokes']} strokes in {run['index_s']:.1f} s; model load {run['start_s']:.1f} s)")
    for n in (1, 2):
        figures[f"ray_{n}_over_single"] = round(figures[f"ray_{n}_sets_per_min"] / figures["single_sets_per_min"], 2)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
