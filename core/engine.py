"""The facade the app calls: the loaded stroke model, the workspace's stroke index, queries,
caption corrections, stroke edits, exports, media for the browser and training runs.

Every method takes plain values (paths as typed, ids, filters) and returns plain values (rows as
dicts, paths of written files, text); the UI only converts. Paths a user types are checked by
`Workspace.resolve`. Calls from several browser tabs: the model runs one batch at a time (one
lock); the index reads through a connection per thread and sees the last commit, so questions
run side by side and never wait for indexing, which holds no lock of the index while the model
runs; edits and exports of the index go one at a time.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
import shutil
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from core import playlist
from core.config import GenerationSettings
from core.errors import ModelLoadError
from core.indexer import DETECTED_DIR, add_match, detect_set, encode_set
from core.query import caption_fields
from core.runner import ConfigBuilder, RunError, Runner
from core.store import IndexStoreError, StrokeStore
from core.tokens import encoder_key, model_key
from core.video import (Progress, VideoError, fourcc, iter_windows, probe, transcode, write_highlights, write_video,
                        write_segments)
from core.workspace import DEMO_MATCH_DIR, DEMO_MODEL_DIR, MAX_UPLOAD_BYTES, PathNotAllowed, Workspace, safe_name

if TYPE_CHECKING:
    from core.model import StrokeModel

log = logging.getLogger(__name__)

FOLDER_VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv")  # a set's video beside its set file

DEFAULT_MODEL_DIR = DEMO_MODEL_DIR
# Codecs Chromium, Firefox and Safari all play in <video>; anything else gets a browser copy.
PLAYABLE_FOURCC = {"avc1", "h264", "H264", "vp09", "vp08", "VP90", "VP80", "av01"}
CLIP_PAD_S = 0.4  # context around a stroke's 16-frame window in previews and highlights
SEEK_LEAD_S = 0.5  # the player starts this long before the stroke's window
FINETUNE_STEPS = 40  # a coach's fine-tune of the captioner: minutes on a laptop CPU
FINETUNE_LR = 1e-4
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
STROKE_FILTERS = ("set_no", "rally", "side", "player_name", "stroke", "zone")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what spreadsheets read as a formula


@dataclass
class DemoStatus:
    """How far the first start's background indexing of the demo match is."""

    running: bool = False
    done: int = 0
    total: int = 0
    what: str = ""
    error: str | None = None


class EngineError(RuntimeError):
    """Something the user asked for that cannot be done; the message says why."""


@dataclass
class Answer:
    """A question's results as stroke rows (core.query.QueryResult.row), with the query engine's own words."""

    question: str
    rows: list[dict] = field(default_factory=list)
    message: str = ""
    near_misses: list[dict] = field(default_factory=list)
    covered_by_fields: bool | None = None
    notes: list[str] = field(default_factory=list)  # what the answer could not do (core.query.QueryAnswer.notes)
    counts: list[tuple[str, int]] = field(default_factory=list)  # by player or stroke class, when asked
    count_by: str | None = None
    rallies: list[dict] = field(default_factory=list)  # the answer as rallies, when it asks for them (RallyResult.row)
    ignored: list[str] = field(default_factory=list)  # words no field reads
    corrected: list[tuple[str, str]] = field(default_factory=list)  # (typed, read as)


class Engine:
    """One loaded model, one stroke index, one training runner per app."""

    def __init__(self, workspace: Workspace | str | Path | None = None, demo_match: str | Path | None = None,
                 demo_model: str | Path | None = None) -> None:
        self.model: StrokeModel | None = None
        self.source: str | None = None
        self.precision, self.device = "fp32", "auto"
        self._lock = threading.Lock()  # the model: one batch at a time
        self._index_lock = threading.RLock()  # edits and exports of the index; questions and indexing do not take it
        self._open_lock = threading.Lock()  # opening the index once
        self.demo_match = Path(demo_match) if demo_match else DEMO_MATCH_DIR
        self.demo = DemoStatus()
        self.demo_model = Path(demo_model) if demo_model else DEMO_MODEL_DIR
        self.workspace: Workspace | None = None
        self.runner: Runner | None = None
        self._index = None
        self._query = None
        self._embedder = None
        if workspace is not None:
            self.open_workspace(workspace)

    # ------------------------------------------------------------ model

    def load(self, model: str, precision: str = "fp32", device: str = "auto", trusted: bool = False) -> str:
        """Load an adapter folder (with manifest.json) or a bare base checkpoint (id or folder).

        A folder typed in the app must be inside the workspace or assets; `trusted` (the command
        line's --model) skips that check."""
        model = str(model).strip()
        if not model:
            raise ModelLoadError("give a model: an adapter folder, a base folder or a Hugging Face id")
        ws = self.workspace
        check_base = None
        if ws is not None and not trusted:
            if not _is_hub_id(model, ws):
                model = str(ws.resolve(model, what="model folder"))
            check_base = lambda base: _is_hub_id(base, ws) or ws.resolve(base, what="base model folder")  # noqa: E731
        from core.loader import load_any  # torch and transformers load with the first model, not with the app

        with self._lock:
            loaded = load_any(model, precision=precision, device=device, check_base=check_base)
            self.model, self.source = loaded, model
            self.precision, self.device = precision, device
            self._query = None  # the query engine holds the model
        log.info("loaded %s (%s on %s)", model, precision, loaded.device)
        return self.describe()

    def describe(self) -> str:
        if self.model is None:
            return "No model loaded."
        m = self.model
        lora = m.settings.lora
        does = {2: "captions strokes and answers questions about them"}.get(
            m.stage, "captions strokes" if lora.qformer_parts else "an untrained base (its captions mean little)")
        parts = [f"Q-Former {'+'.join(lora.qformer_parts)} r={lora.qformer_r}" if lora.qformer_parts else "",
                 f"language model {lora.llm_part} r={lora.llm_r}" if lora.llm_part else ""]
        return (f"**{Path(self.source).name or self.source}** {does}; {m.settings.precision} on {m.device}, "
                f"{m.memory_bytes() / 2**20:.1f} MiB of weights.  \n"
                f"Details: {self.source}, base {m.settings.base}, stage {m.stage}, "
                f"{m.settings.num_frames} frames per stroke, fine-tuned parts: {', '.join(p for p in parts if p) or 'none'}.")

    def memory(self) -> dict:
        """What the loaded model takes: weights in this process, and the accelerator's allocation."""
        out = {"weights_mib": 0.0, "device": None, "accelerator_mib": None}
        if self.model is not None:
            out["weights_mib"] = self.model.memory_bytes() / 2**20
            out["device"] = str(self.model.device)
            if self.model.device.type == "cuda":
                import torch

                out["accelerator_mib"] = torch.cuda.memory_allocated(self.model.device) / 2**20
        return out

    def caption(self, video: str | Path, hit_frames: list[int], batch_size: int = 8,
                settings: GenerationSettings | None = None) -> dict[int, str]:
        """A caption for the stroke at each hit frame, read in one pass over the video (the same
        encode-then-caption path the index takes, so both give the same caption)."""
        if self.model is None:
            raise ModelLoadError("no model is loaded")
        m, frames, tokens = self.model, [], []
        with self._lock:
            pending: list = []
            for frame, clip in iter_windows(video, hit_frames):
                frames.append(frame)
                pending.append(clip)
                if len(pending) == batch_size:
                    tokens.append(m.encode(m.processor.clips(pending)))
                    pending = []
            if pending:
                tokens.append(m.encode(m.processor.clips(pending)))
            import torch

            texts = m.caption(torch.cat(tokens), settings) if tokens else []
        return dict(zip(frames, texts))

    # ------------------------------------------------------------ workspace and index

    def open_workspace(self, workspace: Workspace | str | Path) -> Workspace:
        extra = tuple(p for p in (self.demo_match, self.demo_model) if p.exists())
        ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace, extra_allowed=extra)
        self.workspace = ws
        self.runner = Runner(ws.runs)
        return ws

    def _ws(self) -> Workspace:
        if self.workspace is None:
            raise EngineError("no workspace is open")
        return self.workspace

    @property
    def index(self) -> StrokeStore:
        with self._open_lock:
            if self._index is None:
                self._index = StrokeStore(self._ws().index_path, workspace=self._ws())
            return self._index

    def matches(self) -> list[dict]:
        with self._index_lock:
            return self.index.matches()

    def match_choices(self) -> list[tuple[str, int]]:
        """(label, id) for a dropdown: 'name — A vs B (N strokes)'."""
        out = []
        for m in self.matches():
            players = " vs ".join(p for p in (m.get("player_a"), m.get("player_b")) if p)
            label = m["name"].replace("_", " ") + (f" — {players}" if players and players not in m["name"] else "")
            out.append((f"{label} ({m['strokes']} strokes)", int(m["id"])))
        return out

    def ensure_demo(self, progress: Progress | None = None) -> int | None:
        """On a workspace with an empty index, index the demo match (with the loaded model, if any)."""
        if self.matches() or not self.demo_match.is_dir():
            return None
        sets = sorted(self.demo_match.glob("*/set*.csv"))
        if not sets:
            log.warning("%s holds no set files; no demo match indexed", self.demo_match)
            return None
        match_id = None
        for csv_path in sets:
            video = csv_path.with_suffix(".mp4")
            log.info("indexing the demo match: %s", csv_path.relative_to(self.demo_match))
            match_id = self._add(csv_path, video if video.is_file() else None, progress)
        return match_id

    def start_demo(self, progress: Progress | None = None, load: Callable[[], None] | None = None,
                   index: bool = True) -> threading.Thread:
        """`load` (the model the app starts with) then `ensure_demo` (unless not `index`) in a
        background thread, so that the app serves at once; `self.demo` tells how far it is (the page
        shows it) and why it failed, if it did."""
        self.demo = DemoStatus(running=True)

        def step(done: int, total: int, what: str = "") -> None:
            self.demo.done, self.demo.total, self.demo.what = done, total, what
            if progress:
                progress(done, total, what)

        def run() -> None:
            try:
                if load is not None:
                    self.demo.what = "loading the model"
                    load()
                if index:
                    self.ensure_demo(progress=step)
            except Exception as err:  # noqa: BLE001 - reported on the page and in the log; the app goes on
                log.error("could not index the demo match: %s", err)
                self.demo.error = str(err)
            finally:
                self.demo.running = False

        thread = threading.Thread(target=run, name="demo-index", daemon=True)
        thread.start()
        return thread

    def add_match(self, annotations: str | None = None, video: str | None = None, progress: Progress | None = None,
                  players: tuple[str, str] | str | None = None, first_server: str | None = None) -> int:
        """Index one set from paths inside the workspace: annotations (+ video), or a video alone, whose
        strokes are detected first (core.detect): `players` are (the player starting in the bottom
        half, the one in the upper half), naming a set file's players too; `first_server` 'bottom' or
        'upper' when known."""
        ws = self._ws()
        ann = ws.resolve(annotations, what="annotation file") if annotations and str(annotations).strip() else None
        vid = ws.resolve(video, what="video file") if video and str(video).strip() else None
        if ann is None and vid is None:
            raise EngineError("give the match video (its strokes are detected), its annotation CSV, or both")
        for p in (ann, vid):
            if p is not None and p.stat().st_size > MAX_UPLOAD_BYTES:
                raise EngineError(f"{p.name} is larger than {MAX_UPLOAD_BYTES / 2**30:.0f} GiB")
        if vid is not None:
            probe(vid)  # a clear VideoError before any indexing
        if ann is None:
            return self._add(self._detect(vid, players, first_server, progress), vid, progress)
        names = tuple(" ".join(str(p or "").split()) for p in players) if isinstance(players, (tuple, list)) else None
        return self._add(ann, vid, progress, names)

    def _detect(self, video: Path, players, first_server: str | None, progress: Progress | None) -> Path:
        """The video's detected strokes as a set file under the workspace's detected/ folder."""
        from core.detect import DetectError

        if isinstance(players, (tuple, list)) and not any(str(p or "").strip() for p in players):
            players = None  # no names typed
        players = players or None
        first_server = first_server if first_server in ("bottom", "upper") else None
        step = (lambda done, total, what: progress(done, total, f"detecting strokes ({what})")) if progress else None
        try:
            return detect_set(video, self._ws().root / DETECTED_DIR, players=players, first_server=first_server,
                              progress=step)
        except DetectError as err:  # detection cannot read this video: the other way in
            raise EngineError(f"{err} (or add the match with its annotation CSV)") from None

    def add_shuttleset(self, source: str | Path, progress: Progress | None = None) -> list[int]:
        """Index every set of a ShuttleSet folder (`match.csv`, `homography.csv`, `<video>/setN.csv`,
        videos beside their set files as `setN.mp4`), given as a folder inside the workspace or as a
        zip (a browser upload, unpacked under uploads/): player names come from match.csv, court
        positions from homography.csv. Returns the indexed matches' ids."""
        src = Path(source)
        if src.is_dir():
            root = self._ws().resolve(src, what="ShuttleSet folder")
        elif zipfile.is_zipfile(src):
            root = self._unzip(src)
        else:
            raise EngineError(f"{src.name}: not a ShuttleSet folder or a zip of one")
        tables = sorted(root.rglob("match.csv"), key=lambda p: len(p.parts))
        base = tables[0].parent if tables else root
        sets = sorted(base.glob("*/set*.csv")) or sorted(root.rglob("set*.csv"))
        if not sets:
            raise EngineError(f"{src.name}: no set files (<match>/set1.csv ...) in it")
        ids: list[int] = []
        for set_csv in sets:
            video = next((v for v in (set_csv.with_suffix(x) for x in FOLDER_VIDEO_SUFFIXES) if v.is_file()), None)
            match_id = self.add_match(str(set_csv), str(video) if video else None, progress=progress)
            if match_id not in ids:
                ids.append(match_id)
        return ids

    def _unzip(self, archive: Path) -> Path:
        """A zip's CSV and video files under a new uploads/ folder (no path may leave it)."""
        with zipfile.ZipFile(archive) as z:
            members = [m for m in z.infolist() if not m.is_dir()
                       and Path(m.filename).suffix.lower() in (".csv", *FOLDER_VIDEO_SUFFIXES)]
            if sum(m.file_size for m in members) > MAX_UPLOAD_BYTES:
                raise EngineError(f"{archive.name} unpacks to more than {MAX_UPLOAD_BYTES / 2**30:.0f} GiB")
            dest = self._ws().upload_dir(archive.stem)
            for m in members:
                rel = Path(m.filename)
                if rel.is_absolute() or ".." in rel.parts:
                    raise EngineError(f"{archive.name}: {m.filename} points outside the folder")
                out = dest / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                with z.open(m) as fin, out.open("wb") as fout:
                    shutil.copyfileobj(fin, fout)
        return dest

    def save_upload(self, uploaded: str | Path, match_name: str) -> Path:
        """Move a browser upload (Gradio's temp file) into the workspace's uploads/ folder."""
        src = Path(uploaded)
        if src.stat().st_size > MAX_UPLOAD_BYTES:
            raise EngineError(f"{src.name} is larger than {MAX_UPLOAD_BYTES / 2**30:.0f} GiB")
        dest_dir = self._ws().uploads / safe_name(match_name, "match")
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / safe_name(src.name, "file")
        shutil.copyfile(src, dest)  # streamed in chunks: a large upload never sits in memory whole
        return dest

    def _add(self, ann: Path, vid: Path | None, progress: Progress | None, players: tuple[str, str] | None = None) -> int:
        model = self.model if vid is not None else None
        match_id = add_match(self.index, ann, vid, model=model, progress=progress, model_lock=self._lock,
                             players=players)
        self._query = None
        return int(match_id)

    def strokes(self, match_id: int | None, uncertain: bool = False, **filters) -> list[dict]:
        """Strokes of a match (`uncertain`: only the detections to review); filters with None/'' values
        are ignored; zone and set compare as numbers."""
        clean = {}
        for k, v in filters.items():
            if v is None or v == "" or v == "all":
                continue
            if k not in STROKE_FILTERS:
                raise EngineError(f"unknown filter {k!r}")
            clean[k] = int(v) if k in ("set_no", "rally", "zone") else v
        with self._index_lock:
            return [self._with_times(r) for r in self.index.strokes(match_id, uncertain=bool(uncertain), **clean)]

    def filter_options(self, match_id: int | None) -> dict[str, list]:
        """The values each stroke filter can take in a match."""
        rows = self.strokes(match_id) if match_id is not None else []
        return {k: sorted({r[k] for r in rows if r.get(k) is not None}, key=lambda v: (str(type(v)), v))
                for k in STROKE_FILTERS}

    def set_caption(self, stroke_id: int, text: str) -> None:
        if len(text or "") > 500:
            raise EngineError("a caption is at most 500 characters")
        sid = _stroke_id(stroke_id)
        with self._index_lock:
            try:
                self.index.set_caption(sid, text)
            except KeyError:
                raise EngineError(f"no stroke {sid}: reload the strokes") from None
            self._query = None

    # ------------------------------------------------------------ stroke edits (kept across re-indexing)

    def add_stroke(self, match_id: int, time_s: float, set_no: int | None = None, side: str | None = None) -> int:
        """A hit at `time_s` seconds of a set's video (the match's first set with a video): its stroke id."""
        with self._index_lock:
            sets = [s for s in self.index.sets(int(match_id)) if set_no is None or s["set_no"] == int(set_no)]
            sets = [s for s in sets if s.get("video")] or sets
            if not sets:
                raise EngineError("this match has no such set")
            fps = sets[0].get("fps")
            if not fps:
                raise EngineError("this set has no video frame rate: a hit is added on a video's frame")
            frame = int(round(float(time_s) * fps))
            return self._edited(sets[0]["id"], lambda st: st.add_stroke(sets[0]["id"], frame, side or None))

    def delete_stroke(self, stroke_id: int) -> None:
        with self._index_lock:
            self._edited(self._set_of(stroke_id), lambda st: st.delete_stroke(int(stroke_id)))

    def move_stroke(self, stroke_id: int, frames: int) -> int:
        """Move a hit by `frames` video frames (negative: earlier); its stroke id after the move."""
        with self._index_lock:
            return self._edited(self._set_of(stroke_id), lambda st: st.move_stroke(int(stroke_id), int(frames)))

    def set_stroke_side(self, stroke_id: int, side: str) -> int:
        """Give a hit to the player on `side` ('bottom' or 'upper'); its stroke id."""
        with self._index_lock:
            return self._edited(self._set_of(stroke_id), lambda st: st.set_stroke_side(int(stroke_id), side))

    def revert_stroke(self, stroke_id: int) -> int | None:
        """Drop a stroke's edits (an added hit goes away); its stroke id after, or None."""
        with self._index_lock:
            return self._edited(self._set_of(stroke_id), lambda st: st.revert_stroke(int(stroke_id)))

    def _set_of(self, stroke_id: int) -> int:
        rows = self.index.strokes(ids=[_stroke_id(stroke_id)])
        if not rows:
            raise EngineError(f"no stroke {stroke_id}: reload the strokes")
        return int(rows[0]["set_id"])

    def _edited(self, set_id: int, edit):
        """Run a store edit, then caption what it moved or added with the loaded model."""
        try:
            out = edit(self.index)
        except IndexStoreError as err:
            raise EngineError(str(err)) from None
        self._recaption(set_id)
        self._query = None
        return out

    def _recaption(self, set_id: int) -> None:
        """Tokens and captions for a set's hits that lack them (a moved or added hit), when the loaded
        model is the one the set was indexed with: encode_set decodes only the frames not cached.
        Otherwise such a hit stays uncaptioned until the set is indexed with a model again."""
        m = self.model
        row = next((s for s in self.index.sets() if s["id"] == set_id), None)
        if m is None or row is None or not row.get("video") or not Path(row["video"]).is_file():
            return
        if row.get("encoder_key") != encoder_key(m) or row.get("captioner_key") != model_key(m):
            return
        encode_set(self.index, set_id, m, captions=True, model_lock=self._lock)

    def stroke_edits(self, match_id: int | None = None) -> list[dict]:
        with self._index_lock:
            return self.index.stroke_edits(match_id)

    def export_strokes(self, match_id: int) -> list[Path]:
        """The match's sets as they are now (stroke edits applied) as set files in core.detect's columns,
        under exports/strokes-<id>/<match>/: training data for the detector; core.annotations imports them."""
        out = self._ws().exports / f"strokes-{int(match_id)}"
        with self._index_lock:
            sets = self.index.sets(int(match_id))
            if not sets:
                raise EngineError("this match has no sets")
            return [self.index.export_set_csv(s["id"], out) for s in sets]

    def export_captions(self, match_id: int | None = None) -> tuple[Path, int]:
        """Corrected (else annotation) captions as a stage-1 train.json under exports/."""
        path = self._ws().exports / f"captions-{match_id if match_id is not None else 'all'}" / "train.json"
        with self._index_lock:
            n = self.index.export_captions(path, match_id)
        return path, n

    @staticmethod
    def _with_times(r: dict) -> dict:
        r = dict(r)
        t = r.get("time_s")
        r["start_s"] = r.get("start_s") if r.get("start_s") is not None else (t or 0.0)
        r["end_s"] = r.get("end_s") if r.get("end_s") is not None else r["start_s"] + 0.64
        r["time_s"] = t if t is not None else r["start_s"]
        return r

    # ------------------------------------------------------------ questions

    def _query_engine(self):
        query = self._query  # another thread may drop it meanwhile (an edit, a new model)
        if query is None:
            from core.query import QueryEngine

            if self._embedder is None:
                from core.embed import default_embedder

                self._embedder = default_embedder()
            grounding = self.model if self.model is not None and self.model.stage == 2 else None
            query = self._query = QueryEngine(self.index, self._embedder, model=grounding, model_lock=self._lock)
        return query

    def ask(self, question: str, match_id: int | None = None, limit: int = 100) -> Answer:
        question = " ".join(str(question or "").split())
        if not question:
            raise EngineError("type a question, e.g. “when does the bottom player smash?”")
        if len(question) > 300:
            raise EngineError("a question is at most 300 characters")
        if int(limit) < 1:
            raise EngineError(f"the number of results to show is 1 or more, not {limit}")
        ans = self._query_engine().ask(question, match_id=match_id, limit=limit)
        rows = [self._with_times(r.row()) for r in ans.results]
        near = [self._with_times(r.row()) for r in ans.near_misses]
        rallies = [self._with_times(r.row()) for r in ans.rallies]
        return Answer(question, rows, ans.message or "", near, ans.covered_by_fields, list(ans.notes),
                      list(ans.counts), ans.count_by, rallies, list(ans.ignored), list(ans.corrected))

    def rewrite_report(self, report: dict) -> dict:
        """The report with its rally summaries in the loaded model's words where they keep every fact
        (core.rewrite)."""
        from core.rewrite import rewrite_rallies

        if self.model is None:
            raise EngineError("load a model in the Model tab first: it writes the new wording")
        with self._lock:
            return rewrite_rallies(report, self.model.write)

    # ------------------------------------------------------------ media for the browser

    def playable_video(self, path: str | Path, progress: Progress | None = None) -> Path:
        """The video itself when browsers play its codec, else a cached H.264 copy under media/."""
        path = Path(path)
        codec = fourcc(path)
        if codec in PLAYABLE_FOURCC and path.suffix.lower() in (".mp4", ".webm", ".m4v"):
            return path
        st = path.stat()
        key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime}".encode()).hexdigest()[:16]
        out = self._ws().media / f"{safe_name(path.stem)}-{key}.mp4"
        if not out.is_file():
            log.info("making a browser copy of %s (%s is not played by browsers)", path.name, codec)
            transcode(path, out, progress=progress)
        return out

    def match_video(self, match_id: int | None, set_no: int | None = None) -> tuple[Path | None, int | None]:
        """(browser-playable video, its set number) of a match's set (the first set with a video)."""
        if match_id is None:
            return None, None
        with self._index_lock:
            sets = [s for s in self.index.sets(match_id) if s.get("video")]
        if set_no is not None:
            sets = [s for s in sets if s["set_no"] == int(set_no)] or sets
        for s in sets:
            if Path(s["video"]).is_file():
                return self.playable_video(s["video"]), int(s["set_no"])
        return None, None

    def rally_spans(self, match_id: int | None, sets: set[int] | None = None) -> list[dict]:
        """The rallies of a match's sets (all, or `sets`), in play order: set_no, rally, start_s,
        end_s, shots and the score before it ("11-9", None where not known)."""
        if match_id is None:
            return []
        with self._index_lock:
            rows = self.index.db.execute(
                "SELECT st.set_no, r.rally, r.start_s, r.end_s, r.n_strokes, r.score_a_before, r.score_b_before "
                "FROM rallies r JOIN sets st ON st.id=r.set_id WHERE st.match_id=? AND r.start_s IS NOT NULL "
                "ORDER BY st.set_no, r.rally", (int(match_id),)).fetchall()
        return [{"set_no": s, "rally": r, "start_s": a, "end_s": b if b is not None else a, "shots": n,
                 "score": f"{x}-{y}" if x is not None and y is not None else None}
                for s, r, a, b, n, x, y in rows if sets is None or s in sets]

    def video_fps(self, match_id: int | None, set_no: int | None = None) -> float | None:
        """Frame rate of the set's video that `match_video` plays (None: not known)."""
        if match_id is None:
            return None
        with self._index_lock:
            sets = [s for s in self.index.sets(match_id) if s.get("video")]
        chosen = [s for s in sets if set_no is None or s["set_no"] == int(set_no)] or sets
        return float(chosen[0]["fps"]) if chosen and chosen[0].get("fps") else None

    def clip(self, stroke: dict) -> Path:
        """A short browser-playable clip of one stroke (cached under media/clips/)."""
        video = stroke.get("video")
        if not video or not Path(video).is_file():
            raise EngineError("this stroke has no video")
        key = f"{safe_name(Path(video).stem)}-{int(stroke['frame'])}"
        out = self._ws().media / "clips" / f"{key}.mp4"
        if not out.is_file():
            write_segments(Path(video), [(stroke["start_s"] - CLIP_PAD_S, stroke["end_s"] + CLIP_PAD_S)], out)
        return out

    # ------------------------------------------------------------ exports

    def export_results_csv(self, rows: list[dict], name: str = "results") -> Path:
        path = self._ws().exports / f"{safe_name(name)}.csv"
        cols = ("match", "set_no", "rally", "ball_round", "time_s", "start_s", "end_s", "side", "player_name",
                "stroke", "zone", "caption", "source")
        if rows and all(r.get("kind") == "rally" for r in rows):  # an answer that is rallies
            cols = ("match", "set_no", "rally", "score_before", "shots", "won_by", "ending", "start_s", "end_s")
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in rows:
                w.writerow([_cell(r.get(c)) for c in cols])
        return path

    def _clips(self, rows: list[dict]) -> list[tuple[dict, Path, float, float]]:
        """(row, video, start s, end s) of the rows with a video, padded as clips are."""
        clips = [(r, Path(r["video"]), r["start_s"] - CLIP_PAD_S, r["end_s"] + CLIP_PAD_S)
                 for r in rows if r.get("video") and Path(r["video"]).is_file()]
        if not clips:
            raise EngineError("no results with a video to cut")
        return clips

    def export_highlights(self, rows: list[dict], name: str = "highlights", progress: Progress | None = None) -> Path:
        """One H.264 mp4 of the clips in the rows' order, each after a title card saying what it is
        (plays in browsers and desktop players)."""
        clips = self._clips(rows)
        out = self._ws().exports / f"{safe_name(name)}.mp4"
        return write_highlights([(v, max(0.0, a), b) for _, v, a, b in clips], out, progress,
                                titles=[playlist.title(r) for r, *_ in clips])

    def export_edl(self, rows: list[dict], name: str = "playlist") -> Path:
        """A CMX 3600 EDL of the clips (source file and timecodes per event) for a video editor."""
        clips = [(r, max(0.0, a), b, probe(v).fps) for r, v, a, b in self._clips(rows)]
        path = self._ws().exports / f"{safe_name(name)}.edl"
        path.write_text(playlist.edl(name, clips), encoding="utf-8")
        return path

    # ------------------------------------------------------------ playlists

    def playlists(self) -> list[str]:
        return playlist.names(self._ws().playlists)

    def save_playlist(self, name: str, items: list[dict]) -> Path:
        return playlist.save(self._ws().playlists, name, items)

    def open_playlist(self, name: str) -> list[dict]:
        return playlist.load(self._ws().playlists, name)

    # ------------------------------------------------------------ stats

    @staticmethod
    def court_rows(rows: list[dict]) -> list[dict]:
        """Rows with hit_m / landing_m: positions in court metres, as the index stored them from the annotations."""
        point = lambda x, y: (x, y) if x is not None and y is not None else None  # noqa: E731
        return [{**r, "hit_m": point(r.get("hit_x"), r.get("hit_y")), "landing_m": point(r.get("land_x"), r.get("land_y"))}
                for r in rows]

    # ------------------------------------------------------------ training

    def start_training(self, stage: int, data: str, run_name: str = "", options: dict | None = None,
                       init_run: str | None = None, run_config: ConfigBuilder | None = None) -> str:
        """Start a stage-1 or stage-2 run on the workspace's `data` folder in a new run folder; its name.

        `options` are the recipe's own, by field name (train/config.py: {"epochs": 2, "base": ...});
        `run_config` (train.config.run_config, passed in by the app) validates them before a process
        starts. Paths are checked here: `data` and a `base` folder in the workspace, the run `init_run`."""
        ws, runner = self._ws(), self._runner()
        data_dir = ws.resolve(data, what="data folder")
        if not (data_dir / "train.json").is_file() and not (data_dir / "qa_train.json").is_file():
            raise EngineError(f"{data_dir} holds no train.json / qa_train.json; build it with "
                              "`python -m train.build_dataset`")
        if stage == 2 and not init_run and not (options or {}).get("init"):
            raise EngineError("stage 2 starts from a stage-1 run: choose one")
        if run_config is None:
            raise EngineError("starting a run needs the recipes' option check (train.config.run_config)")
        options = {"progress": False, **(options or {})}  # the run writes to a log file, not a terminal
        if "out" in options:
            raise EngineError("a run's folder is chosen by the app (under runs/): give the run a name instead")
        base = options.pop("base", None)
        if base and not options.get("tiny"):
            options["base"] = base if _is_hub_id(base, ws) else str(ws.resolve(base, what="base model folder"))
        if options.get("init") and options["init"] != self.source:  # the loaded model is admitted
            options["init"] = str(ws.resolve(options["init"], what="model to start from"))
        if stage == 2 and init_run:
            options["init"] = str(runner.run_dir(init_run))
        options.update(data=str(data_dir), out=str(ws.new_run_dir(stage, run_name)))
        return runner.start(stage, options, run_config).name

    def caption_data(self, match_id: int, progress: Progress | None = None,
                     questions: Callable[[list], list[dict]] | None = None) -> tuple[Path, dict]:
        """A stage-1 data folder of the match (workspace/data/<match>-captions): every stroke with a
        corrected (else annotated) caption, its clip cut from the set's video (frames hit-7 .. hit+8,
        as train.build_dataset cuts them); with `questions` (train.qa.questions_of, passed in by the
        app), the stage-2 questions about those strokes' rallies too (qa_train.json). (folder,
        counts: corrected, annotated, clips, questions)."""
        ws = self._ws()
        with self._index_lock:
            match = next((m for m in self.index.matches() if m["id"] == int(match_id)), None)
            if match is None:
                raise EngineError(f"no match {match_id}: pick one in the Analyze tab")
            videos = {s["id"]: s.get("video") for s in self.index.sets(int(match_id))}
            strokes = [s for s in self.index.strokes(int(match_id)) if s["corrected"] or s["ann_caption"]]
        by_set: dict[int, list[dict]] = {}
        for s in strokes:
            if videos.get(s["set_id"]) and Path(videos[s["set_id"]]).is_file():
                by_set.setdefault(s["set_id"], []).append(s)
        if not by_set:
            raise EngineError("this match has no stroke with a corrected or annotated caption and a video: "
                              "correct a few captions in the Strokes tab first")
        out = ws.data / f"{safe_name(match['name'])}-captions"
        tmp = out.with_name(out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        items, strokes_of_clips, total = [], [], sum(len(v) for v in by_set.values())
        counts = {"corrected": 0, "annotated": 0, "clips": 0, "questions": 0}
        for set_id, group in by_set.items():
            at = {}
            for s in group:
                at.setdefault(int(s["frame"]), []).append(s)
            video = Path(videos[set_id])
            fps = probe(video).fps
            for frame, frames in iter_windows(video, sorted(at)):
                for s in at.pop(frame):
                    sid = f"{safe_name(match['name'])}_{s['set_no']}_{s['frame']}"
                    write_video(tmp / "clips" / f"{sid}.mp4", frames, fps)
                    caption = s["corrected"] or s["ann_caption"]
                    items.append({"caption": caption, "image": f"clips/{sid}.mp4", "image_id": sid})
                    side, stroke, zone = caption_fields(caption)  # what the caption taught says
                    strokes_of_clips.append(SimpleNamespace(
                        match=match["name"], set=s["set_no"], rally=s["rally"], ball_round=s["ball_round"],
                        frame=s["frame"], stroke_id=sid, caption=caption, side=side, stroke=stroke, zone=zone))
                    counts["corrected" if s["corrected"] else "annotated"] += 1
                    if progress:
                        progress(len(items), total, "clips")
        if not items:
            raise EngineError("no clip could be cut: the strokes' frames are outside the video")
        counts["clips"] = len(items)
        (tmp / "train.json").write_text(json.dumps(items, ensure_ascii=False, indent=1), encoding="utf-8")
        (tmp / "val.json").write_text("[]", encoding="utf-8")  # a coach's few strokes: nothing held out
        if questions is not None:
            qa = questions(strokes_of_clips)
            (tmp / "qa_train.json").write_text(json.dumps(qa, ensure_ascii=False), encoding="utf-8")
            (tmp / "qa_val.json").write_text("[]", encoding="utf-8")
            counts["questions"] = len(qa)
        shutil.rmtree(out, ignore_errors=True)
        tmp.replace(out)
        return out, counts

    def start_finetune(self, match_id: int, steps: int = FINETUNE_STEPS, run_name: str = "",
                       run_config=None, progress: Progress | None = None, stage: int = 1,
                       questions: Callable[[list], list[dict]] | None = None) -> tuple[str, dict]:
        """Fine-tune the loaded model on the match's corrected (else annotated) captions, its clips cut
        from the match's video. Stage 1 teaches the captioner, from the model's own adapters (its
        base, frame count and Q-Former LoRA); stage 2 its answers to questions about several
        strokes (`questions` writes them, train.qa.questions_of), from the model's adapters: a
        stage-2 model's LLM LoRA trains on, a captioner gets a new one. (run name, caption_data's counts)."""
        if self.model is None or self.source is None:
            raise EngineError("load a model in the Model tab first: fine-tuning starts from it")
        adapters = (Path(self.source) / "manifest.json").is_file()
        if stage == 2 and (not adapters or questions is None):
            raise EngineError("question answering is fine-tuned from a model with its stroke captioner: "
                              "fine-tune the captions first and use that model")
        steps = int(steps or FINETUNE_STEPS)
        if not 1 <= steps <= 10_000:
            raise EngineError(f"steps must be between 1 and 10,000, not {steps}")
        data, counts = self.caption_data(match_id, progress, questions if stage == 2 else None)
        if stage == 2 and not counts["questions"]:
            raise EngineError("no question could be made from this match's captions")
        start = {"init": self.source} if adapters else {"base": self.source, "experiment": 4}
        samples = counts["questions"] if stage == 2 else counts["clips"]
        options = {**start, "max_steps": steps, "schedule_steps": steps, "warmup_steps": min(10, steps // 5),
                   "lr": FINETUNE_LR, "batch_size": min(8 if stage == 1 else 4, samples), "grad_accum": 1,
                   "epochs": 1000, "save_every": steps, "log_every": 1, "num_workers": 0, "threads": 1,
                   "cache_clips": True}
        return self.start_training(stage, str(data), run_name, options, run_config=run_config), counts

    def recaption_match(self, match_id: int, progress: Progress | None = None) -> int:
        """Caption every stroke of the match anew with the loaded model (tokens too: a fine-tuned
        Q-Former gives new ones); the number of strokes captioned."""
        m = self.model
        if m is None:
            raise EngineError("load a model first")
        done = 0
        sets = [s for s in self.index.sets(int(match_id)) if s.get("video") and Path(s["video"]).is_file()]
        for s in sets:
            done += encode_set(self.index, s["id"], m, progress=progress, captions=True,
                               model_lock=self._lock)["captioned"]
        self._query = None
        return done

    def _runner(self) -> Runner:
        if self.runner is None:
            raise EngineError("no workspace is open")
        return self.runner

    def use_run(self, name: str) -> str:
        """Load a run's best (else final) adapters as the app's model. A run is the app's own (its
        base was admitted when it started), so its manifest's base is loaded as written."""
        adapters = self._runner().adapters(name)
        return self.load(str(adapters), self.precision, self.device, trusted=True)


def _is_hub_id(text: str, ws: Workspace) -> bool:
    """'org/name' that is not a folder here or in the workspace: a Hugging Face id (cache only)."""
    return bool(_HUB_ID.match(text)) and not Path(text).exists() and not (ws.root / text).exists()


def _stroke_id(value) -> int:
    """A stroke id from the page (a number the table showed); EngineError for anything else."""
    try:
        sid = int(value)
    except (TypeError, ValueError):
        raise EngineError(f"{value!r} is not a stroke number: pick a stroke in the table") from None
    if not 0 < sid < 2**63:  # SQLite's ids
        raise EngineError(f"no stroke {sid}: reload the strokes")
    return sid


def _cell(v):
    """A CSV cell; text that a spreadsheet would run as a formula (=, +, -, @, tab, CR first) is
    prefixed with ' so that it shows as the text it is."""
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, str) and v[:1] in FORMULA_STARTS:
        return "'" + v
    return "" if v is None else v


__all__ = ["Answer", "Engine", "EngineError", "ModelLoadError", "PathNotAllowed", "RunError", "VideoError",
           "DEFAULT_MODEL_DIR", "SEEK_LEAD_S"]
