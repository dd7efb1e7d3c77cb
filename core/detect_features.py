"""Per-frame motion features of a match video for the stroke detector (`core.detect`).

One sequential OpenCV pass, at a reduced size, whatever the file's length: each decoded frame is
resized to WORK_SIZE grey, and three maps on a GRID of cells are kept per frame:

  0  mean |frame - previous frame| per cell   (players' swings and steps)
  1  max  |frame - previous frame| per cell   (the small, fast shuttle)
  2  mean grey level per cell                 (the framing: court view, close-up, crowd)

so a frame costs 3 x 18 x 32 float16 values (3.4 kB). Callers that need bounded memory on long
files take the features in chunks (`iter_feature_chunks`) and reduce each chunk at once (the
detector's frame encoder does), so only the chunk is ever held.

Frame i is the i-th decoded frame; its time is the decoder's timestamp (variable frame rates keep
their real times), else i / fps.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

WORK_SIZE = (256, 144)  # (width, height) every frame is resized to, whatever its aspect ratio
GRID = (18, 32)  # (rows, cols) of cells: 8 x 8 work pixels each
CHANNELS = 3
CHUNK = 512  # frames per chunk


class FeatureError(RuntimeError):
    """A video that cannot be decoded (the message names the file)."""


@dataclass
class VideoMeta:
    path: Path
    fps: float
    frames: int  # counted by the header (the decode pass counts the real number)
    width: int
    height: int


def open_video(path: str | Path) -> tuple[cv2.VideoCapture, VideoMeta]:
    path = Path(path)
    if not path.is_file():
        raise FeatureError(f"{path}: video file not found")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FeatureError(f"{path}: not a video OpenCV can open")
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    if not (1.0 <= fps <= 1000.0):
        fps = 25.0
    meta = VideoMeta(path, float(fps), int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0),
                     int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0))
    return cap, meta


def frame_maps(grey: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """(H, W) float32 work frames -> (CHANNELS, *GRID) maps."""
    rows, cols = GRID
    h, w = grey.shape
    cy, cx = h // rows, w // cols
    diff = np.abs(grey - prev)[: rows * cy, : cols * cx].reshape(rows, cy, cols, cx)
    g = grey[: rows * cy, : cols * cx].reshape(rows, cy, cols, cx)
    return np.stack([diff.mean(axis=(1, 3)), diff.max(axis=(1, 3)), g.mean(axis=(1, 3))]) / 255.0


def iter_feature_chunks(path: str | Path, chunk: int = CHUNK,
                        progress: Callable[[int, int], None] | None = None
                        ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (features (n, CHANNELS, *GRID) float16, times (n,) float64 seconds) per chunk of frames."""
    cap, meta = open_video(path)
    prev = None
    feats, times = [], []
    i = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            t_ms = cap.get(cv2.CAP_PROP_POS_MSEC)
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
            grey = cv2.resize(grey, WORK_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)
            feats.append(frame_maps(grey, grey if prev is None else prev).astype(np.float16))
            times.append(t_ms / 1000.0 if t_ms and t_ms > 0 else i / meta.fps)
            prev = grey
            i += 1
            if len(feats) == chunk:
                yield np.stack(feats), np.asarray(times)
                feats, times = [], []
                if progress:
                    progress(i, meta.frames)
        if feats:
            yield np.stack(feats), np.asarray(times)
    finally:
        cap.release()
    if progress:
        progress(i, max(i, meta.frames))


def read_features(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """All of a (short) video's features at once: (T, CHANNELS, *GRID) float16 and times (T,)."""
    parts = list(iter_feature_chunks(path))
    if not parts:
        return np.zeros((0, CHANNELS, *GRID), np.float16), np.zeros(0)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def fix_times(times: np.ndarray, fps: float) -> np.ndarray:
    """Decoder timestamps made strictly increasing (a stream with broken stamps falls back to i/fps)."""
    t = np.asarray(times, dtype=np.float64)
    if len(t) > 1 and (np.any(np.diff(t) <= 0) or not np.all(np.isfinite(t))):
        t = np.arange(len(t)) / fps
    if len(t) and t[0] > 0:
        t = t - t[0]  # the first decoded frame is time 0 (streams may start late)
    return t
