"""Speed of the stroke index and the query engine, each figure beside its baseline, from one run.

    python -m tests.benchmarks.bench_index_query [--model DIR] [--data ../shared/data/shuttleset]

1. Question latency (ask() plus the first 100 results; answers are built lazily) for each kind:
   structured, structured + near misses, semantic, and coach questions (outcomes, sequences,
   rallies, counts), each beside its floor measured alternately in the same run (`Floor`: the
   question's filter, a brute-force cosine over one vector per stroke, one indexed SQLite read of
   the rows shown), over 1,000, 100,000 and 1,000,000-stroke indexes built from real ShuttleSet
   annotations (annotation-only; sets replicated under new match names to reach the size). Also
   the recall of the top 50 against exact search, and a fresh process's first question.
2. The stage-2 model path from cached query tokens vs recomputing the vision per question (read the
   chunk's clips from the video, vision tower + Q-Former, then the same generation). A tiny random
   model of the product's shape (16 frames per clip) unless --model names an adapter folder.
3. Indexing throughput (decode once, tokens, captions, SQLite) vs decoding the same file alone, on a
   rendered replay of real rallies (train.replay).
Not a test: it prints figures, it asserts nothing. Its last line is one JSON object with every ratio
(`_over_floor`: target <= 2, `_over_decode`: >= 0.5, `_speedup`: >= 10).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.fields import asks_for_rallies  # noqa: E402
from core.indexer import add_match  # noqa: E402
from core.store import SetSource, StrokeStore, set_source  # noqa: E402
from core.query import NEAR_MISSES, QueryEngine  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared" / "data" / "shuttleset"  # beside the repository
EXCERPT = REPO / "tests" / "data" / "shuttleset"

# Question kinds, each timed beside its floor. The players are the first sets' (every index size holds them).
STRUCTURED = ["When does the bottom player hits a smash in the backcourt?", "An Se Young's cross-court net shots",
              "An Se Young's drops in set 2", "Which stroke is hit at the right side of the net?",
              "serves by the upper player in rally 5", "When is a clear hits?"]
SEMANTIC = ["a powerful overhead attack", "a high defensive shot", "hitting hard from the back"]
COACH = {"outcomes": ["An Se Young's winners", "smashes into the net", "errors that went out long"],
         "sequences": ["what does An Se Young play after a smash", "a smash followed by a net kill"],
         "rallies": ["rallies of more than 20 shots", "game points", "long rallies won by An Se Young"],
         "counts": ["how many smashes did An Se Young win points with", "who hit more clears",
                    "An Se Young's most common serve"]}
PAGE = 100  # results built (and, for the floor, read from SQLite) per question
RECALL_K = 50


def ms(values: list[float]) -> str:
    return f"median {median_ms(values):7.2f} ms, p95 {ms_p95(values):7.2f} ms"


def load_sources(data: Path) -> list[SetSource]:
    files = sorted(data.glob("*/set*.csv"))
    out = []
    for f in files:
        try:
            out.append(set_source(f))
        except Exception as err:  # noqa: BLE001 - a broken set file is skipped, not fatal here
            print(f"  skipped {f.name}: {err}")
    return out


def build_index(path: Path, sources: list[SetSource], n: int) -> StrokeStore:
    """Sets in turn (copies renamed once all are used) until about n strokes; the last set is cut."""
    index = StrokeStore(path)
    total, copy = 0, 0
    while total < n:
        for src in sources:
            rows = src.rows[: n - total]
            name = src.match if copy == 0 else f"{src.match}_copy{copy}"
            index.write_set(SetSource(name, src.set_no, rows, src.players, src.fps, src.source,
                                      f"{src.source_hash}:{copy}:{len(rows)}"), None, None, src.fps)
            total += len(rows)
            if total >= n:
                break
        copy += 1
    return index


def size_label(n: int) -> str:
    return f"{n // 1_000_000}m" if n >= 1_000_000 else f"{n // 1000}k"


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1e3


class Floor:
    """The least work a question needs over the same index, the parse left out: its filter over the
    loaded columns (the mask of its fields), a brute-force cosine of the question's embedding with
    one vector per stroke (for semantic answers and near misses), and one indexed SQLite read of
    the PAGE rows shown."""

    def __init__(self, engine: QueryEngine):
        self.engine, self.a = engine, engine.arrays()
        self.matrix = self.a.search.vecs[np.maximum(self.a.text, 0)]  # (N, D): a plain vector search's matrix
        self.matrix[self.a.text < 0] = 0

    def fields(self, question: str, semantic: bool) -> float:
        a, parsed = self.a, self.engine.parser.parse(question)
        t = time.perf_counter()
        hit = a.mask(parsed.fields)
        rows = np.flatnonzero(hit)
        if asks_for_rallies(question, parsed.fields):
            rows = a.rally_rows[np.unique(a.rally_of[rows])]  # each rally's last stroke
        if semantic:  # near misses: the most similar strokes outside the answer
            sims = self.matrix @ self.engine.embedder.encode_one(question)
            sims[hit] = -np.inf
            np.argpartition(-sims, NEAR_MISSES)[:NEAR_MISSES]
        self.read(rows[:PAGE])
        return time.perf_counter() - t

    def semantic(self, question: str) -> float:
        t = time.perf_counter()
        sims = self.matrix @ self.engine.embedder.encode_one(question)
        top = np.argpartition(-sims, PAGE)[:PAGE]
        self.read(top[np.argsort(-sims[top])])
        return time.perf_counter() - t

    def read(self, rows: np.ndarray) -> None:
        ids = self.a.id[rows].tolist()
        self.engine.index.db.execute(f"SELECT * FROM strokes WHERE id IN ({','.join('?' * len(ids))})", ids).fetchall()


def timed(engine: QueryEngine, questions: list[str], paths, floor, repeats: int) -> tuple[list[float], list[float]]:
    """ask() plus building the first PAGE results, and the floor, alternately (a busy machine slows both alike)."""
    for q in questions:  # warm: arrays loaded, vocabularies embedded
        engine.ask(q, paths=paths)
    asked, floors = [], []
    for _ in range(repeats):
        for q in questions:
            engine.embedder._memo.clear()  # every question is embedded afresh, as a new one would be
            t = time.perf_counter()
            ans = engine.ask(q, paths=paths)
            list(ans.results[:PAGE]), list(ans.rallies[:PAGE])
            asked.append(time.perf_counter() - t)
            engine.embedder._memo.clear()
            floors.append(floor(q))
    return asked, floors


def recall_at_k(engine: QueryEngine, floor: Floor, questions: list[str]) -> float:
    """Share of the engine's top RECALL_K strokes that exact search over one vector per stroke puts in
    its top RECALL_K (ties at the K-th score count as in)."""
    a, found = engine.arrays(), []
    everything = np.ones(len(a), bool)
    for q in questions + STRUCTURED:
        vec = engine.embedder.encode_one(q)
        exact = floor.matrix @ vec
        kth = -np.partition(-exact, RECALL_K - 1)[RECALL_K - 1]
        rows, _ = a.search.top(a.search.scores(vec), RECALL_K, -1.0, everything)
        found.append(float(np.mean(exact[rows] >= kth - 1e-6)) if rows.size == RECALL_K else 0.0)
    return min(found)


COLD = """
import json, sys, time
import torch
torch.set_num_threads(1)
from core.embed import default_embedder
from core.query import QueryEngine
from core.store import StrokeStore
t = time.perf_counter()
embedder = default_embedder()
loaded = time.perf_counter() - t
t = time.perf_counter()
ans = QueryEngine(StrokeStore(sys.argv[1]), embedder).ask(sys.argv[2])
list(ans.results[:100])
print(json.dumps({"models_s": loaded, "first_question_s": time.perf_counter() - t}))
"""


def cold_start(path: Path, question: str) -> dict:
    """A fresh process: the embedder loaded, then its first question over the index at `path`."""
    out = subprocess.run([sys.executable, "-c", COLD, str(path), question], cwd=REPO, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def sql_baseline(index: StrokeStore, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        index.db.execute("SELECT s.*, m.name FROM strokes s JOIN matches m ON m.id=s.match_id "
                         "WHERE s.side='bottom' AND s.stroke='smash' AND s.zone=9 ORDER BY s.id").fetchall()
        times.append(time.perf_counter() - t)
    return times


def bench_queries(sources, embedder, sizes, repeats, tmp: Path) -> dict:
    ratios: dict[str, float] = {}
    for n in sizes:
        t = time.perf_counter()
        path = tmp / f"q{n}.sqlite"
        index = build_index(path, sources, n)
        built = time.perf_counter() - t
        engine = QueryEngine(index, embedder)
        t = time.perf_counter()
        engine.arrays()
        loaded = time.perf_counter() - t
        floor = Floor(engine)
        label = size_label(n)
        print(f"\n[queries over {len(engine.arrays()):,} strokes] (index built in {built:.1f} s, "
              f"arrays loaded in {loaded * 1e3:.0f} ms, {len(engine.arrays().texts)} distinct caption texts)")
        kinds = [("structured", STRUCTURED, ("structured",), lambda q: floor.fields(q, False)),
                 ("structured_near_misses", STRUCTURED, ("structured", "semantic"), lambda q: floor.fields(q, True)),
                 ("semantic", SEMANTIC, ("structured", "semantic"), floor.semantic)]
        kinds += [(k, qs, ("structured", "semantic"), lambda q: floor.fields(q, True)) for k, qs in COACH.items()]
        for kind, questions, paths, floor_of in kinds:
            asked, floors = timed(engine, questions, paths, floor_of, repeats)
            ratio = median_ms(asked) / median_ms(floors)
            ratios[f"{label}_{kind}_over_floor"] = round(ratio, 2)
            print(f"  {kind:<24} median {median_ms(asked):7.2f} ms (p95 {ms_p95(asked):7.2f})   "
                  f"floor {median_ms(floors):7.2f} ms   {ratio:4.2f}x (target <= 2)")
        ratios[f"{label}_semantic_recall_at_{RECALL_K}"] = round(recall_at_k(engine, floor, SEMANTIC), 4)
        print(f"  recall of the top {RECALL_K} against exact search over one vector per stroke: "
              f"{ratios[f'{label}_semantic_recall_at_{RECALL_K}']:.4f} (target >= 0.99)")
        print(f"  baseline: a structured filter in SQL  median {median_ms(sql_baseline(index, repeats * 6)):7.2f} ms")
        index.close()
        cold = cold_start(path, SEMANTIC[0])
        ratios[f"{label}_cold_first_question_s"] = round(cold["first_question_s"], 3)
        print(f"  fresh process: models loaded in {cold['models_s']:.2f} s, then its first question "
              f"{cold['first_question_s']:.3f} s (target < 1 s)")
    return ratios


def ms_p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))] * 1e3


# ---------------------------------------------------------------- model parts


def bench_model(model, video: Path, csv: Path, tmp: Path, generation, questions: int) -> dict:
    from core.video import probe

    info = probe(video)
    frames_total = info.num_frames
    # decode alone: every frame of the file, converted to RGB as the indexer does
    t = time.perf_counter()
    cap = cv2.VideoCapture(str(video))
    n = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        n += 1
    cap.release()
    decode_s = time.perf_counter() - t
    index = StrokeStore(tmp / "model.sqlite")
    t = time.perf_counter()
    match_id = add_match(index, csv, video=video, model=model, batch_size=8, settings=generation)
    index_s = time.perf_counter() - t
    strokes = len(index.strokes(match_id))
    print(f"\n[indexing {video.name}: {frames_total} frames at {info.width}x{info.height}, {strokes} strokes]")
    print(f"  index (decode + tokens + captions + SQLite) {frames_total / index_s:8.0f} frames/s ({index_s:.2f} s)")
    print(f"  baseline: decode alone                      {n / decode_s:8.0f} frames/s ({decode_s:.2f} s)")
    print(f"  ratio {decode_s / index_s:.2f} (target >= 0.5)")
    t = time.perf_counter()
    add_match(index, csv, video=video, model=model, batch_size=8, settings=generation)
    print(f"  re-index with the same model: {time.perf_counter() - t:.2f} s (cached tokens and captions)")

    engine = QueryEngine(index, None, model, settings=generation)
    a = engine.arrays()
    chunks = engine.rally_chunks(a, range(len(a)))[:4]
    qs = ["When does the bottom player hits a smash?", "Which shot lands in the backcourt?",
          "When is a net shot hits?", "At what time does the upper player execute a clear?"][:questions]
    cached, recomputed, tok_cached, tok_recomputed = [], [], [], []
    for q in qs:
        engine._tokens.clear()  # tokens read from disk for every question, as after a restart
        t = time.perf_counter()
        for c in chunks:
            engine._clip_tokens(a, c)
        tok_cached.append(time.perf_counter() - t)
        engine._tokens.clear()
        t = time.perf_counter()
        engine.ground_chunks(q, chunks)
        cached.append(time.perf_counter() - t)
        t = time.perf_counter()
        recompute_tokens(model, video, a, chunks)
        tok_recomputed.append(time.perf_counter() - t)
        t = time.perf_counter()
        tokens, mask = recompute_tokens(model, video, a, chunks)
        model.answer(tokens, mask, [q] * len(chunks), generation)
        recomputed.append(time.perf_counter() - t)
    k = sum(len(c) for c in chunks)
    print(f"\n[stage-2 path over {len(chunks)} chunks ({k} strokes), {len(qs)} questions, "
          f"{generation.num_beams} beams]")
    print(f"  answer from cached query tokens          {ms(cached)}")
    print(f"  baseline: clips + vision per question    {ms(recomputed)}")
    print(f"  speed-up {statistics.median(recomputed) / statistics.median(cached):.1f}x (target >= 10x)")
    print(f"  of which clip tokens: cached (from disk) {ms(tok_cached)}")
    print(f"  baseline: read clips + vision tower      {ms(tok_recomputed)}")
    print(f"  speed-up of the vision part {statistics.median(tok_recomputed) / statistics.median(tok_cached):.0f}x; "
          f"the rest is the shared answer generation")
    return {"indexing_over_decode": round(decode_s / index_s, 2),
            "stage2_cached_speedup": round(statistics.median(recomputed) / statistics.median(cached), 2)}


def recompute_tokens(model, video: Path, a, chunks: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The baseline: every chunk's clips read from the video and run through the vision again,
    padded to (chunks, K, Q, D) with their clip mask."""
    from core.processor import pad_chunks
    from core.video import read_window

    return pad_chunks([model.encode(model.processor.clips([read_window(video, int(a.frame[r]), backend="opencv")
                                                          for r in c])) for c in chunks])


def tiny_model(tmp: Path):
    from core.config import LoraSettings, ModelSettings
    from core.loader import build_model
    from core.tiny import TinySpec, build_tiny_base

    base = build_tiny_base(tmp / "tiny_base", TinySpec())
    return build_model(ModelSettings(base=str(base), num_frames=16, lora=LoraSettings.experiment(3)))


def render(data: Path, tmp: Path, rallies: str) -> tuple[Path, Path]:
    from train.replay import render_set

    set_csv = next(p for p in sorted(data.glob("*/set1.csv")))
    out_csv = render_set(set_csv, tmp / "render", rallies=rallies, seed=1)
    return out_csv.with_suffix(".mp4"), out_csv


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="adapter folder (default: a tiny random model of the product's shape)")
    p.add_argument("--data", type=Path, default=SHARED if SHARED.is_dir() else EXCERPT)
    p.add_argument("--sizes", default="1000,100000,1000000")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--rallies", default="1-30", help="rallies of the first set to render for the model figures")
    p.add_argument("--beams", type=int, default=5)
    p.add_argument("--skip-model", action="store_true")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a busy 2-core machine more threads spin against each other)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from core.config import GenerationSettings
    from core.embed import default_embedder

    print(f"torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}, data {args.data}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t = time.perf_counter()
        sources = load_sources(args.data)
        n = sum(len(s.rows) for s in sources)
        print(f"{n:,} strokes in {len(sources)} sets read in {time.perf_counter() - t:.1f} s")
        ratios = bench_queries(sources, default_embedder(), [int(x) for x in args.sizes.split(",")], args.repeats,
                               tmp)
        if args.skip_model:
            print(json.dumps(ratios))
            return 0
        if args.model:
            from core.loader import load_model

            model = load_model(args.model)
        else:
            model = tiny_model(tmp)
        video, csv = render(args.data, tmp, args.rallies)
        ratios.update(bench_model(model, video, csv, tmp, GenerationSettings(num_beams=args.beams), questions=4))
    print(json.dumps(ratios))  # the last line: every ratio, for a script to read
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
