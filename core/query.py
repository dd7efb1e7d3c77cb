"""Ask the stroke index in plain words: structured, semantic and model-grounded answers.

    python -m core.query --db PATH "when does the bottom player smash from the backcourt?"
    python -m core.query --db PATH --evaluate data/badminton/qa_test.json --captions model

Three paths, merged; every result names the path(s) that found it and a score:
1. structured: the question's fields (core.fields) filter every stroke exactly. A stroke's side,
   stroke class and zone come from its caption, in the order of `caption_sources` (a coach's
   corrected caption > the annotation > the model's caption); player, set, rally, stroke number
   and score come from the annotations.
2. semantic: cosine similarity between the question and each stroke's caption (captions are
   embedded once and stored in the index, and compared once per distinct text, core.similarity; a
   query embeds only its question, in the same forward pass as its words the fields do not read).
3. model: the stage-2 model answers the question over rally chunks of `CHUNK` strokes from the
   cached query tokens (no video decoding, no vision tower), to verify and re-rank the candidates'
   rallies, or every rally of the scope on request (`ground="all"`).

When the fields cover the whole question the answer is exactly the filtered strokes, in match
order; semantic or model hits outside them are only offered as `near_misses`. Otherwise the
structured filter (if any field was recognised) bounds the answer and similarity ranks it.

Everything a query reads is held in numpy arrays (`StrokeArrays`), reloaded only when the index
changes, so a structured or semantic query over 100,000 strokes is a few vectorised operations.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from core import columns
from core.config import GenerationSettings
from core.court import zones_of
from core.errors import ModelLoadError
from core.fields import ATTACKING, OUTCOME_TAGS, PHRASE_TEXTS, FieldParser, Fields, asks_for_rallies, describe
from core.outcome import ERROR, outcome
from core.similarity import CaptionSearch
from core.store import GEOMETRY, IndexStoreError, StrokeStore
from core.tokens import encoder_key
from core.vocab import SIDES, STROKES, ZONE_PHRASES
from core.vocab import caption as make_caption

log = logging.getLogger(__name__)

PATHS = ("structured", "semantic", "model")
SOURCES = ("corrected", "annotation", "model")
CHUNK = 5  # strokes per rally chunk, as in stage-2 training
GROUND_BATCH = 8
MAX_GROUND_RALLIES = 40
SEMANTIC_MIN = 0.45  # below this a caption is not an answer
SEMANTIC_MARGIN = 0.08  # semantic answers: captions within this of the best one
MEANINGLESS = 0.35  # no field and no caption this similar: the question is not understood
NEAR_MISSES = 5

# What each stroke class looks like, appended to a caption before it is embedded, so that free-form
# questions ("a powerful overhead attack") find the strokes their words describe.
DESCRIPTIONS = {
    "smash": "a powerful overhead smash hit steeply downward, an attacking kill",
    "clear": "a high deep overhead clear to the opponent's back line",
    "drop": "a soft overhead drop shot falling just over the net",
    "lob": "a defensive lift from the net high to the back of the court",
    "net shot": "a gentle net shot tumbling just over the net",
    "return net": "a blocked defensive return dropped to the net",
    "cross-court net shot": "a net shot played diagonally across the court",
    "push": "a flat push from the front court to the midcourt",
    "rush": "an aggressive net kill pushed down at the net",
    "drive": "a fast flat drive across the net",
    "short serve": "a low short serve just over the net that starts the rally",
    "long serve": "a high long serve to the back of the court that starts the rally",
}


@dataclass
class QueryResult:
    match: str
    match_id: int
    set: int
    rally: int
    stroke: int  # ball_round: 1-based stroke number in the rally
    stroke_id: int  # row id in the index
    frame: int
    start_s: float | None
    end_s: float | None
    time_s: float | None
    player: str | None  # name where annotated, else the side's words
    side: str | None
    caption: str | None
    caption_source: str | None
    score: float
    path: str  # "structured", "semantic", "model", or several joined by "+"
    verified: bool | None = None  # the model's answer agreed (None: not asked)
    video: str | None = None
    player_name: str | None = None  # the annotated name only
    stroke_type: str | None = None  # the stroke class its caption states (core.vocab.STROKES)
    zone: int | None = None
    hit_m: tuple[float, float] | None = None  # court metres, from the annotations
    landing_m: tuple[float, float] | None = None
    confidence: float | None = None  # a detected hit's certainty (core.store); None for hand annotations

    def to_dict(self) -> dict:
        return asdict(self)

    def row(self) -> dict:
        """The result as a stroke row, in the store's names (core.store.StrokeStore.strokes), for the app."""
        hit, land = self.hit_m or (None, None), self.landing_m or (None, None)
        return {"id": self.stroke_id, "match": self.match, "match_id": self.match_id, "set_no": self.set,
                "rally": self.rally, "ball_round": self.stroke, "frame": self.frame, "time_s": self.time_s,
                "start_s": self.start_s, "end_s": self.end_s, "side": self.side, "player_name": self.player_name,
                "stroke": self.stroke_type, "zone": self.zone, "caption": self.caption,
                "caption_source": self.caption_source, "score": self.score, "source": self.path,
                "verified": self.verified, "video": self.video, "hit_x": hit[0], "hit_y": hit[1],
                "land_x": land[0], "land_y": land[1], "confidence": self.confidence}


class ResultList(Sequence):
    """Results built on first access, a block at a time: a query's cost does not grow with the size
    of its answer, and one page of results is gathered column-wise rather than row by row."""

    BLOCK = 128

    def __init__(self, build: Callable[[int, int], list], n: int):
        self._build, self._n, self._blocks = build, n, {}

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self._n))]
        i = i + self._n if i < 0 else i
        if not 0 <= i < self._n:
            raise IndexError(i)
        b = i // self.BLOCK
        if b not in self._blocks:
            self._blocks[b] = self._build(b * self.BLOCK, min(self._n, (b + 1) * self.BLOCK))
        return self._blocks[b][i - b * self.BLOCK]

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"ResultList({self._n} results)"


@dataclass
class RallyResult:
    """A rally of an answer that asks for rallies ("rallies of more than 20 shots", "game points")."""

    match: str
    match_id: int
    set: int
    rally: int
    start_s: float | None  # its first stroke's window start ... its last one's end
    end_s: float | None
    shots: int
    score: str | None  # before the rally, "A-B" in the annotations' order
    won_by: str | None  # the annotated point winner
    ending: str | None  # the last stroke, its hitter and outcome: "X's smash, winner", "Y's net shot, error (net)"
    last_stroke: str | None = None  # its class
    video: str | None = None

    def row(self) -> dict:
        """The rally as a row the app plays and shows (start_s/end_s/time_s like a stroke's)."""
        what = f"Rally {self.rally}" + (f" at {self.score}" if self.score else "") + f": {self.shots} shots"
        what += (f", won by {self.won_by}" if self.won_by else "") + (f" ({self.ending})" if self.ending else "")
        return {"kind": "rally", "match": self.match, "match_id": self.match_id, "set_no": self.set,
                "rally": self.rally, "start_s": self.start_s, "end_s": self.end_s, "time_s": self.start_s,
                "shots": self.shots, "score_before": self.score, "won_by": self.won_by, "ending": self.ending,
                "player_name": self.won_by, "stroke": self.last_stroke,
                "caption": what + ".", "video": self.video}


def rally_results(a: "StrokeArrays", rows: np.ndarray) -> "ResultList":
    """The rallies of the answer's rows, in rally order, built when read (like the stroke results)."""
    rallies = np.flatnonzero(np.bincount(a.rally_of[rows], minlength=len(a.rally_rows)))
    return ResultList(lambda lo, hi: [_rally_result(a, int(r)) for r in rallies[lo:hi]], int(rallies.size))


def _rally_result(a: "StrokeArrays", r: int) -> RallyResult:
    last = int(a.rally_rows[r])
    bits = int(a.outcome[last])
    tags = [t for t in OUTCOME_TAGS if bits & (1 << OUTCOME_TAGS.index(t)) and t != "last"]
    kind = next((t for t in tags if t in ("winner", "error")), None)
    detail = [t for t in tags if t not in ("winner", "error")]
    stroke = STROKES[a.stroke[last]] if a.stroke[last] >= 0 else None
    hitter = a.names[a.player[last]] if a.player[last] >= 0 else None
    shot = f"{hitter}'s {stroke}" if hitter and stroke else stroke
    ending = ", ".join(x for x in (shot, kind and kind + (f" ({', '.join(detail)})" if detail else "")) if x)
    span = [None if v != v else round(float(v), 3) for v in a.rally_span[r]]
    sa, sb = int(a.score_a[last]), int(a.score_b[last])
    return RallyResult(
        match=a.match_names[int(a.match_id[last])], match_id=int(a.match_id[last]), set=int(a.set_no[last]),
        rally=int(a.rally[last]), start_s=span[0], end_s=span[1], shots=int(a.rally_n[last]),
        score=f"{sa}-{sb}" if sa >= 0 and sb >= 0 else None,
        won_by=a.names[a.rally_winner[last]] if a.rally_winner[last] >= 0 else None, ending=ending or None,
        last_stroke=stroke,
        video=a.set_info[int(a.set_id[last])][0])


@dataclass
class QueryAnswer:
    question: str
    results: Sequence[QueryResult]
    covered_by_fields: bool
    fields: dict = field(default_factory=dict)
    leftover: list[str] = field(default_factory=list)
    message: str | None = None
    near_misses: Sequence[QueryResult] = field(default_factory=list)
    total: int = 0  # results before `limit`
    timings_ms: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the answer could not do (e.g. the model path skipped)
    counts: list[tuple[str, int]] = field(default_factory=list)  # "who hit more ...", "most common ...": by group
    count_by: str | None = None  # 'player' | 'stroke' | None (only the total is asked: "how many")
    rallies: Sequence[RallyResult] = field(default_factory=list)  # when the question asks for rallies (asks_for_rallies)
    ignored: list[str] = field(default_factory=list)  # words no field reads (they only rank the results)
    corrected: list[tuple[str, str]] = field(default_factory=list)  # (typed, read as): "christy" -> a player

    def summary(self) -> dict:
        return {"question": self.question, "covered_by_fields": self.covered_by_fields, "fields": self.fields,
                "leftover": self.leftover, "count": self.total, "returned": len(self.results),
                "near_misses": len(self.near_misses), "message": self.message, "notes": self.notes,
                "counts": self.counts, "rallies": len(self.rallies), "ignored": self.ignored,
                "corrected": self.corrected, "timings_ms": self.timings_ms}


# ---------------------------------------------------------------- arrays


_CAPTION_PARSER = FieldParser()


BY_PLAYER = re.compile(r"\bwho\b|\beach player\b|\bby player\b")
BY_STROKE = re.compile(r"\bmost (?:common|frequent|often|used)\b|\bfavou?rite\b|\bwhich (?:stroke|shot)s? (?:does|did)\b")


def count_groups(question: str, a: "StrokeArrays", rows: np.ndarray) -> tuple[str | None, list[tuple[str, int]]]:
    """The answer's strokes counted by player ("who hit more clears") or by stroke class ("X's most
    common serve"), largest first; (None, []) when the question asks for neither."""
    text = question.lower()
    if BY_PLAYER.search(text):
        codes, labels = a.player[rows], a.names
        by = "player"
    elif BY_STROKE.search(text):
        codes, labels = a.stroke[rows], STROKES
        by = "stroke"
    else:
        return None, []
    counts = np.bincount(codes[codes >= 0], minlength=len(labels))
    pairs = sorted(((labels[v], int(counts[v])) for v in np.flatnonzero(counts)), key=lambda p: (-p[1], p[0]))
    return by, pairs


@lru_cache(maxsize=65536)
def caption_fields(text: str) -> tuple[str | None, str | None, int | None]:
    """(side, stroke, zone) that a caption states, None where it states none or several. Captions
    name one cell per zone phrase ("in the backcourt" is zone 9), as the reference system's
    questions do, not the families of a coach's questions."""
    f = _CAPTION_PARSER.parse(text, reference=True).fields
    one = lambda s: next(iter(s)) if len(s) == 1 else None  # noqa: E731
    return one(f.sides), one(f.strokes), one(f.zones)


def partial_caption(side: str | None, stroke: str | None, zone: int | None) -> str | None:
    if side and stroke and zone in ZONE_PHRASES:
        return make_caption(side, stroke, zone)
    if stroke:
        who = f"{side} player" if side else "a player"
        return f"{who} hits a {stroke}" + (f" {ZONE_PHRASES[zone]}" if zone in ZONE_PHRASES else "")
    return None


def semantic_text(caption: str) -> str:
    """The text embedded for a caption: the caption and what its stroke looks like."""
    stroke = caption_fields(caption)[1]
    return f"{caption}: {DESCRIPTIONS[stroke]}" if stroke in DESCRIPTIONS else caption


def _among(column: np.ndarray, values) -> np.ndarray:
    """column in values. A question names a few codes, and one comparison per code over the column
    is several times faster than np.isin's sort at 100k strokes."""
    values = list(values)
    if len(values) > 8:
        return np.isin(column, values)
    m = np.zeros(len(column), bool)
    for v in values:
        m |= column == v
    return m


class StrokeArrays:
    """Every stroke of the index as columns (row order = stroke id order)."""

    INT_COLS = ("id", "match_id", "set_id", "set_no", "rally", "ball_round", "frame")

    def __init__(self, index: StrokeStore, sources: Sequence[str] = SOURCES):
        with index.snapshot():  # one committed state, whatever is written meanwhile
            key = json.dumps([index.index_id(), index.generation(), list(sources), columns.code_hash()])
            cached = columns.load(index.columns_file, key)
            if cached is None:
                self._read(index, sources)
        if cached is None:
            columns.save(index.columns_file, key, *self._columns())
        else:
            self._restore(*cached)
        self.search: CaptionSearch | None = None  # set by the engine when it has an embedder

    def _columns(self) -> tuple[dict[str, np.ndarray], dict]:
        """What core.columns keeps: the arrays, and the lists and maps as JSON values."""
        arrays = {k: v for k, v in vars(self).items() if isinstance(v, np.ndarray)}
        return arrays, {"generation": self.generation, "names": self.names, "texts": self.texts,
                        "match_names": list(self.match_names.items()),
                        "set_info": [[k, *v] for k, v in self.set_info.items()]}

    def _restore(self, arrays: dict[str, np.ndarray], objects: dict) -> None:
        vars(self).update(arrays)
        self.generation, self.names, self.texts = objects["generation"], objects["names"], objects["texts"]
        self.match_names = {int(k): v for k, v in objects["match_names"]}
        self.set_info = {int(r[0]): tuple(r[1:]) for r in objects["set_info"]}

    def _read(self, index: StrokeStore, sources: Sequence[str]) -> None:
        self.generation = index.generation()
        rows = index.db.execute(
            "SELECT s.id, s.match_id, s.set_id, s.set_no, s.rally, s.ball_round, s.frame, s.time_s, s.start_s,"
            " s.end_s, s.side, s.player_name, s.stroke, s.zone, s.ann_caption, s.model_caption, c.caption,"
            " r.score_a_before, r.score_b_before, s.hit_x, s.hit_y, s.land_x, s.land_y, s.confidence, s.player,"
            " s.backhand, s.aroundhead, s.hit_height, s.win_reason, s.lose_reason, s.getpoint FROM strokes s"
            " LEFT JOIN corrections c ON c.key=s.key LEFT JOIN rallies r ON r.set_id=s.set_id AND r.rally=s.rally"
            " ORDER BY s.id").fetchall()
        n = len(rows)
        cols = list(zip(*rows)) if rows else [()] * 31
        for name, col in zip(self.INT_COLS, cols[:7]):
            setattr(self, name, np.asarray(col, dtype=np.int64).reshape(n))
        for name, col in zip(("time_s", "start_s", "end_s", *GEOMETRY, "confidence"), (*cols[7:10], *cols[19:24])):
            setattr(self, name, np.asarray([np.nan if v is None else v for v in col], dtype=np.float64).reshape(n))
        self.names = sorted({v for v in cols[11] if v})
        name_idx = {v: i for i, v in enumerate(self.names)}
        self.player = np.asarray([name_idx.get(v, -1) for v in cols[11]], dtype=np.int32).reshape(n)
        self.score_a = np.asarray([-1 if v is None else v for v in cols[17]], dtype=np.int32).reshape(n)
        self.score_b = np.asarray([-1 if v is None else v for v in cols[18]], dtype=np.int32).reshape(n)
        self._effective(cols, n, sources)
        self._technique_and_outcome(cols, n)
        self.games_before = self._games_before(index)
        self.match_names = {r[0]: r[1] for r in index.db.execute("SELECT id, name FROM matches")}
        sets = index.db.execute("SELECT id, video, video_hash, fps FROM sets")
        self.set_info = {r[0]: (r[1], r[2], r[3]) for r in sets}  # set id -> (video, video hash, fps)

    def _effective(self, cols, n: int, sources: Sequence[str]) -> None:
        """Side, stroke, zone and caption text per stroke from the first source that has them."""
        side, stroke, zone, text_idx, src_idx = (np.full(n, -1, np.int32) for _ in range(5))
        texts: dict[str, int] = {}
        side_code = {s: i for i, s in enumerate(SIDES)}
        stroke_code = {s: i for i, s in enumerate(STROKES)}
        memo: dict[tuple, tuple] = {}
        for k in range(n):
            ann = (cols[10][k], cols[12][k], cols[13][k], cols[14][k])
            key = (ann, cols[15][k], cols[16][k])
            if key not in memo:
                memo[key] = self._pick(ann, cols[15][k], cols[16][k], sources)
            s, st, z, text, src = memo[key]
            side[k], stroke[k] = side_code.get(s, -1), stroke_code.get(st, -1)
            zone[k] = z if z is not None else -1
            if text:
                text_idx[k] = texts.setdefault(text, len(texts))
            src_idx[k] = src
        self.side, self.stroke, self.zone, self.text, self.source = side, stroke, zone, text_idx, src_idx
        self.texts = list(texts)

    def _games_before(self, index: StrokeStore) -> np.ndarray:
        """(n, 2): games players A and B had won in the match before each stroke's set, from each
        earlier set's final score (21+ and two ahead, or 30)."""
        final: dict[tuple[int, int], tuple[int, int]] = {}
        for match_id, set_no, a, b in index.db.execute(
                "SELECT s.match_id, s.set_no, r.score_a, r.score_b FROM rallies r JOIN sets s ON s.id=r.set_id"
                " WHERE r.score_a IS NOT NULL AND r.score_b IS NOT NULL ORDER BY s.match_id, s.set_no, r.rally"):
            final[(match_id, set_no)] = (a, b)
        won: dict[tuple[int, int], tuple[int, int]] = {}
        for (match_id, set_no) in final:
            a_games = b_games = 0
            for (m, s_), (a, b) in final.items():
                if m == match_id and s_ < set_no:
                    a_games += (a >= 21 and a - b >= 2) or a == 30
                    b_games += (b >= 21 and b - a >= 2) or b == 30
            won[(match_id, set_no)] = (a_games, b_games)
        sets = {sid: (m, s_) for sid, m, s_ in index.db.execute("SELECT id, match_id, set_no FROM sets")}
        ids, inverse = np.unique(self.set_id, return_inverse=True)
        per_set = np.asarray([won.get(sets.get(int(i)), (0, 0)) for i in ids], np.int32).reshape(len(ids), 2)
        return per_set[inverse].reshape(len(self), 2)

    def _technique_and_outcome(self, cols, n: int) -> None:
        """Landing zone, hand, hit height and the point's outcome (a bit per OUTCOME_TAGS) per stroke."""
        flag = lambda col: np.asarray([-1 if v is None else int(v) for v in col], np.int8).reshape(n)  # noqa: E731
        self.backhand, self.aroundhead = flag(cols[25]), flag(cols[26])
        self.height = np.asarray([{"above": 1, "below": 0}.get(v, -1) for v in cols[27]], np.int8).reshape(n)
        self.land_zone = zones_of(self.land_x, self.land_y)
        last = np.zeros(n, bool)
        self.prev_row = np.full(n, -1, np.int64)  # the previous stroke of the same rally
        self.rally_n = np.zeros(n, np.int32)  # strokes in the stroke's rally
        self.first_attack = np.zeros(n, bool)  # the first smash or rush of each rally
        rally_of = np.zeros(n, np.int64)  # a number per rally (set, rally)
        self.rally_rows, self.rally_span = np.zeros(0, np.int64), np.zeros((0, 2))
        if n:
            order = np.lexsort((self.ball_round, self.rally, self.set_id))
            key = self.set_id[order] * 100_000 + self.rally[order]
            new_rally = np.r_[True, key[1:] != key[:-1]]
            starts = np.flatnonzero(new_rally)
            counts = np.diff(np.r_[starts, n])
            rally_of[order] = np.cumsum(new_rally) - 1
            top = np.repeat(np.maximum.reduceat(self.ball_round[order], starts), counts)
            last[order] = self.ball_round[order] == top  # a repeated annotation row of the last stroke too
            # previous stroke: the row before the first of its (rally, stroke number) run, in the same rally
            rounds = self.ball_round[order]
            new_run = new_rally | np.r_[True, rounds[1:] != rounds[:-1]]
            run_start = np.maximum.accumulate(np.where(new_run, np.arange(n), 0))
            before = run_start - 1
            ok = (before >= 0) & (key[np.maximum(before, 0)] == key)
            self.prev_row[order[ok]] = order[before[ok]]
            self.rally_n[order] = np.repeat(counts, counts)
            self.rally_rows = order[starts + counts - 1]  # each rally's last stroke (its highest number)
            self.rally_span = np.stack([np.fmin.reduceat(self.start_s[order], starts),
                                        np.fmax.reduceat(self.end_s[order], starts)], axis=1)
            attacking = order[_among(self.stroke[order], [STROKES.index(c) for c in ATTACKING])]
            if len(attacking):
                first = np.r_[True, rally_of[attacking][1:] != rally_of[attacking][:-1]]
                self.first_attack[attacking[first]] = True
        bits = np.where(last, 1 << OUTCOME_TAGS.index("last"), 0).astype(np.uint8)
        for k in np.flatnonzero(last):
            landing = None if np.isnan(self.land_x[k]) else (float(self.land_x[k]), float(self.land_y[k]))
            o = outcome(cols[24][k], cols[30][k], cols[28][k], cols[29][k], landing)
            tags = [o.kind] if o.kind else []
            tags += ["net"] * (o.kind == ERROR and o.into_the_net) + ["out"] * (o.kind == ERROR and o.reason == "out")
            tags += [d for d in ("long", "wide") if o.kind == ERROR and o.out and d in o.out]
            for t in tags:
                bits[k] |= 1 << OUTCOME_TAGS.index(t)
        self.outcome = bits
        # the rally's point winner (a player name index) on every stroke of the rally: the name of
        # the player whose letter (A/B) is the last stroke's point winner, in that match
        letters = np.asarray([{"A": 0, "B": 1}.get(v, -1) for v in cols[24]], np.int64).reshape(n)
        getpoint = np.asarray([{"A": 0, "B": 1}.get(v, -1) for v in cols[30]], np.int64).reshape(n)
        name_of = np.full((int(self.match_id.max(initial=0)) + 1, 2), -1, np.int32)  # (match, letter) -> name
        named = (letters >= 0) & (self.player >= 0)
        name_of[self.match_id[named], letters[named]] = self.player[named]
        ended = last & (getpoint >= 0)
        winner = np.full(int(rally_of.max(initial=-1)) + 1, -1, np.int32)
        winner[rally_of[ended]] = name_of[self.match_id[ended], getpoint[ended]]
        self.rally_winner = winner[rally_of].reshape(n)
        self.rally_of = rally_of
        # ... and the end the winner played the rally from: the last hitter's, or the other one
        sided = ended & (self.side >= 0) & (letters >= 0)
        winner_side = np.full(len(winner), -1, np.int32)
        winner_side[rally_of[sided]] = np.where(letters[sided] == getpoint[sided], self.side[sided], 1 - self.side[sided])
        self.rally_winner_side = winner_side[rally_of].reshape(n)

    @staticmethod
    def _pick(ann, model_caption, corrected, sources):
        """Each field from the first source (in preference order) that states it; the caption text too."""
        a_side, a_stroke, a_zone, a_caption = ann
        found = []
        for src in sources:
            if src == "corrected" and corrected:
                found.append((*caption_fields(corrected), corrected, 0))
            elif src == "annotation" and (a_side or a_stroke or a_caption):
                found.append((a_side, a_stroke, a_zone, a_caption or partial_caption(a_side, a_stroke, a_zone), 1))
            elif src == "model" and model_caption:
                found.append((*caption_fields(model_caption), model_caption, 2))
        first = lambda k: next((f[k] for f in found if f[k] is not None), None)  # noqa: E731
        text_src = next((f[4] for f in found if f[3]), found[0][4] if found else -1)
        return first(0), first(1), first(2), first(3), text_src

    def __len__(self) -> int:
        return len(self.id)

    def mask(self, f: Fields) -> np.ndarray:
        """Rows whose fields satisfy every field of `f` (any of its values)."""
        m = np.ones(len(self), bool)
        if f.sides:
            m &= _among(self.side, [SIDES.index(s) for s in f.sides])
        if f.players:
            m &= _among(self.player, [self.names.index(p) for p in f.players if p in self.names] or [-2])
        if f.strokes:
            m &= _among(self.stroke, [STROKES.index(s) for s in f.strokes if s in STROKES] or [-2])
        if f.zones:
            m &= _among(self.zone, list(f.zones))
        if f.sets:
            m &= _among(self.set_no, list(f.sets))
        if f.rallies:
            m &= _among(self.rally, list(f.rallies))
        if f.rounds:
            m &= _among(self.ball_round, list(f.rounds))
        if f.landing_zones:
            m &= _among(self.land_zone, list(f.landing_zones))
        for tag in f.outcomes:
            m &= (self.outcome & (1 << OUTCOME_TAGS.index(tag))) != 0
        if f.hands:
            hm = np.zeros(len(self), bool)
            for h in f.hands:
                hm |= {"backhand": self.backhand == 1, "forehand": self.backhand == 0,
                       "aroundhead": self.aroundhead == 1}[h]
            m &= hm
        if f.heights:
            m &= _among(self.height, [{"above": 1, "below": 0}[h] for h in f.heights])
        if f.places:
            m &= self.first_attack
        if f.not_strokes:
            m &= ~_among(self.stroke, [STROKES.index(s) for s in f.not_strokes if s in STROKES])
        if f.rally_length:
            op, k = f.rally_length
            m &= {">": self.rally_n > k, ">=": self.rally_n >= k, "<": self.rally_n < k, "<=": self.rally_n <= k}[op]
        for who, want_won in ((f.won_by, True), (f.lost_by, False)):
            if who:  # player names, or the ends ('upper', 'bottom') the rally was played from
                names = [self.names.index(p) for p in who if p in self.names]
                ends = [SIDES.index(s) for s in who if s in SIDES]
                won = (_among(self.rally_winner, names) if names else np.zeros(len(self), bool)) \
                    | (_among(self.rally_winner_side, ends) if ends else np.zeros(len(self), bool))
                known = (self.rally_winner >= 0) if names else (self.rally_winner_side >= 0)
                m &= known & (won == want_won)
        if f.after is not None:
            before = self.mask(f.after)
            has = self.prev_row >= 0
            follows = np.zeros(len(self), bool)
            follows[has] = before[self.prev_row[has]]
            m &= follows
        if f.scores:
            sm = np.zeros(len(self), bool)
            for sc in f.scores:
                if sc == "deuce":
                    sm |= (self.score_a == self.score_b) & (self.score_a >= 20)
                elif sc in ("game point", "match point"):
                    a_, b_ = self.score_a, self.score_b
                    for_a = ((a_ >= 20) & (a_ > b_)) | (a_ == 29)
                    for_b = ((b_ >= 20) & (b_ > a_)) | (b_ == 29)
                    if sc == "match point":  # a game point of a player one game from the match
                        for_a, for_b = for_a & (self.games_before[:, 0] >= 1), for_b & (self.games_before[:, 1] >= 1)
                    sm |= for_a | for_b
                else:
                    a, b = sc
                    sm |= ((self.score_a == a) & (self.score_b == b)) | ((self.score_a == b) & (self.score_b == a))
            m &= sm
        return m


# ---------------------------------------------------------------- the engine


class QueryEngine:
    """Questions -> strokes over a StrokeStore; `model` (a stage-2 StrokeModel) enables grounding."""

    def __init__(self, index: StrokeStore, embedder=None, model=None, caption_sources: Sequence[str] = SOURCES,
                 settings: GenerationSettings | None = None, model_lock: AbstractContextManager | None = None):
        """`model_lock`: held while the model answers (the app's indexing uses the same model)."""
        bad = set(caption_sources) - set(SOURCES)
        if bad:
            raise ValueError(f"unknown caption source(s) {sorted(bad)}; use {SOURCES}")
        self.index, self.embedder, self.model = index, embedder, model
        self.sources, self.settings = tuple(caption_sources), settings
        self.model_lock = model_lock or threading.Lock()
        self._state: tuple[StrokeArrays, FieldParser] | None = None
        self._state_lock = threading.Lock()  # questions run side by side; the arrays are built once per change
        self._tokens: OrderedDict = OrderedDict()
        self._enc_key: str | None = None

    # ------------------------------------------------------------ state

    def state(self) -> tuple[StrokeArrays, FieldParser]:
        """The index's strokes as arrays and the question parser for their names, of one generation."""
        with self._state_lock:
            gen = self.index.generation()
            if self._state is None or self._state[0].generation != gen:
                arrays = StrokeArrays(self.index, self.sources)
                parser = FieldParser(arrays.names)
                if self.embedder is not None:  # the store keeps every vector, so a new process embeds nothing
                    texts = [semantic_text(t) for t in arrays.texts]
                    arrays.search = CaptionSearch(arrays.text, self.index.text_vectors(texts, self.embedder))
                    parser = FieldParser(arrays.names, self.embedder,
                                         self.index.text_vectors(PHRASE_TEXTS, self.embedder))
                self._state = (arrays, parser)
            return self._state

    def arrays(self) -> StrokeArrays:
        return self.state()[0]

    @property
    def parser(self) -> FieldParser:
        return self.state()[1]

    # ------------------------------------------------------------ asking

    def ask(self, question: str, match_id: int | None = None, paths: Iterable[str] = PATHS, limit: int | None = None,
            scope: Iterable[int] | None = None, ground: str = "candidates", reference: bool = False) -> QueryAnswer:
        """Answer a question over the index (one match, or a scope of stroke ids, if given).

        ground: "candidates" (the model checks the rallies of the results) or "all" (every rally in scope).
        reference: read zone words as the reference system's questions do (FieldParser.parse)."""
        t0 = time.perf_counter()
        paths = tuple(paths)
        bad = set(paths) - set(PATHS)
        if bad:
            raise ValueError(f"unknown path(s) {sorted(bad)}; use {PATHS}")
        if limit is not None and limit < 1:
            raise ValueError(f"the number of results to show is 1 or more, not {limit}")
        a, parser = self.state()
        semantic = "semantic" in paths and a.search is not None
        parse = parser.parse(question, reference, vector=semantic)
        ans = QueryAnswer(question, [], parse.covered, parse.fields.as_dict(), parse.leftover, parse.message,
                          corrected=parse.corrected)
        if parse.message:
            return ans
        in_scope = self._scope(a, match_id, scope)
        t1 = time.perf_counter()
        use_fields = "structured" in paths and not parse.fields.empty()
        hit = (a.mask(parse.fields) & in_scope) if use_fields else None
        sims = a.search.scores(parse.vector) if semantic else None  # per caption text
        t2 = time.perf_counter()
        rows, scores, labels, near = self._merge(a, parse, hit, sims, in_scope, use_fields)
        whole_model = "model" in paths and self.model is not None and ground == "all"
        if not use_fields and not whole_model:
            ans.message = self._unanswerable(question, a, parse, sims, in_scope)
            if ans.message:
                rows = rows[:0]
        verified: dict[int, bool] = {}
        if "model" in paths and self.model is not None and ans.message is None:
            rows, scores, labels, near, verified = self._ground(question, a, rows, scores, labels, near, in_scope,
                                                                 ground, parse.covered, ans.notes)
        t3 = time.perf_counter()
        ans.total = int(rows.size)
        ans.count_by, ans.counts = count_groups(question, a, rows)
        ans.ignored = list(parse.leftover) if use_fields else []
        if asks_for_rallies(question, parse.fields):
            rallies = rally_results(a, rows)
            ans.rallies = rallies if limit is None else rallies[:limit]
        if limit is not None:
            rows, scores, labels = rows[:limit], scores[:limit], labels[:limit]
        ans.results = self._results(a, rows, scores, labels, verified)
        ans.near_misses = list(self._results(a, *near, verified))
        if not ans.results and ans.message is None:
            ans.message = (f"No {describe(ans.fields)}." if ans.fields else "No stroke matches the question.") + (
                " The event does not occur." if parse.covered else "")
        ans.timings_ms = {"parse": round((t1 - t0) * 1e3, 2), "search": round((t2 - t1) * 1e3, 2),
                          "merge_ground": round((t3 - t2) * 1e3, 2),
                          "total": round((time.perf_counter() - t0) * 1e3, 2)}
        return ans

    @staticmethod
    def _scope(a: StrokeArrays, match_id: int | None, scope: Iterable[int] | None) -> np.ndarray:
        """Rows a question is asked over: one match, or given stroke ids, or everything."""
        in_scope = np.ones(len(a), bool)
        if match_id is not None:
            in_scope &= a.match_id == match_id
        if scope is not None:
            ids = np.fromiter(scope, np.int64)
            rows = np.minimum(np.searchsorted(a.id, ids), max(len(a) - 1, 0))  # rows are in id order
            in_scope = np.zeros(len(a), bool)
            in_scope[rows[a.id[rows] == ids] if len(a) else rows[:0]] = True
        return in_scope

    def _unanswerable(self, question: str, a: StrokeArrays, parse, sims, in_scope) -> str | None:
        """Why a question without usable fields cannot be answered, or None when similarity can."""
        if not parse.leftover and parse.fields.empty():
            return self._not_understood(question)  # nothing but question words
        if sims is None:
            return "No stroke field was used and the semantic path is off: " + self._not_understood(question)
        if a.search.best(sims, in_scope) < MEANINGLESS:
            return self._not_understood(question)
        return None

    @staticmethod
    def _not_understood(question: str) -> str:
        return (f"The question {question.strip()[:80]!r} names no player, side, stroke type, zone, set or rally, "
                "and no stroke caption is like it. Try e.g. 'when does the bottom player smash in the backcourt?'.")

    def _merge(self, a: StrokeArrays, parse, hit, sims, in_scope, use_fields):
        """Rows in answer order, their scores and path labels, and near misses (rows, scores, labels).
        `sims`: the question's similarity with each caption text (None: the semantic path is off)."""
        empty = (np.zeros(0, np.int64), np.zeros(0), [])
        near = empty
        if use_fields:
            rows = np.flatnonzero(hit)  # match order = stroke id order
            if sims is not None:
                near_rows, near_scores = a.search.top(sims, NEAR_MISSES, SEMANTIC_MIN, in_scope & ~hit)
                near = (near_rows, near_scores, ["semantic"] * near_rows.size)
            if parse.covered or sims is None:
                return rows, np.ones(rows.size), ["structured"] * rows.size, near
            # fields bound the answer, similarity ranks it
            row_sims = a.search.of_rows(sims, rows)
            order = np.argsort(-row_sims, kind="stable")
            scores = 0.5 + 0.5 * np.clip(row_sims[order], 0, 1)
            return rows[order], scores, ["structured+semantic"] * rows.size, near
        if sims is None:
            return (*empty, empty)
        cut = max(SEMANTIC_MIN, a.search.best(sims, in_scope) - SEMANTIC_MARGIN)
        rows, scores = a.search.at_least(sims, cut, in_scope)
        return rows, scores, ["semantic"] * rows.size, empty

    @staticmethod
    def _results(a: StrokeArrays, rows, scores, labels, verified: dict) -> "ResultList":
        rows = np.asarray(rows, np.int64)
        scores = np.asarray(scores, np.float64)

        def build(lo: int, hi: int) -> list[QueryResult]:
            r = rows[lo:hi]
            col = lambda values: values[r].tolist()  # noqa: E731
            rounded = lambda values, d=3: [None if v != v else v for v in np.round(values[r], d).tolist()]  # noqa: E731
            point = lambda x, y: None if x != x or y != y else (x, y)  # noqa: E731
            side, player, text, source = col(a.side), col(a.player), col(a.text), col(a.source)
            stroke, zone, set_id, match_id = col(a.stroke), col(a.zone), col(a.set_id), col(a.match_id)
            hit = zip(col(a.hit_x), col(a.hit_y))
            land = zip(col(a.land_x), col(a.land_y))
            out = []
            score = np.round(scores[lo:hi], 4).tolist()
            for k, rk, sd, pl, tx, sc, st, zn, si, mi, sn, ra, br, sid, fr, s0, s1, ts, (hx, hy), (lx, ly), cf in zip(
                    range(lo, hi), r.tolist(), side, player, text, source, stroke, zone, set_id, match_id,
                    col(a.set_no), col(a.rally), col(a.ball_round), col(a.id), col(a.frame), rounded(a.start_s),
                    rounded(a.end_s), rounded(a.time_s), hit, land, rounded(a.confidence)):
                side_name = SIDES[sd] if sd >= 0 else None
                name = a.names[pl] if pl >= 0 else None
                out.append(QueryResult(
                    match=a.match_names[mi], match_id=mi, set=sn, rally=ra, stroke=br, stroke_id=sid, frame=fr,
                    start_s=s0, end_s=s1, time_s=ts,
                    player=name or (f"{side_name} player" if side_name else None), side=side_name,
                    caption=a.texts[tx] if tx >= 0 else None, caption_source=SOURCES[sc] if sc >= 0 else None,
                    score=score[k - lo], path=labels[k], verified=verified.get(rk),
                    video=a.set_info[si][0], player_name=name,
                    stroke_type=STROKES[st] if st >= 0 else None, zone=zn if zn >= 0 else None,
                    hit_m=point(hx, hy), landing_m=point(lx, ly), confidence=cf))
            return out

        return ResultList(build, int(rows.size))

    # ------------------------------------------------------------ model grounding

    def rally_chunks(self, a: StrokeArrays, rows: Iterable[int]) -> list[list[int]]:
        """The CHUNK-stroke chunks (rows in ball_round order) of every rally that holds one of `rows`."""
        rallies = list(dict.fromkeys((int(a.set_id[r]), int(a.rally[r])) for r in rows))
        by_rally: dict[tuple, list[int]] = defaultdict(list)
        wanted = set(rallies)
        keys = list(zip(a.set_id.tolist(), a.rally.tolist()))
        for r, key in enumerate(keys):
            if key in wanted:
                by_rally[key].append(r)
        chunks = []
        for key in rallies:
            group = sorted(by_rally[key], key=lambda r: (a.ball_round[r], a.frame[r]))
            chunks += [group[i:i + CHUNK] for i in range(0, len(group), CHUNK)]
        return chunks

    def _clip_tokens(self, a: StrokeArrays, rows: list[int]) -> np.ndarray | None:
        """Cached query tokens (K, Q, D) of rows, or None when any is missing: a question never
        runs the vision (indexing the match with this model caches them)."""
        if self._enc_key is None:
            self._enc_key = encoder_key(self.model)
        out = []
        for r in rows:
            set_id, frame = int(a.set_id[r]), int(a.frame[r])
            vhash = a.set_info[set_id][1]
            if vhash is None:
                return None
            key = (vhash, frame)
            if key not in self._tokens:
                cache = self.index.token_cache(vhash, self._enc_key)
                if not cache.has(frame):
                    return None
                self._tokens[key] = cache.get(frame)
                while len(self._tokens) > 20000:
                    self._tokens.popitem(last=False)
            out.append(self._tokens[key])
        return np.stack(out)

    def ground_chunks(self, question: str, chunks: list[list[int]]) -> tuple[list[tuple[list[int], str, list[int] | None]], int]:
        """Stage-2 answers over chunks of rows from cached tokens: ((rows, answer text, parsed
        indices) per chunk with tokens, number of chunks skipped for want of tokens)."""
        import torch

        from core.processor import pad_chunks

        a = self.arrays()
        with self.model_lock:  # the token LRU too: one question at a time grounds
            ready = [(c, t) for c in chunks if (t := self._clip_tokens(a, c)) is not None]
            if not ready:
                return [], len(chunks)
            tokens, mask = pad_chunks([torch.from_numpy(t) for _, t in ready])
            answers = self.model.answer(tokens, mask, [question] * len(ready), self.settings,
                                        batch_size=GROUND_BATCH)
        return [(c, ans.text, ans.indices) for (c, _), ans in zip(ready, answers)], len(chunks) - len(ready)

    def _ground(self, question, a, rows, scores, labels, near, in_scope, ground, covered, notes: list[str]):
        if ground == "all":
            chunk_rows = np.flatnonzero(in_scope)
        else:
            chunk_rows = rows[:MAX_GROUND_RALLIES * CHUNK] if rows.size else np.zeros(0, np.int64)
        chunks = self.rally_chunks(a, chunk_rows.tolist())
        if ground != "all":
            seen = []
            for c in chunks:  # keep the first MAX_GROUND_RALLIES rallies
                key = (int(a.set_id[c[0]]), int(a.rally[c[0]]))
                if key not in seen:
                    seen.append(key)
            keep = set(seen[:MAX_GROUND_RALLIES])
            chunks = [c for c in chunks if (int(a.set_id[c[0]]), int(a.rally[c[0]])) in keep]
        found: set[int] = set()
        asked: set[int] = set()
        answered, skipped = self.ground_chunks(question, chunks)
        if skipped:
            notes.append(f"The model did not check {skipped} of {len(chunks)} rally chunks: their strokes have no "
                         "cached tokens of this model (index the match with it).")
        for c, _, idx in answered:
            asked.update(c)
            found.update(c[i] for i in (idx or []) if 0 <= i < len(c))
        verified = {r: r in found for r in asked}
        rows_l, scores_l = rows.tolist(), list(scores)
        for k, r in enumerate(rows_l):
            if r in found:
                labels[k] += "+model"
                scores_l[k] += 1.0
        extra = sorted(found - set(rows_l))
        if covered:  # the fields decided the answer: the model's other strokes are only offered
            n_rows = np.concatenate([near[0], np.asarray(extra, np.int64)])
            near = (n_rows, np.concatenate([near[1], np.full(len(extra), 0.5)]), near[2] + ["model"] * len(extra))
            return rows, np.asarray(scores_l), labels, near, verified
        rows_l += extra
        scores_l += [1.0] * len(extra)
        labels += ["model"] * len(extra)
        order = sorted(range(len(rows_l)), key=lambda k: -scores_l[k])
        return (np.asarray([rows_l[k] for k in order], np.int64), np.asarray([scores_l[k] for k in order]),
                [labels[k] for k in order], near, verified)


# ---------------------------------------------------------------- evaluation


def _stroke_key(match: str, set_no: int, frame: int) -> str:
    return f"{match}_{set_no}_{frame}"


def evaluate_questions(engine: QueryEngine, items: list[dict], paths: Iterable[str] = ("structured", "semantic"),
                       ground: str = "all") -> dict:
    """Stroke-level precision, recall and F1 per question kind of the builder's qa_*.json items.

    Each item asks about one chunk (`image`: its strokes' clips `clips/<match>_<set>_<frame>.mp4`); the
    engine answers over exactly those strokes, and its strokes are compared with `indices`.
    Micro-averaged over strokes; also the exact-match rate of the answer sets and, for questions
    whose event does not occur, the rate of empty answers. Items whose strokes are not in the
    index are counted as `missing`."""
    a = engine.arrays()
    lookup: dict[str, list[int]] = defaultdict(list)
    for r in range(len(a)):
        lookup[_stroke_key(a.match_names[int(a.match_id[r])], int(a.set_no[r]), int(a.frame[r]))].append(int(a.id[r]))
    stats: dict[str, dict] = defaultdict(lambda: defaultdict(int))
    for it in items:
        keys = [Path(p).stem for p in it["image"]]
        taken: dict[str, int] = defaultdict(int)  # strokes sharing a hit frame: take them in order
        ids = []
        for k in keys:
            found = lookup.get(k, [])
            ids.append(found[taken[k]] if taken[k] < len(found) else None)
            taken[k] += 1
        kind = it.get("kind", "all")
        if any(i is None for i in ids):
            stats[kind]["missing"] += 1
            continue
        gold = {ids[i] for i in (it.get("indices") or [])}
        got = {res.stroke_id for res in engine.ask(it["question"], paths=paths, scope=ids, ground=ground,
                                                   reference=True).results}
        for s in (stats[kind], stats["all"]):
            s["questions"] += 1
            s["tp"] += len(got & gold)
            s["fp"] += len(got - gold)
            s["fn"] += len(gold - got)
            s["exact"] += int(got == gold)
            if not gold:
                s["impossible"] += 1
                s["impossible_correct"] += int(not got)
    out = {}
    for kind, s in stats.items():
        p = s["tp"] / (s["tp"] + s["fp"]) if s["tp"] + s["fp"] else (1.0 if not s["fn"] else 0.0)
        r = s["tp"] / (s["tp"] + s["fn"]) if s["tp"] + s["fn"] else 1.0
        out[kind] = {**dict(s), "precision": round(p, 4), "recall": round(r, 4),
                     "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
                     "exact_match": round(s["exact"] / s["questions"], 4) if s["questions"] else None,
                     "impossible_accuracy": (round(s["impossible_correct"] / s["impossible"], 4)
                                             if s["impossible"] else None)}
    return out


# ---------------------------------------------------------------- command line


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core.query", description="Ask the stroke index; JSON lines out.")
    p.add_argument("question", nargs="?", help="the question in plain words")
    p.add_argument("--db", required=True, help="index file written by python -m core.index")
    p.add_argument("--match", type=int, help="match id (default: every match in the index)")
    p.add_argument("--paths", default="structured,semantic,model", help="comma-separated subset of " + ",".join(PATHS))
    p.add_argument("--model", help="stage-2 adapter folder: enables the model path")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads (on a busy machine 1 is often fastest)")
    p.add_argument("--whole-match", action="store_true",
                   help="the model answers over every rally, not only the candidates'")
    p.add_argument("--limit", type=int)
    p.add_argument("--captions", default=",".join(SOURCES),
                   help="caption sources in order of preference (e.g. 'model' to judge the model's captions)")
    p.add_argument("--evaluate", metavar="QA_JSON", help="stroke-level P/R/F1 per question kind over a qa_*.json file")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    from core.device import set_threads  # torch loads only when the command runs

    set_threads(args.threads)
    if not Path(args.db).is_file():
        print(f"error: {args.db}: no index here (build one with python -m core.index)", file=sys.stderr)
        return 1
    try:
        return _run(args)
    except (ValueError, IndexStoreError, OSError, ModelLoadError) as err:  # AnnotationError, bad JSON: ValueErrors
        print(f"error: {err}", file=sys.stderr)
        return 1


def _run(args) -> int:
    from core.embed import default_embedder

    paths = tuple(p.strip() for p in args.paths.split(",") if p.strip())
    unknown = set(paths) - set(PATHS)
    if unknown or not paths:
        raise ValueError(f"--paths: {', '.join(sorted(unknown)) or 'none given'}; use a subset of {','.join(PATHS)}")
    store = StrokeStore(args.db)
    model = None
    if args.model:
        from core.loader import load_model

        model = load_model(args.model, device=args.device)
    engine = QueryEngine(store, default_embedder(), model,
                         caption_sources=[s.strip() for s in args.captions.split(",") if s.strip()])
    if args.evaluate:
        items = _qa_items(args.evaluate)
        for kind, row in evaluate_questions(engine, items, paths).items():
            print(json.dumps({"kind": kind, **row}))
        return 0
    if args.question is None:
        print("error: give a question (or --evaluate QA_JSON)", file=sys.stderr)
        return 2
    ans = engine.ask(args.question, match_id=args.match, paths=paths, limit=args.limit,
                     ground="all" if args.whole_match else "candidates")
    print(json.dumps(ans.summary(), ensure_ascii=False))
    for r in ans.results:
        print(json.dumps(r.to_dict(), ensure_ascii=False))
    for r in ans.near_misses:
        print(json.dumps({**r.to_dict(), "near_miss": True}, ensure_ascii=False))
    return 0


def _qa_items(path: str) -> list[dict]:
    """A qa_*.json file's questions; ValueError naming the file when it is not one."""
    try:
        items = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"--evaluate {path}: not a JSON file ({err})") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("question"), str)
                                              and isinstance(i.get("image"), list) for i in items):
        raise ValueError(f"--evaluate {path}: expected a list of questions, as train.build_dataset writes")
    return items


if __name__ == "__main__":
    sys.exit(main())
