"""Stroke annotations -> one stroke table.

Two input formats, one output (`StrokeTable` of `Stroke` rows):

- ShuttleSet set files (`ROOT/<video>/setN.csv`, with `ROOT/match.csv` and `ROOT/homography.csv`
  beside the match folders). Player A is the match winner, B the loser.
- The reference system's per-stroke CSV (`id=<game>_<set>_<frame>, upper, type, backhand,
  relabel_hit_area, split, rally`); `write_reference_csv` writes it back.

`load_annotations` sniffs which one a file is.

Side (upper/bottom, the court half of the hitter in the camera image). Players change ends
between sets and, in the deciding third set, once a player reaches 11 points. Per set we vote
which half player A holds, separately before and after that interval change of set 3, from
per-stroke evidence:
  - with the match's court corners: the hitter's position (`player_location`) against the net
    line in court metres; else the hit point; else the opponent's position (other half);
  - without court corners: the hitter's image y against the opponent's (the farther one, smaller
    y, is upper); else hit y against landing y (the shuttle crosses the net).
Every stroke of A then gets that half and every stroke of B the other one, so one noisy position
cannot flip a caption. Where a segment has no evidence, match.csv's `downcourt` (0: A starts
the match in the bottom half, 1: upper; verified against the positions of all 104 sets) and the
end-change rules decide. A vote that contradicts `downcourt` is kept and reported as a warning.
Strokes without a player take their own evidence, else the opposite of the previous stroke of the
rally (players alternate), else 'bottom' (counted in the report). A `side` column (upper/bottom),
as in the set files `core.detect` writes, gives each stroke's side directly instead of the vote.

Detected sets (`python -m core.detect`) are ShuttleSet set files with an empty `type` (stroke
class unknown: stroke None, no caption) and, beside the usual columns, `side`, `confidence`,
`rally_winner`, `rally_start_frame`, `rally_end_frame` and `player_name`; without a match.csv row
the players' names come from `player_name`. `confidence` (0..1, the detector's certainty of the
hit) becomes the stroke's `confidence`; a file without the column (hand annotations) gives None.

Zone (hit zone id as in `core.vocab.ZONE_PHRASES`): the hit point (`hit_x`, `hit_y`) mapped to
court metres with the match's `Court` and classified by `core.court.zone_of` (depth from the net
in the hitter's half; left/right in the camera's view). Serves (and the few other rows without a
hit point) use the hitter's position instead. Without court corners the zone is None: ShuttleSet's
own `hit_area` grid id is kept in `hit_area_grid` but is not used as a zone, since nothing
documents that its cells are the reference's hit areas. Reference CSVs carry the zone directly
(`relabel_hit_area`; ids 6 and 8 are "in the middle" like 5, so they become zone 5; the original id
stays in `reference_hit_area`).

fps of a ShuttleSet set: the median slope of frame_num against the hh:mm:ss time column (the
clock is truncated to whole seconds) between rows at least 10 s apart, refined by a least-squares
fit of the rows near it and snapped to the nearest standard rate within 1 % (real sets are 25,
29.97 or 30 fps); a rate outside 5..240 fps is no rate. A row more than 5 s off that fit whose
frame also breaks the order of the frames around it, or a frame outside 0..MAX_FRAME, refuses the
file with the rows named. Stroke times are frame / fps.
"""
from __future__ import annotations

import csv
import io
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.court import NET_Y, Court, zones_of
from core.workspace import Workspace
from core.vocab import ZONE_PHRASES, STROKE_LABELS, UNKNOWN_LABEL, StrokeLabel, caption, stroke_label

log = logging.getLogger(__name__)

STANDARD_FPS = (23.976, 24.0, 25.0, 29.97, 30.0, 50.0, 59.94, 60.0)
MAX_INT = 2 ** 53  # whole numbers beyond this are not exact in a float cell
MAX_FRAME = 10_000_000  # a frame number beyond this is a mistake (46 hours at 60 fps)
PLAUSIBLE_FPS = (5.0, 240.0)  # frame rates a match video can have
FPS_BASELINE_S = 10  # the clock is whole seconds: a set shorter than this gives no rate
FRAME_SLACK_S = 5  # how far (seconds) a row's frame may lie from the fit: the clock's rounding and more
SHUTTLESET_REQUIRED = ("rally", "ball_round", "frame_num", "player", "type")
REFERENCE_REQUIRED = ("id", "upper", "type")
REFERENCE_COLUMNS = ("id", "rally", "ball_round", "upper", "type", "backhand", "relabel_hit_area", "split")
MIDDLE_ZONE = 5
DECIDING_SET = 3
MAX_SETS = 5  # best of five at most
INTERVAL_POINTS = 11  # ends change in the deciding set when a player first reaches 11


class AnnotationError(ValueError):
    """A stroke file that cannot be read; the message names the file, the row and the column."""

    def __init__(self, path: str | Path, row: int | None, column: str | None, problem: str):
        self.path, self.row, self.column, self.problem = str(path), row, column, problem
        where = "header" if row is None else f"row {row}"
        col = f", column '{column}'" if column else ""
        super().__init__(f"{path}: {where}{col}: {problem}")


@dataclass
class Stroke:
    match: str  # ShuttleSet video folder name (or the reference <game>)
    set: int
    rally: int
    ball_round: int  # 1-based stroke index within the rally
    frame: int  # hit frame in the match video
    side: str  # 'upper' | 'bottom': court half of the hitter
    time_s: float | None = None
    player: str | None = None  # 'A' (match winner) / 'B'
    player_name: str | None = None
    type_zh: str | None = None  # ShuttleSet label, spelling variants mapped
    type_en: str | None = None  # ShuttleSet's English name
    stroke: str | None = None  # product class (core.vocab.STROKES), None when unknown
    reference_stroke: str | None = None  # the reference system's English name
    zone: int | None = None  # core.vocab.ZONE_PHRASES id
    hit_area_grid: int | None = None  # ShuttleSet's own hit_area grid id (1..16)
    reference_hit_area: int | None = None  # the reference CSV's relabel_hit_area (1..9)
    hit_xy: tuple[float, float] | None = None  # image pixels
    landing_xy: tuple[float, float] | None = None
    player_xy: tuple[float, float] | None = None
    opponent_xy: tuple[float, float] | None = None
    backhand: bool | None = None
    aroundhead: bool | None = None  # hit around the head (ShuttleSet marks it with 1)
    hit_height: str | None = None  # 'above' | 'below' the net top (ShuttleSet 1 | 2)
    # the point's outcome, on a rally's last stroke only (ShuttleSet's labels, as written):
    win_reason: str | None = None  # why the point winner won it, e.g. 落地致勝 (landed winner)
    lose_reason: str | None = None  # why the loser lost it, e.g. 掛網 (into the net), 出界 (out)
    getpoint_player: str | None = None  # 'A' | 'B': who won the point
    score_a: int | None = None  # score after the rally
    score_b: int | None = None
    split: str | None = None  # only from the reference CSV
    confidence: float | None = None  # a detected hit's certainty (0..1); None for hand annotations

    @property
    def caption(self) -> str | None:
        if self.stroke is None or self.zone is None:
            return None
        return caption(self.side, self.stroke, self.zone)

    @property
    def stroke_id(self) -> str:
        return f"{self.match}_{self.set}_{self.frame}"

    @property
    def rally_key(self) -> tuple[str, int, int]:
        return (self.match, self.set, self.rally)


@dataclass
class ImportReport:
    source: str = ""
    rows: int = 0
    unknown_labels: int = 0  # 未知球種 rows
    unseen_labels: Counter = field(default_factory=Counter)  # labels not in the vocabulary
    rows_without_zone: int = 0
    side_disagreements: int = 0  # strokes whose own position contradicts the voted side
    sides_guessed: int = 0  # strokes with no evidence at all for their side
    warnings: list[str] = field(default_factory=list)

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)
        log.warning("%s: %s", self.source, msg)

    def merge(self, other: "ImportReport") -> None:
        self.rows += other.rows
        self.unknown_labels += other.unknown_labels
        self.unseen_labels.update(other.unseen_labels)
        self.rows_without_zone += other.rows_without_zone
        self.side_disagreements += other.side_disagreements
        self.sides_guessed += other.sides_guessed
        self.warnings.extend(f"{other.source}: {w}" for w in other.warnings)

    def summary(self) -> str:
        parts = [f"{self.rows} strokes", f"{self.unknown_labels} unknown type ({UNKNOWN_LABEL})"]
        if self.unseen_labels:
            seen = ", ".join(f"{k} x{v}" for k, v in self.unseen_labels.most_common())
            parts.append(f"unseen labels: {seen}")
        parts.append(f"{self.rows_without_zone} without zone")
        if self.side_disagreements:
            parts.append(f"{self.side_disagreements} positions on the other half than the voted side")
        if self.sides_guessed:
            parts.append(f"{self.sides_guessed} sides guessed")
        if self.warnings:
            parts.append(f"{len(self.warnings)} warnings")
        return "; ".join(parts)


@dataclass
class StrokeTable:
    strokes: list[Stroke]
    report: ImportReport
    court: Court | None = None
    fps: float | None = None
    players: dict[str, str] = field(default_factory=dict)  # {'A': name, 'B': name}
    source: str | None = None


# ---------------------------------------------------------------- reading CSV text


def read_rows(path: str | Path, required: tuple[str, ...] = ()) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a UTF-8 (with or without BOM) CSV; AnnotationError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(path, None, None, "file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise _encoding_error(path, raw, err) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    for col in required:
        if col not in header:
            raise AnnotationError(path, None, col, f"missing required column (columns: {', '.join(header)})")
    rows = [{k: (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
    return header, rows


def _encoding_error(path: Path, raw: bytes, err: UnicodeDecodeError) -> AnnotationError:
    start = err.start  # offset in raw bytes (the BOM, if any, is part of them)
    line_start = raw.rfind(b"\n", 0, start) + 1
    line_no = raw.count(b"\n", 0, start)  # 0 = header line
    header = raw.split(b"\n", 1)[0].decode("utf-8-sig", "replace").strip().split(",")
    col_idx = raw.count(b",", line_start, start)
    column = header[col_idx].strip() if col_idx < len(header) else None
    hint = "not UTF-8 text (save the file as UTF-8; cp950/big5 and latin-1 are not read)"
    return AnnotationError(path, line_no if line_no > 0 else None, column, f"{hint}: byte {raw[start:start+1]!r}")


def _num(path, row_no: int, row: dict, col: str, kind=float, required: bool = False):
    """A number from a cell; None when empty (unless required); AnnotationError when not a number."""
    v = row.get(col, "")
    if v == "":
        if required:
            raise AnnotationError(path, row_no, col, "empty value in a required column")
        return None
    try:
        x = float(v)
    except ValueError:
        raise AnnotationError(path, row_no, col, f"not a number: {v!r}") from None
    if not np.isfinite(x):
        raise AnnotationError(path, row_no, col, f"not a finite number: {v!r}")
    if kind is int:
        if abs(x) > MAX_INT:  # the index stores 64-bit integers; no frame, rally or score is near this
            raise AnnotationError(path, row_no, col, f"number too large: {v!r}")
        if x != int(x):
            raise AnnotationError(path, row_no, col, f"not a whole number: {v!r}")
        return int(x)
    return x


def _frame(path, row_no: int, frame: int, column: str) -> int:
    """A hit frame: 0 .. MAX_FRAME (AnnotationError otherwise)."""
    if not 0 <= frame <= MAX_FRAME:
        raise AnnotationError(path, row_no, column, f"frame {frame} is not a frame of a match video "
                              f"(0 to {MAX_FRAME:,})")
    return frame


def _xy(path, row_no, row, cx: str, cy: str) -> tuple[float, float] | None:
    x, y = _num(path, row_no, row, cx), _num(path, row_no, row, cy)
    return (x, y) if x is not None and y is not None else None


def _seconds(path, row_no: int, v: str) -> float | None:
    if not v:
        return None
    try:
        parts = [float(p) for p in v.split(":")]
    except ValueError:
        raise AnnotationError(path, row_no, "time", f"not a hh:mm:ss time: {v!r}") from None
    s = 0.0
    for p in parts:
        s = s * 60 + p
    return s


# ---------------------------------------------------------------- ShuttleSet


def load_shuttleset_set(path: str | Path, match_csv: str | Path | None = None,
                        homography_csv: str | Path | None = None, workspace: Workspace | None = None) -> StrokeTable:
    """One ShuttleSet set file -> StrokeTable (see the module docstring for side, zone, fps).
    With `workspace`, a match.csv or homography.csv outside it is not read (a warning says so)."""
    path = Path(path)
    _, rows = read_rows(path, SHUTTLESET_REQUIRED)
    root = path.parent.parent
    report = ImportReport(source=str(path), rows=len(rows))
    match_csv = _sidecar(Path(match_csv) if match_csv else root / "match.csv", workspace, report)
    homography_csv = _sidecar(Path(homography_csv) if homography_csv else root / "homography.csv", workspace, report)
    video = path.parent.name
    m = re.search(r"set(\d+)", path.stem, re.IGNORECASE)
    if m:
        set_no = int(m.group(1))
        if not 1 <= set_no <= MAX_SETS:
            raise AnnotationError(path, None, None, f"set {set_no} in the file name is not a set of a match "
                                  f"(1 to {MAX_SETS})")
    else:
        set_no = 1
        report.warn("no set number in the file name (expected setN.csv); using set 1")
    match_row = _lookup_video(match_csv, video, report)
    court = _court_of(_lookup_video(homography_csv, video, report), homography_csv)
    players = {}
    if match_row:
        players = {"A": match_row.get("winner", "").strip(), "B": match_row.get("loser", "").strip()}
    elif rows and "player_name" in rows[0]:  # a detected set (core.detect) names its players
        players = {r["player"]: r["player_name"] for r in rows if r.get("player") in ("A", "B") and r.get("player_name")}

    strokes = [_shuttleset_stroke(path, i + 1, r, video, set_no, players, report) for i, r in enumerate(rows)]
    fps = _estimate_fps(path, rows, report)
    for s, r, i in zip(strokes, rows, range(1, len(rows) + 1)):
        if fps:
            s.time_s = s.frame / fps
        else:
            s.time_s = _seconds(path, i, r.get("time", ""))
    downcourt = _num(match_csv, match_row["_row"], match_row, "downcourt", int) if match_row else None
    if not rows or any(r.get("side", "") == "" for r in rows):
        _assign_sides(strokes, set_no, court, downcourt, report)
    _given_sides(path, strokes, rows)
    _assign_zones(strokes, court, report)
    return StrokeTable(strokes, report, court, fps, players, str(path))


def _sidecar(path: Path, workspace: Workspace | None, report: ImportReport) -> Path | None:
    """A match.csv / homography.csv the set may read: None when it lies outside the workspace."""
    if workspace is None or workspace.allows(path):
        return path
    report.warn(f"{path.name} lies outside the workspace; not read")
    return None


def _given_sides(path, strokes: list[Stroke], rows: list[dict]) -> None:
    """A `side` column (detected sets, core.detect) gives the hitter's half directly."""
    for i, (s, r) in enumerate(zip(strokes, rows), start=1):
        v = r.get("side", "").lower()
        if v in ("upper", "bottom"):
            s.side = v
        elif v:
            raise AnnotationError(path, i, "side", f"expected upper or bottom, got {v!r}")


def _label(name: str, lookup, report: ImportReport) -> StrokeLabel | None:
    """The label of a type cell; unknown (未知球種, empty) and unseen labels are counted, not fatal."""
    label = lookup(name) if name else None
    if name == UNKNOWN_LABEL or not name:
        report.unknown_labels += 1
    elif label is None:
        report.unseen_labels[name] += 1
    return label


def _shuttleset_stroke(path, i: int, r: dict, video: str, set_no: int, players: dict,
                       report: ImportReport) -> Stroke:
    zh = r["type"]
    label = _label(zh, stroke_label, report)
    player = _letter(path, i, r, "player")
    backhand = _num(path, i, r, "backhand") if "backhand" in r else None
    return Stroke(
        match=video, set=set_no,
        rally=_num(path, i, r, "rally", int, True),
        ball_round=_num(path, i, r, "ball_round", int, True),
        frame=_frame(path, i, _num(path, i, r, "frame_num", int, True), "frame_num"),
        side="bottom",  # set by _assign_sides
        player=player, player_name=players.get(player) if player else None,
        type_zh=label.zh if label else (zh or None),
        type_en=label.shuttleset_en if label else None,
        stroke=label.stroke if label else None,
        reference_stroke=label.reference_en if label else None,
        hit_area_grid=_num(path, i, r, "hit_area", int),
        hit_xy=_xy(path, i, r, "hit_x", "hit_y"),
        landing_xy=_xy(path, i, r, "landing_x", "landing_y"),
        player_xy=_xy(path, i, r, "player_location_x", "player_location_y"),
        opponent_xy=_xy(path, i, r, "opponent_location_x", "opponent_location_y"),
        # ShuttleSet marks backhands with 1 and leaves forehands blank
        backhand=None if "backhand" not in r else bool(backhand),
        aroundhead=None if "aroundhead" not in r else bool(_num(path, i, r, "aroundhead")),
        hit_height=_height(path, i, r),
        win_reason=r.get("win_reason") or None,
        lose_reason=r.get("lose_reason") or None,
        getpoint_player=_letter(path, i, r, "getpoint_player"),
        score_a=_num(path, i, r, "roundscore_A", int),
        score_b=_num(path, i, r, "roundscore_B", int),
        confidence=_confidence(path, i, r),
    )


def _height(path, i: int, r: dict) -> str | None:
    """ShuttleSet's hit_height: 1 above the net top, 2 below (smashes are 1, lifts 2)."""
    h = _num(path, i, r, "hit_height", int)
    if h not in (None, 1, 2):
        raise AnnotationError(path, i, "hit_height", f"expected 1 (above the net) or 2 (below), got {h}")
    return {1: "above", 2: "below"}.get(h)


def _letter(path, i: int, r: dict, col: str) -> str | None:
    v = r.get(col, "") or None
    if v not in (None, "A", "B"):
        raise AnnotationError(path, i, col, f"expected A or B, got {v!r}")
    return v


def _confidence(path, i: int, r: dict) -> float | None:
    """A detected set's `confidence` cell (0..1); None where the file has no such column or cell."""
    c = _num(path, i, r, "confidence")
    if c is not None and not 0.0 <= c <= 1.0:
        raise AnnotationError(path, i, "confidence", f"expected 0..1, got {c}")
    return c


def _lookup_video(csv_path: Path | None, video: str, report: ImportReport) -> dict | None:
    """The row of match.csv / homography.csv for a match folder (names compared without spaces)."""
    if csv_path is None:
        return None
    if not csv_path.is_file():
        report.warn(f"{csv_path.name} not found next to the match folders")
        return None
    _, rows = read_rows(csv_path, ("video",))
    key = lambda s: re.sub(r"\s+", "", s).lower()  # noqa: E731
    for exact in (True, False):
        for i, r in enumerate(rows, start=1):
            if r["video"] == video if exact else key(r["video"]) == key(video):
                return {**r, "_row": i}
    report.warn(f"match {video!r} not in {csv_path.name}")
    return None


def _court_of(row: dict | None, path: Path) -> Court | None:
    if row is None:
        return None
    vals = {}
    for corner in ("upleft", "upright", "downleft", "downright"):
        for ax in ("x", "y"):
            col = f"{corner}_{ax}"
            if col not in row:
                raise AnnotationError(path, None, col, "missing required column")
            vals[col] = _num(path, row["_row"], row, col, float, True)
    c = lambda n: (vals[f"{n}_x"], vals[f"{n}_y"])  # noqa: E731
    return Court(c("upleft"), c("upright"), c("downleft"), c("downright"))


def _estimate_fps(path, rows: list[dict], report: ImportReport) -> float | None:
    """The set's frame rate from frame_num against the time column, robust to a few bad rows: the
    median slope between rows, then least-squares fits of the rows near it (a row more than
    FRAME_SLACK_S off never moves it), snapped to a standard rate; None outside PLAUSIBLE_FPS.
    A row off the fit whose frame also breaks the order of the frames around it has a wrong frame
    (it would put the stroke elsewhere in the video): the file is refused with the rows named.
    One whose frame fits its neighbours has a wrong time, which only the estimate reads (logged)."""
    frames = np.array([float(r["frame_num"]) for r in rows])
    timed = [(i, t) for i, r in enumerate(rows) if (t := _seconds(path, i + 1, r.get("time", ""))) is not None]
    if len(timed) < 2:
        return None
    idx, t = np.array([i for i, _ in timed]), np.array([t for _, t in timed])
    f = frames[idx]
    if np.ptp(t) < FPS_BASELINE_S:
        return None
    rough = _median_slope(t, f)
    if not PLAUSIBLE_FPS[0] <= rough <= PLAUSIBLE_FPS[1]:
        report.warn(f"frame_num against time gives {rough:.2f} frames per second, not a video's frame rate; "
                    "stroke times come from the time column")
        return None
    slope, intercept = rough, float(np.median(f - rough * t))
    for slack in (12 * FRAME_SLACK_S, FRAME_SLACK_S):  # wide first: the rough slope drifts over a long set
        near = np.abs(f - slope * t - intercept) <= slack * slope
        if near.sum() < 2 or np.ptp(t[near]) < FPS_BASELINE_S:
            report.warn("too few rows agree on a frame rate; stroke times come from the time column")
            return None
        slope, intercept = (float(v) for v in np.polyfit(t[near], f[near], 1))
    off = np.abs(f - slope * t - intercept) > FRAME_SLACK_S * slope
    if off.any():
        on_fit = np.zeros(len(rows), bool)
        on_fit[idx[~off]] = True
        wrong = [int(i) + 1 for i in idx[off] if not _between_neighbours(frames, on_fit, int(i))]
        if wrong:
            shown = ", ".join(map(str, wrong[:10])) + (f" and {len(wrong) - 10} more" if len(wrong) > 10 else "")
            raise AnnotationError(path, wrong[0], "frame_num", f"the frame numbers of rows {shown} do not match "
                                  f"their time nor the rows around them (the others are at {slope:.2f} frames per "
                                  "second); correct or remove those rows")
        log.info("%s: the time of rows %s does not match their frame number; the frame number is used", path,
                 ", ".join(str(int(i) + 1) for i in idx[off]))
    nearest = min(STANDARD_FPS, key=lambda v: abs(v - slope))
    if abs(nearest - slope) / nearest < 0.01:
        return nearest
    report.warn(f"frame rate {slope:.2f} is not a standard rate; using it as is")
    return round(slope, 2)


def _median_slope(t: np.ndarray, f: np.ndarray) -> float:
    """Median of the slopes between every two rows at least FPS_BASELINE_S apart (Theil-Sen; at
    most 400 rows, evenly taken, so that it stays quick)."""
    keep = np.linspace(0, len(t) - 1, min(len(t), 400)).astype(int)
    t, f = t[keep], f[keep]
    dt, df = t[None, :] - t[:, None], f[None, :] - f[:, None]
    pairs = dt >= FPS_BASELINE_S
    return float(np.median(df[pairs] / dt[pairs])) if pairs.any() else 0.0


def _between_neighbours(frames: np.ndarray, on_fit: np.ndarray, i: int) -> bool:
    """Row i's frame lies between those of the nearest rows on the fit before and after it."""
    before = [frames[k] for k in range(i - 1, -1, -1) if on_fit[k]][:1]
    after = [frames[k] for k in range(i + 1, len(frames)) if on_fit[k]][:1]
    return (not before or before[0] <= frames[i]) and (not after or frames[i] <= after[0])


# ---------------------------------------------------------------- sides


def _flip(side: str) -> str:
    return "bottom" if side == "upper" else "upper"


def _evidence(strokes: list[Stroke], court: Court | None) -> list[str | None]:
    """The hitter's court half according to the stroke's own positions (see module docstring)."""
    if court is not None:
        def half(pts):
            have = [p is not None for p in pts]
            xy = np.array([p if p is not None else (0.0, 0.0) for p in pts], dtype=np.float64)
            y = court.to_court(xy[:, 0], xy[:, 1])[:, 1] if len(xy) else np.zeros(0)
            return [("upper" if yy < NET_Y else "bottom") if h else None for h, yy in zip(have, y)]
        own = half([s.player_xy for s in strokes])
        hit = half([s.hit_xy for s in strokes])
        opp = half([s.opponent_xy for s in strokes])
        return [o or h or (_flip(p) if p else None) for o, h, p in zip(own, hit, opp)]
    ev = []
    for s in strokes:
        e = None
        if s.player_xy and s.opponent_xy and s.player_xy[1] != s.opponent_xy[1]:
            e = "upper" if s.player_xy[1] < s.opponent_xy[1] else "bottom"
        elif s.hit_xy and s.landing_xy and s.hit_xy[1] != s.landing_xy[1]:
            e = "upper" if s.hit_xy[1] < s.landing_xy[1] else "bottom"
        ev.append(e)
    return ev


def _segments(strokes: list[Stroke], set_no: int) -> list[int]:
    """0 before the deciding set's interval change of ends, 1 after (per stroke)."""
    if set_no != DECIDING_SET:
        return [0] * len(strokes)
    change_rally = None
    for s in strokes:  # scores are those after the rally
        if max(s.score_a or 0, s.score_b or 0) >= INTERVAL_POINTS:
            change_rally = s.rally
            break
    return [int(change_rally is not None and s.rally > change_rally) for s in strokes]


def _rule_side_of_a(downcourt: int | None, set_no: int, segment: int) -> str | None:
    if downcourt not in (0, 1):
        return None
    first = "bottom" if downcourt == 0 else "upper"
    return first if (set_no - 1 + segment) % 2 == 0 else _flip(first)


def _assign_sides(strokes: list[Stroke], set_no: int, court: Court | None, downcourt: int | None,
                  report: ImportReport) -> None:
    evidence = _evidence(strokes, court)
    segments = _segments(strokes, set_no)
    a_side: dict[int, str | None] = {}
    for seg in sorted(set(segments)):
        votes = Counter(e if s.player == "A" else _flip(e)
                        for s, e, g in zip(strokes, evidence, segments) if g == seg and e and s.player)
        rule = _rule_side_of_a(downcourt, set_no, seg)
        if votes and votes["upper"] != votes["bottom"]:
            a_side[seg] = votes.most_common(1)[0][0]
            if rule and rule != a_side[seg]:
                report.warn(f"set {set_no} part {seg + 1}: positions put player A in the {a_side[seg]} "
                            f"half, match.csv's downcourt says {rule}; using the positions")
        else:
            a_side[seg] = rule
    prev: tuple[int, str] | None = None
    for s, e, g in zip(strokes, evidence, segments):
        side = None
        if s.player and a_side[g]:
            side = a_side[g] if s.player == "A" else _flip(a_side[g])
            report.side_disagreements += int(e is not None and e != side)
        side = side or e or (_flip(prev[1]) if prev and prev[0] == s.rally else None)
        if side is None:
            report.sides_guessed += 1
            side = "bottom"
        s.side = side
        prev = (s.rally, side)


def _assign_zones(strokes: list[Stroke], court: Court | None, report: ImportReport) -> None:
    if court is not None:
        pts = [s.hit_xy or s.player_xy for s in strokes]
        have = [p is not None for p in pts]
        xy = np.array([p or (0.0, 0.0) for p in pts], dtype=np.float64).reshape(-1, 2)
        metres = court.to_court(xy[:, 0], xy[:, 1]) if len(xy) else np.zeros((0, 2))
        for s, h, z in zip(strokes, have, zones_of(metres[:, 0], metres[:, 1]).tolist()):
            s.zone = z if h else None
    report.rows_without_zone += sum(s.zone is None for s in strokes)


# ---------------------------------------------------------------- reference CSV


def _label_lookup() -> dict[str, StrokeLabel]:
    """Any accepted name of a stroke type -> its label (first label of a class wins)."""
    table: dict[str, StrokeLabel] = {}
    for lab in STROKE_LABELS:
        for name in (lab.zh, lab.shuttleset_en, lab.stroke, lab.reference_en):
            if name:
                table.setdefault(name.lower(), lab)
    return table


LABEL_LOOKUP = _label_lookup()


def label_of(name: str) -> StrokeLabel | None:
    """A stroke type given as a Chinese label, ShuttleSet, product or reference English name."""
    return stroke_label(name) or LABEL_LOOKUP.get(name.strip().lower())


def _bool(path, row_no: int, row: dict, col: str) -> bool | None:
    v = row.get(col, "").strip().lower()
    if v == "":
        return None
    if v in ("1", "1.0", "true", "yes", "upper"):
        return True
    if v in ("0", "0.0", "false", "no", "bottom"):
        return False
    raise AnnotationError(path, row_no, col, f"expected 1/0/True/False, got {v!r}")


def load_reference_csv(path: str | Path) -> StrokeTable:
    """The reference system's per-stroke CSV -> StrokeTable."""
    path = Path(path)
    _, rows = read_rows(path, REFERENCE_REQUIRED)
    report = ImportReport(source=str(path), rows=len(rows))
    strokes = []
    for i, r in enumerate(rows, start=1):
        m = re.fullmatch(r"(.+)_(\d+)_(\d+)", r["id"])
        if not m:
            raise AnnotationError(path, i, "id", f"expected <game>_<set>_<frame>, got {r['id']!r}")
        upper = _bool(path, i, r, "upper")
        if upper is None:
            raise AnnotationError(path, i, "upper", "empty value in a required column")
        name = r["type"]
        label = _label(name, label_of, report)
        area = _num(path, i, r, "relabel_hit_area", int)
        if area is not None and area not in range(1, 10):
            raise AnnotationError(path, i, "relabel_hit_area", f"expected 1..9, got {area}")
        zone = (area if area in ZONE_PHRASES else MIDDLE_ZONE) if area is not None else None
        strokes.append(Stroke(
            match=m.group(1), set=_set_number(path, i, m.group(2)), frame=_frame(path, i, int(m.group(3)), "id"),
            rally=_num(path, i, r, "rally", int) or 0,
            ball_round=_num(path, i, r, "ball_round", int) or 0,
            side="upper" if upper else "bottom",
            type_zh=label.zh if label else (name or None),
            type_en=label.shuttleset_en if label else None,
            stroke=label.stroke if label else None,
            reference_stroke=label.reference_en if label else None,
            zone=zone, reference_hit_area=area,
            backhand=_bool(path, i, r, "backhand"),
            split=r.get("split") or None,
        ))
    _number_rounds(strokes)
    report.rows_without_zone = sum(s.zone is None for s in strokes)
    return StrokeTable(strokes, report, source=str(path))


def _set_number(path, row_no: int, text: str) -> int:
    n = int(text)
    if not 1 <= n <= MAX_SETS:
        raise AnnotationError(path, row_no, "id", f"set {text} is not a set of a match (1 to {MAX_SETS})")
    return n


def _number_rounds(strokes: list[Stroke]) -> None:
    """Fill missing ball_round from frame order within each rally."""
    by_rally: dict[tuple, list[Stroke]] = {}
    for s in strokes:
        by_rally.setdefault(s.rally_key, []).append(s)
    for group in by_rally.values():
        if any(s.ball_round == 0 for s in group):
            for k, s in enumerate(sorted(group, key=lambda s: s.frame), start=1):
                s.ball_round = k


def write_reference_csv(strokes: list[Stroke], path: str | Path) -> Path:
    """Write strokes in the reference CSV format (type as the Chinese label)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(REFERENCE_COLUMNS)
        for s in strokes:
            area = s.reference_hit_area if s.reference_hit_area is not None else s.zone
            w.writerow([s.stroke_id, s.rally, s.ball_round, int(s.side == "upper"), s.type_zh or "",
                        "" if s.backhand is None else int(s.backhand),
                        "" if area is None else area, s.split or ""])
    return path


# ---------------------------------------------------------------- any format


def load_annotations(path: str | Path, workspace: Workspace | None = None) -> StrokeTable:
    """A ShuttleSet set file or a reference CSV, told apart by their columns (`workspace`: see
    load_shuttleset_set)."""
    header, _ = read_rows(path)
    cols = set(header)
    if {"frame_num", "ball_round"} <= cols:
        return load_shuttleset_set(path, workspace=workspace)
    if {"id", "upper"} <= cols:
        return load_reference_csv(path)
    raise AnnotationError(path, None, None, "neither a ShuttleSet set file (rally, ball_round, frame_num, "
                          "player, type, ...) nor a reference CSV (id, upper, type, ...); "
                          f"columns: {', '.join(header)}")


def load_many(paths: list[str | Path]) -> tuple[list[Stroke], ImportReport, dict[str, StrokeTable]]:
    """Several files -> all strokes, a merged report and each file's table (by path)."""
    report = ImportReport(source="all")
    tables, strokes = {}, []
    for p in paths:
        t = load_annotations(p)
        tables[str(p)] = t
        strokes.extend(t.strokes)
        report.merge(t.report)
    return strokes, report, tables
