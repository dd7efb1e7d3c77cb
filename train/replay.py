"""Annotated rallies -> a rendered broadcast of them, with sound, with exactly known ground truth.

    python -m train.replay --set SHUTTLESET/<video>/set1.csv --out renders/ --rallies 1-10 --seed 3

Writes `OUT/<video>/setN.mp4` (H.264 yuv420p + AAC, through PyAV; plays in a browser as it is),
`OUT/<video>/setN.csv` (the source columns, with the rendered video's `frame_num` and `time` and
every pixel coordinate mapped into the rendered frame, plus `rally_start_frame` and
`rally_end_frame`: the live shot of the row's rally), `OUT/<video>/setN.segments.json` (fps,
frame count, size, whether there is sound, each rally's live shot and every cut-away, frame ranges
inclusive), plus the video's rows in `OUT/match.csv` and `OUT/homography.csv` (corners = the court
actually drawn), so `core.annotations.load_shuttleset_set` reads a render back like a real set.

Timing: each stroke is hit at its annotated time (frame_num / source fps). Inside a rally the real
gaps are kept (clipped to MIN_STROKE_GAP_S..MAX_STROKE_GAP_S against annotation slips: 1.6 % of
ShuttleSet's gaps are under 0.28 s, a third of them between serve and return, which would draw
both players hitting at once and leave the server's side unknowable; a return comes at least
MIN_RETURN_GAP_S after its serve, the shortest serve's flight); a rally's live shot ends
RALLY_END_S after its last hit, and the pause before the next serve is cut to `max_gap` (at
least MIN_PAUSE_S: the server fetches the shuttle and takes position), then lengthened to hold
the cut-aways (train/render/cutaways.py: replay, close-up,
crowd, walk back) and SETUP_S + HOLD_S of the main camera before the serve. Hit frames are
round(t * fps), strictly increasing, and the shuttle is at the contact point on exactly that frame.
Replays re-render earlier live times slowed down; their hits are not strokes and make no sound.

Sound (train/render/audio.py): a racket impact starting at sample round(frame / fps * rate) of
each hit, loud and bright as the shuttle's launch speed in the drawn flight, landings, steps,
squeaks, crowd, applause and umpire calls; levels from the seed.

Camera: the match's real court corners (homography.csv) scaled to the render size, then a seeded
zoom and offset; `OUT/homography.csv` states the corners after that. Camera shake moves frames by
at most MARGIN - 1 pixels around those corners. Cut-aways use other framings of the same camera.

Frames: frame i has pts i and there are no B-frames, so the i-th decoded frame is the i-th rendered
one for OpenCV, decord and browsers (tests/test_replay.py checks it with frames that spell their index).

Speed, per CPU core on a busy 2-core machine: about 140 frames/s at 640x360 (H.264 encoding is
most of it) and about 290 frames/s at 192x108 with sound and cut-aways, 490 without (the sound's
synthesis and AAC encoding cost about 1/30 of its duration).

Nothing in the pixels or the sound names a stroke: colours, sizes and the scene are per render or
per player; the stroke type shows only as motion (racket swing form, shuttle arc and speed) and as
the impact's loudness, and the zone and side only as positions, as in real broadcast footage.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.annotations import AnnotationError, Stroke, load_shuttleset_set, read_rows
from core.court import COURT_LENGTH, COURT_WIDTH, NET_Y, SHORT_SERVICE_DIST, Court
from core.encode import Writer
from train.render import cutaways as cutaway_plan
from train.render.audio import RATE, soundtrack
from train.render.camera import Camera, reframed
from train.render.cutaways import Crowd, Cut, zoom_matrix
from train.render.players import BACKSWING_S, FOLLOW_S, RECOVER_S, Swing, draw_player, form_of, gait, track
from train.render.scene import MARGIN, Finish, Scene
from train.render.shuttle import Flight, draw_shadow, draw_shuttle, profile
from train.render.style import FAMILIES, NARROW, make_style

log = logging.getLogger(__name__)

SOURCE_SIZE = (1280, 720)  # ShuttleSet pixel coordinates are in the 720p broadcast frame
LEAD_IN_S = 1.0
LAST_FLIGHT_S = 1.2  # a rally is over this long after its last hit
RALLY_END_S = 2.0  # the live shot of a rally ends this long after its last hit (every flight has landed)
SETUP_S = 0.6  # after the cut-aways, the main camera shows the server this long before the hold
END_COLUMNS = ("rally_start_frame", "rally_end_frame")
TAIL_S = 1.0
MIN_STROKE_GAP_S = 0.28  # no singles exchange is faster; ShuttleSet has serve and return 4 frames apart
MIN_RETURN_GAP_S = 0.5  # a short serve's flight to the receiver
MIN_PAUSE_S = 3.0  # between two rallies in one camera shot (real broadcasts: 10-25 s)
MAX_STROKE_GAP_S = 4.0
HOLD_S = 0.8  # the server shows the shuttle this long before serving
SERVE_REACH = 0.35  # metres in front of the server, where serves (no hit point) are struck
COORDS = (("hit_x", "hit_y"), ("landing_x", "landing_y"),
          ("player_location_x", "player_location_y"), ("opponent_location_x", "opponent_location_y"))
CORNERS = ("upleft", "upright", "downleft", "downright")


class ReplayError(ValueError):
    """A set that cannot be rendered or a bad option; the message says which and why."""


@dataclass(frozen=True)
class RenderOptions:
    """Switches for tests: without shuttle or swings a render shows only positions."""

    shuttle: bool = True
    swing: bool = True
    stamp: bool = False  # draw each frame's index as 10 binary 8x8 blocks at the top left (tests)


@dataclass
class Shot:
    """One stroke placed on the render timeline (positions in court metres)."""

    stroke: Stroke
    row: dict
    frame: int
    t: float  # = frame / fps
    hitter: str  # 'A' / 'B'
    contact: np.ndarray  # (3,) where the racket meets the shuttle
    hitter_xy: np.ndarray | None
    other_xy: np.ndarray | None
    landing: np.ndarray | None  # (2,) floor point


@dataclass
class Timeline:
    """Where everything happens in the render, in frames (ranges inclusive)."""

    shots: list[Shot]
    rallies: list[dict]  # {"rally", "start_frame", "end_frame"}: the live shot of each rally
    cuts: list[Cut]
    n_frames: int


# ---------------------------------------------------------------- public API


def render_set(set_csv: str | Path, out_dir: str | Path, rallies: Iterable[int] | str | None = None,
               seed: int = 0, size: tuple[int, int] = (640, 360), fps: float = 25, max_gap: float = 4.0,
               progress: Callable[[int, int], None] | None = None,
               options: RenderOptions | None = None, cutaways: bool = True, audio: bool = True,
               family: str = NARROW, video: str | None = None) -> Path:
    """Render a ShuttleSet set file (optionally some rallies); returns the rendered set CSV's path.

    rallies: None (all), rally numbers, or a string like '1-10' / '1,3,5-7'. progress(done, total)
    is called every 25 frames. options: test switches (no shuttle / no swings). cutaways: broadcast
    cut-aways between rallies; audio: a sound track. family: "broadcast" (the narrow look) or a
    wide look family of `train.render.style.FAMILIES`. video: the rendered video's
    name (default the source's), so that parts of one set can be rendered with their own looks.
    ReplayError for bad options, an unreadable set file or a match without court corners.
    """
    size, fps, max_gap = _check_options(size, fps, max_gap, seed)
    options = options or RenderOptions()
    set_csv = Path(set_csv)
    table, header, rows = _load(set_csv)
    wanted = parse_rallies(rallies) if isinstance(rallies, str) else (set(rallies) if rallies else None)
    pairs = [(s, r) for s, r in zip(table.strokes, rows) if wanted is None or s.rally in wanted]
    if not pairs:
        raise ReplayError(f"{set_csv}: none of the rallies {_fmt_rallies(wanted)} are in the file")
    src_fps = table.fps or 25.0
    if not table.fps:
        log.warning("%s: frame rate not found from the time column; assuming 25 fps", set_csv)

    rng_style, rng_scene, rng_finish, rng_cuts, rng_audio = (np.random.default_rng([seed, k]) for k in range(5))
    if family != NARROW and family not in FAMILIES:
        raise ReplayError(f"unknown look family {family!r}: expected {NARROW} or one of {', '.join(FAMILIES)}")
    style = make_style(rng_style, family)
    source_video = set_csv.parent.name
    video = video or source_video
    out_dir = Path(out_dir)
    affine = _existing_camera(out_dir, video, table.court, size)
    if affine is None:
        affine = _camera_matrix(size, style, table.court)
    court = _transform_court(table.court, affine)
    cam = Camera(court, size)
    timeline = _timeline(pairs, table.court, src_fps, fps, max_gap, rng_cuts if cutaways else None)

    folder = out_dir / video
    folder.mkdir(parents=True, exist_ok=True)
    mp4 = folder / f"{set_csv.stem}.mp4"
    frames = _Frames(timeline, cam, style, rng_scene, rng_finish, size, fps, options, seed)
    sound = None
    if audio:
        sound = soundtrack(frames.events(), timeline.n_frames, fps, rng_audio)
    _write_video(mp4, frames, timeline.n_frames, fps, size, progress, sound, style.crf)

    out_csv = folder / f"{set_csv.stem}.csv"
    _write_set_csv(out_csv, header, timeline, affine, fps)
    _write_segments(folder / f"{set_csv.stem}.segments.json", timeline, fps, size, sound is not None)
    _write_match_files(set_csv, out_dir, source_video, video, court, affine)
    log.info("%s: %d strokes, %d frames at %g fps, %d cut-aways -> %s", set_csv.name, len(timeline.shots),
             timeline.n_frames, fps, len(timeline.cuts), mp4)
    return out_csv


def parse_rallies(text: str) -> set[int]:
    """'1-10' or '1,3,5-7' -> {1, 3, 5, 6, 7}; ReplayError for anything else."""
    out: set[int] = set()
    for part in text.replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ReplayError(f"bad rally list {text!r}: use numbers and ranges like 1-10 or 1,3,5-7")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ReplayError(f"bad rally range {part!r}: the end is before the start")
        out.update(range(lo, hi + 1))
    return out


# ---------------------------------------------------------------- inputs


def _check_options(size, fps, max_gap, seed) -> tuple[tuple[int, int], float, float]:
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ReplayError(f"bad size {size!r}: expected (width, height)") from None
    if not (32 <= w <= 3840 and 18 <= h <= 2160) or w % 2 or h % 2:
        raise ReplayError(f"bad size {w}x{h}: width 32..3840 and height 18..2160, both even")
    if not (isinstance(fps, (int, float)) and 1 <= fps <= 120):
        raise ReplayError(f"bad fps {fps!r}: expected 1..120")
    if not (isinstance(max_gap, (int, float)) and 0 <= max_gap <= 600):
        raise ReplayError(f"bad max gap {max_gap!r}: expected 0..600 seconds")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ReplayError(f"bad seed {seed!r}: expected a non-negative integer")
    return (w, h), float(fps), float(max_gap)


def _load(set_csv: Path):
    if not set_csv.is_file():
        raise ReplayError(f"{set_csv}: set file not found")
    try:
        table = load_shuttleset_set(set_csv)
        header, rows = read_rows(set_csv)
    except AnnotationError as err:
        raise ReplayError(str(err)) from None
    if not table.strokes:
        raise ReplayError(f"{set_csv}: no strokes in the file")
    if table.court is None:
        raise ReplayError(f"{set_csv}: no court corners for {set_csv.parent.name!r} in "
                          f"{set_csv.parent.parent / 'homography.csv'}; the court cannot be drawn")
    return table, header, rows


def _fmt_rallies(wanted) -> str:
    return ",".join(map(str, sorted(wanted))) if wanted else "(all)"


# ---------------------------------------------------------------- geometry


def _camera_matrix(size, style, court: Court) -> np.ndarray:
    """3x3 map from source broadcast pixels to render pixels: resize, zoom about the centre, offset,
    then the style's camera rotation (tilt, pan, roll: the image map of a camera turned in place,
    with a focal length of 1.5 frame widths) and, for a tilted view, the court's foreshortening.
    A rotated view is fitted back into the frame (court inside, room above it for the far player)."""
    w, h = size
    sx, sy = w / SOURCE_SIZE[0], h / SOURCE_SIZE[1]
    cx, cy = w / 2, h / 2
    zoom, shift = style.zoom, style.shift
    m = np.array([[sx * zoom, 0, cx - zoom * cx + shift[0] * w],
                  [0, sy * zoom, cy - zoom * cy + shift[1] * h],
                  [0, 0, 1.0]])
    if not (style.tilt or style.pan or style.roll):
        return m
    f = 1.5 * w
    k = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1.0]])
    t, p, r = np.radians([style.tilt, style.pan, style.roll])
    rx = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    ry = np.array([[np.cos(p), 0, np.sin(p)], [0, 1, 0], [-np.sin(p), 0, np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    squash = np.array([[1, 0, 0], [0, 1 + style.tilt / 40, -cy * style.tilt / 40], [0, 0, 1]])
    m = squash @ k @ rz @ rx @ ry @ np.linalg.inv(k) @ m
    corners = np.array([_map_xy(m, *getattr(court, c)) for c in CORNERS])
    lo, hi = corners.min(0), corners.max(0)
    box_lo, box_hi = np.array([0.03 * w, 0.16 * h]), np.array([0.97 * w, 0.97 * h])
    scale = min(1.0, *((box_hi - box_lo) / np.maximum(hi - lo, 1e-6)))
    mid = (lo + hi) / 2
    centre = np.clip(mid, box_lo + (hi - lo) * scale / 2, box_hi - (hi - lo) * scale / 2)
    fit = np.array([[scale, 0, centre[0] - scale * mid[0]], [0, scale, centre[1] - scale * mid[1]], [0, 0, 1.0]])
    return fit @ m


def _existing_camera(out_dir: Path, video: str, src: Court, size) -> np.ndarray | None:
    """The camera of this match in an earlier render in out_dir, so all its sets share one court.

    Recovered from that render's corners in OUT/homography.csv (a per-axis scale and offset of the
    source corners); ReplayError when they cannot come from a render of this size.
    """
    path = out_dir / "homography.csv"
    if not path.is_file():
        return None
    try:
        row, _ = _source_row(path, video, quiet=True)
        if row is None:
            return None
        old = _court_of_row(row)
    except (AnnotationError, ValueError, KeyError):
        return None
    affine = np.eye(3)
    base = (size[0] / SOURCE_SIZE[0], size[1] / SOURCE_SIZE[1])
    for axis in (0, 1):
        a = np.array([getattr(src, c)[axis] for c in CORNERS])
        b = np.array([getattr(old, c)[axis] for c in CORNERS])
        scale, offset = np.polyfit(a, b, 1)
        fits = np.abs(scale * a + offset - b).max() < 0.5 and 0.8 < scale / base[axis] < 1.25
        if not fits:
            raise ReplayError(f"{path} already holds {video!r} rendered with another camera or size; "
                              f"render a {size[0]}x{size[1]} replay into another folder")
        affine[axis, axis], affine[axis, 2] = scale, offset
    log.info("%s: using the camera of the earlier render in %s", video, out_dir)
    return affine


def _court_of_row(row: dict) -> Court:
    return Court(*((float(row[f"{c}_x"]), float(row[f"{c}_y"])) for c in CORNERS))


def _map_xy(matrix: np.ndarray, x: float, y: float) -> tuple[float, float]:
    u, v, z = matrix @ np.array([x, y, 1.0])
    return (float(u / z), float(v / z))


def _transform_court(court: Court, affine: np.ndarray) -> Court:
    return Court(*(_map_xy(affine, *getattr(court, c)) for c in CORNERS))


# ---------------------------------------------------------------- timeline


def _timeline(pairs: list[tuple[Stroke, dict]], court: Court, src_fps: float, fps: float,
              max_gap: float, rng_cuts: np.random.Generator | None = None) -> Timeline:
    """Render times, hit frames and court-metre positions of the selected strokes; the live shot of
    each rally and the cut-aways after it (rng_cuts None: no cut-aways)."""
    shots: list[Shot] = []
    rallies: list[dict] = []
    cuts: list[Cut] = []
    t = LEAD_IN_S
    prev_src, prev_rally, prev_frame, prev_hitter = None, None, -1, None
    rally_start, first_of_rally = 0, 0
    for stroke, row in pairs:
        src_t = stroke.frame / src_fps
        resume = None
        if prev_src is not None:
            gap = src_t - prev_src
            if stroke.rally == prev_rally:
                shortest = MIN_RETURN_GAP_S if stroke.ball_round == 2 else MIN_STROKE_GAP_S
                t += float(np.clip(gap, shortest, MAX_STROKE_GAP_S))
            else:  # the pause after a rally, cut to max_gap, lengthened for the cut-aways
                pause = gap - LAST_FLIGHT_S
                t += LAST_FLIGHT_S + float(np.clip(pause if gap > 0 else max_gap, MIN_PAUSE_S,
                                                   max(max_gap, MIN_PAUSE_S)))
                end, new = _close_rally(shots, first_of_rally, fps, rng_cuts)
                if new:
                    cuts += new
                    resume = new[-1].end + 1
                    t = max(t, resume / fps + SETUP_S + HOLD_S)
        frame = max(int(round(t * fps)), prev_frame + 1)
        t = frame / fps
        if prev_src is not None and stroke.rally != prev_rally:
            if resume is None:  # one camera shot: the next rally's starts as the server takes the shuttle
                end = max(min(end, frame - int(round(HOLD_S * fps)) - 1), prev_frame)
            rallies.append({"rally": prev_rally, "start_frame": rally_start, "end_frame": end})
            rally_start = resume if resume is not None else end + 1
            first_of_rally = len(shots)
        hitter = stroke.player or ("B" if prev_hitter == "A" and prev_rally == stroke.rally else "A")
        shots.append(_place(stroke, row, frame, t, hitter, court))
        prev_src, prev_rally, prev_frame, prev_hitter = src_t, stroke.rally, frame, hitter
    end, new = _close_rally(shots, first_of_rally, fps, rng_cuts)
    cuts += new
    if new:
        n_frames = new[-1].end + 1 + int(round(TAIL_S / 2 * fps))
    else:
        n_frames = int(math.ceil((shots[-1].t + LAST_FLIGHT_S + TAIL_S) * fps))
    end = min(end, n_frames - 1)
    rallies.append({"rally": prev_rally, "start_frame": rally_start, "end_frame": end})
    return Timeline(shots, rallies, cuts, n_frames)


def _close_rally(shots: list[Shot], first: int, fps: float, rng_cuts) -> tuple[int, list[Cut]]:
    """The last frame of the rally ending at shots[-1] and the cut-aways that follow it."""
    end = int(round((shots[-1].t + RALLY_END_S) * fps))
    if rng_cuts is None:
        return end, []
    return end, cutaway_plan.plan(rng_cuts, shots[first].t, shots[-1].t, fps, end + 1)


def _metres(court: Court, xy) -> np.ndarray | None:
    return None if xy is None else np.asarray(court.to_court(*xy), float)


def _own_half(p: np.ndarray | None, side: str, margin: float = 0.3) -> np.ndarray | None:
    """Keep a point on its half of the court (annotation slips across the net) and near the court."""
    if p is None:
        return None
    x = float(np.clip(p[0], -1.5, COURT_WIDTH + 1.5))
    y = float(np.clip(p[1], -2.0, NET_Y - margin) if side == "upper"
              else np.clip(p[1], NET_Y + margin, COURT_LENGTH + 2.0))
    return np.array([x, y])


def _in_service_court(p: np.ndarray | None, side: str) -> np.ndarray | None:
    """A server's or receiver's point moved behind the short service line (annotations put some at the net)."""
    if p is None:
        return None
    reach = SHORT_SERVICE_DIST + SERVE_REACH + 0.15  # the serve is struck behind the line too
    y = min(p[1], NET_Y - reach) if side == "upper" else max(p[1], NET_Y + reach)
    return np.array([float(np.clip(p[0], 0.5, COURT_WIDTH - 0.5)), y])


def _place(stroke: Stroke, row: dict, frame: int, t: float, hitter: str, court: Court) -> Shot:
    other_side = "bottom" if stroke.side == "upper" else "upper"
    me = _own_half(_metres(court, stroke.player_xy), stroke.side)
    other = _own_half(_metres(court, stroke.opponent_xy), other_side)
    if stroke.ball_round == 1:  # server and receiver stand in their service courts
        me, other = _in_service_court(me, stroke.side), _in_service_court(other, other_side)
    hit = _own_half(_metres(court, stroke.hit_xy), stroke.side, 0.15)
    if hit is None:  # serves: struck just in front of the server
        toward_net = 1.0 if stroke.side == "upper" else -1.0
        base = me if me is not None else np.array([COURT_WIDTH / 2, NET_Y - toward_net * 3.0])
        hit = _own_half(base + np.array([0.0, toward_net * SERVE_REACH]), stroke.side, 0.15)
    landing = _metres(court, stroke.landing_xy)
    contact = np.array([hit[0], hit[1], profile(stroke.stroke).contact_z])
    return Shot(stroke, row, frame, t, hitter, contact, me, other, landing)


# ---------------------------------------------------------------- per-frame state


class _Frames:
    """Everything that moves, precomputed per frame, and the drawing of frame i.

    Every frame shows the world at a live time q[i]: the frame's own time (i / fps), except in a
    replay, which shows earlier live times slowed down. Each camera shot (the main camera, or a
    cut-away) has its own camera and pre-drawn scene; a crowd shot is an image of the stands.
    """

    def __init__(self, timeline: Timeline, cam: Camera, style, rng_scene, rng_finish, size, fps: float,
                 options: RenderOptions, seed: int = 0):
        shots, n_frames = timeline.shots, timeline.n_frames
        self.timeline, self.style, self.options, self.fps, self.size = timeline, style, options, fps, size
        self.n = n_frames
        base = np.arange(n_frames) / fps
        q, view, first = base.copy(), np.zeros(n_frames, int), np.zeros(n_frames, int)
        for k, c in enumerate(timeline.cuts, 1):
            view[c.start:c.end + 1], first[c.start:c.end + 1] = k, c.start
            if c.kind == "replay":
                q[c.start:c.end + 1] = c.src_t0 + np.arange(c.end - c.start + 1) / fps * c.rate
        for r in timeline.rallies:  # main-camera stretches start at a rally's first frame or after a cut
            first[r["start_frame"]:r["end_frame"] + 1] = r["start_frame"]
        self.q, self.view, self.first = q, view, first
        self.players = {}
        for who in ("A", "B"):
            keys = _keys(shots, who)
            pos_live, pos = track(base, keys), track(q, keys)
            if not np.isfinite(pos).all():  # never annotated: stand mid-court on the free half
                spot = (COURT_WIDTH / 2, 3.0 if _side_of(shots, who) == "upper" else COURT_LENGTH - 3.0)
                pos_live[:], pos[:] = spot, spot
            speed, phase = gait(pos_live, fps)
            self.players[who] = (pos, np.interp(q, base, speed), np.interp(q, base, phase), _swings(shots, who),
                                 pos_live, speed, phase)
        self.shuttle = _shuttle_track(shots, q)
        self.radius = max(1.0, 2.0 * size[0] / 640)
        self.shadow = tuple(int(c * 0.5) for c in style.court)
        self.views = [(cam, Scene(cam, style, rng_scene), self.radius)]
        for k, c in enumerate(timeline.cuts, 1):
            self.views.append(self._cut_view(c, cam, style, np.random.default_rng([seed, 100 + k])))
        self.shuttle_px = np.full((n_frames, 2), np.nan)
        self.floor_px = np.full((n_frames, 2), np.nan)
        floor = self.shuttle.copy()
        floor[:, 2] = 0
        for k, (vcam, _, _) in enumerate(self.views):
            sel = view == k
            if vcam is None or not sel.any():
                continue
            self.shuttle_px[sel] = vcam.project_points(np.nan_to_num(self.shuttle[sel]))
            self.floor_px[sel] = vcam.project_points(np.nan_to_num(floor[sel]))
        self.shuttle_px[~np.isfinite(self.shuttle[:, 0])] = np.nan
        self.floor_px[(~np.isfinite(self.shuttle[:, 0])) | (self.shuttle[:, 2] < 0.05)] = np.nan
        self.finish = Finish(style, size, n_frames, rng_finish)
        self.canvas_size = (size[0] + 2 * MARGIN, size[1] + 2 * MARGIN)

    def _cut_view(self, c: Cut, cam: Camera, style, rng: np.random.Generator):
        """(camera, scene, shuttle radius) of a cut-away; a crowd shot is (None, Crowd, 0)."""
        if c.kind == "crowd":
            return None, Crowd(rng, self.size, c.end - c.start + 1), 0.0
        centre = np.array(c.centre, float)
        if c.kind == "closeup":  # frame the player where he is during the shot, at chest height
            centre[:2] = np.median(self.players[c.who][0][c.start:c.end + 1], 0)
        px = cam.project(*centre)
        vcam = reframed(cam, zoom_matrix(px, c.zoom, self.size))
        return vcam, Scene(vcam, style, rng), self.radius * c.zoom

    def __call__(self, i: int) -> np.ndarray:
        vcam, scene, radius = self.views[self.view[i]]
        if vcam is None:
            cut = self.timeline.cuts[self.view[i] - 1]
            return self._stamp(self.finish(scene.frame(i - cut.start, self.canvas_size), i), i)
        canvas = scene.background.copy()
        if self.options.shuttle:  # the shadow lies on the floor, under the players
            draw_shadow(canvas, self.floor_px, i, radius, self.shadow)
        order = sorted(self.players, key=lambda who: self.players[who][0][i][1])  # far (small y) first
        for k, who in enumerate(order):
            pos, speed, phase, swings = self.players[who][:4]
            x, y = pos[i]
            facing = 1.0 if y < NET_Y else -1.0
            swing = _swing_at(swings, self.q[i]) if self.options.swing else None
            draw_player(canvas, vcam, self.style.players[who], x, y, facing, speed[i], phase[i], swing)
            if k == 0 and y < NET_Y:
                scene.redraw_net(canvas)
        if self.options.shuttle:
            draw_shuttle(canvas, self.shuttle_px, i, radius, self.first[i])
        return self._stamp(self.finish(canvas, i), i)

    def _stamp(self, frame: np.ndarray, i: int) -> np.ndarray:
        if self.options.stamp:  # tests: frame i spells i in binary (tests/conftest.py read_index)
            for b in range(10):
                frame[:8, b * 8:(b + 1) * 8] = 235 if (i >> b) & 1 else 40
        return frame

    def events(self) -> dict:
        """What can be heard, in live time (seconds): see train/render/audio.py."""
        shots, fps = self.timeline.shots, self.fps
        hits, landings = [], []
        for i, s in enumerate(shots):
            nxt = shots[i + 1] if i + 1 < len(shots) and shots[i + 1].stroke.rally == s.stroke.rally else None
            prof = profile(s.stroke.stroke)
            end = nxt.contact if nxt is not None else _landing_point(s)
            t1 = nxt.t if nxt is not None else s.t + prof.flight_s
            flight = Flight(s.contact, end, s.t, t1, prof)
            p0, p1 = flight.at(np.array([s.t, s.t + 0.01]))
            speed = float(np.linalg.norm(p1 - p0) / 0.01)  # launch speed, m/s
            hits.append({"t": s.frame / fps, "speed": speed, "x": float(s.contact[0]), "z": float(s.contact[2])})
            if nxt is None:
                q = flight.at(np.array([t1 - 0.01, t1]))
                landings.append({"t": t1, "speed": float(np.linalg.norm(q[1] - q[0]) / 0.01), "x": float(end[0])})
        steps, squeaks = [], []
        base = np.arange(self.n) / fps
        live = self.view == 0
        for who, (_, _, _, _, pos, speed, phase) in self.players.items():
            strike = np.nonzero(np.diff(np.floor(phase / np.pi)) > 0)[0] + 1  # a foot comes down
            steps += [{"t": float(base[k]), "speed": float(speed[k]), "x": float(pos[k, 0])} for k in strike]
            vel = np.gradient(pos, axis=0) * fps
            acc = np.linalg.norm(np.gradient(vel, axis=0) * fps, axis=1)
            peaks = np.nonzero((acc[1:-1] > acc[:-2]) & (acc[1:-1] >= acc[2:]) & (acc[1:-1] > 6.0)
                               & (speed[1:-1] > 0.8))[0] + 1
            squeaks += [{"t": float(base[k]), "acc": float(acc[k]), "x": float(pos[k, 0]), "who": who}
                        for k in peaks if acc[k] < 80]
        serves = [s.t for i, s in enumerate(shots) if i == 0 or shots[i - 1].stroke.rally != s.stroke.rally]
        rally_ends = [{"t": land["t"], "strokes": sum(1 for s in shots if s.stroke.rally == r["rally"]),
                       "serve": serves[k], "next_serve": serves[k + 1] if k + 1 < len(serves) else None}
                      for k, (r, land) in enumerate(zip(self.timeline.rallies, landings))]
        replays = [(c.start / fps, (c.end + 1) / fps) for c in self.timeline.cuts if c.kind == "replay"]
        return {"hits": hits, "landings": landings, "steps": steps, "squeaks": squeaks,
                "rally_ends": rally_ends, "replays": replays, "duration": self.n / fps, "live": live}


def _keys(shots: list[Shot], who: str) -> list[tuple[float, float, float, int]]:
    keys = []
    for s in shots:
        p = s.hitter_xy if s.hitter == who else s.other_xy
        if p is not None:
            keys.append((s.t, float(p[0]), float(p[1]), s.stroke.rally))
    return keys


def _side_of(shots: list[Shot], who: str) -> str:
    for s in shots:
        if s.hitter == who:
            return s.stroke.side
    return "upper"


def _swings(shots: list[Shot], who: str) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """Hit times of one player (sorted) and each hit's swing form and contact point."""
    mine = [s for s in shots if s.hitter == who]
    return np.array([s.t for s in mine]), [(form_of(s.stroke.stroke), s.contact) for s in mine]


def _swing_at(swings, t: float) -> Swing | None:
    """The swing of the hit nearest to t, if t is inside its motion window."""
    hit_times, hits = swings
    j = int(np.searchsorted(hit_times, t))
    best = None
    for k in (j - 1, j):
        if 0 <= k < len(hit_times):
            d = t - hit_times[k]
            if -BACKSWING_S <= d <= FOLLOW_S + RECOVER_S and (best is None or abs(d) < abs(best.d)):
                best = Swing(hits[k][0], d, hits[k][1])
    return best


def _shuttle_track(shots: list[Shot], times: np.ndarray) -> np.ndarray:
    """Shuttle position (n, 3) per frame; NaN while out of play between rallies."""
    pos = np.full((len(times), 3), np.nan)
    for i, s in enumerate(shots):
        nxt = shots[i + 1] if i + 1 < len(shots) else None
        first = i == 0 or shots[i - 1].stroke.rally != s.stroke.rally
        if first:  # the server holds the shuttle out before serving
            sel = (times >= s.t - HOLD_S) & (times < s.t)
            pos[sel] = s.contact
        prof = profile(s.stroke.stroke)
        if nxt is not None and nxt.stroke.rally == s.stroke.rally:
            flight = Flight(s.contact, nxt.contact, s.t, nxt.t, prof)
            sel = (times >= s.t) & (times < nxt.t)
            pos[sel] = flight.at(times[sel])
            continue
        # last stroke of a rally: down to the floor, then it lies there until the next rally
        flight = Flight(s.contact, _landing_point(s), s.t, s.t + prof.flight_s, prof)
        until = nxt.t - HOLD_S if nxt is not None else times[-1] + 1
        sel = (times >= s.t) & (times < until)
        pos[sel] = flight.at(times[sel])
    return pos


def _landing_point(s: Shot) -> tuple[float, float, float]:
    end = s.landing if s.landing is not None else _fallback_landing(s)
    return (float(end[0]), float(end[1]), 0.0)


def _fallback_landing(s: Shot) -> np.ndarray:
    """Where a last shot without a landing point comes down: the receiver's spot, else mid-court."""
    if s.other_xy is not None:
        return s.other_xy
    toward = 1.0 if s.stroke.side == "upper" else -1.0
    return np.array([COURT_WIDTH / 2, NET_Y + toward * 3.5])


# ---------------------------------------------------------------- outputs


def _write_video(path: Path, frames: _Frames, n: int, fps: float, size, progress, sound, crf: int) -> None:
    """H.264 (+ AAC when there is sound) through PyAV; the file must hold exactly n frames."""
    try:
        with Writer(path, size, fps, sound, RATE, crf) as writer:
            for i in range(n):
                writer.write(frames(i))
                if progress is not None and (i % 25 == 24 or i == n - 1):
                    progress(i + 1, n)
    except (OSError, ValueError) as err:  # av's errors derive from these
        raise ReplayError(f"{path}: cannot write the video ({err})") from None
    cap = cv2.VideoCapture(str(path))
    written = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    if written != n:
        raise ReplayError(f"{path}: the file holds {written} frames, {n} were written")


def _clock(seconds: float) -> str:
    s = int(seconds)  # the ShuttleSet clock is truncated to whole seconds
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _write_set_csv(path: Path, header: list[str], timeline: Timeline, affine: np.ndarray, fps: float) -> None:
    """The source columns with the render's frames, times and pixels, plus each row's rally shot."""
    header = list(header) + [c for c in END_COLUMNS if c not in header]
    span = {r["rally"]: r for r in timeline.rallies}
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        w.writeheader()
        for s in timeline.shots:
            row = dict(s.row)
            row["frame_num"] = str(s.frame)
            if "time" in row:
                row["time"] = _clock(s.frame / fps)
            for cx, cy in COORDS:
                if row.get(cx) and row.get(cy):
                    x, y = _map_xy(affine, float(row[cx]), float(row[cy]))
                    row[cx], row[cy] = f"{x:.3f}", f"{y:.3f}"
            r = span[s.stroke.rally]
            row["rally_start_frame"], row["rally_end_frame"] = str(r["start_frame"]), str(r["end_frame"])
            w.writerow(row)


def _write_segments(path: Path, timeline: Timeline, fps: float, size, audio: bool) -> None:
    """OUT/<video>/setN.segments.json: the live shot of each rally and every cut-away (frames inclusive)."""
    doc = {"fps": fps, "frames": timeline.n_frames, "size": list(size), "audio": audio,
           "rallies": timeline.rallies, "cutaways": [c.as_json() for c in timeline.cuts]}
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def _write_match_files(set_csv: Path, out_dir: Path, source_video: str, video: str, court: Court,
                       affine: np.ndarray) -> None:
    """This video's rows of match.csv and homography.csv (from the source video's), replacing any
    earlier ones in out_dir."""
    src_root = set_csv.parent.parent
    match_row, match_header = _source_row(src_root / "match.csv", source_video)
    if match_row is not None:
        _upsert(out_dir / "match.csv", match_header, {**match_row, "video": video})
    homo_row, homo_header = _source_row(src_root / "homography.csv", source_video)
    row = {"id": "", **(homo_row or {}), "video": video}
    for c in CORNERS:
        x, y = getattr(court, c)
        row[f"{c}_x"], row[f"{c}_y"] = f"{x:.3f}", f"{y:.3f}"
    if homo_row and homo_row.get("homography_matrix"):
        try:  # the source matrix maps camera pixels to the court plane: compose with the inverse resize
            h = np.array(eval_matrix(homo_row["homography_matrix"])) @ np.linalg.inv(affine)
            row["homography_matrix"] = str((h / h[2, 2]).tolist())
        except ValueError:
            log.warning("%s: unreadable homography_matrix; left as is", video)
    header = homo_header or ["id", "video", "homography_matrix"] + [f"{c}_{a}" for a in "xy" for c in CORNERS]
    _upsert(out_dir / "homography.csv", header, row)


def eval_matrix(text: str) -> list[list[float]]:
    """'[[a, b, c], [d, e, f], [g, h, i]]' -> nested floats (no eval of arbitrary text)."""
    nums = [float(v) for v in re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", text)]
    if len(nums) != 9:
        raise ValueError(f"expected 9 numbers, got {len(nums)}")
    return [nums[0:3], nums[3:6], nums[6:9]]


def _source_row(path: Path, video: str, quiet: bool = False) -> tuple[dict | None, list[str] | None]:
    if not path.is_file():
        log.warning("%s not found; the render's copy will lack this video's row", path)
        return None, None
    header, rows = read_rows(path, ("video",))
    key = lambda s: re.sub(r"\s+", "", s).lower()  # noqa: E731
    for r in rows:
        if r["video"] == video or key(r["video"]) == key(video):
            return r, header
    if not quiet:
        log.warning("%s has no row for %r", path, video)
    return None, header


def _upsert(path: Path, header: list[str], row: dict) -> None:
    rows = []
    if path.is_file():
        old_header, rows = read_rows(path)
        header = old_header or header
        rows = [r for r in rows if r.get("video") != row["video"]]
    rows.append(row)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


# ---------------------------------------------------------------- CLI


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)[xX](\d+)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 640x360, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train.replay",
        description="Render annotated ShuttleSet rallies into a broadcast-view mp4 with matching annotations.")
    p.add_argument("--set", required=True, type=Path, help="ShuttleSet set file, ROOT/<video>/setN.csv")
    p.add_argument("--out", required=True, type=Path, help="output folder (ShuttleSet layout)")
    p.add_argument("--rallies", default=None, help="rallies to render, e.g. 1-10 or 1,3,5-7 (default: all)")
    p.add_argument("--seed", type=int, default=0, help="look of the render: colours, camera, noise (default 0)")
    p.add_argument("--size", type=_size, default=(640, 360), help="frame size WxH (default 640x360)")
    p.add_argument("--fps", type=float, default=25, help="frame rate of the render (default 25)")
    p.add_argument("--max-gap", type=float, default=4.0,
                   help="longest pause between rallies in seconds, before cut-aways (default 4; at least 3)")
    p.add_argument("--cutaways", action=argparse.BooleanOptionalAction, default=True,
                   help="broadcast cut-aways between rallies: replay, close-up, crowd, walk back (default on)")
    p.add_argument("--audio", action=argparse.BooleanOptionalAction, default=True,
                   help="a sound track: hits, landings, steps, crowd, applause, umpire (default on)")
    p.add_argument("--family", choices=[NARROW, *sorted(FAMILIES)], default=NARROW,
                   help="look family: the narrow broadcast look, or a wide family that also varies the camera "
                        "angle, court colours, lighting, lens and codec (default %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    from tqdm import tqdm

    bar = tqdm(total=0, unit="frame", desc=args.set.stem, disable=None)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        out = render_set(args.set, args.out, rallies=args.rallies, seed=args.seed, size=args.size,
                         fps=args.fps, max_gap=args.max_gap, progress=progress, cutaways=args.cutaways,
                         audio=args.audio, family=args.family)
    except ReplayError as err:
        bar.close()
        parser.exit(2, f"error: {err}\n")
    bar.close()
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
