"""Held-out figures of the stroke detector on renders, beside simple baselines, in one command.

    python -m train.evaluate_detect --renders DIR [DIR ...] --detector assets/detector [--json OUT]

For every render (`<video>/setN.mp4` + its set CSV and segments.json, see `train.detector`):
- hit F1 at +-1, +-2, +-3 frames (one-to-one matching), with the sound track fused and with the
  picture alone;
- hitter-side accuracy over the hits matched at +-2;
- rally F1: a detected rally matches a true one when their frame spans have IoU >= 0.5;
- strokes detected inside cutaways and replays (target 0);
- rally-winner accuracy over the matched rallies whose winner the detector states (all but the
  last: the rule "the winner serves next" has no next rally there) and the annotations can show:
  a rally whose scoring player serves the next rally from the other half in the source
  annotations (no end change between) is counted as unjudgeable, not judged;
- the same figures per frame size (`by_size`);
- baselines: audio onsets alone and motion-energy peaks alone (peaks of the band-limited flux /
  of the whole frame's difference energy, 0.12 s apart), each at the threshold that is best on
  these very renders (an optimistic bound for the baselines).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import median_filter

from core.detect import DEFAULT_DETECTOR, Detection, decide, pick_hits
from core.detect_features import probe
from core.detect_model import DetectorConfig, load_detector
from train.detector import UNJUDGEABLE, Render, f1, find_sets, load_render, match_hits, scores_of

log = logging.getLogger(__name__)

TOLERANCES = (1, 2, 3)


def _iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]) + 1)
    return inter / ((a[1] - a[0] + 1) + (b[1] - b[0] + 1) - inter)


def rally_pairs(pred: list[tuple[int, int]], truth: list[tuple[int, int]]) -> list[tuple[int, int]]:
    pairs = sorted(((-_iou(p, t), i, j) for i, p in enumerate(pred) for j, t in enumerate(truth)
                    if _iou(p, t) >= 0.5))
    used_p, used_t, out = set(), set(), []
    for _, i, j in pairs:
        if i not in used_p and j not in used_t:
            used_p.add(i), used_t.add(j), out.append((i, j))
    return out


def hit_counts(pred: list[int], truth: np.ndarray) -> dict:
    return {f"tp{t}": len(match_hits(pred, truth, t)) for t in TOLERANCES} | {"pred": len(pred), "true": len(truth)}


def detection_counts(det: Detection, r: Render) -> dict:
    frames = [s.frame for s in det.strokes]
    c = hit_counts(frames, r.hits)
    matched = match_hits(frames, r.hits, 2)
    c["side_ok"] = sum(det.strokes[i].side == r.sides[j] for i, j in matched)
    c["side_n"] = len(matched)
    spans = [(x.start_frame, x.end_frame) for x in det.rallies]
    pairs = rally_pairs(spans, r.rallies)
    c.update(rally_tp=len(pairs), rally_pred=len(spans), rally_true=len(r.rallies))
    c["in_cutaways"] = sum(any(a <= f <= b for a, b in r.cutaways) for f in frames)
    stated = [(det.rallies[i].winner, r.winners[j]) for i, j in pairs
              if det.rallies[i].winner is not None and j < len(r.winners) and r.winners[j] is not None]
    judged = [(a, b) for a, b in stated if b != UNJUDGEABLE]
    c["winner_ok"] = sum(a == b for a, b in judged)
    c["winner_n"] = len(judged)
    c["winner_unjudgeable"] = len(stated) - len(judged)
    return c


def _sum(rows: list[dict]) -> dict:
    out: dict = {}
    for r in rows:
        for k, v in r.items():
            out[k] = out.get(k, 0) + v
    return out


def summary(c: dict) -> dict:
    s = {f"hit_f1_{t}": round(f1(c[f"tp{t}"], c["pred"], c["true"]), 4) for t in TOLERANCES}
    if "side_n" in c:
        s["side_accuracy"] = round(c["side_ok"] / max(1, c["side_n"]), 4)
        s["rally_f1"] = round(f1(c["rally_tp"], c["rally_pred"], c["rally_true"]), 4)
        s["strokes_in_cutaways"] = c["in_cutaways"]
        s["winner_accuracy"] = round(c["winner_ok"] / max(1, c["winner_n"]), 4)
        s["winners_judged"] = c["winner_n"]
        s["winners_unjudgeable"] = c["winner_unjudgeable"]
    s["hits_true"], s["hits_detected"] = c["true"], c["pred"]
    return s


def _peaks(signal: np.ndarray, threshold: float, fps: float) -> list[int]:
    cfg = DetectorConfig(hit_threshold=threshold, nms_s=0.12)
    return [f for f, _ in pick_hits(signal, [(0, len(signal) - 1)], fps, cfg)]


def motion_energy(r: Render) -> np.ndarray:
    e = r.maps[:, 0].astype(np.float32).mean(axis=(1, 2))
    base = median_filter(e, size=int(2 * r.fps) | 1, mode="nearest")
    return e - base


def baseline(signals: list[tuple[np.ndarray, Render]], grid: np.ndarray) -> dict:
    """Best-threshold peaks of a signal (the same threshold for every render)."""
    best = None
    for th in grid:
        c = _sum([hit_counts(_peaks(s, th, r.fps), r.hits) for s, r in signals])
        if best is None or f1(c["tp2"], c["pred"], c["true"]) > f1(best[1]["tp2"], best[1]["pred"], best[1]["true"]):
            best = (float(th), c)
    return {"threshold": round(best[0], 4), **summary(best[1])}


def evaluate(sets: list[Path], detector: Path, cache: Path | None = None) -> dict:
    net, cfg = load_detector(detector)
    per, rows_a, rows_v, audio_sig, motion_sig = [], [], [], [], []
    by_size: dict[str, tuple[list, list]] = {}
    for s in sets:
        r = load_render(s, cache)
        sc = scores_of(net, r)
        with_audio = detection_counts(decide(sc, cfg), r)
        picture = detection_counts(decide(sc, cfg, use_audio=False), r)
        rows_a.append(with_audio)
        rows_v.append(picture)
        meta = probe(r.video)
        size = f"{meta.width}x{meta.height}"
        by_size.setdefault(size, ([], []))[0].append(with_audio)
        by_size[size][1].append(picture)
        per.append({"render": str(s), "size": size, "audio_track": sc.audio is not None,
                    "with_audio": summary(with_audio), "picture_only": summary(picture)})
        if sc.audio is not None:
            audio_sig.append((sc.audio.strength, r))
        motion_sig.append((motion_energy(r), r))
        log.info("%s: %s", s, per[-1]["with_audio"])
    out = {"detector": str(detector), "renders": len(sets), "with_audio": summary(_sum(rows_a)),
           "picture_only": summary(_sum(rows_v)),
           "by_size": {k: {"renders": len(a), "with_audio": summary(_sum(a)), "picture_only": summary(_sum(v))}
                       for k, (a, v) in sorted(by_size.items())},
           "baseline_motion_energy_peaks": baseline(motion_sig, np.quantile(
               np.concatenate([m for m, _ in motion_sig]), np.linspace(0.80, 0.995, 40)))}
    if audio_sig:
        out["baseline_audio_onsets"] = baseline(audio_sig, np.linspace(1.0, 30.0, 59))
    else:
        out["baseline_audio_onsets"] = "no render has a sound track"
    out["per_render"] = per
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.evaluate_detect", description=__doc__.split("\n\n")[0])
    p.add_argument("--renders", nargs="+", required=True, help="test render folders (never trained on)")
    p.add_argument("--detector", default=str(DEFAULT_DETECTOR), help="detector folder")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--cache", default=None, help="feature cache folder")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(a.threads)
    sets = [s for d in a.renders for s in find_sets(d)]
    if not sets:
        p.error("no renders found (expected <folder>/<video>/setN.csv with setN.mp4 beside it)")
    res = evaluate(sets, Path(a.detector), Path(a.cache) if a.cache else None)
    text = json.dumps({k: v for k, v in res.items() if k != "per_render"}, indent=2)
    sys.stdout.write(text + "\n")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
