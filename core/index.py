"""The stroke index: one SQLite file per workspace, plus an on-disk cache of query tokens.

    python -m core.index VIDEO_OR_NONE --annotations CSV [--db PATH] [--model DIR]

Tables (schema version `SCHEMA_VERSION`, in `meta`):
  matches   one row per match (ShuttleSet video folder, or the video's name), players A and B
  sets      one row per indexed set file / video: sources, content hashes, model keys, status
  rallies   score after and before each rally, start/end time
  strokes   times, frames, side, player, type, zone, annotation caption, model caption
  corrections  coaches' corrected captions, keyed by the stroke's natural key
               (match|set|rally|ball_round|frame), so re-indexing never drops them
  model_captions  caption cache: (video hash, model key, frame) -> caption
  texts     sentence embedding (float32 blob) of every caption text, embedded once (a stroke's
            embedding is that of its caption, with the stroke's description: core.query.semantic_text)
  stroke_captions  view: strokes with their corrected caption and the caption shown
               (corrected > annotation > model)

Indexing a set: its strokes are written in one transaction (status 'annotated'). With a video
and a model, the video is decoded once (core.video.iter_windows, memory bounded by the frames of
overlapping windows); each batch of strokes goes through the vision tower and Q-Former once,
its query tokens are written to the token cache and its captions generated from those tokens
(the vision never runs twice), then the batch's captions are committed. An interrupted run
leaves whole batches only; the next run skips every stroke whose tokens and caption are cached,
so indexing resumes where it stopped and a re-index with the same model is free.

Token cache: `<db>.tokens/<video hash>/<encoder key>/<frame>.npy`, float32 (Q, D), written to a
temporary name and renamed. The video hash is the SHA-256 of the file's bytes (remembered per
path, size and mtime); the encoder key hashes the base model's identity and architecture, the
frame count and the weights that shape the tokens (Q-Former LoRA, frame embedding), so a model
whose stage 2 left the Q-Former alone shares the tokens of its stage 1.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.annotations import AnnotationError, StrokeTable, load_annotations
from core.config import GenerationSettings
from core.video import WINDOW_AFTER, WINDOW_BEFORE, VideoError, iter_windows, probe
from core.workspace import DEFAULT_WORKSPACE, INDEX_FILE

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# Captions per generate() call: beam search pays Python overhead per step, so on the demo model 128 a
# call captioned a match about twice as fast as 32 (tests/benchmarks/bench_index_query.py).
CAPTION_BATCH = 128
DEFAULT_DB = DEFAULT_WORKSPACE / INDEX_FILE
Progress = Callable[[int, int, str], None]  # (done, total, what)

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
  key TEXT NOT NULL UNIQUE);
CREATE INDEX IF NOT EXISTS strokes_by_set ON strokes(set_id, rally, ball_round);
CREATE INDEX IF NOT EXISTS strokes_by_match ON strokes(match_id);
CREATE TABLE IF NOT EXISTS corrections(key TEXT PRIMARY KEY, caption TEXT NOT NULL, updated TEXT);
CREATE TABLE IF NOT EXISTS model_captions(
  video_hash TEXT NOT NULL, model_key TEXT NOT NULL, frame INTEGER NOT NULL, caption TEXT NOT NULL,
  PRIMARY KEY(video_hash, model_key, frame));
CREATE TABLE IF NOT EXISTS texts(text TEXT PRIMARY KEY, embedder TEXT NOT NULL, vec BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS video_hashes(path TEXT PRIMARY KEY, size INTEGER, mtime REAL, hash TEXT NOT NULL);
CREATE VIEW IF NOT EXISTS stroke_captions AS
  SELECT s.*, c.caption AS corrected_caption, coalesce(c.caption, s.ann_caption, s.model_caption) AS caption
  FROM strokes s LEFT JOIN corrections c ON c.key = s.key;
"""


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


@dataclass
class SetSource:
    match: str
    set_no: int
    rows: list[StrokeRow]
    players: dict
    fps: float | None
    source: str | None
    source_hash: str


# ---------------------------------------------------------------- keys and hashes


def file_hash(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _digest(parts: dict, tensors: dict | None = None) -> str:
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for name in sorted(tensors or {}):
        t = tensors[name]
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _identity(model) -> dict:
    from core.loader import base_signature

    s = model.settings
    return {"base": str(s.base), "signature": base_signature(model.vlm.base.config), "frames": s.num_frames,
            "image": [model.processor.image.size, list(model.processor.image.mean), list(model.processor.image.std)]}


def encoder_key(model) -> str:
    """Everything the query tokens depend on: base, frames, image settings, Q-Former LoRA, frame embedding."""
    from core.lora import adapter_state_dict

    state = {k: v for k, v in adapter_state_dict(model.vlm).items() if k.startswith("qformer.") or k == "frame_embed"}
    return _digest({**_identity(model), "qformer_lora": model.settings.lora.qformer_parts}, state)


def model_key(model) -> str:
    """Everything a caption depends on: the encoder plus the LLM's LoRA and the clip embedding."""
    from core.lora import adapter_state_dict

    return _digest({**_identity(model), "lora": model.settings.lora.to_dict()}, adapter_state_dict(model.vlm))


# ---------------------------------------------------------------- reading sources


def set_source(annotations: str | Path | None = None, frames: list[int] | None = None,
               video: str | Path | None = None) -> SetSource:
    """Annotations (ShuttleSet set file or reference CSV) or plain hit frames -> what one set stores."""
    if annotations is not None:
        table = load_annotations(annotations)
        return _from_table(table, Path(annotations))
    if frames is None:
        raise ValueError("give annotations or hit frames")
    if video is None:
        raise ValueError("plain hit frames need the video")
    rows = [StrokeRow(rally=1, ball_round=i + 1, frame=int(f)) for i, f in enumerate(sorted(set(frames)))]
    digest = hashlib.sha256(json.dumps(sorted(set(frames))).encode()).hexdigest()
    return SetSource(Path(video).stem, 1, rows, {}, None, None, digest)


def _from_table(table: StrokeTable, path: Path) -> SetSource:
    if not table.strokes:
        raise AnnotationError(path, None, None, "no strokes in the file")
    sets = {(s.match, s.set) for s in table.strokes}
    if len(sets) > 1:
        raise AnnotationError(path, None, None, f"strokes of {len(sets)} sets in one file; index one set per file")
    rows = [StrokeRow(s.rally, s.ball_round, s.frame, s.time_s, s.side, s.player, s.player_name, s.type_zh,
                      s.stroke, s.zone, s.caption, s.score_a, s.score_b) for s in table.strokes]
    first = table.strokes[0]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return SetSource(first.match, first.set, rows, dict(table.players), table.fps, str(path), digest)


# ---------------------------------------------------------------- the index


class StrokeIndex:
    """The workspace's stroke index (one SQLite file) and its token cache folder."""

    def __init__(self, db_path: str | Path):
        self.path = Path(db_path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.token_dir = self.path.with_name(self.path.name + ".tokens")
        self._lock = threading.RLock()
        try:
            self.db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as err:
            raise IndexStoreError(f"{self.path}: not a stroke index ({err})") from None
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------ schema and transactions

    def _migrate(self) -> None:
        has_meta = self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
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
            self.db.execute("INSERT OR REPLACE INTO meta VALUES('schema_version', ?)", (str(SCHEMA_VERSION),))
            self.db.execute("INSERT OR IGNORE INTO meta VALUES('generation', '0')")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All or nothing: BEGIN IMMEDIATE .. COMMIT, ROLLBACK on any exception. The connection is
        shared by the app's threads, so one transaction runs at a time."""
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

    def generation(self) -> int:
        """Changes whenever strokes, captions or corrections change (readers reload then)."""
        return int(self.db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])

    # ------------------------------------------------------------ indexing

    def add_match(self, annotations: str | Path | None = None, video: str | Path | None = None, model=None,
                  progress: Progress | None = None, frames: list[int] | None = None, batch_size: int = 8,
                  settings: GenerationSettings | None = None, caption_batch: int = CAPTION_BATCH) -> int:
        """Index one set (annotations and/or hit frames, optional video and stage-1 model); returns the
        match id. Idempotent; resumes an interrupted run; corrections are kept. Without a video, a
        video indexed before for the set is kept."""
        if model is not None and video is None:
            raise ValueError("a model needs the video: without one only the annotations are indexed")
        src = set_source(annotations, frames, video)
        fps, vhash = src.fps, None
        if video is not None:
            info = probe(video)
            fps, vhash = info.fps, self.video_hash(video)
        match_id, set_id = self._write_strokes(src, video, vhash, fps)
        if model is not None:
            self.encode_set(set_id, model, progress=progress, batch_size=batch_size, captions=True,
                            settings=settings, caption_batch=caption_batch)
        with self.transaction():
            self.db.execute("UPDATE sets SET status='complete', updated=? WHERE id=?", (_now(), set_id))
            self._bump()
        return match_id

    def add_source(self, src: SetSource, video: str | Path | None = None) -> tuple[int, int]:
        """Write one set's strokes (annotation-only; with `video` for times and playback): (match id, set id)."""
        fps, vhash = src.fps, None
        if video is not None:
            fps, vhash = probe(video).fps, self.video_hash(video)
        ids = self._write_strokes(src, video, vhash, fps)
        with self.transaction():
            self.db.execute("UPDATE sets SET status='complete' WHERE id=? AND status='annotated'", (ids[1],))
            self._bump()
        return ids

    def _write_strokes(self, src: SetSource, video, vhash: str | None, fps: float | None) -> tuple[int, int]:
        video = str(Path(video).resolve()) if video is not None else None
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
            if old and old[1] == src.source_hash and old[2] == vhash:
                return match_id, old[0]
            if old:
                set_id = old[0]
                db.execute("DELETE FROM strokes WHERE set_id=?", (set_id,))
                db.execute("DELETE FROM rallies WHERE set_id=?", (set_id,))
                db.execute("UPDATE sets SET source=?, source_hash=?, video=?, video_hash=?, fps=?, status='annotated', "
                           "n_strokes=?, updated=? WHERE id=?",
                           (src.source, src.source_hash, video, vhash, fps, len(src.rows), _now(), set_id))
            else:
                set_id = db.execute(
                    "INSERT INTO sets(match_id, set_no, source, source_hash, video, video_hash, fps, status, n_strokes,"
                    " updated) VALUES(?,?,?,?,?,?,?,'annotated',?,?)",
                    (match_id, src.set_no, src.source, src.source_hash, video, vhash, fps, len(src.rows), _now()),
                ).lastrowid
            db.executemany(
                "INSERT INTO strokes(set_id, match_id, set_no, rally, ball_round, frame, time_s, start_s, end_s, side,"
                " player, player_name, type_zh, stroke, zone, ann_caption, key)"
                " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(set_id, match_id, src.set_no, r.rally, r.ball_round, r.frame, t, a, b, r.side, r.player,
                  r.player_name, r.type_zh, r.stroke, r.zone, r.ann_caption, key)
                 for r, (t, a, b), key in zip(src.rows, (_times(r, fps) for r in src.rows), _keys(src))])
            db.executemany("INSERT INTO rallies(set_id, rally, score_a, score_b, score_a_before, score_b_before,"
                           " start_s, end_s, n_strokes) VALUES(?,?,?,?,?,?,?,?,?)", _rallies(set_id, src.rows, fps))
            self._fill_model_captions(set_id)
            self._bump()
        return match_id, set_id

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

    # ------------------------------------------------------------ the model pass

    def encode_set(self, set_id: int, model, progress: Progress | None = None, batch_size: int = 8,
                   captions: bool = True, settings: GenerationSettings | None = None,
                   caption_batch: int = CAPTION_BATCH) -> dict:
        """Query tokens (and captions) for every stroke of a set that lacks them; one decode pass.

        Clips are decoded and preprocessed in a background thread (`prefetch_clips`) while the model
        encodes batches of `batch_size`; captions are generated from the tokens in batches of
        `caption_batch` (beam search pays per step, so larger batches are cheaper per stroke) and
        each caption batch is one transaction. progress(done, total, what) counts finished strokes.
        Returns {'encoded': strokes through the vision tower, 'captioned': captions generated}."""
        row = self.db.execute("SELECT video, video_hash FROM sets WHERE id=?", (set_id,)).fetchone()
        if row is None or row["video"] is None:
            raise ValueError(f"set {set_id} has no video")
        video, vhash = row["video"], row["video_hash"]
        ekey, ckey = encoder_key(model), (model_key(model) if captions else None)
        frames = self._frames_in_video(set_id, video)
        cache = self.token_cache(vhash, ekey)
        have_cap = set()
        if captions:
            have_cap = {r[0] for r in self.db.execute(
                "SELECT frame FROM model_captions WHERE video_hash=? AND model_key=?", (vhash, ckey))}
        decode = [f for f in frames if not cache.has(f)]
        from_cache = [f for f in frames if f not in decode and captions and f not in have_cap]
        state = {"done": len(frames) - len(decode) - len(from_cache), "encoded": 0, "captioned": 0}
        with self.transaction():
            self.db.execute("UPDATE sets SET status='indexing', encoder_key=?, captioner_key=coalesce(?, captioner_key)"
                            " WHERE id=?", (ekey, ckey, set_id))
        report = (lambda: progress(state["done"], len(frames), "strokes")) if progress else (lambda: None)
        report()
        pending: list[tuple[int, np.ndarray]] = []  # tokens waiting for their caption

        def caption_pending(final: bool = False) -> None:
            while pending and (final or len(pending) >= caption_batch):
                part = pending[:caption_batch]
                del pending[:caption_batch]
                self._caption(model, part, vhash, ckey, set_id, settings)
                state["captioned"] += len(part)
                state["done"] += len(part)
                report()

        batch: list[tuple[int, object]] = []
        for frame, pixels in prefetch_clips(video, decode, model.processor, depth=2 * batch_size):
            batch.append((frame, pixels))
            if len(batch) == batch_size or len(batch) + state["encoded"] == len(decode):
                tokens = self._encode(model, [p for _, p in batch])
                for (f, _), t in zip(batch, tokens):
                    cache.put(f, t)  # written before its caption: a resumed run captions from the cache
                    if captions and f not in have_cap:
                        pending.append((f, t))
                    else:
                        state["done"] += 1
                state["encoded"] += len(batch)
                batch.clear()
                report() if not captions else caption_pending()
        pending.extend((f, cache.get(f)) for f in from_cache)
        caption_pending(final=True)
        if captions:
            with self.transaction():
                self._fill_model_captions(set_id, ckey)
                self._bump()
        return {"encoded": state["encoded"], "captioned": state["captioned"]}

    def _frames_in_video(self, set_id: int, video: str) -> list[int]:
        info = probe(video)
        frames = sorted({r[0] for r in self.db.execute("SELECT frame FROM strokes WHERE set_id=?", (set_id,))})
        outside = [f for f in frames if not 0 <= f < info.num_frames]
        if outside:
            log.warning("%s: %d hit frames lie outside the video (0..%d); left without tokens",
                        video, len(outside), info.num_frames - 1)
        return [f for f in frames if 0 <= f < info.num_frames]

    @staticmethod
    def _encode(model, pixels: list) -> np.ndarray:
        """Pixel tensors (T, 3, S, S) of a batch -> query tokens (N, Q, D), float32."""
        import torch

        with torch.inference_mode():
            return model.vlm.encode_clips(torch.stack(pixels).to(model.device)).float().cpu().numpy()

    def _caption(self, model, items: list[tuple[int, np.ndarray]], vhash: str, ckey: str, set_id: int,
                 settings: GenerationSettings | None = None) -> None:
        """Captions from cached tokens (one clip per sample), committed with the batch."""
        import torch

        from core.config import CAPTION_PROMPT
        from core.lora import without_llm_lora

        with torch.inference_mode():
            tokens = torch.from_numpy(np.stack([t for _, t in items]))[:, None].to(model.device)  # (B, 1, Q, D)
            prompt = {k: v.to(model.device) for k, v in model.processor.prompts([CAPTION_PROMPT] * len(items)).items()}
            with without_llm_lora(model.vlm):  # captions are stage 1's job, also for a stage-2 model
                ids = model.vlm.generate(**prompt, clip_tokens=tokens, settings=settings)
        texts = model.processor.decode(ids)
        with self.transaction():
            self.db.executemany("INSERT OR REPLACE INTO model_captions VALUES(?,?,?,?)",
                                [(vhash, ckey, f, t) for (f, _), t in zip(items, texts)])
            self.db.executemany("UPDATE strokes SET model_caption=? WHERE set_id=? AND frame=?",
                                [(t, set_id, f) for (f, _), t in zip(items, texts)])
            self._bump()

    def _fill_model_captions(self, set_id: int, ckey: str | None = None) -> None:
        if ckey is None:
            row = self.db.execute("SELECT captioner_key FROM sets WHERE id=?", (set_id,)).fetchone()
            ckey = row[0] if row else None
        if ckey is None:
            return
        self.db.execute("UPDATE strokes SET model_caption=(SELECT caption FROM model_captions m, sets s WHERE "
                        "s.id=strokes.set_id AND m.video_hash=s.video_hash AND m.model_key=? AND m.frame=strokes.frame)"
                        " WHERE set_id=?", (ckey, set_id))

    def token_cache(self, video_hash: str, enc_key: str) -> "TokenCache":
        return TokenCache(self.token_dir / video_hash[:24] / enc_key[:24])

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

    def strokes(self, match_id: int | None = None, ids: list[int] | None = None, **filters) -> list[dict]:
        """Strokes in match order, each with `caption` (corrected > annotation > model) and `corrected`;
        `ids` picks stroke ids (e.g. a query's results) instead of reading a whole match."""
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


_END = object()


def prefetch_clips(video, frames: list[int], processor, depth: int = 16,
                   workers: int = 2) -> Iterator[tuple[int, object]]:
    """(frame, pixel tensor) of each hit frame, in frame order. One background thread decodes (one
    sequential pass) while `workers` threads resize and normalise the clips and the caller runs the
    model; at most `depth` clips are in flight. OpenCV and numpy release the GIL."""
    from concurrent.futures import ThreadPoolExecutor

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clip-prep")

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for frame, clip in iter_windows(video, frames):
                if not put((frame, pool.submit(lambda c: processor.clips([c])[0], clip))):
                    return
            put(_END)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, raised there
            put(err)

    thread = threading.Thread(target=work, name="clip-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item[0], item[1].result()
    finally:
        stop.set()
        thread.join(timeout=10)
        pool.shutdown(wait=True, cancel_futures=True)


class TokenCache:
    """Query tokens of one video under one encoder: <frame>.npy files, written atomically."""

    def __init__(self, folder: Path):
        self.folder = folder

    def file(self, frame: int) -> Path:
        return self.folder / f"{int(frame)}.npy"

    def has(self, frame: int) -> bool:
        return self.file(frame).is_file()

    def put(self, frame: int, tokens: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{int(frame)}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(tokens, dtype=np.float32))
        os.replace(tmp, self.file(frame))

    def get(self, frame: int) -> np.ndarray:
        return np.load(self.file(frame))


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
        last = group[-1]
        score = (last.score_a, last.score_b)
        times = [t for r in group for t in _times(r, fps)[1:] if t is not None]
        out.append((set_id, rally, score[0], score[1], before[0] if score[0] is not None else None,
                    before[1] if score[1] is not None else None, min(times) if times else None,
                    max(times) if times else None, len(group)))
        if score[0] is not None and score[1] is not None:
            before = score
    return out


# ---------------------------------------------------------------- command line


class _ProgressBar:
    """A tqdm bar for the command line, made on the first report (when the total is known)."""

    def __init__(self) -> None:
        self.bar = None

    def __call__(self, done: int, total: int, what: str) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, unit="stroke", desc=what)
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core.index", description="Index a match: strokes, captions, tokens.")
    p.add_argument("video", help="the match (set) video, or NONE to index the annotations alone")
    p.add_argument("--annotations", help="ShuttleSet set CSV or the reference per-stroke CSV")
    p.add_argument("--frames", help="instead of annotations: a text file of hit frames "
                                    "(one per line or comma separated)")
    p.add_argument("--db", default=str(DEFAULT_DB), help=f"index file (default {DEFAULT_DB})")
    p.add_argument("--model", help="stage-1 adapter folder (with manifest.json): captions and query tokens")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads (on a busy machine 1 is often fastest)")
    p.add_argument("--no-embed", action="store_true", help="do not embed captions now (queries do it later)")
    p.add_argument("--export-captions", help="also write the corrected/annotation captions as train.json")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    from core.device import set_threads  # torch loads only when the command runs

    set_threads(args.threads)
    video = None if args.video.upper() == "NONE" else args.video
    frames = None
    if args.frames:
        text = Path(args.frames).read_text()
        frames = [int(x) for x in text.replace(",", " ").split()]
    if args.annotations is None and frames is None:
        print("error: give --annotations CSV (or --frames FILE with a video)", file=sys.stderr)
        return 2
    try:
        model = None
        if args.model:
            from core.loader import load_model

            model = load_model(args.model, device=args.device)
        index = StrokeIndex(args.db)
        bar = _ProgressBar()
        try:
            match_id = index.add_match(args.annotations, video=video, model=model, progress=bar, frames=frames,
                                       batch_size=args.batch_size)
        finally:
            bar.close()
        if not args.no_embed:
            from core.embed import default_embedder

            from core.query import QueryEngine

            QueryEngine(index, default_embedder()).arrays()  # embeds every new caption once
        if args.export_captions:
            n = index.export_captions(args.export_captions)
            print(f"{n} captions written to {args.export_captions}")
    except (AnnotationError, VideoError, IndexStoreError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - model loading errors carry their own advice
        from core.loader import ModelLoadError

        if isinstance(err, ModelLoadError):
            print(f"error: {err}", file=sys.stderr)
            return 1
        raise
    m = next(m for m in index.matches() if m["id"] == match_id)
    print(json.dumps(m, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
