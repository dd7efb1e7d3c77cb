"""The embedded demo: train the tiny demo model on CPU and render the demo match, in one command.

    python -m train.demo --out assets/demo-model --match-out assets/demo-match [--minutes 30]

Steps (each timed; the timings go into card.json):
 1. data: ShuttleSet matches are shuffled with --seed; the first ones (--heldout-sets sets) are
    held out, the next ones give --train-sets sets. Every set is rendered with its own seed (its own
    look: colours, camera, noise): training set i with TRAIN_SEED*1000+i, held-out set j with
    HELDOUT_SEED*1000+j (other matches, looks never trained on), at 192x108, in 2 processes;
    every stroke's clip is cut into memory (8 frames resized whole to 112x112).
 2. dataset: train/build_dataset.py's folder (mp4 clips + captions + questions, chunks of 5) from
    --stage-sets of the training sets (train split) and every held-out set (test split), for the
    stage-1/2 recipes, which read mp4 clips.
 3. base: train/pretrain_base.py (phase A stroke heads, phase B captioning, phase C instruction
    tuning of the T5 on chunk questions, --negatives of them impossible) on all training clips.
 4. stage 1: the stage-1 recipe, `train.stage1.train(Stage1Config(base=<base>, experiment=4, ...))`
    (Q-Former cross-attention LoRA r=8).
 5. stage 2: `train.stage2.train(Stage2Config(init=<stage 1>, negative_share=--negatives, ...))` (LLM
    LoRA "all", chunks of 5).
 6. held-out evaluation of both stages with train/evaluate.py (an evenly spaced sample of the
    test split), beside the majority-class baselines.
 7. assets: the stage-2 adapters + the base (as base/) in --out, card.json, the measured runs
    (assets/demo-model/runs.json) and the model card (train/demo_card.md filled in from them), and the
    demo match (a few rallies of a held-out match at 480x270 with the held-out seed) in --match-out.

The phases share the --minutes budget; the recipes stop at a step count estimated from assumed
throughputs (--stage1-clips-per-s, --stage2-questions-per-s). Work files go to --work (default runs/demo).
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
from pathlib import Path

import cv2
import numpy as np

from core.annotations import load_shuttleset_set
from core.device import set_threads
from core.loader import load_model, read_manifest
from train.clip_cache import ClipSet, cut_set
from train.config import Stage1Config, Stage2Config
from train.pretrain_base import PretrainConfig, pretrain
from train.replay import render_set

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHUTTLESET = ROOT.parent / "shared" / "data" / "shuttleset"
RENDER_SIZE = (192, 108)
DEMO_MATCH_SIZE = (480, 270)
NUM_FRAMES, CLIP_SIZE = 8, 112
# Shares of the training budget left after data preparation and the evaluation reserve.
SHARES = {"phase_a": 0.33, "phase_b": 0.34, "phase_c": 0.21, "stage1": 0.05, "stage2": 0.07}
EVAL_RESERVE_S = 60
MIN_TRAIN_S = 60.0  # the phases train at least this long, even when rendering took the whole budget
TARGETS = {"stage1": {"side": 0.95, "stroke": 0.70, "zone": 0.70},
           "stage2": {"f1": 0.70, "impossible_accuracy": 0.80}}
CARD_TEMPLATE = Path(__file__).with_name("demo_card.md")  # the model card's text; card.json fills it in
RUNS_FILE = "runs.json"  # measured runs of this command, beside card.json; the card's runs table
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


def choose_sets(matches: dict[str, list[Path]], train_sets: int, heldout_sets: int,
                seed: int) -> tuple[list[Path], list[Path]]:
    """Held-out sets from whole matches first, then training sets from other matches."""
    order = sorted(matches)
    np.random.default_rng(seed).shuffle(order)
    heldout, train = [], []
    for m in order:
        if len(heldout) < heldout_sets:
            heldout += matches[m][: heldout_sets - len(heldout)]
        elif len(train) < train_sets:
            train += matches[m][: train_sets - len(train)]
    return train, heldout


def _render_match(job: tuple) -> tuple[list[Path], ClipSet]:
    """Render one match's sets into a private folder (match.csv is rewritten per render) and cut its clips."""
    sets, out_dir, seeds, size, rallies = job
    cv2.setNumThreads(1)
    parts, csvs = [], []
    for set_csv, seed in zip(sets, seeds):
        # Training reads only the clips at the hit frames: no sound and no cut-aways keep the
        # render inside the build's budget (the demo match itself is a full broadcast render).
        rendered = render_set(set_csv, out_dir, rallies=rallies, seed=seed, size=size, cutaways=False, audio=False)
        csvs.append(rendered)
        parts.append(cut_set(rendered, rendered.with_suffix(".mp4"), NUM_FRAMES, CLIP_SIZE))
    return csvs, ClipSet.concat(parts)


def set_seeds(sets: list[Path], seed: int) -> list[int]:
    """One render seed per set (each set gets its own look): seed*1000 + i, so the training and
    held-out seeds never meet while fewer than 1000 sets are rendered."""
    return [seed * 1000 + i for i in range(len(sets))]


def render_sets(sets: list[Path], out_dir: Path, seeds: list[int], size=RENDER_SIZE, processes: int = 2,
                rallies: str | None = None) -> tuple[list[Path], ClipSet]:
    """Render sets (grouped by match, `processes` at a time) into one ShuttleSet-layout folder."""
    by_match: dict[str, list[tuple[Path, int]]] = {}
    for s, seed in zip(sets, seeds):
        by_match.setdefault(s.parent.name, []).append((s, seed))
    parts_dir = out_dir / "_parts"
    jobs = [([s for s, _ in group], parts_dir / str(i), [k for _, k in group], size, rallies)
            for i, group in enumerate(by_match.values())]
    with mp.get_context("spawn").Pool(processes) as pool:
        results = pool.map(_render_match, jobs)
    csvs = []
    for (_, part, *_), (rendered, _) in zip(jobs, results):
        for video in {c.parent.name for c in rendered}:
            target = out_dir / video
            shutil.rmtree(target, ignore_errors=True)
            shutil.move(str(part / video), str(target))
        csvs += [out_dir / c.parent.name / c.name for c in rendered]
    merge_match_files([job[1] for job in jobs], out_dir)
    shutil.rmtree(parts_dir, ignore_errors=True)
    clips = ClipSet.concat([r[1] for r in results])
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


def build_stage_data(train_csvs: list[Path], heldout_csvs: list[Path], videos: Path, out: Path) -> dict:
    from train.build_dataset import build
    from train.build_dataset import parser as build_parser

    heldout_matches = sorted({c.parent.name for c in heldout_csvs})
    args = build_parser().parse_args(["--annotations", *map(str, train_csvs + heldout_csvs), "--videos", str(videos),
                                      "--out", str(out), "--test-matches", *heldout_matches, "--no-progress"])
    return build(args)


# ---------------------------------------------------------------- recipes and evaluation


def evenly(items: list, n: int) -> list:
    if n <= 0 or len(items) <= n:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def evaluate_stage1(adapters: Path, data: Path, limit: int) -> dict:
    from train.data import load_captions, load_references
    from train.evaluate import evaluate_captions, generation_settings

    items = evenly(load_captions(data, "test"), limit)
    model = load_model(adapters, device="cpu")
    report = evaluate_captions(model, items, load_references(data, "test", items), generation_settings(1), 32,
                               load_captions(data, "train", check_files=False), data_dir=data)
    m = report["metrics"]
    return {"n": len(items), "field_accuracy": m["field_accuracy"], "bleu4": m["bleu4"], "cider": m["cider"],
            "exact_match": m["exact_match"], "majority_baseline": report["majority_baseline"],
            "confusion_stroke": report["confusion_stroke"],
            "examples": [(s["prediction"], s["references"][0]) for s in report["samples"][:10]]}


def evaluate_stage2(adapters: Path, data: Path, limit: int) -> dict:
    from collections import Counter

    from core.prompts import parse_answer
    from train import metrics as M
    from train.data import load_questions
    from train.evaluate import evaluate_questions, generation_settings, gold_indices

    items = evenly(load_questions(data, "test"), limit)
    model = load_model(adapters, device="cpu")
    report = evaluate_questions(model, items, generation_settings(2), 16, data)
    train_answers = Counter(it["answer"] for it in load_questions(data, "train", check_files=False))
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
    assumed throughputs."""
    s1_steps = max(2, int(budget_s * SHARES["stage1"] * args.stage1_clips_per_s / args.stage1_batch))
    s2_steps = max(2, int(budget_s * SHARES["stage2"] * args.stage2_questions_per_s / args.stage2_batch))
    common = dict(data=str(data), precision="fp32", device="cpu", num_workers=0, epochs=50, save_every=0,
                  keep_checkpoints=1, log_every=10, progress=False, seed=args.seed)
    return (Stage1Config(base=str(base), out=str(work / "stage1"), experiment=4, lr=args.stage1_lr, warmup_steps=20,
                         batch_size=args.stage1_batch, max_steps=s1_steps, schedule_steps=s1_steps,
                         num_frames=NUM_FRAMES, **common),
            Stage2Config(init=str(work / "stage1"), out=str(work / "stage2"), lr=2e-3, batch_size=args.stage2_batch,
                         grad_accum=1, llm_r=args.stage2_llm_r, llm_alpha=2 * args.stage2_llm_r,
                         negative_share=args.negatives, max_steps=s2_steps, schedule_steps=s2_steps, **common))


def run(args) -> dict:
    clock = Clock(args.minutes)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    matches = match_sets(Path(args.shuttleset))
    train_sets, heldout_sets = choose_sets(matches, args.train_sets, args.heldout_sets, args.seed)

    t = time.perf_counter()
    renders = work / "renders"
    train_seeds, heldout_seeds = set_seeds(train_sets, args.train_seed), set_seeds(heldout_sets, args.heldout_seed)
    if set(train_seeds) & set(heldout_seeds):
        raise ValueError("--train-seed and --heldout-seed give overlapping render seeds")
    train_csvs, train_clips = render_sets(train_sets, renders, train_seeds, processes=args.processes)
    heldout_csvs, heldout_clips = render_sets(heldout_sets, work / "renders_heldout", heldout_seeds,
                                              processes=args.processes)
    clock.done("render_and_cut", t)

    t = time.perf_counter()
    for c in heldout_csvs:  # one videos folder for the dataset builder (different matches: no clash)
        shutil.copytree(c.parent, renders / c.parent.name, dirs_exist_ok=True)
    merge_match_files([renders, work / "renders_heldout"], renders)
    data = work / "data"
    stage_train = evenly(train_csvs, args.stage_sets)
    manifest = build_stage_data(stage_train, [renders / c.parent.name / c.name for c in heldout_csvs], renders, data)
    clock.done("dataset", t)

    budget = max(args.min_train_s, clock.left() - EVAL_RESERVE_S - 30)
    t = time.perf_counter()
    cfg = PretrainConfig(minutes_a=budget * SHARES["phase_a"] / 60, minutes_b=budget * SHARES["phase_b"] / 60,
                         minutes_c=budget * SHARES["phase_c"] / 60, steps_a=args.max_steps, steps_b=args.max_steps,
                         steps_c=args.max_steps, negatives=args.negatives, seed=args.seed,
                         eval_limit=args.eval_limit_base, device="cpu")  # the build's figures are CPU figures
    base = work / "base"
    base_summary = pretrain(train_clips, heldout_clips, base, cfg)
    clock.done("pretrain_base", t)
    del train_clips

    from train import stage1, stage2

    cfg1, cfg2 = stage_configs(args, base, data, work, budget)
    t = time.perf_counter()
    stage1.train(cfg1)
    clock.done("stage1", t)
    t = time.perf_counter()
    stage2.train(cfg2)
    clock.done("stage2", t)

    t = time.perf_counter()
    eval1 = evaluate_stage1(work / "stage1" / "final", data, args.eval_limit_stage1)
    eval2 = evaluate_stage2(work / "stage2" / "final", data, args.eval_limit_stage2)
    clock.done("evaluate", t)

    t = time.perf_counter()
    demo_match = render_demo_match(heldout_sets[0], Path(args.match_out), heldout_seeds[0], args.demo_rallies)
    measured = SHIPPED_RUNS.read_text()  # read before assemble() replaces --out, which may be the shipped folder
    out = assemble(work, Path(args.out))
    (out / RUNS_FILE).write_text(measured)
    clock.done("assets", t)
    card = {
        "model": "shuttle-lens tiny demo model",
        "command": "python -m train.demo " + " ".join(args.argv),
        "shuttleset": os.path.relpath(Path(args.shuttleset).resolve(), ROOT),  # relative to the repository
        "seed": args.seed, "train_seed": args.train_seed, "heldout_seed": args.heldout_seed,
        "render_size": list(RENDER_SIZE), "clip": {"frames": NUM_FRAMES, "size": CLIP_SIZE, "crop": False},
        "training_matches": sorted({s.parent.name for s in train_sets}),
        "training_sets": [f"{s.parent.name}/{s.name}" for s in train_sets], "training_render_seeds": train_seeds,
        "stage_training_sets": [f"{c.parent.name}/{c.name}" for c in stage_train],
        "heldout_matches": sorted({s.parent.name for s in heldout_sets}),
        "heldout_sets": [f"{s.parent.name}/{s.name}" for s in heldout_sets], "heldout_render_seeds": heldout_seeds,
        "counts": {"train_clips": base_summary["train_clips"], "heldout_clips": len(heldout_clips),
                   "stage_data": {"captions": manifest["captions"], "questions": manifest["questions"]}},
        "pretrain": {k: base_summary[k] for k in ("steps_a", "steps_b", "steps_c", "phase_a_s", "phase_b_s", "phase_c_s",
                                                    "config")},
        "recipes": {"stage1_steps": cfg1.max_steps, "stage1_batch": cfg1.batch_size, "stage2_steps": cfg2.max_steps,
                    "stage2_batch": cfg2.batch_size},
        "timings_s": {**clock.timings, "total": round(time.perf_counter() - clock.t0, 1)},
        "heldout": {"stage1": eval1, "stage2": eval2},
        "demo_match": demo_match,
        "targets": TARGETS,
    }
    (out / "card.json").write_text(json.dumps(card, indent=1, ensure_ascii=False))
    for name, src in (("curves_base.jsonl", base / "metrics.jsonl"), ("curves_stage1.jsonl", work / "stage1" / "metrics.jsonl"),
                      ("curves_stage2.jsonl", work / "stage2" / "metrics.jsonl")):
        if src.is_file():
            shutil.copy(src, out / name)
    write_model_card(out)
    return card


def render_demo_match(set_csv: Path, out: Path, seed: int, rallies: str) -> dict:
    """A few rallies of a held-out set at 480x270, ShuttleSet layout (<video>/set1.csv + .mp4)."""
    shutil.rmtree(out, ignore_errors=True)
    rendered = render_set(set_csv, out, rallies=rallies, seed=seed, size=DEMO_MATCH_SIZE)
    strokes = load_shuttleset_set(rendered).strokes
    return {"set": f"{set_csv.parent.name}/{set_csv.name}", "rallies": rallies, "strokes": len(strokes),
            "size": list(DEMO_MATCH_SIZE), "seed": seed}


def assemble(work: Path, out: Path) -> Path:
    """The stage-2 adapters with the base as base/; the manifest names the base relative to itself."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    final = work / "stage2" / "final"
    shutil.copy(final / "adapters.safetensors", out / "adapters.safetensors")
    base = out / "base"
    shutil.copytree(work / "base", base, ignore=shutil.ignore_patterns("metrics.jsonl"))
    manifest = read_manifest(final)
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


def _fit(curves: Path) -> str:
    """Training-clip against held-out accuracy at the last evaluation of base pretraining."""
    rows = [json.loads(line) for line in curves.read_text().splitlines() if line.strip()] if curves.is_file() else []
    last = next((r for r in reversed(rows) if "train_side" in r and "heldout_side" in r), None)
    if last is None:
        return "not measured"
    return ", ".join(f"{f} {_pct(last[f'train_{f}'])} against {_pct(last[f'heldout_{f}'])}"
                     for f in ("side", "stroke", "zone"))


def _status(s1: dict, s2: dict, tgt1: dict, tgt2: dict) -> str:
    met = [f for f in tgt1 if s1["field_accuracy"][f] >= tgt1[f]] + [k for k in tgt2 if s2[k] >= tgt2[k]]
    missed = [f for f in tgt1 if f not in met] + [k for k in tgt2 if k not in met]
    if not missed:
        return "Every target is met on the held-out set."
    return (f"Targets met: {', '.join(met) or 'none'}; missed: {', '.join(missed)}. "
            "The learning curves above show where training stood when the budget ran out.")


def _runs_table(runs: list[dict], targets: dict) -> str:
    head = ("budget", "wall", "phase A / B / C steps", "side", "stroke", "zone", "F1", "impossible", "targets met")
    rows = ["  | " + " | ".join(head) + " |", "  |" + "---|" * len(head)]
    targets = {k: v for stage in targets.values() for k, v in stage.items()}
    for r in runs:
        budget = f"`--minutes {r['minutes']}`" + (" (shipped)" if r.get("shipped") else "")
        met = sum(r[k] >= v for k, v in targets.items())
        rows.append(f"  | {budget} | {r['wall_min']:.1f} min | {' / '.join(map(str, r['steps']))} | "
                    + " | ".join(_pct(r[k]) for k in targets) + f" | {met} of {len(targets)} |")
    return "\n".join(rows)


def card_fields(out: Path) -> dict:
    """What train/demo_card.md quotes: card.json as it is, the manifest's LoRA, and what is derived
    from them, the learning curves and runs.json."""
    card = json.loads((out / "card.json").read_text())
    lora = json.loads((out / "manifest.json").read_text())["lora"]
    s1, s2, targets, t = card["heldout"]["stage1"], card["heldout"]["stage2"], card["targets"], card["timings_s"]

    def curves(name: str, keys: tuple[str, ...], at_most: int | None = None) -> str:
        return "\n".join(_curve_rows(out / name, keys, at_most))

    return dict(
        card=card, lora=lora, s1=s1, s2=s2, targets=targets,
        n={k: len(card[k]) for k in ("training_sets", "training_matches", "stage_training_sets", "heldout_sets",
                                      "heldout_matches")},
        minutes=t["total"] / 60, timings=", ".join(f"{k} {v:.0f} s" for k, v in t.items() if k != "total"),
        qformer_parts="+".join(lora["qformer_parts"]),
        architecture=", ".join(f"{k} {v}" for k, v in card["pretrain"]["config"]["spec"].items()),
        curves_base=curves("curves_base.jsonl", ("heldout_side", "heldout_stroke", "heldout_zone", "train_side",
                                                 "train_stroke", "train_zone")),
        curves_c=curves("curves_base.jsonl", ("heldout_f1", "heldout_impossible", "train_f1", "train_impossible")),
        curves_stage1=curves("curves_stage1.jsonl", ("samples_per_s",), 12),
        curves_stage2=curves("curves_stage2.jsonl", ("samples_per_s",), 12),
        status=_status(s1, s2, targets["stage1"], targets["stage2"]), fit=_fit(out / "curves_base.jsonl"),
        s2_epochs=card["recipes"]["stage2_steps"] * card["recipes"]["stage2_batch"]
        / card["counts"]["stage_data"]["questions"]["train"],
        runs=_runs_table(json.loads((out / RUNS_FILE).read_text())["runs"], targets))


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
    p.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget of the whole run")
    p.add_argument("--train-sets", type=int, default=64)
    p.add_argument("--heldout-sets", type=int, default=6)
    p.add_argument("--stage-sets", type=int, default=12, help="training sets in the stage-1/2 dataset folder")
    p.add_argument("--seed", type=int, default=0, help="match choice and training seed")
    p.add_argument("--train-seed", type=int, default=1, help="training set i is rendered with seed TRAIN_SEED*1000+i")
    p.add_argument("--heldout-seed", type=int, default=2,
                   help="held-out set j (and the demo match, j=0) is rendered with seed HELDOUT_SEED*1000+j")
    p.add_argument("--processes", type=int, default=2, help="render processes")
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
    p.add_argument("--negatives", type=float, default=0.45,
                   help="share of questions about an absent event in base phase C and (by repeating the "
                        "impossible ones) in stage 2; the held-out questions keep the reference's 4 of 14")
    p.add_argument("--eval-limit-base", type=int, default=512)
    p.add_argument("--eval-limit-stage1", type=int, default=600)
    p.add_argument("--eval-limit-stage2", type=int, default=300)
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
                      "stage1": {k: card["heldout"]["stage1"][k] for k in ("field_accuracy", "majority_baseline")},
                      "stage2": {k: v for k, v in card["heldout"]["stage2"].items() if k != "examples"}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
