"""The embedded demo: train the tiny demo model on CPU and render the demo match, in one command.

    python -m train.demo --out assets/demo-model --match-out assets/demo-match [--minutes 60]

The protocol: three splits of whole ShuttleSet matches (shuffled with --seed) and three disjoint
ranges of render seeds. Every --rallies-per-look rallies of a set are rendered as a video of
their own with their own look: look k of a split has render seed SPLIT_SEED*100000 + k (train 1,
validation 2, test 3), which draws its look family, frame rate (25/30/50) and size.
 - training: the wide families but one (`TRAIN_FAMILIES`) and the narrow broadcast look, sizes
   192x108 to 384x216; base pretraining reads every clip, the stage-1/2 recipes --stage-sets sets;
 - validation (other matches): the same families at 640x360; every choice reads it: the
   pretraining curves, and the stage recipes keep their best checkpoint on it (best/);
 - test (other matches again), read only for the card's figures once the recipe is fixed: the
   first --test-rallies rallies of each set at 640x360 and at 1280x720 in the training families,
   and once more at 640x360 in `HELDOUT_FAMILY`, a look family no training clip has.

Steps (each timed; the timings go into card.json):
 1. render and cut, in 2 processes (every stroke's clip in memory: 8 frames resized whole to 112x112).
 2. dataset: train/build_dataset.py's folders (mp4 clips + captions + questions, chunks of 5): the
    stage sets (train) with validation, and one folder per test condition.
 3. base: train/pretrain_base.py (phase A stroke heads, phase B captioning, phase C instruction
    tuning of the T5 on chunk questions, --negatives of them impossible) on all training clips.
 4. stage 1: `train.stage1.train(Stage1Config(base=<base>, experiment=4, ...))` (Q-Former
    cross-attention LoRA r=8), best checkpoint on validation.
 5. stage 2: `train.stage2.train(Stage2Config(init=<stage 1 best>, negative_share=--negatives, ...))`
    (LLM LoRA "all", chunks of 5), best checkpoint on validation.
 6. evaluation of both stages (train/evaluate.py) on training, validation and each test
    condition, beside the majority-class baselines.
 7. assets: the stage-2 adapters + the base (as base/) in --out, card.json, the measured runs
    (assets/demo-model/runs.json) and the model card (train/demo_card.md filled in from them), and the
    demo match (a few rallies of a test match at 480x270, a test seed) in --match-out.

The phases share the --minutes budget left after steps 1-2; the recipes stop at a step count
estimated from assumed throughputs (--stage1-clips-per-s, --stage2-questions-per-s). Work files
go to --work (default runs/demo).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import multiprocessing as mp
import os
import shutil
import string
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from core.annotations import load_shuttleset_set
from core.device import set_threads
from core.loader import load_model, read_manifest
from core.model import StrokeModel
from train.clip_cache import ClipSet, cut_set
from train.config import Stage1Config, Stage2Config
from train.pretrain_base import PretrainConfig, pretrain
from train.render.style import NARROW
from train.replay import render_set

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHUTTLESET = ROOT.parent / "shared" / "data" / "shuttleset"
SPLITS = ("train", "val", "test")
SPLIT_SEEDS = {"train": 1, "val": 2, "test": 3}
LOOK_SEEDS = 100_000  # look k of a split: SPLIT_SEEDS[split] * LOOK_SEEDS + k
TRAIN_FAMILIES = (NARROW, "arena", "high", "low", "wide")
HELDOUT_FAMILY = "offside"  # no training or validation clip has it
TRAIN_SIZES = {(192, 108): 0.35, (256, 144): 0.3, (320, 180): 0.2, (384, 216): 0.15}  # size: share of looks
EVAL_SIZE, TEST_SIZES = (640, 360), ((640, 360), (1280, 720))
FPS = {25: 0.5, 30: 0.3, 50: 0.2}
DEMO_MATCH_SIZE = (480, 270)
DEMO_MATCH_SEED = SPLIT_SEEDS["test"] * LOOK_SEEDS + LOOK_SEEDS - 1  # the test range's last seed
NUM_FRAMES, CLIP_SIZE = 8, 112
# Shares of the training budget left after data preparation and the evaluation reserve.
SHARES = {"phase_a": 0.33, "phase_b": 0.34, "phase_c": 0.21, "stage1": 0.05, "stage2": 0.07}
EVAL_RESERVE_S = 200
MIN_TRAIN_S = 60.0  # the phases train at least this long, even when rendering took the whole budget
TARGETS = {"stage1": {"side": 0.95, "stroke": 0.70, "zone": 0.70},
           "stage2": {"f1": 0.70, "impossible_accuracy": 0.80}}
CARD_TEMPLATE = Path(__file__).with_name("demo_card.md")  # the model card's text; card.json fills it in
RUNS_FILE = "runs.json"  # measured runs of this command, beside card.json; the card's runs table
RUNS_ABOUT = ("Runs of `python -m train.demo` under this protocol, each appended by the run itself; the test "
              "figures at each size and phase A/B/C steps are from each run's card.json. `shipped` marks the run "
              "whose model is in this folder.")
BASELINE_LABEL = "previous demo model"  # how the card names --baseline-model's rows
LOCATION_OPTIONS = ("--work", "--out", "--match-out", "--render-cache", "--shuttleset", "--baseline-model")
PLAN_FILE = "looks.json"  # beside a folder's renders: the looks they are, so a later run can reuse them
PROTOCOL = 2  # runs.json keeps the runs measured under this protocol (splits, seeds, test conditions)
SHIPPED_RUNS = ROOT / "assets" / "demo-model" / RUNS_FILE


# ---------------------------------------------------------------- data


def match_sets(shuttleset: Path) -> dict[str, list[Path]]:
    """match folder -> its set files (matches without set files are skipped)."""
    out = {}
    for folder in sorted(p for p in shuttleset.iterdir() if p.is_dir()):
        sets = sorted(folder.glob("set*.csv"))
        if sets:
            out[folder.name] = sets
    return out


def choose_sets(matches: dict[str, list[Path]], counts: dict[str, int], seed: int) -> dict[str, list[Path]]:
    """Sets for each split from whole matches of their own: test first, then validation, then training."""
    order = sorted(matches)
    np.random.default_rng(seed).shuffle(order)
    chosen: dict[str, list[Path]] = {split: [] for split in SPLITS}
    fill = iter(("test", "val", "train"))
    split = next(fill)
    for m in order:
        while split is not None and len(chosen[split]) >= counts[split]:
            split = next(fill, None)
        if split is None:
            break
        chosen[split] += matches[m][: counts[split] - len(chosen[split])]
    return chosen


@dataclass(frozen=True)
class Look:
    """Some rallies of a set, rendered as one video with their own look (family, size, frame rate)."""

    set_csv: Path
    rallies: tuple[int, ...]
    seed: int
    family: str
    size: tuple[int, int]
    fps: float

    @property
    def video(self) -> str:
        return f"{self.set_csv.parent.name}~{self.set_csv.stem}r{self.rallies[0]:02d}"


def rally_numbers(set_csv: Path) -> list[int]:
    with open(set_csv, newline="", encoding="utf-8") as f:
        return sorted({int(float(r["rally"])) for r in csv.DictReader(f) if r.get("rally", "").strip()})


def plan_looks(sets: list[Path], split: str, seed: int, per_look: int, families: tuple[str, ...],
               sizes: dict[tuple[int, int], float], max_rallies: int | None = None) -> list[Look]:
    """Every `per_look` rallies of each set (the first `max_rallies`) get a look of their own: look k
    of the split has render seed seed*LOOK_SEEDS + k, which also draws its family, size and frame
    rate, so the splits' seeds never meet."""
    looks = []
    for set_csv in sets:
        rallies = rally_numbers(set_csv)[:max_rallies]
        for i in range(0, len(rallies), per_look):
            k = seed * LOOK_SEEDS + len(looks)
            rng = np.random.default_rng([k, 7])
            size = list(sizes)[rng.choice(len(sizes), p=np.array(list(sizes.values())) / sum(sizes.values()))]
            fps = float(rng.choice(list(FPS), p=list(FPS.values())))
            looks.append(Look(set_csv, tuple(rallies[i:i + per_look]), k, str(rng.choice(families)), size, fps))
    log.info("%s: %d looks of %d sets", split, len(looks), len(sets))
    return looks


def plan_splits(sets: dict[str, list[Path]], per_look: int, max_rallies: dict[str, int]) -> dict[str, list[Look]]:
    """The looks of each split of `sets`: training in TRAIN_SIZES, validation and test (their first
    `max_rallies` rallies) at EVAL_SIZE, all in the training families."""
    return {split: plan_looks(group, split, SPLIT_SEEDS[split], per_look, TRAIN_FAMILIES,
                              TRAIN_SIZES if split == "train" else {EVAL_SIZE: 1.0}, max_rallies.get(split))
            for split, group in sets.items()}


def _render_looks(job: tuple) -> tuple[list[Path], ClipSet]:
    """Render some looks into a private folder (match.csv is rewritten per render), or find them
    rendered in `out_dir` (render False), and cut their clips."""
    looks, out_dir, render = job
    cv2.setNumThreads(1)
    parts, csvs = [], []
    for look in looks:
        # Training reads only the clips at the hit frames: no sound and no cut-aways keep the
        # render inside the build's budget (the demo match itself is a full broadcast render).
        rendered = (render_set(look.set_csv, out_dir, rallies=look.rallies, seed=look.seed, size=look.size,
                               fps=look.fps, family=look.family, video=look.video, cutaways=False, audio=False)
                    if render else out_dir / look.video / f"{look.set_csv.stem}.csv")
        csvs.append(rendered)
        parts.append(cut_set(rendered, rendered.with_suffix(".mp4"), NUM_FRAMES, CLIP_SIZE))
    return csvs, ClipSet.concat(parts)


def _plan(looks: list[Look]) -> list[dict]:
    return [{**asdict(k), "set_csv": str(k.set_csv), "rallies": list(k.rallies), "size": list(k.size)} for k in looks]


def rendered_already(looks: list[Look], out_dir: Path) -> bool:
    """Whether out_dir holds a finished render of exactly these looks (renders are deterministic)."""
    path = out_dir / PLAN_FILE
    return path.is_file() and json.loads(path.read_text()) == _plan(looks)


def render_looks(looks: list[Look], out_dir: Path, processes: int = 2) -> tuple[list[Path], ClipSet]:
    """Render looks (`processes` at a time, in runs of consecutive looks) into one ShuttleSet-layout
    folder, and cut their clips; every look is a video of its own, so the runs' folders merge
    without a clash. A folder that already holds these looks (`rendered_already`) is only cut."""
    per_job = max(1, math.ceil(len(looks) / (4 * processes)))
    runs = [looks[i:i + per_job] for i in range(0, len(looks), per_job)]
    cached = rendered_already(looks, out_dir)
    if cached:
        log.info("%s holds these %d looks: cutting their clips", out_dir, len(looks))
    else:
        shutil.rmtree(out_dir, ignore_errors=True)
    parts_dir = out_dir / "_parts"
    jobs = [(run, out_dir if cached else parts_dir / str(i), not cached) for i, run in enumerate(runs)]
    with mp.get_context("spawn").Pool(processes) as pool:
        results = pool.map(_render_looks, jobs)
    clips = ClipSet.concat([r[1] for r in results])
    if cached:
        return [c for r in results for c in r[0]], clips
    csvs = []
    for (_, part, _), (rendered, _) in zip(jobs, results):
        for video in {c.parent.name for c in rendered}:
            shutil.move(str(part / video), str(out_dir / video))
        csvs += [out_dir / c.parent.name / c.name for c in rendered]
    merge_match_files([job[1] for job in jobs], out_dir)
    shutil.rmtree(parts_dir, ignore_errors=True)
    (out_dir / PLAN_FILE).write_text(json.dumps(_plan(looks)))
    return csvs, clips


def merge_match_files(parts: list[Path], out_dir: Path) -> None:
    """match.csv and homography.csv of every part folder, as one file each in out_dir."""
    for name in ("match.csv", "homography.csv"):
        header, rows = None, []
        for part in parts:
            with open(part / name, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                header = header or reader.fieldnames
                rows += list(reader)
        with open(out_dir / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)


def build_stage_data(csvs: dict[str, list[Path]], videos: Path, out: Path) -> dict:
    """train/build_dataset.py's folder from rendered sets: split -> their set files (a split's
    videos named for it; "train" may be absent)."""
    from train.build_dataset import build
    from train.build_dataset import parser as build_parser

    # only videos with a captioned stroke (the builder refuses a named match it has no caption of)
    argv = ["--annotations", *map(str, [c for split in SPLITS for c in csvs.get(split, [])]), "--videos", str(videos),
            "--out", str(out), "--no-progress"]
    for split in ("val", "test"):
        names = sorted({c.parent.name for c in csvs.get(split, [])
                        if any(s.caption is not None for s in load_shuttleset_set(c).strokes)})
        if names:
            argv += [f"--{split}-matches", *names]
    return build(build_parser().parse_args(argv))


def thin_split(data: Path, split: str, limit: int) -> None:
    """Keep an evenly spaced `limit` of a split's captions and questions (the recipes' validation
    reads the first ones, which would all come from one set)."""
    for name in (f"{split}.json", f"qa_{split}.json"):
        path = data / name
        items = json.loads(path.read_text())
        path.write_text(json.dumps(evenly(items, limit)))


# ---------------------------------------------------------------- recipes and evaluation


def evenly(items: list, n: int) -> list:
    if n <= 0 or len(items) <= n:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def evaluate_stage1(model: StrokeModel, data: Path, split: str, limit: int, train_data: Path) -> dict:
    """Captions of an evenly spaced `limit` of a split's strokes, their fields against the
    annotations, beside the majority class of `train_data`'s training captions."""
    from train.data import load_captions, load_references
    from train.evaluate import evaluate_captions, generation_settings

    items = evenly(load_captions(data, split), limit)
    report = evaluate_captions(model, items, load_references(data, split, items), generation_settings(1), 32,
                               load_captions(train_data, "train", check_files=False), data_dir=data)
    m = report["metrics"]
    return {"n": len(items), "field_accuracy": m["field_accuracy"], "bleu4": m["bleu4"], "cider": m["cider"],
            "exact_match": m["exact_match"], "majority_baseline": report["majority_baseline"],
            "confusion_stroke": report["confusion_stroke"],
            "examples": [(s["prediction"], s["references"][0]) for s in report["samples"][:10]]}


def evaluate_stage2(model: StrokeModel, data: Path, split: str, limit: int, train_data: Path) -> dict:
    """Answers to an evenly spaced `limit` of a split's questions, beside the most common
    training answer of `train_data` given to every question."""
    from core.prompts import parse_answer
    from train import metrics as M
    from train.data import load_questions
    from train.evaluate import evaluate_questions, generation_settings, gold_indices

    items = evenly(load_questions(data, split), limit)
    report = evaluate_questions(model, items, generation_settings(2), 16, data)
    train_answers = Counter(it["answer"] for it in load_questions(train_data, "train", check_files=False))
    constant = train_answers.most_common(1)[0][0]
    golds = [gold_indices(it) for it in items]
    baseline = M.grounding_metrics([parse_answer(constant)] * len(items), golds)
    keys = ("f1", "hit1", "exact", "precision", "recall", "impossible_accuracy", "accuracy", "n_answerable",
            "n_impossible")
    return {"n": len(items), **{k: report["metrics"][k] for k in keys},
            "majority_baseline": {"answer": constant, **{k: baseline[k] for k in keys}},
            "examples": [(s["question"], s["answer"], s["gold"]) for s in report["samples"][:8]]}


# ---------------------------------------------------------------- the whole run


class Clock:
    def __init__(self, minutes: float):
        self.t0, self.budget, self.timings = time.perf_counter(), minutes * 60, {}

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)

    def done(self, phase: str, since: float) -> None:
        self.timings[phase] = round(time.perf_counter() - since, 1)
        log.info("phase %s: %.1f s (total %.1f s)", phase, self.timings[phase], time.perf_counter() - self.t0)


def stage_configs(args, base: Path, data: Path, work: Path, budget_s: float) -> tuple[Stage1Config, Stage2Config]:
    """The stage-1 and stage-2 recipes' configs; their steps come from the budget shares and the
    assumed throughputs. Each validates about five times and keeps its best checkpoint; stage 2
    starts from stage 1's best."""
    s1_steps = max(2, int(budget_s * SHARES["stage1"] * args.stage1_clips_per_s / args.stage1_batch))
    s2_steps = max(2, int(budget_s * SHARES["stage2"] * args.stage2_questions_per_s / args.stage2_batch))
    common = dict(data=str(data), precision="fp32", device="cpu", num_workers=0, epochs=50, save_every=0,
                  keep_checkpoints=1, log_every=10, progress=False, seed=args.seed)
    return (Stage1Config(base=str(base), out=str(work / "stage1"), experiment=4, lr=args.stage1_lr, warmup_steps=20,
                         batch_size=args.stage1_batch, max_steps=s1_steps, schedule_steps=s1_steps,
                         eval_every=max(1, s1_steps // 5), num_frames=NUM_FRAMES, **common),
            Stage2Config(init=str(work / "stage1" / "best"), out=str(work / "stage2"), lr=2e-3,
                         batch_size=args.stage2_batch, grad_accum=1, llm_r=args.stage2_llm_r,
                         llm_alpha=2 * args.stage2_llm_r, negative_share=args.negatives, max_steps=s2_steps,
                         schedule_steps=s2_steps, eval_every=max(1, s2_steps // 5), **common))


def renders_for_test(looks: list[Look]) -> dict[str, list[Look]]:
    """The test renders: the test looks at each test size, and at 640x360 in the held-out family."""
    out = {f"test_{w}x{h}": [replace(k, size=(w, h)) for k in looks] for w, h in TEST_SIZES}
    out[f"test_{HELDOUT_FAMILY}_{EVAL_SIZE[0]}x{EVAL_SIZE[1]}"] = [replace(k, size=EVAL_SIZE, family=HELDOUT_FAMILY)
                                                                   for k in looks]
    return out


def _split_info(sets: list[Path], looks: list[Look]) -> dict:
    seeds = [k.seed for k in looks]
    count = lambda values: dict(sorted(Counter(map(str, values)).items()))  # noqa: E731
    return {"matches": sorted({s.parent.name for s in sets}), "sets": [f"{s.parent.name}/{s.name}" for s in sets],
            "looks": len(looks), "render_seeds": [min(seeds), max(seeds)] if seeds else [],
            "families": count([k.family for k in looks]), "sizes": count([f"{w}x{h}" for w, h in (k.size for k in looks)]),
            "fps": count([int(k.fps) for k in looks])}


def run(args) -> dict:
    clock = Clock(args.minutes)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sets = choose_sets(match_sets(Path(args.shuttleset)),
                       {"train": args.train_sets, "val": args.val_sets, "test": args.test_sets}, args.seed)
    looks = plan_splits(sets, args.rallies_per_look, {"val": args.val_rallies, "test": args.test_rallies})

    t = time.perf_counter()
    root = Path(args.render_cache) if args.render_cache else work
    tests = renders_for_test(looks["test"])
    folders = {"train": root / "renders", "val": root / "renders_val", **{n: root / f"renders_{n}" for n in tests}}
    plans = {"train": looks["train"], "val": looks["val"], **tests}
    reused = sorted(name for name, folder in folders.items() if rendered_already(plans[name], folder))
    rendered = {name: render_looks(group, folders[name], args.processes) for name, group in plans.items()}
    (train_csvs, train_clips), (val_csvs, val_clips) = rendered["train"], rendered["val"]
    test_csvs = {name: rendered[name][0] for name in tests}
    del rendered  # the test clips are read again from the dataset folders
    renders = folders["train"]  # training and validation looks: one videos folder for the dataset builder
    clock.done("render_and_cut", t)

    t = time.perf_counter()
    for c in val_csvs:  # other matches: no clash
        shutil.copytree(c.parent, renders / c.parent.name, dirs_exist_ok=True)
    merge_match_files([renders, folders["val"]], renders)
    data = work / "data"
    stage_sets = set(evenly(sets["train"], args.stage_sets))
    stage_train = [c for c, k in zip(train_csvs, looks["train"]) if k.set_csv in stage_sets]
    manifest = build_stage_data({"train": stage_train, "val": [renders / c.parent.name / c.name for c in val_csvs]},
                                renders, data)
    thin_split(data, "val", args.val_limit)
    test_data = {name: work / f"data_{name}" for name in tests}
    for name, csvs in test_csvs.items():
        build_stage_data({"test": csvs}, folders[name], test_data[name])
    clock.done("dataset", t)

    budget = max(args.min_train_s, clock.left() - EVAL_RESERVE_S - 30)
    t = time.perf_counter()
    cfg = PretrainConfig(minutes_a=budget * SHARES["phase_a"] / 60, minutes_b=budget * SHARES["phase_b"] / 60,
                         minutes_c=budget * SHARES["phase_c"] / 60, steps_a=args.max_steps, steps_b=args.max_steps,
                         steps_c=args.max_steps, negatives=args.negatives, tubelet=args.tubelet, heads_b=args.heads_b,
                         seed=args.seed,
                         eval_limit=args.eval_limit_base, device="cpu")  # the build's figures are CPU figures
    base = work / "base"
    base_summary = pretrain(train_clips, val_clips.subset(evenly(list(range(len(val_clips))), args.eval_limit_base)),
                            base, cfg)
    clock.done("pretrain_base", t)
    n_train_clips, n_val_clips = len(train_clips), len(val_clips)
    del train_clips, val_clips

    from train import stage1, stage2

    cfg1, cfg2 = stage_configs(args, base, data, work, budget)
    t = time.perf_counter()
    stage1.train(cfg1)
    clock.done("stage1", t)
    t = time.perf_counter()
    stage2.train(cfg2)
    clock.done("stage2", t)

    t = time.perf_counter()
    final = work / "stage2" / "best"
    conditions = {"train": (data, "train", args.eval_limit_train), "val": (data, "val", args.val_limit),
                  **{name: (folder, "test", args.eval_limit_stage1) for name, folder in test_data.items()}}
    results = evaluate_conditions(final, conditions, data)
    # another model on the same renders (the demo model this recipe replaces): validation and test only
    baseline = (evaluate_conditions(Path(args.baseline_model), {k: v for k, v in conditions.items() if k != "train"},
                                    data) if args.baseline_model else None)
    clock.done("evaluate", t)

    t = time.perf_counter()
    demo_match = render_demo_match(sets["test"][0], Path(args.match_out), DEMO_MATCH_SEED, args.demo_rallies)
    runs = json.loads(SHIPPED_RUNS.read_text())["runs"] if SHIPPED_RUNS.is_file() else []
    out = assemble(final, work / "base", Path(args.out))  # --out may be the shipped folder: runs read first
    clock.done("assets", t)
    card = {
        "model": "shuttle-lens tiny demo model",
        "command": "python -m train.demo " + " ".join(args.argv),
        "shuttleset": os.path.relpath(Path(args.shuttleset).resolve(), ROOT),  # relative to the repository
        "budget_min": args.minutes, "seed": args.seed, "split_seeds": SPLIT_SEEDS, "look_seeds": LOOK_SEEDS,
        "rallies_per_look": args.rallies_per_look, "heldout_family": HELDOUT_FAMILY, "renders_reused": reused,
        "clip": {"frames": NUM_FRAMES, "size": CLIP_SIZE, "crop": False},
        "splits": {split: _split_info(sets[split], looks[split]) for split in SPLITS},
        "test_conditions": {name: _split_info(sets["test"], group) for name, group in tests.items()},
        "stage_training_sets": [f"{s.parent.name}/{s.name}" for s in sets["train"] if s in stage_sets],
        "counts": {"train_clips": n_train_clips, "val_clips": n_val_clips,
                   "stage_data": {"captions": manifest["captions"], "questions": manifest["questions"]}},
        "pretrain": {k: base_summary[k] for k in ("steps_a", "steps_b", "steps_c", "phase_a_s", "phase_b_s", "phase_c_s",
                                                    "config")},
        "recipes": {"stage1_steps": cfg1.max_steps, "stage1_batch": cfg1.batch_size, "stage2_steps": cfg2.max_steps,
                    "stage2_batch": cfg2.batch_size, "stage1_best": _best_step(work / "stage1"),
                    "stage2_best": _best_step(work / "stage2")},
        "timings_s": {**clock.timings, "total": round(time.perf_counter() - clock.t0, 1)},
        "results": results,
        "baseline": {"model": args.baseline_model, "results": baseline} if baseline else None,
        "demo_match": demo_match,
        "targets": TARGETS,
    }
    (out / "card.json").write_text(json.dumps(card, indent=1, ensure_ascii=False))
    runs = [{k: v for k, v in r.items() if k != "shipped"} for r in runs if r.get("protocol") == PROTOCOL]
    (out / RUNS_FILE).write_text(json.dumps({"about": RUNS_ABOUT, "runs": runs + [{**run_record(card), "shipped": True}]},
                                            indent=1))
    for name, src in (("curves_base.jsonl", base / "metrics.jsonl"), ("curves_stage1.jsonl", work / "stage1" / "metrics.jsonl"),
                      ("curves_stage2.jsonl", work / "stage2" / "metrics.jsonl")):
        if src.is_file():
            shutil.copy(src, out / name)
    write_model_card(out)
    return card


def evaluate_conditions(model: Path, conditions: dict[str, tuple[Path, str, int]], train_data: Path) -> dict:
    """Both stages of `model` on each condition: name -> (dataset folder, split, captions; half as
    many questions). Captions come from the model as shipped (a stage-2 model, its LLM LoRA off)."""
    loaded, results = load_model(model, device="cpu"), {}
    for name, (folder, split, limit) in conditions.items():
        results[name] = {"stage1": evaluate_stage1(loaded, folder, split, limit, train_data),
                         "stage2": evaluate_stage2(loaded, folder, split, limit // 2, train_data)}
        log.info("%s %s: %s", model, name, _headline(results[name]))
    return results


def _best_step(run_dir: Path) -> int | None:
    """The step of a recipe run's best/ checkpoint (from its manifest's training record)."""
    path = run_dir / "best" / "manifest.json"
    return json.loads(path.read_text()).get("train", {}).get("step") if path.is_file() else None


def render_demo_match(set_csv: Path, out: Path, seed: int, rallies: str) -> dict:
    """A few rallies of a test set at 480x270, a full broadcast (sound, cut-aways), ShuttleSet
    layout (<video>/set1.csv + .mp4)."""
    shutil.rmtree(out, ignore_errors=True)
    rendered = render_set(set_csv, out, rallies=rallies, seed=seed, size=DEMO_MATCH_SIZE)
    strokes = load_shuttleset_set(rendered).strokes
    return {"set": f"{set_csv.parent.name}/{set_csv.name}", "rallies": rallies, "strokes": len(strokes),
            "size": list(DEMO_MATCH_SIZE), "seed": seed, "family": NARROW}


def assemble(adapters: Path, base_dir: Path, out: Path) -> Path:
    """The stage-2 adapters with the base as base/; the manifest names the base relative to itself."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copy(adapters / "adapters.safetensors", out / "adapters.safetensors")
    base = out / "base"
    shutil.copytree(base_dir, base, ignore=shutil.ignore_patterns("metrics.jsonl"))
    manifest = read_manifest(adapters)
    manifest["base_model"] = base.name  # core.loader resolves it against the adapter folder
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


# ---------------------------------------------------------------- model card


def _pct(x, digits: int = 1) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f} %"


class _CardFormatter(string.Formatter):
    """str.format with two more specs for shares: `:pct` (0.903 -> 90.3 %) and `:pct0` (0.45 -> 45 %)."""

    def format_field(self, value, format_spec: str) -> str:
        if format_spec in ("pct", "pct0"):
            return _pct(value, 1 if format_spec == "pct" else 0)
        return super().format_field(value, format_spec)


def _curve_rows(path: Path, keys: tuple[str, ...], at_most: int | None = None) -> list[str]:
    """A markdown table of a metrics.jsonl's records that have any of `keys` (every k-th one and the
    last, to keep at most about `at_most` rows)."""
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if any(k in r for k in keys)]
    every = max(1, math.ceil(len(rows) / at_most)) if at_most else 1
    rows = rows[::every] + ([rows[-1]] if rows and (len(rows) - 1) % every else [])
    out = ["| " + " | ".join(("phase", "step", "loss", *keys)) + " |", "|" + "---|" * (3 + len(keys))]
    for r in rows:
        vals = [f"{r[k]:.3f}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys]
        out.append(f"| {r.get('phase', '')} | {r['step']} | {r.get('loss', float('nan')):.3f} | " + " | ".join(vals) + " |")
    return out


def headline(result: dict) -> dict[str, float]:
    """The five target figures of one condition's results."""
    return {**{f: result["stage1"]["field_accuracy"][f] for f in ("side", "stroke", "zone")},
            **{k: result["stage2"][k] for k in ("f1", "impossible_accuracy")}}


def _headline(result: dict) -> str:
    return " ".join(f"{k} {v:.3f}" for k, v in headline(result).items())


def _targets(targets: dict) -> dict[str, float]:
    return {k: v for stage in targets.values() for k, v in stage.items()}


def _status(results: dict, targets: dict) -> str:
    """Per test size: the targets met, and by how much each missed one fell short."""
    lines = []
    for name in (f"test_{w}x{h}" for w, h in TEST_SIZES):
        got = headline(results[name])
        missed = [f"{k} {_pct(got[k])} ({100 * (v - got[k]):.1f} points short)" for k, v in _targets(targets).items()
                  if got[k] < v]
        met = [k for k, v in _targets(targets).items() if got[k] >= v]
        lines.append(f"- {_condition(name)}: met {', '.join(met) or 'none'}"
                     + (f"; missed {', '.join(missed)}." if missed else "; every target met."))
    return "\n".join(lines)


def _condition(name: str) -> str:
    if name in ("train", "val"):
        return {"train": "training", "val": "validation"}[name]
    *_, size = name.split("_")
    return f"test, {HELDOUT_FAMILY} family, {size}" if HELDOUT_FAMILY in name else f"test {size}"


def _results_table(card: dict) -> str:
    results, targets = card["results"], _targets(card["targets"])
    head = ("condition", "strokes / questions", "side", "stroke type", "zone", "stage-2 F1", "impossible")
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(label: str, r: dict) -> str:
        return (f"| {label} | {r['stage1']['n']} / {r['stage2']['n']} | "
                + " | ".join(_pct(v) for v in headline(r).values()) + " |")

    for name, r in results.items():
        bold = name.startswith("test_") and HELDOUT_FAMILY not in name
        rows.append(row(f"**{_condition(name)}**" if bold else _condition(name), r))
    for name, r in (card["baseline"]["results"] if card.get("baseline") else {}).items():
        rows.append(row(f"{BASELINE_LABEL}: {_condition(name)}", r))
    base = results[f"test_{TEST_SIZES[0][0]}x{TEST_SIZES[0][1]}"]
    mb1, mb2 = base["stage1"]["majority_baseline"], base["stage2"]["majority_baseline"]
    rows.append("| majority class / answer (test 640x360) | | " + " | ".join(
        [f"{_pct(mb1[f]['accuracy'])} ({mb1[f]['value']})" for f in ("side", "stroke", "zone")]
        + [_pct(mb2["f1"]), _pct(mb2["impossible_accuracy"])]) + " |")
    rows.append("| target (test) | | " + " | ".join(f">= {_pct(v)}" for v in targets.values()) + " |")
    return "\n".join(rows)


def _protocol_table(card: dict) -> str:
    head = ("split", "matches", "sets", "looks (rallies)", "render seeds", "families", "sizes", "frame rates")
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    spans = {**{k: card["splits"][k] for k in ("train", "val")}, **card["test_conditions"]}
    for name, sp in spans.items():
        seeds = "–".join(map(str, sp["render_seeds"]))
        fmt = lambda d: ", ".join(f"{k} ({v})" for k, v in d.items())  # noqa: E731
        rows.append(f"| {_condition(name)} | {len(sp['matches'])} | {len(sp['sets'])} | {sp['looks']} | {seeds} | "
                    f"{fmt(sp['families'])} | {fmt(sp['sizes'])} | {fmt(sp['fps'])} |")
    return "\n".join(rows)


def _runs_table(runs: list[dict], targets: dict) -> str:
    head = ("run", "wall", "phase A / B / C steps", "seeds", "side", "stroke", "zone", "F1", "impossible",
            "targets met")
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    targets = _targets(targets)
    for r in runs:
        label = f"`{r['options']}`" + (" (this model)" if r.get("shipped") else "")
        for name, got in (("validation", r["val"]), *((f"test {size}", v) for size, v in r["test"].items())):
            met = sum(got[k] >= v for k, v in targets.items())
            rows.append(f"| {label} | {r['wall_min']:.1f} min | {' / '.join(map(str, r['steps']))} | {name} | "
                        + " | ".join(_pct(got[k]) for k in targets) + f" | {met} of {len(targets)} |")
    return "\n".join(rows)


def run_record(card: dict) -> dict:
    """This run's line of runs.json: its options, wall time, steps, and the validation and test
    figures (runs are compared on validation)."""
    words, options = card["command"].removeprefix("python -m train.demo ").split(), []
    while words:  # the recipe's options: not where its files went
        word = words.pop(0)
        if word in LOCATION_OPTIONS:
            words.pop(0)
        else:
            options.append(word)
    options = " ".join(options)
    return {"protocol": PROTOCOL, "options": options, "wall_min": round(card["timings_s"]["total"] / 60, 1),
            "steps": [card["pretrain"][f"steps_{p}"] for p in "abc"],
            "val": {k: round(v, 3) for k, v in headline(card["results"]["val"]).items()},
            "test": {f"{w}x{h}": {k: round(v, 3) for k, v in headline(card["results"][f"test_{w}x{h}"]).items()}
                     for w, h in TEST_SIZES}}


def _gap(results: dict) -> str:
    """Each stage-1 field on training / validation / test 640x360 seeds."""
    names = ("train", "val", f"test_{EVAL_SIZE[0]}x{EVAL_SIZE[1]}")
    return ", ".join(f"{f} " + " / ".join(_pct(headline(results[n])[f]) for n in names) for f in ("side", "stroke", "zone"))


def _reuse(card: dict) -> str:
    if not card.get("renders_reused"):
        return "This run rendered every look itself."
    which = ("every split" if len(card["renders_reused"]) == len(card["test_conditions"]) + 2
             else ", ".join(_condition(n) for n in card["renders_reused"]))
    return (f"This run reused the renders of an earlier run of the same looks (`--render-cache`; renders are "
            f"deterministic) for {which}, so its `--minutes {card['budget_min']:g}` went "
            "to cutting clips and training; a run without the cache spent 25.3 min rendering and cutting these "
            "looks on this machine, so `--minutes 60` without a cache gives training the same time.")


def _choice(runs: list[dict]) -> str:
    """Each run's mean of the five figures on validation: the rule that picks the shipped run."""
    return "; ".join(f"`{r['options']}` {_pct(sum(r['val'].values()) / len(r['val']))}" for r in runs)


def card_fields(out: Path) -> dict:
    """What train/demo_card.md quotes: card.json as it is, the manifest's LoRA, and what is derived
    from them, the learning curves and runs.json."""
    card = json.loads((out / "card.json").read_text())
    lora = json.loads((out / "manifest.json").read_text())["lora"]
    targets, t = card["targets"], card["timings_s"]
    runs = json.loads((out / RUNS_FILE).read_text())["runs"]

    def curves(name: str, keys: tuple[str, ...], at_most: int | None = None) -> str:
        return "\n".join(_curve_rows(out / name, keys, at_most))

    return dict(
        card=card, lora=lora, targets=targets, heldout_family=HELDOUT_FAMILY,
        n={k: len(card["splits"][k]["sets"]) for k in SPLITS} | {"stage_training_sets": len(card["stage_training_sets"])},
        minutes=t["total"] / 60, timings=", ".join(f"{k} {v:.0f} s" for k, v in t.items() if k != "total"),
        qformer_parts="+".join(lora["qformer_parts"]),
        architecture=", ".join(f"{k} {v}" for k, v in card["pretrain"]["config"]["spec"].items()),
        protocol=_protocol_table(card), results=_results_table(card), gap=_gap(card["results"]), reuse=_reuse(card),
        curves_base=curves("curves_base.jsonl", ("heldout_side", "heldout_stroke", "heldout_zone", "train_side",
                                                 "train_stroke", "train_zone")),
        curves_c=curves("curves_base.jsonl", ("heldout_f1", "heldout_impossible", "train_f1", "train_impossible")),
        curves_stage1=curves("curves_stage1.jsonl", ("samples_per_s",), 12),
        curves_stage2=curves("curves_stage2.jsonl", ("samples_per_s",), 12),
        status=_status(card["results"], targets),
        s2_epochs=card["recipes"]["stage2_steps"] * card["recipes"]["stage2_batch"]
        / card["counts"]["stage_data"]["questions"]["train"],
        runs=_runs_table(runs, targets), choice=_choice(runs))


def write_model_card(out: Path) -> Path:
    """out/README.md: train/demo_card.md filled in from out's card.json, manifest, curves and runs.json."""
    text = _CardFormatter().format(CARD_TEMPLATE.read_text(), **card_fields(out))
    (out / "README.md").write_text(text)
    return out / "README.md"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="assets/demo-model", help="demo model folder to write")
    p.add_argument("--match-out", default="assets/demo-match", help="demo match folder to write")
    p.add_argument("--shuttleset", default=str(DEFAULT_SHUTTLESET), help="ShuttleSet folder (annotations)")
    p.add_argument("--work", default="runs/demo", help="work folder (renders, dataset, runs)")
    p.add_argument("--minutes", type=float, default=60.0, help="wall-clock budget of the whole run")
    p.add_argument("--train-sets", type=int, default=64)
    p.add_argument("--val-sets", type=int, default=4)
    p.add_argument("--test-sets", type=int, default=4)
    p.add_argument("--stage-sets", type=int, default=12, help="training sets in the stage-1/2 dataset folder")
    p.add_argument("--rallies-per-look", type=int, default=1, help="rallies rendered with one look")
    p.add_argument("--val-rallies", type=int, default=12, help="first rallies of each validation set rendered")
    p.add_argument("--test-rallies", type=int, default=12, help="first rallies of each test set rendered")
    p.add_argument("--seed", type=int, default=0, help="match choice and training seed")
    p.add_argument("--processes", type=int, default=2, help="render processes")
    p.add_argument("--baseline-model", default=None,
                   help="also evaluate this model (e.g. the demo model being replaced) on validation and test")
    p.add_argument("--render-cache", default=None,
                   help="keep the renders in this folder instead of --work, and reuse those of a run with the same "
                        "looks (renders are deterministic; a later run only cuts their clips)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch/OpenCV threads for training (on a busy 2-core machine 2 threads ran 10x slower than 1)")
    p.add_argument("--max-steps", type=int, default=100000, help="cap on each pretraining phase's steps")
    p.add_argument("--stage1-clips-per-s", type=float, default=130.0,
                   help="assumed stage-1 throughput (measured on a 2-core CPU: about 150 clips/s on one "
                        "thread, 170 on two)")
    p.add_argument("--stage2-questions-per-s", type=float, default=200.0,
                   help="assumed stage-2 throughput, encoding every clip once included (measured on a 2-core "
                        "CPU: about 230 questions/s on one thread, 300 on two)")
    p.add_argument("--stage1-batch", type=int, default=32)
    p.add_argument("--stage2-batch", type=int, default=8)
    p.add_argument("--stage1-lr", type=float, default=2e-4,
                   help="stage-1 peak learning rate: stage 1 sees only the --stage-sets sets, and at 2e-3 its "
                        "Q-Former LoRA read the held-out strokes worse than the base it started from")
    p.add_argument("--stage2-llm-r", type=int, default=16, help="LLM LoRA rank of stage 2 (alpha 2r)")
    p.add_argument("--tubelet", type=int, default=0,
                   help="frames of the vision tower's tubelet embedding (a Conv3d beside the patch embedding; 0: none)")
    p.add_argument("--heads-b", type=float, default=0.0,
                   help="weight of phase A's stroke-head loss kept beside the caption loss in phase B")
    p.add_argument("--negatives", type=float, default=0.45,
                   help="share of questions about an absent event in base phase C and (by repeating the "
                        "impossible ones) in stage 2; the held-out questions keep the reference's 4 of 14")
    p.add_argument("--eval-limit-base", type=int, default=512, help="validation clips of the pretraining curves")
    p.add_argument("--val-limit", type=int, default=300, help="validation captions (and questions) the recipes read")
    p.add_argument("--eval-limit-train", type=int, default=300, help="training captions evaluated for the card")
    p.add_argument("--eval-limit-stage1", type=int, default=600,
                   help="test captions evaluated per condition (half as many questions)")
    p.add_argument("--demo-rallies", default="1-10")
    p.add_argument("--min-train-s", type=float, default=MIN_TRAIN_S, help="training time even when the budget is spent")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    args.argv = argv
    set_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    card = run(args)
    print(json.dumps({"timings_s": card["timings_s"],
                      **{name: _headline(r) for name, r in card["results"].items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
