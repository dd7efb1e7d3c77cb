"""Per-frame motion features of a match video for the stroke detector (`core.detect`).

One sequential PyAV pass, at a reduced size, whatever the file's length: each decoded frame's
luma plane (the picture's grey levels, no colour conversion) is resized to WORK_SIZE, and three
maps on a GRID of cells are kept per frame:

  0  mean |frame - previous frame| per cell   (players' swings and steps)
  1  max  |frame - previous frame| per cell   (the small, fast shuttle)
  2  mean grey level per cell                 (the framing: court view, close-up, crowd)

so a frame costs 3 x 18 x 32 float16 values (3.4 kB). Callers that need bounded memory on long
files take the features in chunks (`iter_feature_chunks`) and reduce each chunk at once (the
detector's frame encoder does), so only the chunk is ever held.

The decoder runs on every core and skips H.264's deblocking filter: its artefacts are far below
what an 8 x 8 cell of a 256 x 144 picture can show, and it is a fifth of the decode time.

Frame i is the i-th decoded frame; its time is the decoder's timestamp (variable frame rates keep
their real times), else i / fps.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

log = logging.getLogger(__name__)

WORK_SIZE = (256, 144)  # (width, height) every frame is resized to, whatever its aspect ratio
GRID = (18, 32)  # (rows, cols) of cells: 8 x 8 work pixels each
CHANNELS = 3
CHUNK = 512  # frames per chunk
FAST_DECODE = {"skip_loop_filter": "all", "flags2": "fast"}
_LIMITED = (255.0 / 219.0, -16.0 * 255.0 / 219.0)  # studio-range luma (16..235) -> 0..255


class FeatureError(RuntimeError):
    """A video that cannot be decoded (the message names the file)."""


@dataclass
class VideoMeta:
    path: Path
    fps: float
    frames: int  # counted by the header (the decode pass counts the real number)
    width: int
    height: int


def _open(path: Path) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    if not path.is_file():
        raise FeatureError(f"{path}: video file not found")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as err:
        raise FeatureError(f"{path}: not a video file that can be read ({err})") from None
    if not container.streams.video:
        container.close()
        raise FeatureError(f"{path}: the file has no video stream")
    return container, container.streams.video[0]


def _meta(path: Path, stream) -> VideoMeta:
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    fps = float(rate)
    if not (1.0 <= fps <= 1000.0):
        fps = 25.0
    return VideoMeta(path, fps, int(stream.frames or 0), int(stream.codec_context.width or 0),
                     int(stream.codec_context.height or 0))


def probe(path: str | Path) -> VideoMeta:
    """The video's frame rate, header frame count and size; FeatureError when it cannot be read."""
    path = Path(path)
    container, stream = _open(path)
    with container:
        return _meta(path, stream)


def work_grey(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame -> (144, 256) uint8 grey at WORK_SIZE, full range."""
    name = frame.format.name
    if name.startswith(("yuv", "nv")) and "p10" not in name and "p12" not in name:
        plane = frame.planes[0]
        luma = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]
        small = cv2.resize(luma, WORK_SIZE, interpolation=cv2.INTER_AREA)
        full = name.startswith("yuvj") or getattr(frame, "color_range", 0) == 2
        return small if full else cv2.convertScaleAbs(small, alpha=_LIMITED[0], beta=_LIMITED[1])
    return frame.reformat(width=WORK_SIZE[0], height=WORK_SIZE[1], format="gray").to_ndarray()


def frame_maps(grey: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """(H, W) uint8 work frames -> (CHANNELS, *GRID) float32 maps in 0..1."""
    rows, cols = GRID
    h, w = grey.shape
    cy, cx = h // rows, w // cols
    diff = cv2.absdiff(grey, prev)[: rows * cy, : cols * cx]
    mean = cv2.resize(diff.astype(np.float32), (cols, rows), interpolation=cv2.INTER_AREA)
    top = diff.reshape(rows, cy, cols, cx).max(axis=(1, 3)).astype(np.float32)
    level = cv2.resize(grey[: rows * cy, : cols * cx].astype(np.float32), (cols, rows), interpolation=cv2.INTER_AREA)
    return np.stack([mean, top, level]) / 255.0


def iter_feature_chunks(path: str | Path, chunk: int = CHUNK,
                        progress: Callable[[int, int], None] | None = None
                        ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (features (n, CHANNELS, *GRID) float16, times (n,) float64 seconds) per chunk of frames.

    A stream that breaks part-way ends the pass there (what was decoded is kept)."""
    path = Path(path)
    container, stream = _open(path)
    meta = _meta(path, stream)
    stream.thread_type = "AUTO"
    stream.codec_context.options = dict(FAST_DECODE)
    prev = None
    feats, times = [], []
    i = 0
    with container:
        try:
            for frame in container.decode(stream):
                grey = work_grey(frame)
                feats.append(frame_maps(grey, grey if prev is None else prev).astype(np.float16))
                times.append(frame.time if frame.time is not None else i / meta.fps)
                prev = grey
                i += 1
                if len(feats) == chunk:
                    yield np.stack(feats), np.asarray(times, dtype=np.float64)
                    feats, times = [], []
                    if progress:
                        progress(i, meta.frames)
        except av.error.FFmpegError as err:
            log.warning("%s: decoding stopped at frame %d (%s)", path, i, err)
    if feats:
        yield np.stack(feats), np.asarray(times, dtype=np.float64)
    if progress:
        progress(i, max(i, meta.frames))


CUT_LEVEL = 0.02  # layout change of a camera cut, and a shot's distance from the main camera's


def layout_change(maps: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """(n,) mean absolute change of each frame's grey map (channel 2) from the frame before (the
    first from `previous`, a grey map, else 0): within one camera shot the court stays where it is
    while players move (renders: at most 0.007), a cut to another shot moves it (at least 0.039)."""
    grey = maps[:, 2].astype(np.float32)
    before = np.concatenate([(grey[:1] if previous is None else previous[None].astype(np.float32)), grey[:-1]])
    return np.abs(grey - before).mean(axis=(1, 2))


class CameraShots:
    """Splits a stream of frames into camera shots at cuts, and tells the main camera's shots.

    A broadcast plays every rally from one main camera and shows its cut-aways (replays,
    close-ups, crowd, players walking back) from other framings, so a shot's mean grey map is
    its signature: the main camera's shots are those near the signature that covers the most
    frames (renders: rally shots within 0.0071 of it, cut-aways at least 0.039 from it). Each
    shot keeps only a running sum, so memory does not grow with the file's length."""

    CANDIDATES = 32  # longest shots tried as the main camera's

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.sums: list[np.ndarray] = []
        self.counts: list[int] = []
        self.changes: list[np.ndarray] = []
        self._last: np.ndarray | None = None

    def add(self, maps: np.ndarray) -> None:
        """The next chunk of frames' maps, (n, CHANNELS, *GRID)."""
        if not len(maps):
            return
        change = layout_change(maps, self._last)
        grey = maps[:, 2].astype(np.float32)
        offset = sum(self.counts)
        cuts = np.flatnonzero(change > CUT_LEVEL)
        bounds = [0, *cuts.tolist(), len(maps)]
        for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            if b <= a:
                continue
            if k == 0 and self.starts:  # the chunk goes on with the last shot
                self.sums[-1] += grey[a:b].sum(0)
                self.counts[-1] += b - a
                continue
            self.starts.append(offset + a)
            self.sums.append(grey[a:b].sum(0))
            self.counts.append(b - a)
        self.changes.append(change)
        self._last = maps[-1, 2]

    @property
    def change(self) -> np.ndarray:
        """(T,) layout change of each frame from the one before."""
        return np.concatenate(self.changes) if self.changes else np.zeros(0, np.float32)

    def main(self) -> np.ndarray:
        """(T,) True on the frames of the main camera's shots."""
        counts = np.array(self.counts)
        if len(counts) <= 1:
            return np.ones(int(counts.sum()), bool)
        sig = np.stack(self.sums) / counts[:, None, None]
        far = lambda i: np.abs(sig - sig[i]).mean(axis=(1, 2)) > CUT_LEVEL  # noqa: E731
        tried = np.argsort(-counts)[: self.CANDIDATES]
        best = max(tried, key=lambda i: counts[~far(i)].sum())
        return np.repeat(~far(best), counts)


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
