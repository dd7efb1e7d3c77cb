"""Racket-impact onsets from a video's sound track, for the stroke detector (`core.detect`).

The track is read with PyAV (any layout: mono, stereo, 5.1 are mixed down), resampled to RATE,
and turned into a band-limited spectral flux: the half-wave rectified rise of the log magnitude
spectrum between BAND Hz (where a shuttle impact is loud and footsteps, crowd and voices are not),
every HOP samples, computed while the track decodes so memory stays bounded on long files. The flux is
then made robust to level: divided by its running median spread (MAD over WINDOW_S), so a quiet
phone recording and a loud broadcast give comparable strengths.

`audio_onsets(video, times)` gives, per video frame time, the strongest normalised flux within
half a frame of it, and the sub-frame time of that peak; None when the file has no audio stream,
the stream cannot be decoded or is silent.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import median_filter
from scipy.signal import get_window

log = logging.getLogger(__name__)

RATE = 16000
N_FFT = 512
HOP = 160  # 10 ms
BAND = (1500.0, 7000.0)
WINDOW_S = 3.0
SILENCE_RMS = 1e-4  # a track quieter than this everywhere is silence


@dataclass
class AudioTrack:
    strength: np.ndarray  # (T,) normalised flux per video frame (0 = background)
    peak_time: np.ndarray  # (T,) seconds of the flux peak nearest each frame
    channels: int
    rate: int


class _Flux:
    """Streaming band-limited spectral flux: feed mono samples at RATE, get one value per HOP.

    STFT frame k is centred on sample k * HOP (the track starts with N_FFT / 2 zeros); only the
    samples a frame still needs are kept, so a long track costs one float per 10 ms."""

    def __init__(self):
        self.buf = np.zeros(N_FFT // 2, np.float32)
        self.next_frame = 0  # index of the next frame; it starts at buf[0]
        self.prev = None
        self.out: list[np.ndarray] = []
        self.win = get_window("hann", N_FFT).astype(np.float32)
        freqs = np.fft.rfftfreq(N_FFT, 1.0 / RATE)
        self.band = (freqs >= BAND[0]) & (freqs <= BAND[1])
        self.sq, self.n = 0.0, 0

    def feed(self, x: np.ndarray) -> None:
        self.sq += float(np.dot(x, x))
        self.n += len(x)
        self.buf = np.concatenate([self.buf, x])
        if len(self.buf) >= 64 * 1024:
            self._run()

    def _run(self) -> None:
        k = (len(self.buf) - N_FFT) // HOP + 1  # whole frames in the buffer
        if k <= 0:
            return
        idx = np.arange(k)[:, None] * HOP + np.arange(N_FFT)[None, :]
        spec = np.log1p(1000.0 * np.abs(np.fft.rfft(self.buf[idx] * self.win, axis=1))[:, self.band])
        d = np.diff(spec, axis=0, prepend=spec[:1] if self.prev is None else self.prev[None])
        self.out.append(np.maximum(d, 0).mean(axis=1).astype(np.float32))
        self.prev = spec[-1]
        self.buf = self.buf[k * HOP:]
        self.next_frame += k

    def finish(self) -> np.ndarray:
        self.buf = np.concatenate([self.buf, np.zeros(N_FFT // 2, np.float32)])
        self._run()
        return np.concatenate(self.out) if self.out else np.zeros(0, np.float32)

    @property
    def rms(self) -> float:
        return float(np.sqrt(self.sq / max(1, self.n)))


def _decode_flux(path: Path) -> tuple[_Flux, int] | None:
    """The track's flux, decoded and resampled to mono RATE as it goes; None without an audio stream."""
    import av  # PyAV; imported here so the rest of core does not need it

    try:
        container = av.open(str(path))
    except Exception as err:  # noqa: BLE001 - any container error means "no usable audio"
        log.info("%s: no audio read (%s)", path, err)
        return None
    flux = _Flux()
    with container:
        streams = [s for s in container.streams if s.type == "audio"]
        if not streams:
            return None
        stream = streams[0]
        channels = stream.codec_context.channels or 1
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    flux.feed(out.to_ndarray().reshape(-1).astype(np.float32))
            for out in resampler.resample(None):
                flux.feed(out.to_ndarray().reshape(-1).astype(np.float32))
        except Exception as err:  # noqa: BLE001 - a broken audio stream: use what was decoded
            log.warning("%s: audio decoding stopped early (%s)", path, err)
    return flux, channels


def spectral_flux(samples: np.ndarray) -> np.ndarray:
    """(N,) mono samples at RATE -> (about N / HOP,) band-limited positive log-spectral flux."""
    f = _Flux()
    f.feed(np.asarray(samples, np.float32))
    return f.finish()


def _normalise(flux: np.ndarray) -> np.ndarray:
    size = max(3, int(WINDOW_S * RATE / HOP) | 1)
    sub = max(1, len(flux) // 20000)  # the running median on a subsampled copy (long files)
    med = median_filter(flux[::sub], size=max(3, size // sub | 1), mode="nearest")
    mad = median_filter(np.abs(flux[::sub] - med), size=max(3, size // sub | 1), mode="nearest")
    med = np.repeat(med, sub)[: len(flux)]
    mad = np.repeat(mad, sub)[: len(flux)]
    return (flux - med) / (mad * 1.4826 + 1e-3 + 0.05 * np.median(flux))


def audio_onsets(video: str | Path, times: np.ndarray) -> AudioTrack | None:
    """Onset strength at each video frame time (see the module docstring); None without usable sound."""
    return onsets_at(read_flux(video), times, video)


def read_flux(video: str | Path) -> tuple[_Flux, int] | None:
    """The sound track's spectral flux and channel count; None without an audio stream. It needs
    no frame times, so it can run beside the picture's decoding pass."""
    return _decode_flux(Path(video))


def onsets_at(got: tuple[_Flux, int] | None, times: np.ndarray, video: str | Path = "") -> AudioTrack | None:
    """`read_flux`'s result sampled at the video frame times; None without usable sound."""
    if got is None:
        return None
    flux, channels = got
    if flux.n < RATE // 10 or flux.rms < SILENCE_RMS:
        log.info("%s: no sound or a silent track; detection uses the picture alone", video)
        return None
    z = _normalise(flux.finish())
    t_flux = np.arange(len(z)) * HOP / RATE
    times = np.asarray(times, dtype=np.float64)
    dt = np.median(np.diff(times)) if len(times) > 1 else 0.04
    lo = np.searchsorted(t_flux, times - dt / 2)
    hi = np.maximum(np.searchsorted(t_flux, times + dt / 2), lo + 1)
    strength = np.zeros(len(times), np.float32)
    peak = times.copy()
    for i, (a, b) in enumerate(zip(lo, hi)):
        if a < len(z):
            k = a + int(np.argmax(z[a:b]))
            strength[i], peak[i] = max(0.0, float(z[k])), t_flux[k]
    return AudioTrack(strength, peak, channels, RATE)
