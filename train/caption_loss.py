"""What stroke detection costs the captions: stage-1 fields on detected vs annotated strokes.

    python -m train.caption_loss --renders DIR [DIR ...] --model assets/demo-model [--detector assets/detector] [--json OUT]

For every render (`<video>/setN.mp4` + its set CSV, as `python -m train.replay` writes and
`train.detector.find_sets` finds) the model captions two sets of clips, cut as the index cuts
them (`core.indexer.prefetch_clips`: hit frame -7 .. +8, the model's own preprocessing):
- annotated: the clips at the ground truth's hit frames;
- detected: the clips at the hit frames `core.detect.detect` finds in the plain video; each
  detected hit is matched one-to-one to a true hit within +-2 frames (`train.detector.match_hits`)
  and its caption is scored against that true stroke.
Side, stroke and zone are parsed back from each caption and scored against the true stroke's
caption as `train.evaluate` scores stage 1 (`train.metrics.parse_caption`, `field_accuracy`:
unreadable = wrong; `all_fields`: all three right; `mean`: the mean of the three). Only true
strokes with a caption (known stroke type and zone) are scored.

Figures per field (pooled over every render's scored strokes):
- `annotated`: accuracy of the annotated path over all scored true strokes;
- `detected_all_true`: the detected path over the same strokes, a missed stroke wrong in every
  field; `loss_all_true` = annotated - detected_all_true (what detection costs the product);
- `annotated_matched`, `detected_matched`, `loss_matched`: both paths over the matched strokes
  only (what the shifted cut costs, misses aside).
`hits`: true strokes, scored ones, detected hits, matched, missed (scored strokes without a
match) and extra detections (matched to no true stroke; they have no ground truth to score).
Prints the pooled figures as JSON; `--json` also writes them with one row per render (its
figures and every scored stroke's captions).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from core.annotations import load_shuttleset_set
from core.detect import DEFAULT_DETECTOR, Detection, detect
from core.indexer import prefetch_clips
from core.model import StrokeModel
from train import metrics as M
from train.detector import find_sets, match_hits

log = logging.getLogger(__name__)

TOLERANCE = 2  # frames: a detected hit this close to a true one is that stroke
UNREAD = M.CaptionFields(None, None, None)  # a missed stroke: every field wrong


def caption_frames(model: StrokeModel, video: str | Path, frames: list[int], batch_size: int = 8) -> dict[int, str]:
    """{hit frame: the model's caption of the clip around it}; one decode pass, as the index does."""
    tokens, order, batch = [], [], []
    for frame, pixels in prefetch_clips(video, sorted(set(frames)), model.processor, depth=2 * batch_size):
        order.append(frame)
        batch.append(pixels)
        if len(batch) == batch_size:
            tokens.append(model.encode(torch.stack(batch)))
            batch = []
    if batch:
        tokens.append(model.encode(torch.stack(batch)))
    return dict(zip(order, model.caption(torch.cat(tokens)))) if tokens else {}


def measure_set(model: StrokeModel, set_csv: str | Path, detection: Detection | None = None,
                detector: str | Path | None = None, batch_size: int = 8) -> dict:
    """One render's scored strokes with both captions. `detection`: the video's strokes (default:
    detected now with `detector`). Returns {'render', 'true', 'detected', 'extra', 'strokes': [
    {'frame', 'gold', 'annotated', 'detected_frame', 'detected'}]} ('detected*' None for a miss)."""
    set_csv = Path(set_csv)
    video = set_csv.with_suffix(".mp4")
    truth = load_shuttleset_set(set_csv).strokes
    if detection is None:
        detection = detect(video, detector=detector)
    found = [s.frame for s in detection.strokes]
    match = {j: found[i] for i, j in match_hits(found, np.array([s.frame for s in truth]), TOLERANCE)}
    scored = [j for j, s in enumerate(truth) if s.caption is not None]
    # the union of both paths' frames: a detected hit on the true frame is one clip, one caption
    captions = caption_frames(model, video, [truth[j].frame for j in scored] + list(match.values()), batch_size)
    rows = [{"frame": truth[j].frame, "gold": truth[j].caption, "annotated": captions[truth[j].frame],
             "detected_frame": match.get(j), "detected": captions[match[j]] if j in match else None}
            for j in scored]
    return {"render": str(set_csv), "true": len(truth), "detected": len(found), "extra": len(found) - len(match),
            "strokes": rows}


def figures(results: list[dict]) -> dict:
    """Per-field accuracies of both paths and their difference, pooled over `results` (measure_set)."""
    rows = [r for res in results for r in res["strokes"]]
    gold = [M.parse_caption(r["gold"]) for r in rows]
    annotated = [M.parse_caption(r["annotated"]) for r in rows]
    detected = [UNREAD if r["detected"] is None else M.parse_caption(r["detected"]) for r in rows]
    m = [i for i, r in enumerate(rows) if r["detected"] is not None]
    pick = lambda xs: [xs[i] for i in m]  # noqa: E731
    acc = {"annotated": M.field_accuracy(annotated, gold),
           "detected_all_true": M.field_accuracy(detected, gold),
           "annotated_matched": M.field_accuracy(pick(annotated), pick(gold)),
           "detected_matched": M.field_accuracy(pick(detected), pick(gold))}
    fields = {}
    for f in (*M.FIELDS, "all_fields", "mean"):
        row = {k: round(v[f], 4) for k, v in acc.items()}
        row["loss_all_true"] = round(acc["annotated"][f] - acc["detected_all_true"][f], 4)
        row["loss_matched"] = round(acc["annotated_matched"][f] - acc["detected_matched"][f], 4)
        fields[f] = row
    hits = {"true": sum(r["true"] for r in results), "scored": len(rows),
            "detected": sum(r["detected"] for r in results), "matched": len(m),
            "missed": len(rows) - len(m), "extra": sum(r["extra"] for r in results)}
    return {"fields": fields, "hits": hits}


def measure(sets: list[Path], model: StrokeModel, detector: str | Path | None = None, batch_size: int = 8) -> dict:
    """The pooled figures of every set, and one row per set (its figures and strokes)."""
    results = []
    for s in sets:
        results.append(measure_set(model, s, detector=detector, batch_size=batch_size))
        log.info("%s: %s", s, figures(results[-1:])["fields"]["mean"])
    per = [{"render": r["render"], **figures([r]), "strokes": r["strokes"]} for r in results]
    return {"detector": str(detector or DEFAULT_DETECTOR), "renders": len(sets), "tolerance_frames": TOLERANCE, **figures(results), "per_render": per}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.caption_loss", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--renders", nargs="+", required=True, help="render folders (<video>/setN.mp4 + setN.csv)")
    p.add_argument("--model", required=True, help="adapter folder of the stroke model (e.g. assets/demo-model)")
    p.add_argument("--detector", default=str(DEFAULT_DETECTOR), help="detector folder")
    p.add_argument("--json", default=None, help="also write the figures with per-render rows to this file")
    p.add_argument("--batch-size", type=int, default=8, help="clips per encoder call")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from core.device import set_threads
    from core.loader import load_model

    set_threads(a.threads)
    sets = [s for d in a.renders for s in find_sets(d)]
    if not sets:
        p.error("no renders found (expected <folder>/<video>/setN.csv with setN.mp4 beside it)")
    res = {"model": a.model, **measure(sets, load_model(a.model, device=a.device), Path(a.detector), a.batch_size)}
    sys.stdout.write(json.dumps({k: v for k, v in res.items() if k != "per_render"}, indent=2) + "\n")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
