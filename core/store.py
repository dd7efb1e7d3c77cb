"""The stroke store: one SQLite file per workspace with every match, set, rally and stroke, the
coaches' corrections, the model's captions and the captions' embeddings.

Tables (schema version `SCHEMA_VERSION`, in `meta`):
  matches   one row per match (ShuttleSet video folder, or the video's name), players A and B
  sets      one row per indexed set file / video: sources, content hashes, model keys, status
  rallies   score after and before each rally, start/end time
  strokes   times, frames, side, player, type, zone, hit and landing point in court metres
            (read from the annotations once, when the set is written), annotation caption,
            model caption, confidence (schema 4: a detected hit's certainty, 0..1, from the set
            file's `confidence` column; NULL for hand annotations; 1 for a stroke an edit added,
            moved or gave the other side, since a person placed it); schema 5: backhand,
            aroundhead, hit_height ('above' / 'below' the net) and, on a rally's last stroke, the
            point's outcome as annotated (win_reason, lose_reason: ShuttleSet's labels; getpoint:
            the point winner's letter)
  corrections  coaches' corrected captions, keyed by the stroke's natural key
               (match|set|rally|ball_round|frame), so re-indexing never drops them
  stroke_edits  coaches' stroke edits (schema 3): a hit added, deleted, moved or given the other
               side, keyed by match name, set and the stroke's frame in the set's source (an added
               stroke: its own frame), so re-indexing or re-detecting the set never drops them;
               every write of the set's strokes applies them (`apply_edits`)
  model_captions  caption cache: (video hash, model key, frame) -> caption
  texts     sentence embedding (float32 blob) of every caption text, embedded once (a stroke's
            embedding is that of its caption, with the stroke's description: core.query.semantic_text)
  stroke_captions  view: strokes with their corrected caption and the caption shown
               (corrected > annotation > model)

A stroke's `source_frame` is its frame in the source (NULL for an added one), `edited` says what
an edit changed ('added', 'moved', 'side', 'moved,side'; NULL when nothing).

Writing a set's strokes is one transaction, with the captions its model pass left in the caption
cache (core.indexer's; the tokens live beside the file, core.tokens), so a set is never
half-indexed. Each thread has its own connection: reads see the last commit and never wait.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from core.annotations import MAX_FRAME, AnnotationError, StrokeTable, load_annotations
from core.tokens import TokenCache, file_hash
from core.vocab import caption as stroke_caption
from core.video import WINDOW_AFTER, WINDOW_BEFORE
from core.workspace import DEFAULT_WORKSPACE, INDEX_FILE, Workspace

log = logging.getLogger(__name__)

SCHEMA_VERSION = 5
SIDES = ("bottom", "upper")
UNCERTAIN_BELOW = 0.5  # a detected stroke with a lower confidence is shown as uncertain, to review
DEFAULT_DB = DEFAULT_WORKSPACE / INDEX_FILE
BUSY_TIMEOUT_S = 30.0  # another process (the core.index command beside the app) writing the same file
GEOMETRY = ("hit_x", "hit_y", "land_x", "land_y")  # court metres (core.court), None where not annotated
TECHNIQUE = ("backhand", "aroundhead", "hit_height")  # schema 5, None where not annotated
OUTCOME = ("win_reason", "lose_reason", "getpoint")  # schema 5: on a rally's last stroke

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS matches(
  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, player_a TEXT, player_b TEXT);
CREATE TABLE IF NOT EXISTS sets(
  id INTEGER PRIMARY KEY, match_id INTEGER NOT NULL REFERENCES matches(id), set_no INTEGER NOT NULL,
  source TEXT, source_hash TEXT, video TEXT, video_hash TEXT, fps REAL,
  encoder_key TEXT, captioner_key TEXT, status TEXT NOT NULL, n_strokes INTEGER, updated TEXT,
  UNIQUE(match_id, set_no));
CREATE TABLE IF NOT EXISTS rallies(
  id INTEGER PRIMARY KEY, set_id INTEGER NOT NULL REFERENCES sets(id), rally INTEGER NOT NULL,
  score_a INTEGER, score_b INTEGER, score_a_before INTEGER, score_b_before INTEGER,
  start_s REAL, end_s REAL, n_strokes INTEGER, UNIQUE(set_id, rally));
CREATE TABLE IF NOT EXISTS strokes(
  id INTEGER PRIMARY KEY, set_id INTEGER NOT NULL REFERENCES sets(id), match_id INTEGER NOT NULL,
  set_no INTEGER NOT NULL, rally INTEGER NOT NULL, ball_round INTEGER NOT NULL, frame INTEGER NOT NULL,
  time_s REAL, start_s REAL, end_s REAL, side TEXT, player TEXT, player_name TEXT,
  type_zh TEXT, stroke TEXT, zone INTEGER, ann_caption TEXT, model_caption TEXT,
  hit_x REAL, hit_y REAL, land_x REAL, land_y REAL,
  key TEXT NOT NULL UNIQUE, source_frame INTEGER, edited TEXT, confidence REAL,
  backhand INTEGER, aroundhead INTEGER, hit_height TEXT, win_reason TEXT, lose_reason TEXT, getpoint TEXT);
CREATE INDEX IF NOT EXISTS strokes_by_set ON strokes(set_id, rally, ball_round);
CREATE INDEX IF NOT EXISTS strokes_by_match ON strokes(match_id);
CREATE TABLE IF NOT EXISTS corrections(key TEXT PRIMARY KEY, caption TEXT NOT NULL, updated TEXT);
CREATE TABLE IF NOT EXISTS stroke_edits(
  match TEXT NOT NULL, set_no INTEGER NOT NULL, frame INTEGER NOT NULL, action TEXT NOT NULL,
  new_frame INTEGER, side TEXT, updated TEXT, PRIMARY KEY(match, set_no, frame));
CREATE TABLE IF NOT EXISTS model_captions(
  video_hash TEXT NOT NULL, model_key TEXT NOT NULL, frame INTEGER NOT NULL, caption TEXT NOT NULL,
  PRIMARY KEY(video_hash, model_key, frame));
CREATE TABLE IF NOT EXISTS texts(text TEXT PRIMARY KEY, embedder TEXT NOT NULL, vec BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS video_hashes(path TEXT PRIMARY KEY, size INTEGER, mtime REAL, hash TEXT NOT NULL);
CREATE VIEW IF NOT EXISTS stroke_captions AS
  SELECT s.*, c.caption AS corrected_caption, coalesce(c.caption, s.ann_caption, s.model_caption) AS caption
  FROM strokes s LEFT JOIN corrections c ON c.key = s.key;
"""


def is_uncertain(confidence: float | None) -> bool:
    """A detection to review: its confidence is below UNCERTAIN_BELOW (hand annotations have none)."""
    return confidence is not None and confidence < UNCERTAIN_BELOW


class IndexStoreError(RuntimeError):
    """An index file that cannot be opened or read; the message says why."""


@dataclass
class StrokeRow:
    """One stroke as the index stores it (annotation fields are None for plain hit frames)."""

    rally: int
    ball_round: int
    frame: int
    time_s: float | None = None
    side: str | None = None
    player: str | None = None
    player_name: str | None = None
    type_zh: str | None = None
    stroke: str | None = None
    zone: int | None = None
    ann_caption: str | None = None
    score_a: int | None = None
    score_b: int | None = None
    hit_m: tuple[float, float] | None = None  # hit (else player) point in court metres
    landing_m: tuple[float, float] | None = None
    key: str | None = None  # the natural key (set by write_set from the source row)
    source_frame: int | None = None  # the frame in the source; None for an added stroke
    edited: str | None = None  # what an edit changed ('added', 'moved', 'side', 'moved,side')
    confidence: float | None = None  # a detected hit's certainty (0..1); None for hand annotations
    backhand: bool | None = None
    aroundhead: bool | None = None
    hit_height: str | None = None  # 'above' | 'below' the net top
    win_reason: str | None = None  # the point's outcome, on a rally's last stroke (ShuttleSet labels)
    lose_reason: str | None = None
    getpoint: str | None = None  # 'A' | 'B': who won the point


@dataclass
class SetSource:
    match: str
    set_no: int
    rows: list[StrokeRow]
    players: dict
    fps: float | None
    source: str | None
    source_hash: str


# ---------------------------------------------------------------- reading sources


def set_source(annotations: str | Path | None = None, frames: list[int] | None = None,
               video: str | Path | None = None, workspace: Workspace | None = None) -> SetSource:
    """Annotations (ShuttleSet set file or reference CSV; `workspace`: see
    core.annotations.load_shuttleset_set) or plain hit frames -> what one set stores."""
    if annotations is not None:
        table = load_annotations(annotations, workspace)
        return _from_table(table, Path(annotations))
    if frames is None:
        raise ValueError("give annotations or hit frames")
    if video is None:
        raise ValueError("plain hit frames need the video")
    bad = [f for f in frames if not 0 <= f <= MAX_FRAME]
    if bad:
        raise ValueError(f"hit frame {bad[0]} is not a frame of a match video (0 to {MAX_FRAME:,})")
    rows = [StrokeRow(rally=1, ball_round=i + 1, frame=int(f)) for i, f in enumerate(sorted(set(frames)))]
    digest = hashlib.sha256(json.dumps(sorted(set(frames))).encode()).hexdigest()
    return SetSource(Path(video).stem, 1, rows, {}, None, None, digest)


def _technique(s) -> tuple:
    """backhand, aroundhead (0/1 or None) and hit height of a Stroke or StrokeRow, as stored."""
    flag = lambda v: None if v is None else int(bool(v))  # noqa: E731
    return flag(s.backhand), flag(s.aroundhead), s.hit_height


def court_points(table: StrokeTable, stroke) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """(hit point, landing point) of an annotated stroke in court metres; the player's position
    stands in for a missing hit point. None where the table has no court corners."""
    if table.court is None:
        return None, None
    return tuple(tuple(float(v) for v in table.court.to_court(*xy)) if xy else None
                 for xy in (stroke.hit_xy or stroke.player_xy, stroke.landing_xy))


def _from_table(table: StrokeTable, path: Path) -> SetSource:
    if not table.strokes:
        raise AnnotationError(path, None, None, "no strokes in the file")
    sets = {(s.match, s.set) for s in table.strokes}
    if len(sets) > 1:
        raise AnnotationError(path, None, None, f"strokes of {len(sets)} sets in one file; index one set per file")
    rows = [StrokeRow(s.rally, s.ball_round, s.frame, s.time_s, s.side, s.player, s.player_name, s.type_zh,
                      s.stroke, s.zone, s.caption, s.score_a, s.score_b, *court_points(table, s),
                      confidence=s.confidence, backhand=s.backhand, aroundhead=s.aroundhead, hit_height=s.hit_height,
                      win_reason=s.win_reason, lose_reason=s.lose_reason, getpoint=s.getpoint_player)
            for s in table.strokes]
    first = table.strokes[0]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return SetSource(first.match, first.set, rows, dict(table.players), table.fps, str(path), digest)


# ---------------------------------------------------------------- the store


class StrokeStore:
    """The workspace's stroke store (one SQLite file); its token cache folder lies beside it."""

    def __init__(self, db_path: str | Path, workspace: Workspace | None = None):
        """`workspace` (core.workspace.Workspace): where a set's source may read its match.csv and
        homography.csv (None: beside the set file, wherever it is)."""
        self.path = Path(db_path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.token_dir = self.path.with_name(self.path.name + ".tokens")
        self.columns_file = self.path.with_name(self.path.name + ".columns")  # core.columns
        self.workspace = workspace
        self._lock = threading.RLock()  # writers of this process, one transaction at a time
        self._local = threading.local()
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._connections_lock = threading.Lock()
        try:
            self.db.execute("PRAGMA journal_mode=WAL")  # readers see the last commit and never wait for a writer
            self._migrate()
        except sqlite3.DatabaseError as err:
            self.close()
            raise IndexStoreError(f"{self.path}: not a stroke index ({err})") from None

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection. Each thread reads through its own, so a read sees the last
        committed state (WAL) while another thread's transaction is open, and never waits for it."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None,
                                 timeout=BUSY_TIMEOUT_S)
            db.execute("PRAGMA synchronous=NORMAL")
            db.row_factory = sqlite3.Row
            self._local.db = db
            with self._connections_lock:
                for thread, other in [c for c in self._connections if not c[0].is_alive()]:
                    other.close()  # a finished thread's connection
                    self._connections.remove((thread, other))
                self._connections.append((threading.current_thread(), db))
        return db

    def close(self) -> None:
        with self._connections_lock:
            for _, db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()

    # ------------------------------------------------------------ schema and transactions

    def _migrate(self) -> None:
        has_meta = self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        version = SCHEMA_VERSION
        if has_meta:
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise IndexStoreError(f"{self.path}: schema version {version} is newer than this app "
                                      f"({SCHEMA_VERSION})")
        with self.transaction():
            for stmt in SCHEMA.split(";"):
                if stmt.strip():
                    self.db.execute(stmt)
            if has_meta and version < 2:
                self._add_geometry()
            if has_meta and version < 3:
                self._add_edit_columns()
            if has_meta and version < 4:
                self._add_confidence()
            if has_meta and version < 5:
                self._add_technique_and_outcome()
            self.db.execute("INSERT OR REPLACE INTO meta VALUES('schema_version', ?)", (str(SCHEMA_VERSION),))
            self.db.execute("INSERT OR IGNORE INTO meta VALUES('generation', '0')")
            self.db.execute("INSERT OR IGNORE INTO meta VALUES('index_id', lower(hex(randomblob(16))))")

    def _source_tables(self, purpose: str) -> Iterator[tuple[int, StrokeTable]]:
        """(set id, its annotation table) of every set whose source file can still be read; the
        others are skipped with a warning naming `purpose` (a migration back-fills from them)."""
        for set_id, source in self.db.execute("SELECT id, source FROM sets WHERE source IS NOT NULL").fetchall():
            try:
                yield set_id, load_annotations(source)
            except (AnnotationError, ValueError, OSError) as err:
                log.warning("no %s for %s: %s", purpose, source, err)

    def _add_columns(self, columns: dict[str, str]) -> None:
        # an index whose version number was set back may have a column already: add each only once
        have = {r[1] for r in self.db.execute("PRAGMA table_info(strokes)")}
        for col, kind in columns.items():
            if col not in have:
                self.db.execute(f"ALTER TABLE strokes ADD COLUMN {col} {kind}")

    def _add_geometry(self) -> None:
        """Schema 1 -> 2: court positions of every stroke, read once from the sets' annotation files."""
        self._add_columns({c: "REAL" for c in GEOMETRY})
        for set_id, table in self._source_tables("court positions"):
            self.db.executemany(
                "UPDATE strokes SET hit_x=?, hit_y=?, land_x=?, land_y=? WHERE set_id=? AND rally=? AND ball_round=?"
                " AND frame=?", [(*_geometry(*court_points(table, s)), set_id, s.rally, s.ball_round, s.frame)
                                 for s in table.strokes])

    def _add_edit_columns(self) -> None:
        """Schema 2 -> 3: strokes know their source frame and what an edit changed (stroke_edits is new)."""
        self._add_columns({"source_frame": "INTEGER", "edited": "TEXT"})
        self.db.execute("UPDATE strokes SET source_frame=frame")

    def _add_confidence(self) -> None:
        """Schema 3 -> 4: each stroke's confidence, read once from its set's file (a detected set's
        `confidence` column; NULL where the file has none); an edited stroke's is 1, as on a write."""
        self._add_columns({"confidence": "REAL"})
        for set_id, table in self._source_tables("stroke confidences"):
            self.db.executemany("UPDATE strokes SET confidence=? WHERE set_id=? AND source_frame=? AND edited IS NULL",
                                [(s.confidence, set_id, s.frame) for s in table.strokes if s.confidence is not None])
        self.db.execute("UPDATE strokes SET confidence=1.0 WHERE edited IS NOT NULL")

    def _add_technique_and_outcome(self) -> None:
        """Schema 4 -> 5: backhand, around-the-head, hit height and the point's outcome of every
        annotated stroke, read once from its set's file."""
        self._add_columns({"backhand": "INTEGER", "aroundhead": "INTEGER", "hit_height": "TEXT",
                           "win_reason": "TEXT", "lose_reason": "TEXT", "getpoint": "TEXT"})
        for set_id, table in self._source_tables("technique and outcome fields"):
            self.db.executemany(
                "UPDATE strokes SET backhand=?, aroundhead=?, hit_height=?, win_reason=?, lose_reason=?, getpoint=?"
                " WHERE set_id=? AND source_frame=? AND rally=? AND ball_round=?",
                [(*_technique(s), s.win_reason, s.lose_reason, s.getpoint_player, set_id, s.frame, s.rally,
                  s.ball_round) for s in table.strokes])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All or nothing: BEGIN IMMEDIATE .. COMMIT, ROLLBACK on any exception, on this thread's
        connection; one transaction of this process at a time (readers do not wait for it)."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def _bump(self) -> None:
        self.db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """Several reads of one committed state (a writer committing in between is not seen)."""
        db = self.db
        db.execute("BEGIN DEFERRED")
        try:
            yield db
        finally:
            db.execute("COMMIT")

    def index_id(self) -> str:
        """A random id given to the index when it is created (or first opened by this version)."""
        return self.db.execute("SELECT value FROM meta WHERE key='index_id'").fetchone()[0]

    def generation(self) -> int:
        """Changes whenever strokes, captions or corrections change (readers reload then)."""
        return int(self.db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])

    # ------------------------------------------------------------ writing

    def write_set(self, src: SetSource, video: str | Path | None, vhash: str | None, fps: float | None,
                  model_keys: tuple[str, str | None] | None = None) -> tuple[int, int]:
        """One set's strokes and rallies in one transaction: (match id, set id). `model_keys`
        (encoder key, captioner key) of a model pass whose tokens and captions are cached already:
        the strokes get those captions in the same transaction, so a set is never half-indexed.
        The same source and video again (and no model pass) changes nothing; without a video, the
        video indexed before for the set is kept."""
        video = str(Path(video).resolve()) if video is not None else None
        ekey, ckey = model_keys or (None, None)
        with self.transaction() as db:
            db.execute("INSERT INTO matches(name, player_a, player_b) VALUES(?,?,?) ON CONFLICT(name) DO UPDATE "
                       "SET player_a=coalesce(excluded.player_a, player_a), "
                       "player_b=coalesce(excluded.player_b, player_b)",
                       (src.match, src.players.get("A") or None, src.players.get("B") or None))
            match_id = db.execute("SELECT id FROM matches WHERE name=?", (src.match,)).fetchone()[0]
            old = db.execute("SELECT id, source_hash, video_hash, video, fps FROM sets WHERE match_id=? AND set_no=?",
                             (match_id, src.set_no)).fetchone()
            if old and video is None and old[2] is not None:  # annotations again, no video: keep the old one
                vhash, video, fps = old[2], old[3], old[4]
            if old and old[1] == src.source_hash and old[2] == vhash and model_keys is None:
                return match_id, old[0]
            if old:
                set_id = old[0]
                db.execute("UPDATE sets SET source=?, source_hash=?, video=?, video_hash=?, fps=?, status='complete', "
                           "encoder_key=coalesce(?, encoder_key), captioner_key=coalesce(?, captioner_key), updated=? "
                           "WHERE id=?", (src.source, src.source_hash, video, vhash, fps, ekey, ckey, _now(), set_id))
            else:
                set_id = db.execute(
                    "INSERT INTO sets(match_id, set_no, source, source_hash, video, video_hash, fps, encoder_key, "
                    "captioner_key, status, n_strokes, updated) VALUES(?,?,?,?,?,?,?,?,?,'complete',?,?)",
                    (match_id, src.set_no, src.source, src.source_hash, video, vhash, fps, ekey, ckey, len(src.rows),
                     _now()),
                ).lastrowid
            self._write_rows(set_id, match_id, src, fps)
            self._bump()
        return match_id, set_id

    def planned_frames(self, src: SetSource) -> list[int]:
        """The hit frames the set will have once `src` is written (its stroke edits applied)."""
        return sorted({r.frame for r in self._rows(src)})

    def _rows(self, src: SetSource) -> list[StrokeRow]:
        rows = [replace(r, key=k, source_frame=r.frame) for r, k in zip(src.rows, _keys(src))]
        return apply_edits(rows, self._edits(src.match, src.set_no), src.match, src.set_no, src.players)

    def _write_rows(self, set_id: int, match_id: int, src: SetSource, fps: float | None) -> None:
        """Replace a set's strokes and rallies with the source's rows, the set's stroke edits applied
        (inside the caller's transaction). Keys come from the source rows, so corrections follow a
        moved stroke; a stroke whose key was there before keeps its id."""
        db = self.db
        ids = dict(db.execute("SELECT key, id FROM strokes WHERE set_id=?", (set_id,)).fetchall())
        rows = self._rows(src)
        db.execute("DELETE FROM strokes WHERE set_id=?", (set_id,))
        db.execute("DELETE FROM rallies WHERE set_id=?", (set_id,))
        db.execute("UPDATE sets SET n_strokes=? WHERE id=?", (len(rows), set_id))
        db.executemany(
            "INSERT INTO strokes(id, set_id, match_id, set_no, rally, ball_round, frame, time_s, start_s, end_s, side,"
            " player, player_name, type_zh, stroke, zone, ann_caption, hit_x, hit_y, land_x, land_y, key,"
            " source_frame, edited, confidence, backhand, aroundhead, hit_height, win_reason, lose_reason, getpoint)"
            " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(ids.get(r.key), set_id, match_id, src.set_no, r.rally, r.ball_round, r.frame, t, a, b, r.side, r.player,
              r.player_name, r.type_zh, r.stroke, r.zone, r.ann_caption, *_geometry(r.hit_m, r.landing_m), r.key,
              r.source_frame, r.edited, r.confidence, *_technique(r), r.win_reason, r.lose_reason, r.getpoint)
             for r, (t, a, b) in sorted(zip(rows, (_times(r, fps) for r in rows)),
                                        key=lambda x: x[0].key not in ids)])  # kept ids first: new ones come after
        db.executemany("INSERT INTO rallies(set_id, rally, score_a, score_b, score_a_before, score_b_before,"
                       " start_s, end_s, n_strokes) VALUES(?,?,?,?,?,?,?,?,?)", _rallies(set_id, rows, fps))
        self._fill_model_captions(set_id)

    def video_hash(self, video: str | Path) -> str:
        p = Path(video).resolve()
        st = p.stat()
        row = self.db.execute("SELECT size, mtime, hash FROM video_hashes WHERE path=?", (str(p),)).fetchone()
        if row and row[0] == st.st_size and row[1] == st.st_mtime:
            return row[2]
        digest = file_hash(p)
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO video_hashes VALUES(?,?,?,?)",
                            (str(p), st.st_size, st.st_mtime, digest))
        return digest

    # ------------------------------------------------------------ the model pass's rows

    def set_video(self, set_id: int) -> tuple[str, str]:
        """(video path, video hash) of a set; ValueError when it has none."""
        row = self.db.execute("SELECT video, video_hash FROM sets WHERE id=?", (set_id,)).fetchone()
        if row is None or row["video"] is None:
            raise ValueError(f"set {set_id} has no video")
        return row["video"], row["video_hash"]

    def hit_frames(self, set_id: int) -> list[int]:
        return sorted({r[0] for r in self.db.execute("SELECT frame FROM strokes WHERE set_id=?", (set_id,))})

    def captioned_frames(self, vhash: str, cap_key: str) -> set[int]:
        return {r[0] for r in self.db.execute(
            "SELECT frame FROM model_captions WHERE video_hash=? AND model_key=?", (vhash, cap_key))}

    def cache_captions(self, vhash: str, cap_key: str, captions: list[tuple[int, str]]) -> None:
        """(frame, caption) pairs of a video under a model into the caption cache (no stroke
        changes: `finish_model_pass` or `write_set` puts them on the strokes)."""
        with self.transaction():
            self.db.executemany("INSERT OR REPLACE INTO model_captions VALUES(?,?,?,?)",
                                [(vhash, cap_key, f, t) for f, t in captions])

    def finish_model_pass(self, set_id: int, enc_key: str, cap_key: str | None) -> None:
        """A set's model pass done (its tokens and captions cached): the model keys and the cached
        captions onto the set and its strokes, in one transaction."""
        with self.transaction():
            self.db.execute("UPDATE sets SET status='complete', encoder_key=?, captioner_key=coalesce(?, captioner_key),"
                            " updated=? WHERE id=?", (enc_key, cap_key, _now(), set_id))
            self._fill_model_captions(set_id)
            self._bump()

    def _fill_model_captions(self, set_id: int) -> None:
        """The set's strokes get the cached captions of the set's captioner (none: left as they are)."""
        row = self.db.execute("SELECT captioner_key FROM sets WHERE id=?", (set_id,)).fetchone()
        if row is None or row[0] is None:
            return
        self.db.execute("UPDATE strokes SET model_caption=(SELECT caption FROM model_captions m, sets s WHERE "
                        "s.id=strokes.set_id AND m.video_hash=s.video_hash AND m.model_key=? AND m.frame=strokes.frame)"
                        " WHERE set_id=?", (row[0], set_id))

    def token_cache(self, video_hash: str, enc_key: str) -> TokenCache:
        return TokenCache.of(self.token_dir, video_hash, enc_key)

    # ------------------------------------------------------------ reading

    def matches(self) -> list[dict]:
        rows = self.db.execute(
            "SELECT m.id, m.name, m.player_a, m.player_b, count(DISTINCT s.id) AS sets, "
            "coalesce(sum(s.n_strokes), 0) AS strokes, group_concat(DISTINCT s.status) AS status "
            "FROM matches m LEFT JOIN sets s ON s.match_id=m.id GROUP BY m.id ORDER BY m.id").fetchall()
        return [dict(r) for r in rows]

    def sets(self, match_id: int | None = None) -> list[dict]:
        q = "SELECT * FROM sets" + (" WHERE match_id=?" if match_id is not None else "") + " ORDER BY match_id, set_no"
        return [dict(r) for r in self.db.execute(q, (match_id,) if match_id is not None else ())]

    STROKE_FILTERS = ("set_no", "rally", "ball_round", "side", "player", "player_name", "stroke", "zone", "frame")

    def strokes(self, match_id: int | None = None, ids: list[int] | None = None, uncertain: bool = False,
                **filters) -> list[dict]:
        """Strokes in match order, each with `caption` (corrected > annotation > model) and `corrected`;
        `ids` picks stroke ids (e.g. a query's results) instead of reading a whole match; `uncertain`
        keeps only the detections to review (confidence below UNCERTAIN_BELOW)."""
        unknown = set(filters) - set(self.STROKE_FILTERS)
        if unknown:
            raise ValueError(f"unknown filter(s) {sorted(unknown)}; use {', '.join(self.STROKE_FILTERS)}")
        where, args = [], []
        if match_id is not None:
            where.append("s.match_id=?")
            args.append(match_id)
        if ids is not None:
            ids = [int(i) for i in ids][:32000]  # SQLite's limit on bound values
            where.append(f"s.id IN ({','.join('?' * len(ids))})" if ids else "0")
            args.extend(ids)
        for k, v in filters.items():
            where.append(f"s.{k}=?")
            args.append(v)
        if uncertain:
            where.append("s.confidence < ?")  # NULL (hand annotations) is never uncertain
            args.append(UNCERTAIN_BELOW)
        q = ("SELECT s.*, m.name AS match, c.caption AS corrected, st.video, st.fps FROM strokes s "
             "JOIN matches m ON m.id=s.match_id JOIN sets st ON st.id=s.set_id LEFT JOIN corrections c ON c.key=s.key"
             + (" WHERE " + " AND ".join(where) if where else "")
             + " ORDER BY s.match_id, s.set_no, s.rally, s.ball_round, s.frame, s.id")
        out = []
        for r in self.db.execute(q, args):
            d = dict(r)
            d["caption"] = d["corrected"] or d["ann_caption"] or d["model_caption"]
            out.append(d)
        return out

    def set_caption(self, stroke_id: int, text: str | None) -> None:
        """Store a coach's corrected caption (None or '' removes the correction)."""
        row = self.db.execute("SELECT key FROM strokes WHERE id=?", (stroke_id,)).fetchone()
        if row is None:
            raise KeyError(f"no stroke {stroke_id} in {self.path}")
        with self.transaction():
            if text and text.strip():
                self.db.execute("INSERT OR REPLACE INTO corrections VALUES(?,?,?)",
                                (row[0], " ".join(text.split()), _now()))
            else:
                self.db.execute("DELETE FROM corrections WHERE key=?", (row[0],))
            self._bump()

    def export_captions(self, path: str | Path, match_id: int | None = None) -> int:
        """Stage-1 training captions (corrected, else annotation) as train.json: [{caption, image, image_id}]."""
        items = []
        for s in self.strokes(match_id):
            text = s["corrected"] or s["ann_caption"]
            if text:
                sid = f"{s['match']}_{s['set_no']}_{s['frame']}"
                items.append({"caption": text, "image": f"clips/{sid}.mp4", "image_id": sid})
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(items, ensure_ascii=False, indent=1), encoding="utf-8")
        tmp.replace(path)
        return len(items)

    # ------------------------------------------------------------ stroke edits

    def _edits(self, match: str, set_no: int) -> list[dict]:
        return [dict(r) for r in self.db.execute(
            "SELECT frame, action, new_frame, side FROM stroke_edits WHERE match=? AND set_no=? ORDER BY frame",
            (match, set_no))]

    def stroke_edits(self, match_id: int | None = None) -> list[dict]:
        """The stored stroke edits (of one match): match, set_no, frame (in the source), action, new_frame, side."""
        q = ("SELECT e.* FROM stroke_edits e" + (" JOIN matches m ON m.name=e.match WHERE m.id=?" if match_id else "")
             + " ORDER BY e.match, e.set_no, e.frame")
        return [dict(r) for r in self.db.execute(q, (match_id,) if match_id else ())]

    def _stroke(self, stroke_id: int) -> dict:
        row = self.db.execute("SELECT s.*, m.name AS match FROM strokes s JOIN matches m ON m.id=s.match_id "
                              "WHERE s.id=?", (int(stroke_id),)).fetchone()
        if row is None:
            raise KeyError(f"no stroke {stroke_id} in {self.path}")
        return dict(row)

    def add_stroke(self, set_id: int, frame: int, side: str | None = None) -> int:
        """A hit the source lacks, at `frame` (side None: the other side of the rally's previous hit);
        its new stroke id. Its rally is the one whose hits surround the frame (else the nearest)."""
        frame = int(frame)
        if frame < 0:
            raise ValueError(f"frame {frame} is before the video's start")
        _check_side(side)
        set_row = self._set_row(set_id)
        if self.db.execute("SELECT 1 FROM strokes WHERE set_id=? AND frame=?", (set_id, frame)).fetchone():
            raise ValueError(f"set {set_row['set_no']} already has a stroke at frame {frame}")
        key = (set_row["match"], set_row["set_no"], frame)
        self._check_free(*key, also_deleted=False)
        self._edit(set_id, [("DELETE FROM stroke_edits WHERE match=? AND set_no=? AND frame=?", key),
                            ("INSERT INTO stroke_edits VALUES(?,?,?,'add',NULL,?,?)", (*key, side, _now()))], None)
        row = self.db.execute("SELECT id FROM strokes WHERE set_id=? AND frame=?", (set_id, frame)).fetchone()
        return int(row[0])

    def delete_stroke(self, stroke_id: int) -> None:
        """Remove a stroke (an added one is forgotten; a source one is kept out of every later write)."""
        s = self._stroke(stroke_id)
        if s["source_frame"] is None:
            ops = [("DELETE FROM stroke_edits WHERE match=? AND set_no=? AND frame=? AND action='add'",
                    (s["match"], s["set_no"], s["frame"]))]
        else:
            ops = [("INSERT OR REPLACE INTO stroke_edits VALUES(?,?,?,'delete',NULL,NULL,?)",
                    (s["match"], s["set_no"], s["source_frame"], _now()))]
        self._edit(s["set_id"], ops, None)

    def move_stroke(self, stroke_id: int, frames: int) -> int:
        """Move a stroke's hit by `frames` (negative: earlier); its stroke id after the move."""
        s = self._stroke(stroke_id)
        new = int(s["frame"]) + int(frames)
        if new < 0:
            raise ValueError(f"frame {new} is before the video's start")
        if new != s["frame"] and self.db.execute("SELECT 1 FROM strokes WHERE set_id=? AND frame=?",
                                                 (s["set_id"], new)).fetchone():
            raise ValueError(f"set {s['set_no']} already has a stroke at frame {new}")
        if s["source_frame"] is None:  # an added stroke: it is added at the new frame instead
            if new != s["frame"]:
                self._check_free(s["match"], s["set_no"], new)
            edit = self._edit_row(s["match"], s["set_no"], s["frame"])
            ops = [("DELETE FROM stroke_edits WHERE match=? AND set_no=? AND frame=?", (s["match"], s["set_no"], s["frame"])),
                   ("INSERT INTO stroke_edits VALUES(?,?,?,'add',NULL,?,?)",
                    (s["match"], s["set_no"], new, edit["side"] if edit else None, _now()))]
            return self._edit(s["set_id"], ops, _added_key(s["match"], s["set_no"], new))
        return self._change(s, new_frame=new)

    def set_stroke_side(self, stroke_id: int, side: str) -> int:
        """Give a stroke's hit to the player on `side` ('bottom' or 'upper'); its stroke id."""
        _check_side(side, required=True)
        s = self._stroke(stroke_id)
        if s["source_frame"] is None:
            ops = [("UPDATE stroke_edits SET side=?, updated=? WHERE match=? AND set_no=? AND frame=?",
                    (side, _now(), s["match"], s["set_no"], s["frame"]))]
            return self._edit(s["set_id"], ops, s["key"])
        return self._change(s, side=side)

    def revert_stroke(self, stroke_id: int) -> int | None:
        """Drop a stroke's edits (an added stroke goes away): its stroke id after, or None."""
        s = self._stroke(stroke_id)
        frame = s["frame"] if s["source_frame"] is None else s["source_frame"]
        ops = [("DELETE FROM stroke_edits WHERE match=? AND set_no=? AND frame=?", (s["match"], s["set_no"], frame))]
        return self._edit(s["set_id"], ops, None if s["source_frame"] is None else s["key"])

    def _check_free(self, match: str, set_no: int, frame: int, also_deleted: bool = True) -> None:
        """ValueError when `frame` is a source frame that another edit holds (a moved stroke's place;
        a deleted stroke's, unless `also_deleted` is off: adding there brings that stroke back)."""
        e = self._edit_row(match, set_no, frame)
        if e and (e["action"] == "change" or (also_deleted and e["action"] == "delete")):
            what = "moved or changed" if e["action"] == "change" else "deleted"
            raise ValueError(f"frame {frame} is where a {what} stroke was detected; undo that stroke's edits "
                             "instead, or pick another frame")

    def _edit_row(self, match: str, set_no: int, frame: int) -> dict | None:
        row = self.db.execute("SELECT * FROM stroke_edits WHERE match=? AND set_no=? AND frame=?",
                              (match, set_no, frame)).fetchone()
        return dict(row) if row else None

    def _change(self, s: dict, new_frame: int | None = None, side: str | None = None) -> int:
        old = self._edit_row(s["match"], s["set_no"], s["source_frame"]) or {}
        new_frame = old.get("new_frame") if new_frame is None else new_frame
        side = old.get("side") if side is None else side
        if new_frame == s["source_frame"]:
            new_frame = None
        ops = [("DELETE FROM stroke_edits WHERE match=? AND set_no=? AND frame=?",
                (s["match"], s["set_no"], s["source_frame"]))]
        if new_frame is not None or side is not None:
            ops.append(("INSERT INTO stroke_edits VALUES(?,?,?,'change',?,?,?)",
                        (s["match"], s["set_no"], s["source_frame"], new_frame, side, _now())))
        return self._edit(s["set_id"], ops, s["key"])

    def _set_row(self, set_id: int) -> dict:
        row = self.db.execute("SELECT s.*, m.name AS match, m.player_a, m.player_b FROM sets s "
                              "JOIN matches m ON m.id=s.match_id WHERE s.id=?", (int(set_id),)).fetchone()
        if row is None:
            raise KeyError(f"no set {set_id} in {self.path}")
        return dict(row)

    def _edit(self, set_id: int, ops: list[tuple[str, tuple]], key: str | None) -> int | None:
        """Store an edit and rewrite the set's strokes from its source with every edit applied, in one
        transaction; the id of the stroke with natural key `key` afterwards."""
        set_row = self._set_row(set_id)
        src = self._source_again(set_row)
        with self.transaction() as db:
            for sql, args in ops:
                db.execute(sql, args)
            self._write_rows(set_id, set_row["match_id"], src, set_row["fps"])
            self._bump()
        if key is None:
            return None
        row = self.db.execute("SELECT id FROM strokes WHERE set_id=? AND key=?", (set_id, key)).fetchone()
        return int(row[0]) if row else None

    def _source_again(self, set_row: dict) -> SetSource:
        """The set's source as it was indexed: its annotation file again, or its plain hit frames."""
        if set_row["source"]:
            try:
                src = set_source(set_row["source"], workspace=self.workspace)
            except (AnnotationError, OSError) as err:
                raise IndexStoreError(f"cannot edit set {set_row['set_no']} of {set_row['match']}: its source "
                                      f"{set_row['source']} cannot be read ({err}); index the match again") from None
            if src.source_hash != set_row["source_hash"]:
                raise IndexStoreError(f"{set_row['source']} changed since it was indexed; index the match again")
            return src
        frames = {r[0] for r in self.db.execute("SELECT source_frame FROM strokes WHERE set_id=? AND source_frame "
                                                "IS NOT NULL", (set_row["id"],))}
        frames |= {e["frame"] for e in self._edits(set_row["match"], set_row["set_no"]) if e["action"] == "delete"}
        src = set_source(frames=sorted(frames), video=set_row["video"] or set_row["match"])
        return replace(src, match=set_row["match"], set_no=set_row["set_no"])

    def export_set_csv(self, set_id: int, out_dir: str | Path) -> Path:
        """The set's strokes as they are now (edits applied) as a set file in the columns core.detect
        writes (OUT/<match>/set<N>.csv: side and player_name given, so core.annotations imports the
        same frames, rallies, sides and names): training data for the detector. Rally start/end
        frames and winners come from the set's source file where it has them; the confidence is the
        stroke's stored one (1 for an edited stroke, empty for hand annotations)."""
        set_row = self._set_row(set_id)
        rows = self.strokes(set_no=set_row["set_no"], match_id=set_row["match_id"])
        scores = {r["rally"]: (r["score_a"], r["score_b"]) for r in self.db.execute(
            "SELECT rally, score_a, score_b FROM rallies WHERE set_id=?", (set_id,))}
        rally_cols = _source_rallies(set_row["source"])
        path = Path(out_dir) / set_row["match"] / f"set{set_row['set_no']}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        fps = set_row["fps"]
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(EXPORT_COLUMNS)
            for r in rows:
                t = r["frame"] / fps if fps else (r["time_s"] or 0.0)
                sa, sb = scores.get(r["rally"], (None, None))
                w.writerow([r["rally"], r["ball_round"], _clock(t), r["frame"], _blank(sa), _blank(sb),
                            r["player"] or "", 1 if r["ball_round"] == 1 else "", r["type_zh"] or "", r["side"] or "",
                            _blank(r["confidence"]), *rally_cols.get(r["rally"], ("", "", "")), r["player_name"] or ""])
        return path

    # ------------------------------------------------------------ text embeddings

    def text_vectors(self, texts: list[str], embedder) -> np.ndarray:
        """Embeddings of texts, from the `texts` table where present; new ones are embedded and stored."""
        if not texts:
            return np.zeros((0, embedder.dim), np.float32)
        name = embedder.name
        stored = {}
        for start in range(0, len(texts), 500):
            part = texts[start:start + 500]
            q = f"SELECT text, vec FROM texts WHERE embedder=? AND text IN ({','.join('?' * len(part))})"
            stored.update({t: np.frombuffer(v, np.float32) for t, v in self.db.execute(q, (name, *part))})
        new = [t for t in texts if t not in stored]
        if new:
            vecs = embedder.encode(new)
            with self.transaction():
                self.db.executemany("INSERT OR REPLACE INTO texts VALUES(?,?,?)",
                                    [(t, name, v.astype(np.float32).tobytes()) for t, v in zip(new, vecs)])
            stored.update(zip(new, vecs))
        return np.stack([stored[t] for t in texts]).astype(np.float32)


# ---------------------------------------------------------------- helpers


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _times(r: StrokeRow, fps: float | None) -> tuple[float | None, float | None, float | None]:
    """(hit time, window start, window end): the clip frames hit-7 .. hit+8, through the fps."""
    if fps:
        t = r.frame / fps
        return t, max(0.0, (r.frame - WINDOW_BEFORE) / fps), (r.frame + WINDOW_AFTER + 1) / fps
    if r.time_s is not None:
        return r.time_s, max(0.0, r.time_s - 0.3), r.time_s + 0.35
    return None, None, None


def _keys(src: SetSource) -> list[str]:
    """Natural keys (match|set|rally|ball_round|frame), made unique for repeated annotation rows."""
    seen: dict[str, int] = {}
    out = []
    for r in src.rows:
        key = f"{src.match}|{src.set_no}|{r.rally}|{r.ball_round}|{r.frame}"
        n = seen.get(key, 0)
        seen[key] = n + 1
        out.append(key if n == 0 else f"{key}#{n}")
    return out


def _rallies(set_id: int, rows: list[StrokeRow], fps: float | None) -> list[tuple]:
    by: dict[int, list[StrokeRow]] = {}
    for r in rows:
        by.setdefault(r.rally, []).append(r)
    out, before = [], (0, 0)
    for rally in sorted(by):
        group = by[rally]
        last = ([r for r in group if r.edited != "added"] or group)[-1]  # an added stroke has no score
        score = (last.score_a, last.score_b)
        times = [t for r in group for t in _times(r, fps)[1:] if t is not None]
        out.append((set_id, rally, score[0], score[1], before[0] if score[0] is not None else None,
                    before[1] if score[1] is not None else None, min(times) if times else None,
                    max(times) if times else None, len(group)))
        if score[0] is not None and score[1] is not None:
            before = score
    return out


def _geometry(hit: tuple[float, float] | None, landing: tuple[float, float] | None) -> tuple:
    return (*(hit or (None, None)), *(landing or (None, None)))


EXPORT_COLUMNS = ("rally", "ball_round", "time", "frame_num", "roundscore_A", "roundscore_B", "player", "server",
                  "type", "side", "confidence", "rally_winner", "rally_start_frame", "rally_end_frame",
                  "player_name")  # as core.detect writes them


def _source_rallies(source: str | None) -> dict[int, tuple]:
    """From a detected set file: rally -> (winner, start frame, end frame)."""
    rallies: dict[int, tuple] = {}
    if not source or not Path(source).is_file():
        return rallies
    with open(source, newline="", encoding="utf-8-sig") as f:
        for r in csv.DictReader(f):
            try:
                rally = int(float(r.get("rally") or 0))
            except ValueError:
                continue
            if r.get("rally_start_frame"):
                rallies.setdefault(rally, (r.get("rally_winner", ""), r["rally_start_frame"],
                                           r.get("rally_end_frame", "")))
    return rallies


def apply_edits(rows: list[StrokeRow], edits: list[dict], match: str, set_no: int,
                players: dict | None = None) -> list[StrokeRow]:
    """A set's source rows with its stroke edits applied: deleted rows dropped, moved ones at their
    new frame, a changed side handing the hit to the other player (caption follows), added hits in
    the rally their frame falls in; the strokes of every touched rally renumbered in frame order.
    A moved, changed or added stroke's confidence is 1: a person placed it.
    Edits whose source frame is not in the rows are ignored (they apply again if it comes back)."""
    if not edits:
        return rows
    players = players or {}
    by_frame = {e["frame"]: e for e in edits if e["action"] in ("delete", "change")}
    out, touched = [], set()
    for r in rows:
        e = by_frame.get(r.source_frame)
        if e is None:
            out.append(r)
            continue
        touched.add(r.rally)
        if e["action"] == "delete":
            continue
        what = []
        if e["new_frame"] is not None and e["new_frame"] != r.frame:
            r = replace(r, frame=int(e["new_frame"]), time_s=None)
            what.append("moved")
        if e["side"] and e["side"] != r.side:
            r = _with_side(r, e["side"], players)
            what.append("side")
        out.append(replace(r, edited=",".join(what) or None, confidence=1.0 if what else r.confidence))
    taken = {r.frame for r in out}
    for e in (e for e in edits if e["action"] == "add" and e["frame"] not in taken):
        row = _added_row(out, int(e["frame"]), e["side"], match, set_no, players)
        touched.add(row.rally)
        out.append(row)
    for rally in touched:
        group = sorted((r for r in out if r.rally == rally), key=lambda r: r.frame)
        for k, r in enumerate(group, start=1):
            r.ball_round = k
    return sorted(out, key=lambda r: (r.rally, r.ball_round, r.frame))


def _other(side: str) -> str:
    return "upper" if side == "bottom" else "bottom"


def _check_side(side: str | None, required: bool = False) -> None:
    if (side is not None or required) and side not in SIDES:
        raise ValueError(f"a side is 'bottom' or 'upper', not {side!r}")


def _with_side(r: StrokeRow, side: str, players: dict) -> StrokeRow:
    """The row with its hit given to the player on `side` (the other player, when the side changes)."""
    player = {"A": "B", "B": "A"}.get(r.player) if r.player else None
    ann = stroke_caption(side, r.stroke, r.zone) if r.ann_caption and r.stroke and r.zone is not None else None
    return replace(r, side=side, player=player, player_name=players.get(player) if player else None,
                   ann_caption=ann)


def _added_row(rows: list[StrokeRow], frame: int, side: str | None, match: str, set_no: int,
               players: dict) -> StrokeRow:
    """A hit at `frame` in the rally whose hits surround it (else the nearest rally)."""
    spans: dict[int, list[int]] = {}
    for r in rows:
        spans.setdefault(r.rally, []).append(r.frame)
    rally = min(spans, key=lambda k: (max(min(spans[k]) - frame, frame - max(spans[k]), 0), k)) if spans else 1
    before = [r for r in rows if r.rally == rally and r.frame < frame and r.side]
    prev = max(before, key=lambda r: r.frame) if before else None
    side = side or (_other(prev.side) if prev else "bottom")
    same = [r for r in rows if r.rally == rally and r.player and r.side]
    player = None
    if same:
        ref = same[0]
        player = ref.player if ref.side == side else {"A": "B", "B": "A"}[ref.player]
    return StrokeRow(rally=rally, ball_round=0, frame=frame, side=side, player=player,
                     player_name=players.get(player) if player else None, key=_added_key(match, set_no, frame),
                     source_frame=None, edited="added", confidence=1.0)


def _added_key(match: str, set_no: int, frame: int) -> str:
    return f"{match}|{set_no}|added|{frame}"


def _clock(t: float) -> str:
    t = int(max(0.0, t))
    return f"{t // 3600}:{t // 60 % 60:02d}:{t % 60:02d}"


def _blank(v):
    return "" if v is None else v
