"""The indexer: a match in, its strokes, captions and query tokens written to the store.

Indexing a set is all or nothing. With a video and a model, the model pass runs first and fills
only the caches, which are keyed by the video's content and the model: the video is decoded once
(core.video.iter_windows, memory bounded by the frames of overlapping windows); each batch of
strokes goes through the vision tower and Q-Former once (StrokeModel.encode), its query tokens are
written to the token cache and its captions generated from those tokens (StrokeModel.caption: the
vision never runs twice) and committed to the caption cache. Then one transaction writes the set's
strokes with their captions. A run that is interrupted, or a video that fails half-way, leaves the
set as it was before; the next run skips every stroke whose tokens and caption are cached, so it
resumes where the last one stopped, and a re-index with the same model is free.

The model runs under `model_lock` one batch at a time (the app's questions use the same model
between batches); the store is never locked while the model runs.

A video without annotations is detected first (`detect_set`: core.detect's strokes written as a
ShuttleSet set file beside the index), then indexed as any annotation file.
"""
from __future__ import annotations

import hashlib
import logging
import queue
import re
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np

from core.config import CAPTION_BATCH, GenerationSettings
from core.store import SetSource, StrokeStore, set_source
from core.tokens import encoder_key, model_key
from core.video import Progress, iter_windows, probe
from core.workspace import safe_name

log = logging.getLogger(__name__)


def add_match(store: StrokeStore, annotations: str | Path | None = None, video: str | Path | None = None,
              model=None, progress: Progress | None = None, frames: list[int] | None = None, batch_size: int = 8,
              settings: GenerationSettings | None = None, caption_batch: int = CAPTION_BATCH,
              model_lock: AbstractContextManager | None = None, players: tuple[str, str] | None = None) -> int:
    """Index one set (annotations and/or hit frames, optional video and model); returns the match id.
    Idempotent and all or nothing; resumes an interrupted run; corrections are kept. Without a
    video, a video indexed before for the set is kept. `players` (the names of the players starting
    at the bottom and at the upper end, typed by the coach) name the set's players A and B."""
    if model is not None and video is None:
        raise ValueError("a model needs the video: without one only the annotations are indexed")
    src = set_source(annotations, frames, video, workspace=store.workspace)
    if players and any(players):
        known = next((m for m in store.matches() if m["name"] == src.match), {})  # a name left empty: the index's
        src = named(src, *players, known={"A": known.get("player_a"), "B": known.get("player_b")})
    fps, vhash = src.fps, None
    if video is not None:
        fps, vhash = probe(video).fps, store.video_hash(video)
    keys = None
    if model is not None:
        frames = planned_video_frames(store, src, video)
        keys = model_pass(store, video, vhash, frames, model, progress, batch_size, True, settings,
                          caption_batch, model_lock)["keys"]
    return store.write_set(src, video, vhash, fps, keys)[0]


def planned_video_frames(store: StrokeStore, src: SetSource, video: str | Path) -> list[int]:
    """The hit frames the set will have once `src` is written that lie in the video: the frames its
    model pass encodes and captions (core.batch plans its sets with this too)."""
    return _frames_in_video(store.planned_frames(src), video)


def named(src: SetSource, bottom: str, upper: str, known: dict | None = None) -> SetSource:
    """The set with its players named: the letter of the player at the bottom end in the first
    rally's first stroke whose side is known (without sides: A) gets `bottom`, the other `upper`;
    a name left empty keeps the file's, else the `known` one (letter -> name)."""
    first = next((r for r in sorted(src.rows, key=lambda r: (r.rally, r.ball_round))
                  if r.side in ("bottom", "upper") and r.player in ("A", "B")), None)
    other = {"A": "B", "B": "A"}
    at_bottom = "A" if first is None else first.player if first.side == "bottom" else other[first.player]
    names = {k: v for k, v in ((at_bottom, bottom), (other[at_bottom], upper)) if v and v.strip()}
    players = {**{k: v for k, v in (known or {}).items() if v}, **{k: v for k, v in src.players.items() if v}, **names}
    rows = [replace(r, player_name=players.get(r.player) or r.player_name) for r in src.rows]
    digest = hashlib.sha256(f"{src.source_hash}|{sorted(names.items())}".encode()).hexdigest()
    return replace(src, rows=rows, players=players, source_hash=digest)


DETECTED_DIR = "detected"  # beside the index: detected set files, one folder per video


def detect_set(video: str | Path, out_root: str | Path, players=None, first_server: str | None = None,
               progress: Progress | None = None, detector: str | Path | None = None) -> Path:
    """Detect a video's strokes (core.detect) and write them as a ShuttleSet-style set file (with the
    detected sides and the players' names, which core.annotations reads): OUT_ROOT/<match>/setN.csv.
    A video named as ShuttleSet's sets are (`<match>/setN.mp4`, N 1..5) is set N of the match its
    folder names (so the end change of set 3 applies); any other is set 1 of a match named after
    the file. core.detect.DetectError for bad input or a video without strokes."""
    from core import detect as det  # torch and the detector load only when a video is detected

    players = det.check_players(players)
    video = Path(video)
    m = re.fullmatch(r"set([1-5])", video.stem, re.IGNORECASE)
    match, set_no = (video.resolve().parent.name, int(m.group(1))) if m else (video.stem, 1)
    detection = det.detect(video, detector, players=players, first_server=first_server, progress=progress,
                           set_number=set_no)
    if not detection.strokes:
        raise det.DetectError(f"{video.name}: no strokes detected (is a badminton court in view?)")
    return det.write_set_csv(detection, Path(out_root) / safe_name(match, "match") / f"set{set_no}.csv", players)


def encode_set(store: StrokeStore, set_id: int, model, progress: Progress | None = None, batch_size: int = 8,
               captions: bool = True, settings: GenerationSettings | None = None,
               caption_batch: int = CAPTION_BATCH, model_lock: AbstractContextManager | None = None) -> dict:
    """Query tokens (and captions) for every stroke of an indexed set that lacks them (`model_pass`),
    then onto the set in one transaction. {'encoded': strokes through the vision tower, 'captioned':
    captions generated}."""
    video, vhash = store.set_video(set_id)
    done = model_pass(store, video, vhash, _frames_in_video(store.hit_frames(set_id), video), model, progress,
                      batch_size, captions, settings, caption_batch, model_lock)
    store.finish_model_pass(set_id, *done["keys"])
    return {"encoded": done["encoded"], "captioned": done["captioned"]}


def model_pass(store: StrokeStore, video: str | Path, vhash: str, frames: list[int], model,
               progress: Progress | None = None, batch_size: int = 8, captions: bool = True,
               settings: GenerationSettings | None = None, caption_batch: int = CAPTION_BATCH,
               model_lock: AbstractContextManager | None = None) -> dict:
    """Tokens (and captions) of the video's hit frames into the caches; one decode pass, no stroke
    row changes. Clips are decoded and preprocessed in a background thread (`prefetch_clips`)
    while the model encodes batches of `batch_size`; captions are generated from the tokens in
    batches of `caption_batch` (beam search pays per step, so larger batches are cheaper per
    stroke), each caption batch one transaction. progress(done, total, what) counts finished
    strokes. {'encoded', 'captioned', 'keys': (encoder key, captioner key or None)}."""
    lock = model_lock or nullcontext()
    ekey, ckey = encoder_key(model), (model_key(model) if captions else None)
    cache = store.token_cache(vhash, ekey)
    have_cap = store.captioned_frames(vhash, ckey) if captions else set()
    decode = [f for f in frames if not cache.has(f)]
    from_cache = [f for f in frames if f not in decode and captions and f not in have_cap]
    state = {"done": len(frames) - len(decode) - len(from_cache), "encoded": 0, "captioned": 0}
    report = (lambda: progress(state["done"], len(frames), "strokes")) if progress else (lambda: None)
    report()
    pending: list[tuple[int, np.ndarray]] = []  # tokens waiting for their caption

    def caption_pending(final: bool = False) -> None:
        while pending and (final or len(pending) >= caption_batch):
            part = pending[:caption_batch]
            del pending[:caption_batch]
            with lock:
                texts = model.caption(_tensor([t for _, t in part]), settings, batch_size=caption_batch)
            store.cache_captions(vhash, ckey, [(f, t) for (f, _), t in zip(part, texts)])
            state["captioned"] += len(part)
            state["done"] += len(part)
            report()

    batch: list[tuple[int, object]] = []
    for frame, pixels in prefetch_clips(video, decode, model.processor, depth=2 * batch_size):
        batch.append((frame, pixels))
        if len(batch) == batch_size or len(batch) + state["encoded"] == len(decode):
            with lock:
                tokens = _encode(model, [p for _, p in batch])
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
    return {"encoded": state["encoded"], "captioned": state["captioned"], "keys": (ekey, ckey)}


def _frames_in_video(frames: list[int], video: str | Path) -> list[int]:
    info = probe(video)
    outside = [f for f in frames if not 0 <= f < info.num_frames]
    if outside:
        log.warning("%s: %d hit frames lie outside the video (0..%d); left without tokens",
                    video, len(outside), info.num_frames - 1)
    return [f for f in frames if 0 <= f < info.num_frames]


def _tensor(arrays: list[np.ndarray]):
    import torch

    return torch.from_numpy(np.stack(arrays))


def _encode(model, pixels: list) -> np.ndarray:
    """Pixel tensors (T, 3, S, S) of a batch -> query tokens (N, Q, D), float32."""
    import torch

    return model.encode(torch.stack(pixels)).float().cpu().numpy()


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
