"""Frame-accurate stroke windows from match video.

Two ways to read:
- `read_window`: random access to the frames around one hit frame. decord does the seeking
  (frame-exact), inside a worker process so that a file on which decord 0.6 hangs or leaks
  cannot take the app down: the worker is killed after a timeout and recycled every
  `RECYCLE_AFTER` reads. OpenCV is the fallback.
- `iter_windows`: one sequential OpenCV pass over the file that cuts the windows of many hit
  frames as it goes; memory is bounded by the frames of overlapping windows, however long
  the match. This is what the indexer and the dataset builder use.

Media for the browser (`transcode`, `write_segments`, `write_highlights`) re-encode whole files or
stretches of them as H.264 mp4 (core.encode), which every browser plays as it is.

Window frame i is always the i-th decoded frame of the file (never a keyframe nearby), so
variable-frame-rate files are indexed by frame, not by time. Indices before the first frame
or past the last one are clamped, so every window has `before + after + 1` frames.
"""
from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

WINDOW_BEFORE = 7  # the reference takes frames hit-7 .. hit+8
WINDOW_AFTER = 8
READ_TIMEOUT_S = 30.0
RECYCLE_AFTER = 200
_ROOT = Path(__file__).resolve().parents[1]
PREVIEW_MAX_WIDTH = 640  # browser copies are for watching and seeking, not for analysis
Progress = Callable[[int, int, str], None]  # (done, total, what)


class VideoError(RuntimeError):
    """A video that cannot be read; the message says which file and why."""


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps if self.fps > 0 else 0.0


def probe(path: str | Path) -> VideoInfo:
    """Frame count, fps and size of a video; VideoError for anything that is not one."""
    path = _check_path(path)
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"{path}: not a readable video file")
        ok, frame = cap.read()
        if not ok or frame is None:
            raise VideoError(f"{path}: no decodable frames (corrupt or empty video)")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS)) or 25.0
        return VideoInfo(max(n, 1), fps, frame.shape[1], frame.shape[0])
    finally:
        cap.release()


VIDEO_EXTS = (".mp4", ".mkv", ".mov", ".avi")


def find_video(videos: Path, match: str, set_no: int) -> Path | None:
    """The video of set `set_no` of `match` under a videos folder: `<match>/setN.mp4` (the layout
    train.replay renders and ShuttleSet folders use) or `<match>_setN.mp4`, any of VIDEO_EXTS."""
    for ext in VIDEO_EXTS:
        for p in (videos / match / f"set{set_no}{ext}", videos / f"{match}_set{set_no}{ext}"):
            if p.is_file():
                return p
    return None


def window_indices(center: int, before: int = WINDOW_BEFORE, after: int = WINDOW_AFTER,
                   num_frames: int | None = None) -> list[int]:
    """The frame indices of a window, clamped to [0, num_frames - 1]."""
    last = (num_frames - 1) if num_frames else None
    idx = [max(0, i) for i in range(center - before, center + after + 1)]
    return [min(i, last) for i in idx] if last is not None else idx


def read_window(path: str | Path, center: int, before: int = WINDOW_BEFORE, after: int = WINDOW_AFTER,
                backend: str = "auto") -> np.ndarray:
    """Frames center-before .. center+after as uint8 RGB, shape (T, H, W, 3).

    backend: "decord", "opencv", or "auto" (decord, falling back to OpenCV if it fails).
    """
    if backend not in ("auto", "decord", "opencv"):
        raise ValueError(f"unknown video backend {backend!r}")
    info = probe(path)
    if not 0 <= center < info.num_frames:
        raise VideoError(f"{path}: hit frame {center} is outside the video (0..{info.num_frames - 1})")
    indices = window_indices(center, before, after, info.num_frames)
    if backend in ("auto", "decord"):
        try:
            return _decord_pool().read(str(path), indices)
        except VideoError as err:
            if backend == "decord":
                raise
            log.warning("decord failed on %s (%s); reading with OpenCV", path, err)
    return _opencv_read(Path(path), indices)


def read_clip(path: str | Path) -> np.ndarray:
    """Every frame of a short clip file (a cut stroke window) as uint8 RGB (T, H, W, 3)."""
    info = probe(path)
    frames = _opencv_read(Path(path), list(range(info.num_frames)))
    if len(frames) == 0:
        raise VideoError(f"{path}: no decodable frames (corrupt or empty video)")
    return frames


def iter_windows(path: str | Path, centers: Iterable[int], before: int = WINDOW_BEFORE,
                 after: int = WINDOW_AFTER) -> Iterator[tuple[int, np.ndarray]]:
    """One sequential pass: yield (center, frames) for every hit frame, in increasing order.

    Frames are uint8 RGB (T, H, W, 3). Only frames that a pending window still needs are kept.
    """
    path = _check_path(path)
    wanted = sorted(set(int(c) for c in centers))
    if not wanted:
        return
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(f"{path}: not a readable video file")
    try:
        yield from _sequential_windows(cap, path, wanted, before, after)
    finally:
        cap.release()


def _sequential_windows(cap: cv2.VideoCapture, path: Path, wanted: list[int], before: int,
                        after: int) -> Iterator[tuple[int, np.ndarray]]:
    kept: dict[int, np.ndarray] = {}
    first_needed = lambda k: max(0, wanted[k] - before)  # noqa: E731
    k, frame_idx, last = 0, -1, None
    while k < len(wanted):
        ok = cap.grab()
        if not ok:
            break
        frame_idx += 1
        if frame_idx < first_needed(k):
            continue  # grab() skips the colour conversion of frames no window needs
        ok, bgr = cap.retrieve()
        if not ok:
            raise VideoError(f"{path}: frame {frame_idx} could not be decoded")
        kept[frame_idx] = last = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        while k < len(wanted) and frame_idx >= wanted[k] + after:
            yield wanted[k], np.stack([kept[i] for i in window_indices(wanted[k], before, after)])
            k += 1
            if k < len(wanted):
                for i in [i for i in kept if i < first_needed(k)]:
                    del kept[i]
    if frame_idx < 0:
        raise VideoError(f"{path}: no decodable frames (corrupt or empty video)")
    # The file ended: windows that run past the last frame repeat it.
    for center in wanted[k:]:
        if center > frame_idx:
            raise VideoError(f"{path}: hit frame {center} is past the last frame ({frame_idx})")
        yield center, np.stack([kept.get(i, last) for i in window_indices(center, before, after, frame_idx + 1)])


def write_video(path: str | Path, frames: np.ndarray | Iterable[np.ndarray], fps: float) -> Path:
    """Write uint8 RGB frames (T, H, W, 3) to an mp4 file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for frame in frames:
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
                if not writer.isOpened():
                    raise VideoError(f"{path}: cannot open a video writer")
            writer.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
    finally:
        if writer is not None:
            writer.release()
    if writer is None:
        raise VideoError(f"{path}: no frames to write")
    return path


def video_fps(video: Path) -> float:
    cap = cv2.VideoCapture(str(video))
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    return fps if fps and fps > 0 else 25.0


def read_segment(video: Path, start_s: float, end_s: float):
    """BGR frames of [start_s, end_s] (clamped to the file), read frame by frame from a seek before it."""
    cap = cv2.VideoCapture(str(video))
    try:
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        first, last = max(0, int(round(start_s * fps))), int(round(end_s * fps))
        cap.set(cv2.CAP_PROP_POS_FRAMES, first)
        i = first
        while i <= last:
            ok, frame = cap.read()
            if not ok:
                break
            yield frame
            i += 1
    finally:
        cap.release()


def _scaled_size(w: int, h: int, max_w: int = PREVIEW_MAX_WIDTH) -> tuple[int, int]:
    if w <= max_w:
        return w, h
    return max_w, int(round(h * max_w / w / 2)) * 2


def transcode(src: Path, out: Path, progress: Progress | None = None) -> None:
    """Re-encode a whole video for the browser as H.264 (same frames and rate, at most
    PREVIEW_MAX_WIDTH wide)."""
    info = probe(src)

    def frames() -> Iterator[np.ndarray]:
        cap = cv2.VideoCapture(str(src))
        try:
            n = 0
            while True:
                ok, frame = cap.read()
                if not ok:
                    return
                yield frame
                n += 1
                if progress and n % 100 == 0:
                    progress(n, info.num_frames, "making a browser copy of the video")
        finally:
            cap.release()

    if not _encode(frames(), out, info.fps, PREVIEW_MAX_WIDTH):
        raise VideoError(f"{src}: no frames could be read")


def write_segments(video: Path, segments: list[tuple[float, float]], out: Path) -> None:
    """The stretches (start s, end s) of a video, one after another, as a browser-playable clip."""
    frames = (frame for a, b in segments for frame in read_segment(video, a, b))
    if not _encode(frames, out, video_fps(video), PREVIEW_MAX_WIDTH):
        raise VideoError(f"{video.name}: no frames in that stretch")


TITLE_CARD_S = 1.5  # a highlight reel's card before each clip says what the clip is


def title_card(lines: list[str], size: tuple[int, int]) -> np.ndarray:
    """A dark BGR frame of `size` (w, h) with the lines centred, the first one larger."""
    w, h = size
    card = np.full((h, w, 3), 24, np.uint8)
    scale = max(w / 1280, 0.3)
    sizes = [(scale * (1.6 if i == 0 else 1.0), 3 if i == 0 else 2) for i in range(len(lines))]
    heights = [int(40 * s) for s, _ in sizes]
    y = (h - sum(heights)) // 2
    for text, (s, thick), dy in zip(lines, sizes, heights):
        text = text if len(text) <= 70 else text[:67] + "..."
        while s > 0.2 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, s, thick)[0][0] > w * 0.92:
            s *= 0.9
        tw = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, s, thick)[0][0]
        y += dy
        cv2.putText(card, text, ((w - tw) // 2, y), cv2.FONT_HERSHEY_SIMPLEX, s, (240, 240, 240), max(1, thick),
                    cv2.LINE_AA)
    return card


def write_highlights(segments: list[tuple[Path, float, float]], out: Path, progress: Progress | None = None,
                     titles: list[list[str]] | None = None) -> Path:
    """The (video, start s, end s) stretches one after another in one browser-playable mp4, at the
    first clip's size and frame rate; with `titles`, each clip follows a title card of its lines."""
    fps = video_fps(segments[0][0]) if segments else 25.0

    sizes: dict[Path, tuple[int, int]] = {}

    def frames() -> Iterator[np.ndarray]:
        for i, (video, a, b) in enumerate(segments):
            if progress:
                progress(i, len(segments), "cutting clips")
            if titles:
                if video not in sizes:  # a card is drawn at its clip's size, each video probed once
                    info = probe(video)
                    sizes[video] = (info.width, info.height)
                card = title_card(titles[i], sizes[video])
                yield from (card for _ in range(int(round(TITLE_CARD_S * fps))))
            yield from read_segment(video, a, b)

    if not _encode(frames(), out, fps):
        raise VideoError("the clips have no frames")
    return out


def _encode(frames: Iterable[np.ndarray], out: Path, fps: float, max_width: int | None = None) -> int:
    """BGR frames -> an H.264 mp4 (core.encode), every frame at the first one's size (at most
    `max_width` wide), written to a temporary name and renamed; returns the number of frames
    (0: nothing written)."""
    from core.encode import Writer  # PyAV loads only when a video is made

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".part" + out.suffix)
    writer, size, n = None, None, 0
    try:
        for frame in frames:
            if writer is None:
                h, w = frame.shape[:2]
                size = _scaled_size(w, h, max_width) if max_width else (w, h)
                writer = Writer(tmp, size, fps)
            writer.write(frame if (frame.shape[1], frame.shape[0]) == size else cv2.resize(frame, size))
            n += 1
    except BaseException:
        if writer is not None:
            writer.__exit__(*sys.exc_info())
        tmp.unlink(missing_ok=True)
        raise
    if writer is None:
        return 0
    writer.close()
    tmp.replace(out)
    return n


def fourcc(path: Path) -> str:
    """The codec tag of a video's stream (e.g. 'avc1', 'FMP4')."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"{path}: cannot open the video")
        return int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("latin-1")
    finally:
        cap.release()


def _check_path(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such video file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: the file is empty")
    return path


def _opencv_read(path: Path, indices: list[int]) -> np.ndarray:
    """Seek to the first index, then read forward; re-read from the start if the seek was inexact."""
    cap = cv2.VideoCapture(str(path))
    try:
        start = indices[0]
        cap.set(cv2.CAP_PROP_POS_FRAMES, start)
        if int(cap.get(cv2.CAP_PROP_POS_FRAMES)) != start:
            cap.release()
            cap = cv2.VideoCapture(str(path))
            for _ in range(start):
                cap.grab()
        frames: dict[int, np.ndarray] = {}
        for i in range(start, indices[-1] + 1):
            ok, bgr = cap.read()
            if not ok:
                raise VideoError(f"{path}: frame {i} could not be decoded")
            frames[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return np.stack([frames[i] for i in indices])
    finally:
        cap.release()


class _DecordPool:
    """One decord worker process, killed on timeout and recycled to bound decord's leaks.

    The worker is a fresh interpreter (not a multiprocessing child), so it never re-runs the
    caller's main script and shares no thread state with torch."""

    def __init__(self, timeout_s: float = READ_TIMEOUT_S, recycle_after: int = RECYCLE_AFTER,
                 worker: str = "core.video:_decord_serve"):
        self.timeout_s, self.recycle_after, self.worker = timeout_s, recycle_after, worker
        self._proc: subprocess.Popen | None = None
        self._send = self._recv = None
        self._reads = 0

    def read(self, path: str, indices: list[int]) -> np.ndarray:
        if self._proc is None or self._proc.poll() is not None or self._reads >= self.recycle_after:
            self._start()
        self._reads += 1
        try:
            self._send.send((path, indices))
            if not self._recv.poll(self.timeout_s):
                self.close()
                raise VideoError(f"{path}: decord did not answer within {self.timeout_s:.0f} s")
            status, payload = self._recv.recv()
        except (EOFError, OSError):  # the worker died (crash, or it could not start)
            self.close()
            raise VideoError(f"{path}: the decord reader stopped unexpectedly") from None
        if status != "ok":
            raise VideoError(f"{path}: {payload}")
        return payload

    def _start(self) -> None:
        self.close()
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        module, func = self.worker.split(":")
        code = f"import {module} as m; m.{func}({to_child}, {from_child})"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_ROOT), os.environ.get("PYTHONPATH", "")]),
               "OMP_NUM_THREADS": "1"}
        self._proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=(to_child, from_child), env=env)
        os.close(to_child)
        os.close(from_child)
        self._send, self._recv = Connection(from_parent, readable=False), Connection(to_parent, writable=False)
        self._reads = 0

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=5)
            self._send.close()
            self._recv.close()
        self._proc = None


def _decord_serve(read_fd: int, write_fd: int) -> None:
    """The worker's loop: (path, indices) in, ("ok", frames) or ("error", message) out."""
    import decord

    requests, replies = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    reader, reader_path = None, None
    while True:
        try:
            path, indices = requests.recv()
        except EOFError:
            return
        try:
            if path != reader_path:
                reader, reader_path = None, None
                reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
                reader_path = path
            replies.send(("ok", reader.get_batch(indices).asnumpy()))
        except Exception as err:  # decord raises its own untyped errors
            reader, reader_path = None, None
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            replies.send(("error", f"decord cannot read it ({first})"))


_POOL: _DecordPool | None = None


def _decord_pool() -> _DecordPool:
    global _POOL
    if _POOL is None:
        _POOL = _DecordPool()
        atexit.register(_POOL.close)
    return _POOL
