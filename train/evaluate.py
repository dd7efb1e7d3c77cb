"""Held-out evaluation of a trained run.

    python -m train.evaluate --run runs/stage1 --data data/badminton [--split val|test] [--limit N] [--batch-size N]

`--run` is a run folder (its best/ is used, else final/) or an adapter folder. The stage comes
from the adapters' manifest:
- stage 1: captions are generated (5 beams, 10..30 tokens by default) and scored with BLEU-4,
  CIDEr-D, exact match and per-field accuracy (side, stroke, zone parsed back from the text;
  unreadable = wrong), with a stroke confusion table and the majority-class baseline per field
  (the most common value in train.json, scored on the evaluated split);
- stage 2: answers are generated and parsed (StrokeModel.answer, core.prompts.parse_answer); Hit@1, exact match,
  precision, recall and F1 of index sets over answerable questions, "does not occur" accuracy
  over impossible ones, also per question kind (definitions in train/metrics.py).
Writes `eval_<split>.json` into the run folder and prints a table.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import OrderedDict
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from core.config import GenerationSettings
from core.loader import ModelLoadError, load_model, read_manifest
from core.model import ModelAnswer, StrokeModel
from core.processor import pad_chunks
from core.prompts import parse_answer
from train import metrics as M
from train.data import (CaptionDataset, ClipReader, ClipTokens, Collator, DataError, is_chain_of_thought, load_captions,
                        load_questions, load_references)

log = logging.getLogger(__name__)


def adapter_dir(path: str | Path) -> Path:
    """A run folder -> its best/ (else final/, else the newest checkpoint); an adapter folder -> itself."""
    p = Path(path)
    if (p / "manifest.json").is_file():
        return p
    for sub in ("best", "final"):
        if (p / sub / "manifest.json").is_file():
            return p / sub
    ckpts = sorted((p / "checkpoints").glob("step-*/manifest.json"), key=lambda f: int(f.parent.name[5:]))
    if ckpts:
        return ckpts[-1].parent
    raise ModelLoadError(f"{p}: no adapters here (expected manifest.json, best/, final/ or checkpoints/)")


def generation_settings(stage: int, cot: bool = False, num_beams: int | None = None,
                        max_new_tokens: int | None = None, min_new_tokens: int | None = None) -> GenerationSettings:
    """The reference's decoding, where not overridden: stage 1 5 beams 10..30 tokens (the floor: the
    base's own where it sets one, see GenerationSettings); stage 2 GenerationSettings.for_answers."""
    s = GenerationSettings() if stage == 1 else GenerationSettings.for_answers(cot)
    return GenerationSettings(num_beams=num_beams or s.num_beams, max_new_tokens=max_new_tokens or s.max_new_tokens,
                              min_new_tokens=s.min_new_tokens if min_new_tokens is None else min_new_tokens)


def generate_captions(model: StrokeModel, dataset: CaptionDataset, settings: GenerationSettings, batch_size: int,
                      num_workers: int = 0, progress: bool = False) -> list[str]:
    """The model's caption of every sample of `dataset`, in order: its clips are encoded, then
    captioned from their tokens (StrokeModel.caption), as the index captions a match."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=Collator(model.processor, 1, with_labels=False),
                        generator=torch.Generator())  # leaves the global random state alone
    tokens = [model.encode(batch["pixel_values"])
              for batch in tqdm(loader, desc="captions", unit="batch", disable=not progress, leave=False)]
    return model.caption(torch.cat(tokens), settings) if tokens else []


def evaluate_captions(model: StrokeModel, items: list[dict], references: dict[str, list[str]],
                      settings: GenerationSettings, batch_size: int, train_items: list[dict] | None = None,
                      data_dir: str | Path = ".", num_workers: int = 0, cache: ClipReader | None = None,
                      progress: bool = False) -> dict:
    """Stage-1 report: metrics, majority baseline, stroke confusion, and every sample's caption."""
    clips = cache or ClipReader(data_dir, model.processor.image, model.processor.num_frames)
    preds = generate_captions(model, CaptionDataset(items, clips), settings, batch_size, num_workers, progress)
    refs = [references[str(it["image_id"])] for it in items]
    metrics = M.caption_metrics(preds, refs)
    gold = [M.parse_caption(r[0]) for r in refs]
    pred_fields = [M.parse_caption(p) for p in preds]
    report = {"stage": 1, "metrics": metrics,
              "confusion_stroke": M.confusion([g.stroke for g in gold], [p.stroke for p in pred_fields]),
              "samples": [{"image_id": it["image_id"], "prediction": p, "references": r}
                          for it, p, r in zip(items, preds, refs)]}
    if train_items is not None:
        report["majority_baseline"] = M.majority_baseline([M.parse_caption(it["caption"]) for it in train_items], gold)
    return report


def gold_indices(item: dict) -> list[int]:
    if isinstance(item.get("indices"), list):
        return [int(i) for i in item["indices"]]
    return [] if item["is_impossible"] else list(parse_answer(item["answer"]) or [])


def generate_answers(model: StrokeModel, items: list[dict], settings: GenerationSettings, batch_size: int,
                     clips: ClipReader | ClipTokens, progress: bool = False, keep_chunks: int = 64) -> list[ModelAnswer]:
    """The model's answers to stage-2 questions, in order.

    The vision tower and Q-Former do not read the question, so the clips of a chunk are encoded
    once and their query tokens reused for every question about that chunk (the builder writes
    a chunk's questions one after another; the newest `keep_chunks` chunks are kept). Clips
    from ClipTokens come already encoded."""
    tokens: OrderedDict[tuple[str, ...], torch.Tensor] = OrderedDict()

    def chunk_tokens(paths: tuple[str, ...]) -> torch.Tensor:  # (K, Q, Dq)
        if paths not in tokens:
            stacked = torch.stack([clips(p) for p in paths])
            tokens[paths] = stacked if isinstance(clips, ClipTokens) else model.encode(stacked)
            if len(tokens) > keep_chunks:
                tokens.popitem(last=False)
        return tokens[paths]

    out: list[ModelAnswer] = []
    for start in tqdm(range(0, len(items), batch_size), desc="answers", unit="batch", disable=not progress,
                      leave=False):
        batch = items[start:start + batch_size]
        clip_tokens, mask = pad_chunks([chunk_tokens(tuple(it["image"])) for it in batch])
        out += model.answer(clip_tokens, mask, [it["question"] for it in batch], settings, batch_size=batch_size)
    return out


def evaluate_questions(model: StrokeModel, items: list[dict], settings: GenerationSettings, batch_size: int,
                       data_dir: str | Path = ".", cache: ClipReader | ClipTokens | None = None,
                       progress: bool = False) -> dict:
    """Stage-2 report: grounding metrics overall and per kind, and every question's answer."""
    clips = cache or ClipReader(data_dir, model.processor.image, model.processor.num_frames)
    answers = generate_answers(model, items, settings, batch_size, clips, progress)
    texts, preds = [a.text for a in answers], [a.indices for a in answers]
    golds = [gold_indices(it) for it in items]
    kinds = [it.get("kind", "unknown") for it in items]
    return {"stage": 2, "metrics": M.grounding_metrics(preds, golds, kinds),
            "samples": [{"question_id": it["question_id"], "question": it["question"], "answer": t,
                         "predicted": p, "gold": g, "kind": k}
                        for it, t, p, g, k in zip(items, texts, preds, golds, kinds)]}


def selection_key(stage: int, metrics: dict) -> tuple[float, ...]:
    """Larger is better. Stage 1: CIDEr, ties broken by the mean field accuracy; stage 2: F1, then
    "does not occur" accuracy."""
    if stage == 1:
        return (round(metrics["cider"], 6), round(metrics["field_accuracy"]["mean"], 6))
    return (round(metrics["f1"], 6), round(metrics["impossible_accuracy"], 6))


def scalar_metrics(stage: int, metrics: dict) -> dict[str, float]:
    """The headline numbers of a report, flat (for metrics.jsonl and the progress log)."""
    if stage == 1:
        out = {k: metrics[k] for k in ("bleu4", "cider", "exact_match")}
        out.update({f"acc_{k}": v for k, v in metrics["field_accuracy"].items()})
        return out
    return {k: metrics[k] for k in (*M.ANSWERABLE_KEYS, "impossible_accuracy", "accuracy")}


# ---------------------------------------------------------------- the readable table


def format_report(report: dict) -> str:
    m = report["metrics"]
    lines = [f"stage {report['stage']} evaluation on {report.get('split', '?')} ({m['n']} samples) of {report.get('adapters', '')}"]
    if report["stage"] == 1:
        fa = m["field_accuracy"]
        lines += [f"  BLEU-4       {m['bleu4']:.4f}", f"  CIDEr-D      {m['cider']:.4f}",
                  f"  exact match  {m['exact_match']:.4f}", f"  parsed       {m['parsed']:.4f}",
                  "  field accuracy      model   majority (value)"]
        base = report.get("majority_baseline", {})
        for f in (*M.FIELDS, "all_fields", "mean"):
            b = base.get(f)
            extra = f"   {b['accuracy']:.4f} ({b['value']})" if b else ""
            lines.append(f"    {f:<16}{fa[f]:.4f}{extra}")
        table = report["confusion_stroke"]
        if table:
            cols = sorted({c for row in table.values() for c in row})
            width = max(len(c) for c in [*cols, *table]) + 1
            lines.append("  stroke confusion (rows: gold, columns: predicted)")
            lines.append("    " + " " * width + "".join(f"{c[:width]:>{width}}" for c in cols))
            for g in sorted(table):
                lines.append(f"    {g:<{width}}" + "".join(f"{table[g].get(c, 0):>{width}}" for c in cols))
    else:
        head = f"  {'kind':<20}{'n':>6}{'Hit@1':>8}{'exact':>8}{'P':>8}{'R':>8}{'F1':>8}{'impos.':>8}{'acc':>8}"
        lines.append(head)
        rows = [("all", m), *sorted(m.get("by_kind", {}).items())]
        for name, r in rows:
            lines.append(f"  {name:<20}{r['n']:>6}{r['hit1']:>8.4f}{r['exact']:>8.4f}{r['precision']:>8.4f}"
                         f"{r['recall']:>8.4f}{r['f1']:>8.4f}{r['impossible_accuracy']:>8.4f}{r['accuracy']:>8.4f}")
    for kind, q in report.get("query_engine", {}).items():
        lines.append(f"query engine, {kind}: precision {q['precision']:.4f} recall {q['recall']:.4f} "
                     f"F1 {q['f1']:.4f} ({q['questions']} questions, {q.get('missing', 0)} not in the index)")
    return "\n".join(lines)


# ---------------------------------------------------------------- command line


def run(args) -> dict:
    adapters = adapter_dir(args.run)
    stage = read_manifest(adapters).get("stage", 0)
    if stage not in (1, 2):
        raise ModelLoadError(f"{adapters}: the manifest says stage {stage}; expected a stage-1 or stage-2 run")
    if stage == 1:
        items = load_captions(args.data, args.split)
        train_items = load_captions(args.data, "train", check_files=False) if (Path(args.data) / "train.json").is_file() else None
        refs = load_references(args.data, args.split, items)
    else:
        items = load_questions(args.data, args.split)
    items = items[: args.limit] if args.limit else items
    if not items:
        raise DataError(f"{args.data}: the {args.split} split has no samples")
    model = load_model(adapters, base=args.base, precision=args.precision, device=args.device)
    cot = stage == 2 and is_chain_of_thought(items)
    settings = generation_settings(stage, cot, args.num_beams, args.max_new_tokens, args.min_new_tokens)
    common = dict(data_dir=args.data, num_workers=args.num_workers, progress=args.progress)
    if stage == 1:
        report = evaluate_captions(model, items, refs, settings, args.batch_size, train_items, **common)
    else:
        report = evaluate_questions(model, items, settings, args.batch_size, args.data, progress=args.progress)
    if stage == 2 and args.index:
        report["query_engine"] = query_engine_scores(args.index, items)
    report.update({"split": args.split, "adapters": str(adapters), "data": str(args.data),
                   "generation": vars(settings)})
    out = Path(args.out) if args.out else _report_folder(Path(args.run), adapters) / f"eval_{args.split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    report["report_path"] = str(out)
    return report


def query_engine_scores(db: str | Path, items: list[dict]) -> dict:
    """Stroke-level P/R/F1 per question kind of the query engine over the same questions, answered
    from the model's own captions in an index of the evaluated matches (python -m core.index)."""
    from core.embed import default_embedder
    from core.store import StrokeStore
    from core.query import QueryEngine
    from core.query import evaluate_questions as score_queries

    if not Path(db).is_file():
        raise DataError(f"{db}: no such stroke index (build it with python -m core.index)")
    engine = QueryEngine(StrokeStore(db), default_embedder(), caption_sources=("model",))
    return score_queries(engine, items)


def _report_folder(given: Path, adapters: Path) -> Path:
    """The run folder: what --run named, or for run/best, run/final, run/checkpoints/step-N, their run."""
    if given != adapters:
        return given
    if adapters.name in ("best", "final"):
        return adapters.parent
    if adapters.parent.name == "checkpoints":
        return adapters.parent.parent
    return adapters


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.evaluate", description="Evaluate a trained stroke model.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--run", required=True, help="run folder (best/ or final/ is used) or adapter folder")
    p.add_argument("--data", required=True, help="dataset folder written by train.build_dataset")
    p.add_argument("--split", default="val", choices=("train", "val", "test"))
    p.add_argument("--limit", type=int, default=0, help="evaluate the first N samples only (0: all)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--base", default=None, help="base checkpoint instead of the one in the manifest")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "int8"))
    p.add_argument("--device", default="auto")
    p.add_argument("--num-beams", type=int, default=None, help="default 5")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: stage 1 30, stage 2 32 (CoT 256)")
    p.add_argument("--min-new-tokens", type=int, default=None, help="default: stage 1 the base's own floor (else 10), stage 2 1 (CoT 30)")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--out", default=None, help="report file (default: RUN/eval_<split>.json)")
    p.add_argument("--index", default=None,
                   help="stage 2: also score the query engine on these questions over this stroke index "
                        "(indexed with the evaluated model)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.limit < 0 or args.batch_size < 1:
        p.error("--limit must be >= 0 and --batch-size >= 1")
    try:
        report = run(args)
    except (DataError, ModelLoadError) as err:
        p.exit(1, f"{p.prog}: error: {err}\n")
    print(format_report(report))
    print(f"report written to {report['report_path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
