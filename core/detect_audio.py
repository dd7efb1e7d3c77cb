"""Racket-impact onsets from a video's sound track, for the stroke detector (`core.detect`).

The track is read with PyAV (any layout: mono, stereo, 5.1 are mixed down), resampled to RATE,
and turned into a band-limited spectral flux: the half-wave rectified rise of the log magnitude
spectrum between BAND Hz (where a shuttle impact is loud and footsteps, crowd and voices are not),
every HOP samples, computed block by block so memory stays bounded on long files. The flux is
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


def _decode_mono(path: Path) -> tuple[list[np.ndarray], int] | None:
    import av  # PyAV; imported here so the rest of core does not need it

    try:
        container = av.open(str(path))
    except Exception as err:  # noqa: BLE001 - any container error means "no usable audio"
        log.info("%s: no audio read (%s)", path, err)
        return None
    with container:
        streams = [s for s in container.streams if s.type == "audio"]
        if not streams:
            return None
        stream = streams[0]
        channels = stream.codec_context.channels or 1
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        blocks = []
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    blocks.append(out.to_ndarray().reshape(-1).astype(np.float32))
            for out in resampler.resample(None):
                blocks.append(out.to_ndarray().reshape(-1).astype(np.float32))
        except Exception as err:  # noqa: BLE001 - a broken audio stream: use what was decoded
            log.warning("%s: audio decoding stopped early (%s)", path, err)
    return blocks, channels


def spectral_flux(samples: np.ndarray) -> np.ndarray:
    """(N,) mono samples at RATE -> (N // HOP,) band-limited positive log-spectral flux."""
    n = len(samples) // HOP
    if n < 2:
        return np.zeros(max(n, 0), np.float32)
    pad = np.concatenate([np.zeros(N_FFT // 2, np.float32), samples, np.zeros(N_FFT, np.float32)])
    win = get_window("hann", N_FFT).astype(np.float32)
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / RATE)
    band = (freqs >= BAND[0]) & (freqs <= BAND[1])
    flux = np.zeros(n, np.float32)
    prev = None
    step = 4096  # STFT frames per block: bounded memory
    for s in range(0, n, step):
        idx = np.arange(s, min(n, s + step))[:, None] * HOP + np.arange(N_FFT)[None, :]
        spec = np.log1p(1000.0 * np.abs(np.fft.rfft(pad[idx] * win, axis=1))[:, band])
        d = np.diff(spec, axis=0, prepend=spec[:1] if prev is None else prev[None])
        flux[s: s + len(idx)] = np.maximum(d, 0).mean(axis=1)
        prev = spec[-1]
    return flux


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
    got = _decode_mono(Path(video))
    if got is None:
        return None
    blocks, channels = got
    if not blocks:
        return None
    samples = np.concatenate(blocks)
    if len(samples) < RATE // 10 or float(np.sqrt(np.mean(samples ** 2))) < SILENCE_RMS:
        log.info("%s: the sound track is silent; detection uses the picture alone", video)
        return None
    z = _normalise(spectral_flux(samples))
    del samples
    t_flux = (np.arange(len(z)) + 0.5) * HOP / RATE
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
