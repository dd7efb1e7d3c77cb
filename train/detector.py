"""Recipe: train the stroke detector's vision model on match renders (CPU, minutes).

    python -m train.detector --renders R1 [R2 ...] --heldout V1 [...] --out assets/detector

A render folder is what `python -m train.replay` writes (`<video>/setN.mp4` + `setN.csv`, and
`setN.segments.json` when the renderer writes one). Labels per frame come from the render's
ground truth: hit frames and hitter sides (the set CSV read through `core.annotations`), rally
spans (`segments.json` rallies, else the CSV's rally_start_frame/rally_end_frame, else first hit
- 0.5 s .. last hit + 1.2 s); cutaways are outside every rally.

`python -m train.detector_renders` renders the recipe's three lists (training, validation, test).
Training windows are augmented as broadcasts differ: left-right mirror, motion contrast, grey
gamma (light and dark courts; the model's input standardises each frame's grey map, so overall
brightness never counts) and, for half of them, another camera framing (`reframe`: zoom
0.92-1.15, shift up to 6 %; a match whose court sits higher in the frame is otherwise missed).

`--renders` train the model, `--heldout` (other seeds, other matches) pick the epoch and tune
the post-processing (hit threshold, audio weight) by hit F1 at +-2 frames; the test renders of
`train.evaluate_detect` must be neither. Features are cached beside the output
(`--cache`, default OUT/../.detector-cache) as they cost a decode pass each.
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.annotations import load_shuttleset_set
from core.detect import Scores, decide
from core.detect_audio import audio_onsets
from core.detect_features import CameraShots, fix_times, probe, read_features
from core.detect_model import DetectorConfig, DetectorNet, load_detector, normalise, save_detector

log = logging.getLogger(__name__)

HIT_SIGMA = 0.8  # frames: the soft hit target's width
SIDE_REACH = 2  # frames around a hit that carry the side label
REFRAME_P = 0.5  # share of training windows seen through another framing
FALLBACK_LEAD_S, FALLBACK_TAIL_S = 0.5, 1.2


@dataclass
class Render:
    """One rendered set with its per-frame labels."""

    video: Path
    maps: np.ndarray  # (T, 3, 18, 32) float16
    times: np.ndarray
    fps: float
    hits: np.ndarray  # (H,) frames
    sides: list[str]  # (H,) hitter side
    rallies: list[tuple[int, int]]  # inclusive frame spans
    cutaways: list[tuple[int, int]]
    winners: list[str | None]  # side of each rally's winner (from the scores)


@dataclass
class TrainArgs:
    epochs: int = 14
    steps_per_epoch: int = 120
    window: int = 256
    batch: int = 8
    lr: float = 3e-3
    seed: int = 0
    threads: int = 1


# ---------------------------------------------------------------- data


def find_sets(folder: str | Path) -> list[Path]:
    """The set CSVs of a render folder that have their video beside them."""
    return sorted(p for p in Path(folder).glob("*/set*.csv") if p.with_suffix(".mp4").is_file())


def _spans(set_csv: Path, table, n: int, fps: float) -> tuple[list, list]:
    seg = set_csv.with_suffix(".segments.json")
    if seg.is_file():
        data = json.loads(seg.read_text())
        return ([(int(r["start_frame"]), int(r["end_frame"])) for r in data.get("rallies", [])],
                [(int(c["start_frame"]), int(c["end_frame"])) for c in data.get("cutaways", [])])
    from core.annotations import read_rows

    _, rows = read_rows(set_csv)
    by_rally: dict[int, list] = {}
    for s, r in zip(table.strokes, rows):
        by_rally.setdefault(s.rally, []).append((s.frame, r))
    spans = []
    for rally, items in sorted(by_rally.items(), key=lambda kv: min(f for f, _ in kv[1])):  # the video's order
        r0 = items[0][1]
        if r0.get("rally_start_frame") and r0.get("rally_end_frame"):
            spans.append((int(float(r0["rally_start_frame"])), int(float(r0["rally_end_frame"]))))
        else:
            frames = [f for f, _ in items]
            spans.append((max(0, min(frames) - round(FALLBACK_LEAD_S * fps)),
                          min(n - 1, max(frames) + round(FALLBACK_TAIL_S * fps))))
    return spans, []


UNJUDGEABLE = "unjudgeable"


def _winners(table) -> list[str | None]:
    """Side of each rally's winner, rallies in the video's order: the player whose score rose by
    one point, on the side they played from; None where the scores do not say (missing, or a
    rally annotated out of its place in the video, so that the score jumps).

    UNJUDGEABLE where the annotations contradict themselves: the winner must serve the next rally,
    so a winner whose next serve is drawn from the other half has no winner a video could show;
    `train.evaluate_detect` counts those apart. (The renders are of one set's first rallies, so
    no end change falls between two of them.)"""
    out, prev = [], (0, 0)
    by_rally: dict[int, list] = {}
    for s in table.strokes:
        by_rally.setdefault(s.rally, []).append(s)
    # in the video's order, as the rally spans are (a rally annotated out of place stays there)
    groups = sorted(by_rally.values(), key=lambda g: min(s.frame for s in g))
    for k, group in enumerate(groups):
        s0 = group[-1]
        sc = (s0.score_a, s0.score_b)
        winner = None
        if None not in sc:
            rose = (sc[0] - prev[0], sc[1] - prev[1])
            letter = {(1, 0): "A", (0, 1): "B"}.get(rose)  # anything else: the scores skip a rally
            sides = {s.player: s.side for s in group if s.player}
            other = {"A": "B", "B": "A"}.get(letter)
            winner = sides.get(letter) or _flip(sides.get(other))
            prev = sc
            if winner is not None and k + 1 < len(groups) and groups[k + 1][0].side != winner:
                winner = UNJUDGEABLE
        out.append(winner)
    return out


def _flip(side):
    return None if side is None else ("bottom" if side == "upper" else "upper")


def load_render(set_csv: Path, cache: Path | None = None) -> Render:
    video = set_csv.with_suffix(".mp4")
    key = None
    if cache is not None:
        st = video.stat()
        key = cache / f"{set_csv.parent.name}_{set_csv.stem}_{st.st_size}_{int(st.st_mtime)}.npz"
    if key is not None and key.is_file():
        z = np.load(key)
        maps, times = z["maps"], z["times"]
    else:
        maps, times = read_features(video)
        if key is not None:
            key.parent.mkdir(parents=True, exist_ok=True)
            np.savez(key, maps=maps, times=times)
    meta = probe(video)
    table = load_shuttleset_set(set_csv)
    n = len(maps)
    rallies, cutaways = _spans(set_csv, table, n, meta.fps)
    return Render(video, maps, fix_times(times, meta.fps), meta.fps,
                  np.array([s.frame for s in table.strokes]), [s.side for s in table.strokes],
                  rallies, cutaways, _winners(table))


def labels(r: Render) -> np.ndarray:
    """(4, T) float32: hit target, upper, side mask, in rally."""
    n = len(r.maps)
    y = np.zeros((4, n), np.float32)
    idx = np.arange(n)
    for f, side in zip(r.hits, r.sides):
        lo, hi = max(0, f - 4), min(n, f + 5)
        y[0, lo:hi] = np.maximum(y[0, lo:hi], np.exp(-((idx[lo:hi] - f) ** 2) / (2 * HIT_SIGMA ** 2)))
        a, b = max(0, f - SIDE_REACH), min(n, f + SIDE_REACH + 1)
        y[1, a:b] = float(side == "upper")
        y[2, a:b] = 1.0
    for a, b in r.rallies:
        y[3, a: b + 1] = 1.0
    for a, b in r.cutaways:
        y[3, a: b + 1] = 0.0
    return y


def _batch(renders, ys, args: TrainArgs, rng) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ts = [], []
    for _ in range(args.batch):
        k = rng.integers(len(renders))
        n = len(renders[k].maps)
        s = int(rng.integers(0, max(1, n - args.window)))
        raw = renders[k].maps[s: s + args.window].astype(np.float32)
        raw[:, :2] *= float(rng.uniform(0.7, 1.4))  # motion contrast (player vs court colours)
        raw[:, 2] = raw[:, 2] ** float(rng.uniform(0.6, 1.6))  # gamma: light and dark courts
        m = normalise(raw)
        if rng.random() < REFRAME_P:
            m = reframe(m, rng)
        if rng.random() < 0.5:  # left-right mirror: sides and hits are unchanged
            m = m.flip(-1)
        xs.append(m)
        ts.append(torch.as_tensor(ys[k][:, s: s + args.window]))
    t = min(len(x) for x in xs)
    return torch.stack([x[:t] for x in xs]), torch.stack([y[:, :t] for y in ts])


def reframe(m: torch.Tensor, rng, zoom: tuple[float, float] = (0.92, 1.15), shift: float = 0.06) -> torch.Tensor:
    """One window's normalised maps (T, C, H, W) seen through another camera: zoomed about the
    centre and moved by up to `shift` of the frame (broadcast framings differ by match; outside
    the picture there is no motion and average grey)."""
    z = float(rng.uniform(*zoom))
    dx, dy = (float(rng.uniform(-shift, shift)) * 2 for _ in range(2))
    theta = torch.tensor([[1 / z, 0.0, dx], [0.0, 1 / z, dy]], dtype=m.dtype).expand(len(m), 2, 3)
    grid = nn.functional.affine_grid(theta, list(m.shape), align_corners=False)
    return nn.functional.grid_sample(m, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    bce = nn.functional.binary_cross_entropy_with_logits
    hit = bce(logits[:, 0], y[:, 0], pos_weight=torch.tensor(8.0))
    side = (bce(logits[:, 1], y[:, 1], reduction="none") * y[:, 2]).sum() / y[:, 2].sum().clamp(min=1)
    rally = bce(logits[:, 2], y[:, 3])
    return hit + side + rally


# ---------------------------------------------------------------- scoring and matching


_AUDIO: dict = {}


@torch.no_grad()
def scores_of(net: DetectorNet, r: Render, audio: bool = True) -> Scores:
    emb = torch.cat([net.encode_frames(r.maps[s: s + 1024]) for s in range(0, len(r.maps), 1024)])
    p = torch.sigmoid(net.sequence(emb[None])[0]).numpy()
    track = None
    if audio:
        if r.video not in _AUDIO:  # one decode of the sound track per render
            _AUDIO[r.video] = audio_onsets(r.video, r.times)
        track = _AUDIO[r.video]
    shots = CameraShots()
    shots.add(r.maps)
    return Scores(p[0], p[1], p[2], r.times, r.fps, track, shots.change, shots.main())


def match_hits(pred: list[int], truth: np.ndarray, tol: int) -> list[tuple[int, int]]:
    """Greedy one-to-one matching by distance: (pred index, truth index) pairs within tol frames."""
    pairs = sorted((abs(p - t), i, j) for i, p in enumerate(pred) for j, t in enumerate(truth) if abs(p - t) <= tol)
    used_p, used_t, out = set(), set(), []
    for _, i, j in pairs:
        if i not in used_p and j not in used_t:
            used_p.add(i), used_t.add(j), out.append((i, j))
    return out


def f1(tp: int, n_pred: int, n_true: int) -> float:
    return 2 * tp / (n_pred + n_true) if n_pred + n_true else 1.0


QUICK_GRID = {"audio_weight": (0.0, 0.35, 0.5), "hit_threshold": (0.3, 0.4, 0.5, 0.55, 0.6, 0.7)}
FULL_GRID = {"fusion": ("add", "gate"), "audio_weight": (0.0, 0.2, 0.35, 0.5), "audio_z": (4.0, 6.0, 8.0),
             "nms_s": (0.12, 0.2, 0.26), "hit_threshold": (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8),
             "recover_threshold": (0.0, 0.1, 0.2, 0.3), "cut_guard_s": (0.0, 0.2, 0.4)}
SIDE_GRID = {"side_floor": (1e-4, 0.01, 0.05, 0.1, 0.2, 0.3), "alternation_p": (0.85, 0.92, 0.97)}


def tune(net, val: list[Render], cfg: DetectorConfig, grid: dict = QUICK_GRID,
         sides: bool = False) -> tuple[DetectorConfig, float]:
    """Post-processing settings with the best hit F1 at +-2 on the held-out renders (the audio
    settings only where they have sound)."""
    scored = [(scores_of(net, r), r) for r in val]
    has_audio = any(s.audio is not None for s, _ in scored)
    picture = {"nms_s": grid.get("nms_s", (cfg.nms_s,)), "picture_threshold": grid["hit_threshold"],
               "picture_recover_threshold": grid.get("recover_threshold", (cfg.picture_recover_threshold,)),
               "cut_guard_s": grid.get("cut_guard_s", (cfg.cut_guard_s,))}
    cfg, score = _search(scored, cfg, picture, use_audio=False)
    if has_audio:
        grid = {**grid, "nms_s": (cfg.nms_s,), "cut_guard_s": (cfg.cut_guard_s,)}  # one of each for both
        cfg, score = _search(scored, cfg, grid, use_audio=True)
    if sides:
        cfg = _search_sides(scored, cfg, SIDE_GRID, use_audio=has_audio)
    return cfg, score


def _search_sides(scored, cfg: DetectorConfig, grid: dict, use_audio: bool) -> DetectorConfig:
    """The side decoding's settings with the best hitter-side accuracy on the matched hits
    (the hits themselves do not depend on them)."""
    best = (-1.0, cfg)
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        c = replace(cfg, **dict(zip(keys, values)))
        ok = n = 0
        for s, r in scored:
            strokes = decide(s, c, use_audio=use_audio).strokes
            pairs = match_hits([x.frame for x in strokes], r.hits, 2)
            ok += sum(strokes[i].side == r.sides[j] for i, j in pairs)
            n += len(pairs)
        acc = ok / max(1, n)
        if acc > best[0] + 1e-9:
            best = (acc, c)
    log.info("sides: %.4f on matched held-out hits (floor %g, alternation %.2f)", best[0],
             best[1].side_floor, best[1].alternation_p)
    return best[1]


def _search(scored, cfg: DetectorConfig, grid: dict, use_audio: bool) -> tuple[DetectorConfig, float]:
    best = (-1.0, cfg)
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        c = replace(cfg, **dict(zip(keys, values)))
        tp = npred = ntrue = 0
        for s, r in scored:
            pred = [x.frame for x in decide(s, c, use_audio=use_audio).strokes]
            tp += len(match_hits(pred, r.hits, 2))
            npred, ntrue = npred + len(pred), ntrue + len(r.hits)
        score = f1(tp, npred, ntrue)
        if score > best[0] + 1e-9:
            best = (score, c)
    return best[1], best[0]


# ---------------------------------------------------------------- recipe


def train(renders: list[Render], val: list[Render], args: TrainArgs, cfg: DetectorConfig) -> tuple[DetectorNet, DetectorConfig, dict]:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    net = DetectorNet(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    total = args.epochs * args.steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    ys = [labels(r) for r in renders]
    history, best = [], (-1.0, None, None)
    for epoch in range(args.epochs):
        net.train()
        t0, run = time.time(), 0.0
        for _ in range(args.steps_per_epoch):
            x, y = _batch(renders, ys, args, rng)
            loss = loss_fn(net(x), y)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            run += loss.item()
        net.eval()
        tuned, val_f1 = tune(net, val, cfg)
        history.append({"epoch": epoch + 1, "loss": run / args.steps_per_epoch, "val_f1_2": val_f1,
                        "threshold": tuned.hit_threshold, "s": round(time.time() - t0, 1)})
        log.info("epoch %d: loss %.4f, held-out F1(+-2) %.4f at threshold %.2f (%.0f s)", epoch + 1,
                 history[-1]["loss"], val_f1, tuned.hit_threshold, history[-1]["s"])
        if val_f1 >= best[0]:
            best = (val_f1, {k: v.clone() for k, v in net.state_dict().items()}, tuned)
    net.load_state_dict(best[1])
    net.eval()
    tuned, val_f1 = tune(net, val, cfg, FULL_GRID, sides=True)  # the chosen epoch, on the full grids
    log.info("final tuning: held-out F1(+-2) %.4f", val_f1)
    return net, tuned, {"history": history, "best_epoch_val_f1_2": best[0], "best_val_f1_2": val_f1}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.detector", description=__doc__.split("\n\n")[0])
    p.add_argument("--renders", nargs="+", required=True, help="training render folders (train.replay --out)")
    p.add_argument("--heldout", nargs="+", required=True, help="validation render folders: other seeds and matches")
    p.add_argument("--out", required=True, help="detector folder to write (detector.pt, detector.json)")
    p.add_argument("--cache", default=None, help="feature cache folder")
    p.add_argument("--tune-only", action="store_true",
                   help="keep the weights in --out; only re-tune the post-processing on --heldout")
    for f, v in TrainArgs().__dict__.items():
        p.add_argument(f"--{f.replace('_', '-')}", type=type(v), default=v)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = TrainArgs(**{f: getattr(a, f) for f in TrainArgs().__dict__})
    torch.set_num_threads(args.threads)
    out = Path(a.out)
    cache = Path(a.cache) if a.cache else out.parent / ".detector-cache"
    train_sets = [s for d in a.renders for s in find_sets(d)]
    val_sets = [s for d in a.heldout for s in find_sets(d)]
    if not train_sets or not val_sets:
        p.error("no renders found (expected <folder>/<video>/setN.csv with setN.mp4 beside it)")
    overlap = {s.parent.name for s in train_sets} & {s.parent.name for s in val_sets}
    if overlap:
        log.warning("matches both in training and held-out renders: %s", ", ".join(sorted(overlap)))
    val = [load_render(s, cache) for s in val_sets]
    if a.tune_only:
        return _retune(out, val, val_sets)
    renders = [load_render(s, cache) for s in train_sets]
    cfg = DetectorConfig()
    net, cfg, info = train(renders, val, args, cfg)
    cfg.trained_on = {"train": [_name(s) for s in train_sets], "heldout": [_name(s) for s in val_sets],
                      "frames": int(sum(len(r.maps) for r in renders)), "args": args.__dict__, **info}
    save_detector(net, cfg, out)
    log.info("held-out F1(+-2) %.4f; detector written to %s", info["best_val_f1_2"], out)
    return 0


def _name(set_csv: Path) -> str:
    """A render's set file named from its render list: <list>/<video>/setN.csv (no machine path)."""
    return "/".join(set_csv.parts[-3:])


def _retune(out: Path, val: list[Render], val_sets: list[Path]) -> int:
    net, cfg = load_detector(out)
    tuned, val_f1 = tune(net, val, cfg, FULL_GRID, sides=True)
    tuned.trained_on = {**cfg.trained_on, "tuned_on": [_name(s) for s in val_sets], "tuned_val_f1_2": val_f1}
    save_detector(net, tuned, out)
    log.info("re-tuned on %d held-out renders: F1(+-2) %.4f (%s fusion, threshold %.2f)", len(val),
             val_f1, tuned.fusion, tuned.hit_threshold)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
