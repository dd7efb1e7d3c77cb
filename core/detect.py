"""A plain match video in, every stroke out: hits, hitter sides, rallies, players, rally winners.

    python -m core.detect VIDEO --out strokes.csv [--players "Name A,Name B"] [--first-server bottom]

Pipeline (`detect`):
1. Picture: one sequential decoding pass at a reduced size (`core.detect_features`: motion maps on
   an 18 x 32 grid); the vision model (`core.detect_model`, trained on renders by
   `python -m train.detector`) turns them into per-frame probabilities: a hit on this frame, the
   hitter in the upper half, the frame inside a rally (live play in the main camera view; not a
   cutaway, a replay, a crowd shot or a pause).
2. Sound (`core.detect_audio`): band-limited spectral flux onsets read with PyAV, in a thread
   beside the picture's pass. A file without an audio stream, or a silent one, is detected from
   the picture alone.
3. Fusion (`fuse`): an onset counts where the picture sees a hit within 2 frames, the picture
   alone counts at a share of its score; hits are the score's peaks above the threshold (without
   sound: P(hit) above `picture_threshold`), at least `nms_s` apart, inside a rally; a strong onset within `snap_frames` moves
   the hit onto the onset's frame (sound times the impact to a millisecond). Confidence = the
   fused score at the peak (0..1).
4. Rallies: runs of in-rally frames (at least `min_rally_s` long, with at least one hit), cut at
   camera cuts (a rally is played in one shot, and a replay often follows it with no pause; a cut
   is a jump of the grey map's layout, `core.detect_features.layout_change` above `CUT_LEVEL`;
   no hit is judged on its first frame nor within `cut_guard_s` after it: broadcasts return to
   the main camera before the serve, and the frames just after a cut to a replay can still read
   as live play), never in a shot framed otherwise than the main camera
   (`core.detect_features.CameraShots`: replays and other cut-aways are filmed from other
   framings), split where the hits pause longer than `split_gap_s` (two rallies in one
   camera shot, the boundary halfway). Within each, the
   hits singles' alternation says are missing (`recover`: between two hits from one side, and
   the serve before a rally's first hit) are looked for at a lower threshold; strokes are
   numbered within each. No stroke is ever reported outside a rally, so none in a
   replay or cutaway.
5. Side: per rally a two-state Viterbi over the hitters' sides (players alternate; a missed hit
   may break the alternation at a cost), from the model's side probability at each hit.
6. Winner: the rally winner serves the next rally, so the winner's side is the side of the next
   rally's first stroke (mapped through an end change in between); the last rally's winner is
   unknown (None).
7. Players: one video is one set (`set_number`, default 1). `players = (name, name)`: the first
   is the player in the bottom half (near the camera) at the video's first rally, the second the
   one in the upper half. In the deciding set 3 the players change ends when one first reaches 11
   points (counted from the inferred winners); so a player's side may change, their letter (A =
   players[0], B = players[1]) does not. `first_server` ("bottom"/"upper") fixes the side of the
   first serve.

Thresholds and weights live in the detector's detector.json (`DetectorConfig`), tuned on
validation renders. Everything runs on the CPU with one pass over the file; memory holds a chunk
of frames plus a few floats per frame, however long the video.
"""
from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.ndimage import maximum_filter1d, median_filter

from core.detect_audio import AudioTrack, onsets_at, read_flux
from core.detect_features import CUT_LEVEL, CameraShots, FeatureError, fix_times, iter_feature_chunks, probe
from core.detect_model import DetectorConfig, DetectorNet, load_detector

log = logging.getLogger(__name__)

DEFAULT_DETECTOR = Path(__file__).resolve().parents[1] / "assets" / "detector"
SIDES = ("upper", "bottom")
DECIDING_SET = 3
INTERVAL_POINTS = 11
MIN_FRAMES = 8
FIRST_FRAMES = 3
SEQ_WINDOW = 8192  # temporal net applied over windows this long (bounded memory on long files)
SEQ_OVERLAP = 128  # > the temporal net's reach (62 frames each side)
CSV_COLUMNS = ("rally", "ball_round", "time", "frame_num", "roundscore_A", "roundscore_B", "player",
               "server", "type", "side", "confidence", "rally_winner", "rally_start_frame",
               "rally_end_frame", "player_name")

Progress = Callable[[int, int, str], None]


class DetectError(RuntimeError):
    """A video or option detection cannot work with; the message says which and why."""


@dataclass
class DetectedStroke:
    rally: int
    ball_round: int
    frame: int
    time_s: float
    side: str  # "upper" / "bottom"
    player: str | None
    confidence: float


@dataclass
class DetectedRally:
    rally: int
    start_frame: int
    end_frame: int
    winner: str | None  # side of the rally winner (during that rally); None for the last


@dataclass
class Detection:
    strokes: list[DetectedStroke]
    rallies: list[DetectedRally]
    fps: float
    frames: int
    audio: bool = False  # whether a usable sound track was fused
    players: tuple[str, str] | None = None


@dataclass
class Scores:
    """Per-frame outputs of one decode pass, kept so that decisions can be re-run cheaply."""

    hit: np.ndarray  # (T,) P(hit on this frame)
    upper: np.ndarray  # (T,) P(hitter in the upper half | hit)
    rally: np.ndarray  # (T,) P(frame inside a rally)
    times: np.ndarray  # (T,) seconds
    fps: float
    audio: AudioTrack | None
    change: np.ndarray | None = None  # (T,) grey-map layout change from the frame before (cuts)
    main: np.ndarray | None = None  # (T,) bool: frame of a main-camera shot (None: all are)


# ---------------------------------------------------------------- public API


def detect(video, detector: str | Path | None = None, players: tuple[str, str] | None = None,
           first_server: str | None = None, progress: Progress | None = None,
           set_number: int = 1, use_audio: bool = True) -> Detection:
    """Every stroke of a match video (one set); see the module docstring. DetectError for bad input."""
    players = check_players(players)
    if first_server not in (None, *SIDES):
        raise DetectError(f"bad first server {first_server!r}: expected 'bottom' or 'upper'")
    if set_number not in (1, 2, 3, 4, 5):
        raise DetectError(f"bad set number {set_number!r}: expected 1..5")
    net, cfg = open_detector(detector)
    scores = score_video(video, net, progress=progress, use_audio=use_audio)
    return decide(scores, cfg, players=players, first_server=first_server, set_number=set_number)


def check_players(players) -> tuple[str, str] | None:
    if players is None:
        return None
    if isinstance(players, str):
        players = [p.strip() for p in players.split(",")]
    names = [str(p).strip() for p in players]
    if len(names) != 2 or not all(names):
        raise DetectError(f"players: expected two names (the player starting in the bottom half, then the "
                          f"one in the upper half), got {len(names)}: {names!r}")
    if names[0] == names[1]:
        raise DetectError(f"players: the two names are the same ({names[0]!r})")
    return names[0], names[1]


def open_detector(detector: str | Path | None = None) -> tuple[DetectorNet, DetectorConfig]:
    """The detector folder (default: the shipped one) as (net, config); DetectError when unusable."""
    folder = Path(detector) if detector is not None else DEFAULT_DETECTOR
    if not (folder / "detector.json").is_file() or not (folder / "detector.pt").is_file():
        raise DetectError(f"{folder}: not a detector folder (needs detector.json and detector.pt; "
                          "train one with python -m train.detector)")
    try:
        return load_detector(folder)
    except Exception as err:  # noqa: BLE001 - a broken folder gets one clear message
        raise DetectError(f"{folder}: the detector cannot be loaded ({err})") from None


# ---------------------------------------------------------------- scores


@torch.no_grad()
def score_video(video, net: DetectorNet, progress: Progress | None = None, use_audio: bool = True) -> Scores:
    """One decode pass -> per-frame probabilities (and the audio onsets when wanted and present)."""
    video = Path(video)
    try:
        meta = probe(video)
    except FeatureError as err:
        raise DetectError(str(err)) from None
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    embs, times, shots = [], [], CameraShots()
    step = (lambda d, t: progress(d, t, "decoding")) if progress else None
    with ThreadPoolExecutor(1) as pool:  # the sound track decodes beside the picture
        sound = pool.submit(read_flux, video) if use_audio else None
        try:
            for maps, t in iter_feature_chunks(video, progress=step):
                embs.append(net.encode_frames(maps))
                shots.add(maps)
                times.append(t)
        except (cv2.error, FeatureError) as err:
            raise DetectError(f"{video}: decoding failed ({err})") from None
        flux = sound.result() if sound is not None else None
    n = sum(len(t) for t in times)
    if n < MIN_FRAMES:
        raise DetectError(f"{video}: only {n} frames could be decoded; not a video detection can use")
    emb = torch.cat(embs)
    probs = torch.sigmoid(_sequence(net, emb)).numpy()
    times_ = fix_times(np.concatenate(times), meta.fps)
    fps = meta.fps
    audio = onsets_at(flux, times_, video) if use_audio else None
    if progress:
        progress(n, n, "done")
    return Scores(probs[0], probs[1], probs[2], times_, fps, audio, shots.change, shots.main())


def camera_cuts(change: np.ndarray | None) -> np.ndarray:
    """Frames that start a new camera shot (see CUT_LEVEL)."""
    return np.zeros(0, np.int64) if change is None else np.flatnonzero(change > CUT_LEVEL)


def _sequence(net: DetectorNet, emb: torch.Tensor) -> torch.Tensor:
    """(T, D) -> (3, T) logits, over overlapping windows (the net's reach is local)."""
    t = len(emb)
    if t <= SEQ_WINDOW:
        return net.sequence(emb[None])[0]
    out = torch.zeros(3, t)
    for s in range(0, t, SEQ_WINDOW - 2 * SEQ_OVERLAP):
        a, b = max(0, s - SEQ_OVERLAP), min(t, s + SEQ_WINDOW - SEQ_OVERLAP)
        part = net.sequence(emb[a:b][None])[0]
        keep_to = min(t, s + SEQ_WINDOW - 2 * SEQ_OVERLAP)
        out[:, s:keep_to] = part[:, s - a: keep_to - a]
    return out


# ---------------------------------------------------------------- decisions


def decide(scores: Scores, cfg: DetectorConfig, players: tuple[str, str] | None = None,
           first_server: str | None = None, set_number: int = 1, use_audio: bool = True) -> Detection:
    fps, n = scores.fps, len(scores.hit)
    audio = scores.audio if use_audio else None
    cuts = camera_cuts(scores.change)
    barred = np.zeros(n, bool) if scores.main is None else ~scores.main
    barred[cuts] = True
    segments = rally_segments(scores.rally, fps, cfg, barred)
    fused = fuse(scores.hit, audio, cfg)
    guard = int(round(cfg.cut_guard_s * fps))
    for c in cuts:
        fused[c: c + guard + 1] = 0.0
    if audio is None:
        cfg = replace(cfg, hit_threshold=cfg.picture_threshold, recover_threshold=cfg.picture_recover_threshold)
    hits = pick_hits(fused, segments, fps, cfg)
    if audio is not None:
        hits = [(_snap(f, audio, cfg, n), c) for f, c in hits]
    strokes, rallies = [], []
    for a, b, inside in _split(segments, hits, cfg.split_gap_s * fps):
        inside = recover(inside, fused, scores.upper, a, fps, cfg)
        k = len(rallies) + 1
        pad0, pad1 = (int(round(p * fps)) for p in cfg.rally_pad_s)
        rallies.append(DetectedRally(k, max(0, a + pad0), min(n - 1, b + pad1), None))
        for r, (f, c) in enumerate(inside, start=1):
            strokes.append(DetectedStroke(k, r, int(f), float(scores.times[f]), "bottom", None, round(float(c), 4)))
    _assign_sides(strokes, scores.upper, first_server, cfg)
    _assign_winners_and_players(strokes, rallies, players, set_number)
    return Detection(strokes, rallies, fps, n, audio is not None, players)


def _split(segments, hits, gap: float):
    """(first, last, hits) per rally: the hits of each segment, split where they pause longer than gap."""
    out = []
    for a, b in segments:
        inside = sorted((f, c) for f, c in hits if a <= f <= b)
        start, group = a, []
        for i, (f, c) in enumerate(inside):
            if group and f - group[-1][0] > gap:
                mid = (group[-1][0] + f) // 2
                out.append((start, mid, group))
                start, group = mid + 1, []
            group.append((f, c))
        if group:
            out.append((start, b, group))
    return out


def fuse(hit: np.ndarray, audio: AudioTrack | None, cfg: DetectorConfig) -> np.ndarray:
    """Fused per-frame hit score in 0..1.

    "add": P(hit) + w * onset term. "gate": an onset counts where the picture sees a hit nearby
    (onset term * sqrt of the largest P(hit) within 2 frames), the picture alone at (1 - w) of
    its score, so a loud landing or a shout without a swing stays below a clean impact."""
    if audio is None or cfg.audio_weight <= 0:
        return hit.copy()
    term = 1.0 / (1.0 + np.exp(-(audio.strength - cfg.audio_z)))
    if cfg.fusion == "gate":
        near = maximum_filter1d(hit, size=5, mode="nearest")
        return np.maximum(term * np.sqrt(near), (1.0 - cfg.audio_weight) * hit)
    return np.clip(hit + cfg.audio_weight * term, 0.0, 1.0)


def rally_segments(rally: np.ndarray, fps: float, cfg: DetectorConfig,
                   barred: np.ndarray | None = None) -> list[tuple[int, int]]:
    """Runs of in-rally frames, as (first, last) frame pairs, none on a barred frame: a camera
    cut's first frame (its motion compares two shots) and the frames of cut-away shots."""
    size = max(1, int(round(0.3 * fps)) | 1)
    on = median_filter((rally >= cfg.rally_threshold).astype(np.uint8), size=size, mode="nearest") > 0
    if barred is not None:
        on &= ~barred
    edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(np.int8), [0]])))
    runs = [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]
    return [(a, b) for a, b in runs if (b - a + 1) >= cfg.min_rally_s * fps]


def pick_hits(score: np.ndarray, segments, fps: float, cfg: DetectorConfig) -> list[tuple[int, float]]:
    """Greedy non-maximum suppression of the score's peaks above threshold, inside the segments."""
    mask = np.zeros(len(score), bool)
    for a, b in segments:
        mask[a: b + 1] = True
    mask[:FIRST_FRAMES] = False  # no previous frame, so no motion to judge
    radius = max(1, int(round(cfg.nms_s * fps)))
    cand = np.flatnonzero(mask & (score >= cfg.hit_threshold))
    taken = np.zeros(len(score), bool)
    out = []
    for f in cand[np.argsort(-score[cand], kind="stable")]:
        if not taken[max(0, f - radius): f + radius + 1].any():
            out.append((int(f), float(score[f])))
            taken[f] = True
    return sorted(out)


def recover(hits: list[tuple[int, float]], score: np.ndarray, upper: np.ndarray, start: int, fps: float,
            cfg: DetectorConfig) -> list[tuple[int, float]]:
    """A rally's hits plus the ones its alternation says are missing, at a lower threshold.

    Singles players alternate, so two neighbouring hits from the same side have a miss between
    them, and a rally starts with a serve from the side that did not hit first: the best peak
    of the score in such a window, from the wanted side, counts from `recover_threshold`."""
    if cfg.recover_threshold <= 0 or not hits:
        return hits
    radius = max(1, int(round(cfg.nms_s * fps)))

    def is_upper(f):
        return upper[max(0, f - 1): f + 2].mean() >= 0.5

    first = hits[0][0]
    windows = [(max(start, first - int(round(cfg.serve_reach_s * fps))), first - radius, not is_upper(first))]
    windows += [(f0 + radius, f1 - radius, not is_upper(f0))
                for (f0, _), (f1, _) in zip(hits, hits[1:]) if is_upper(f0) == is_upper(f1)]
    out = list(hits)
    for lo, hi, want_upper in windows:
        if hi <= lo:
            continue
        side_ok = (upper[lo: hi + 1] >= 0.5) == want_upper
        cand = np.where(side_ok, score[lo: hi + 1], -1.0)
        k = int(np.argmax(cand))
        if cand[k] >= cfg.recover_threshold:
            out.append((lo + k, float(cand[k])))
    return sorted(out)


def _snap(frame: int, audio: AudioTrack, cfg: DetectorConfig, n: int) -> int:
    a, b = max(0, frame - cfg.snap_frames), min(n, frame + cfg.snap_frames + 1)
    k = a + int(np.argmax(audio.strength[a:b]))
    return k if audio.strength[k] >= cfg.snap_z else frame


def _assign_sides(strokes: list[DetectedStroke], upper: np.ndarray, first_server: str | None,
                  cfg: DetectorConfig) -> None:
    """Per rally, the most likely side sequence given alternation (two-state Viterbi). The
    picture's side probability is held within side_floor of 0 and 1, so that one confident
    stroke (a serve whose return follows 0.3 s later) does not outweigh a rally's alternation."""
    by_rally: dict[int, list[DetectedStroke]] = {}
    for s in strokes:
        by_rally.setdefault(s.rally, []).append(s)
    alt = cfg.alternation_p
    trans = np.log(np.array([[1 - alt, alt], [alt, 1 - alt]]))
    floor = cfg.side_floor
    for rally, group in by_rally.items():
        p = np.array([upper[max(0, s.frame - 1): s.frame + 2].mean() for s in group]).clip(floor, 1 - floor)
        emit = np.log(np.stack([p, 1 - p], axis=1))  # (n, 2): upper, bottom
        if rally == 1 and first_server in SIDES:
            emit[0] = np.log([0.999, 0.001]) if first_server == "upper" else np.log([0.001, 0.999])
        score, back = emit[0].copy(), []
        for e in emit[1:]:
            cand = score[:, None] + trans  # (from, to)
            back.append(cand.argmax(axis=0))
            score = cand.max(axis=0) + e
        state = int(score.argmax())
        path = [state]
        for b in reversed(back):
            state = int(b[state])
            path.append(state)
        for s, st in zip(group, reversed(path)):
            s.side = SIDES[st]


def _assign_winners_and_players(strokes: list[DetectedStroke], rallies: list[DetectedRally],
                                players: tuple[str, str] | None, set_number: int) -> None:
    """Winners from the next rally's server; players through the end change of the deciding set."""
    first_side = {}
    for s in strokes:
        first_side.setdefault(s.rally, s.side)
    bottom = "A"  # the letter of the player in the bottom half; A = players[0] starts there
    points = {"A": 0, "B": 0}
    changed = set_number != DECIDING_SET  # only the deciding set changes ends at 11
    letters = {}
    for i, r in enumerate(rallies):
        letters[r.rally] = bottom
        if i + 1 == len(rallies):
            break
        server_side = first_side[rallies[i + 1].rally]
        winner = None
        for cand in ("A", "B"):
            triggers = not changed and points[cand] + 1 >= INTERVAL_POINTS
            nxt_bottom = _other(bottom) if triggers else bottom
            if (nxt_bottom if server_side == "bottom" else _other(nxt_bottom)) == cand:
                winner = cand if winner is None else winner
        winner = winner or (bottom if server_side == "bottom" else _other(bottom))
        r.winner = "bottom" if winner == bottom else "upper"
        points[winner] += 1
        if not changed and points[winner] >= INTERVAL_POINTS:
            changed, bottom = True, _other(bottom)
    for s in strokes:
        b = letters[s.rally]
        letter = b if s.side == "bottom" else _other(b)
        s.player = (players[0] if letter == "A" else players[1]) if players else letter


def _other(letter: str) -> str:
    return "B" if letter == "A" else "A"


# ---------------------------------------------------------------- CSV


def _clock(t: float) -> str:
    t = int(max(0.0, t))
    return f"{t // 3600}:{t // 60 % 60:02d}:{t % 60:02d}"


def write_set_csv(detection: Detection, out_csv: str | Path, players: tuple[str, str] | None = None) -> Path:
    """A ShuttleSet-style set CSV of the detection (player A = players[0], the bottom starter).

    Columns: rally, ball_round, time (h:mm:ss), frame_num, roundscore_A/B (after the rally, when
    its winner is known), player (A/B), server (1 on a rally's first stroke), type (empty: the
    stroke class is not detected), side, confidence, rally_winner (side), rally_start_frame,
    rally_end_frame, player_name (when names are known)."""
    players = check_players(players) or detection.players
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    rallies = {r.rally: r for r in detection.rallies}
    names = {"A": players[0], "B": players[1]} if players else {}
    letter_of = {players[0]: "A", players[1]: "B"} if players else {}
    score = {"A": 0, "B": 0}
    after: dict[int, tuple[int, int] | None] = {}
    for r in detection.rallies:  # the score after each rally, in player letters
        side_letters = {s.side: letter_of.get(s.player, s.player) for s in detection.strokes if s.rally == r.rally}
        w = side_letters.get(r.winner) if r.winner else None
        if w in score:
            score[w] += 1
            after[r.rally] = (score["A"], score["B"])
        else:
            after[r.rally] = None
    with out_csv.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for s in detection.strokes:
            r = rallies[s.rally]
            letter = letter_of.get(s.player, s.player) if s.player else ""
            sc = after.get(s.rally)
            w.writerow([s.rally, s.ball_round, _clock(s.time_s), s.frame, *(sc if sc else ("", "")), letter,
                        1 if s.ball_round == 1 else "", "", s.side, f"{s.confidence:.3f}", r.winner or "",
                        r.start_frame, r.end_frame, names.get(letter, "")])
    return out_csv


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core.detect",
                                description="Detect every stroke of a match video (one set) and write a "
                                            "ShuttleSet-style set CSV that the importer and the index read.")
    p.add_argument("video", help="the match video (one set)")
    p.add_argument("--out", required=True, help="the set CSV to write, e.g. strokes.csv")
    p.add_argument("--players", help='"Name A,Name B": the player starting in the bottom half, then the upper one')
    p.add_argument("--first-server", choices=SIDES, help="side of the first serve, when known")
    p.add_argument("--set", type=int, default=1, dest="set_number",
                   help="which set of the match the video is (3: ends change at 11 points); default 1")
    p.add_argument("--detector", default=None, help=f"detector folder (default {DEFAULT_DETECTOR})")
    p.add_argument("--no-audio", action="store_true", help="ignore the sound track")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        players = check_players(args.players) if args.players is not None else None
        det = detect(args.video, args.detector, players, args.first_server, set_number=args.set_number,
                     use_audio=not args.no_audio)
        out = write_set_csv(det, args.out, players)
    except DetectError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    log.info("%d strokes in %d rallies (%s) -> %s", len(det.strokes), len(det.rallies),
             "picture and sound" if det.audio else "picture only", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
