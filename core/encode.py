"""H.264 video (libx264, yuv420p) and AAC audio in one mp4, through PyAV: match renders, and every
video the app makes for the browser (copies, stroke clips, highlight reels), which browsers play as
they are. An odd width or height is cut to the even size H.264 needs.

Frame i gets pts i in a 1/fps time base and the encoder runs without B-frames, so the i-th decoded
frame is the i-th written one for every reader (OpenCV, decord, browsers), and the frame count in
the file's header is exact. `+faststart` puts the index first so a browser starts playing at once.
Audio is interleaved with the video as it is written (samples up to the current frame's end).
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

PRESET = "veryfast"
CRF = 23
AUDIO_BITRATE = 96_000
READ_AHEAD = 16_384  # audio samples fetched from the source at a time


def frame_rate(fps: float) -> Fraction:
    """fps as an exact fraction (25 -> 25, 29.97 -> 30000/1001)."""
    return Fraction(fps).limit_denominator(1001)


class Writer:
    """mp4 writer: `write(bgr_frame)` per frame, then `close()`.

    audio: None (no audio stream), an array (n, channels) of floats in -1..1, or a source with
    `len()` and `read(start, stop) -> (channels, stop - start)` (read in order as frames are written).
    """

    def __init__(self, path: Path, size: tuple[int, int], fps: float, audio=None, rate: int = 48_000,
                 crf: int = CRF):
        size = (size[0] - size[0] % 2, size[1] - size[1] % 2)
        self.path, self.size, self.fps = Path(path), size, fps
        self.container = av.open(str(self.path), "w", format="mp4", options={"movflags": "+faststart"})
        rate_q = frame_rate(fps)
        vs = self.container.add_stream("libx264", rate=rate_q)
        vs.width, vs.height = size
        vs.pix_fmt = "yuv420p"
        vs.time_base = 1 / rate_q
        # no B-frames: decode order = display order; one thread: the same bytes on every run
        vs.options = {"preset": PRESET, "crf": str(crf), "bf": "0", "threads": "1",
                      "g": str(max(1, int(round(2 * fps))))}
        vs.codec_context.thread_count = 1
        self.video = vs
        self.audio = None
        self.samples = None
        self.rate = rate
        if audio is not None:
            samples = _ArraySource(audio) if isinstance(audio, np.ndarray) else audio
            layout = "stereo" if samples.read(0, 1).shape[0] == 2 else "mono"
            aus = self.container.add_stream("aac", rate=rate)
            aus.layout = layout
            aus.bit_rate = AUDIO_BITRATE
            aus.options = {"aac_coder": "fast"}  # several times faster than the default, for renders
            self.audio, self.samples, self.layout = aus, samples, layout
            self.sent = 0
            self.frame_size = 1024
            self.buf_start, self.buf = 0, np.zeros((2 if layout == "stereo" else 1, 0), np.float32)
        self.n = 0

    def write(self, bgr: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr[: self.size[1], : self.size[0]]), format="bgr24")
        frame.pts = self.n
        for packet in self.video.encode(frame):
            self.container.mux(packet)
        self.n += 1
        if self.audio is not None:
            self._audio_until(int(round(self.n / self.fps * self.rate)))

    def _audio_until(self, end: int) -> None:
        total = len(self.samples)
        end = min(end, total)
        while self.sent + self.frame_size <= end or (end == total and self.sent < end):
            stop = min(self.sent + self.frame_size, end)
            chunk = self._samples(self.sent, stop)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=self.layout)
            frame.sample_rate = self.rate
            frame.pts = self.sent
            frame.time_base = Fraction(1, self.rate)
            for packet in self.audio.encode(frame):
                self.container.mux(packet)
            self.sent = stop

    def _samples(self, start: int, stop: int) -> np.ndarray:
        """Samples start..stop-1, read from the source READ_AHEAD at a time (reads run in order)."""
        if stop > self.buf_start + self.buf.shape[1]:
            self.buf_start = start
            self.buf = np.asarray(self.samples.read(start, max(stop, start + READ_AHEAD)), np.float32)
        lo = start - self.buf_start
        return np.ascontiguousarray(self.buf[:, lo:lo + stop - start])

    def close(self) -> None:
        if self.audio is not None:
            self._audio_until(len(self.samples))
            for packet in self.audio.encode(None):
                self.container.mux(packet)
        for packet in self.video.encode(None):
            self.container.mux(packet)
        self.container.close()

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            try:
                self.container.close()
            except Exception:  # noqa: BLE001 - the original error matters, not the half-written file
                pass


class _ArraySource:
    """An (n, channels) array as an audio source."""

    def __init__(self, audio: np.ndarray):
        a = np.asarray(audio, np.float32)
        self.data = np.clip(a if a.ndim == 2 else a[:, None], -1, 1).T

    def __len__(self) -> int:
        return self.data.shape[1]

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.data[:, start:stop]
