"""Writing a render: H.264 video (libx264, yuv420p) and AAC audio in one mp4, through PyAV.

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
AUDIO_BITRATE = 128_000


def frame_rate(fps: float) -> Fraction:
    """fps as an exact fraction (25 -> 25, 29.97 -> 30000/1001)."""
    return Fraction(fps).limit_denominator(1001)


class Writer:
    """mp4 writer: `write(bgr_frame)` per frame, then `close()`; audio (n, channels) float32 or None."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float, audio: np.ndarray | None = None,
                 rate: int = 48_000):
        self.path, self.size, self.fps = Path(path), size, fps
        self.container = av.open(str(self.path), "w", format="mp4", options={"movflags": "+faststart"})
        rate_q = frame_rate(fps)
        vs = self.container.add_stream("libx264", rate=rate_q)
        vs.width, vs.height = size
        vs.pix_fmt = "yuv420p"
        vs.time_base = 1 / rate_q
        # no B-frames: decode order = display order; one thread: the same bytes on every run
        vs.options = {"preset": PRESET, "crf": str(CRF), "bf": "0", "threads": "1",
                      "g": str(max(1, int(round(2 * fps))))}
        vs.codec_context.thread_count = 1
        self.video = vs
        self.audio = None
        self.samples = None
        self.rate = rate
        if audio is not None:
            samples = np.ascontiguousarray(np.clip(audio, -1, 1).astype(np.float32).T)  # (channels, n)
            layout = "stereo" if samples.shape[0] == 2 else "mono"
            aus = self.container.add_stream("aac", rate=rate)
            aus.layout = layout
            aus.bit_rate = AUDIO_BITRATE
            aus.options = {"aac_coder": "fast"}  # several times faster than the default, for renders
            self.audio, self.samples, self.layout = aus, samples, layout
            self.sent = 0
            self.frame_size = 1024
        self.n = 0

    def write(self, bgr: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(bgr, format="bgr24")
        frame.pts = self.n
        for packet in self.video.encode(frame):
            self.container.mux(packet)
        self.n += 1
        if self.audio is not None:
            self._audio_until(int(round(self.n / self.fps * self.rate)))

    def _audio_until(self, end: int) -> None:
        end = min(end, self.samples.shape[1])
        while self.sent + self.frame_size <= end or (end == self.samples.shape[1] and self.sent < end):
            stop = min(self.sent + self.frame_size, end)
            chunk = np.ascontiguousarray(self.samples[:, self.sent:stop])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=self.layout)
            frame.sample_rate = self.rate
            frame.pts = self.sent
            frame.time_base = Fraction(1, self.rate)
            for packet in self.audio.encode(frame):
                self.container.mux(packet)
            self.sent = stop

    def close(self) -> None:
        if self.audio is not None:
            self._audio_until(self.samples.shape[1])
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
