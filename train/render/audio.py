"""The sound of a render: what the court microphones and the arena would give a broadcast.

Sources (times in seconds of the render; every level is drawn per render from its seed):
- racket impacts, starting exactly at the hit frame's time (sample round(frame / fps * RATE)):
  a noise click and a damped string ping. Loudness and spectrum follow the shuttle's launch speed
  from the flight the renderer draws: a fast flat hit (a smash) is louder, shorter and brighter
  than a slow touch at the net. Nothing here knows a stroke's name;
- the shuttle landing at the end of a rally (a soft tick, louder the faster it comes down);
- footsteps at each foot strike of the players' gait, shoe squeaks at hard changes of direction;
- a crowd bed (band-limited noise, hushed during play), a cheer and applause after each rally,
  louder after longer rallies;
- the umpire's call between rallies: voice-like bursts (a glottal pulse train through vowel
  formants) over a band-limited public-address system.
Court sounds share an arena reverb. Replays and other cut-aways carry no hits: during them one
hears the arena as it is then (crowd, applause, the umpire, players walking).
"""
from __future__ import annotations

import numpy as np
from scipy import signal

RATE = 48_000
BLOCK = RATE // 100  # envelopes change every BLOCK samples
REF_SPEED = 45.0  # m/s, a hard smash's launch speed; impacts scale against it
VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410))


class Soundtrack:
    """A render's stereo sound, made in pieces as the video is written: `read(start, stop)` gives
    samples start..stop-1 as float32 (2, stop - start); `len()` is round(n_frames / fps * RATE).

    The dry court sounds are mixed into one buffer up front; reverb tail and crowd are looped noise
    under block envelopes (small), so the long arrays are never built more than once.
    """

    def __init__(self, events: dict, n_frames: int, fps: float, rng: np.random.Generator):
        self.n = int(round(n_frames / fps * RATE))
        n = self.n + (-self.n) % BLOCK  # whole envelope blocks
        lv = self.levels = _levels(rng)
        self.court = _court(events, n, rng, lv)
        self.reflections = [(int(rng.uniform(lo, hi) * RATE), g, flip) for lo, hi, g, flip in
                            ((0.011, 0.02, 0.35, True), (0.025, 0.04, 0.25, False), (0.045, 0.07, 0.18, True))]
        a = float(np.exp(-6.9 / (lv["rt60"] * RATE / BLOCK)))
        energy = _blocks(self.court, BLOCK)
        self.tail_env = (lv["wet"] * np.sqrt(2.0 * signal.lfilter([1 - a], [1, -a], energy, axis=1))).astype(np.float32)
        self.tail_noise = _loop(rng, (200, 5000), 2.3)
        self.crowd_env = (_crowd_env(n, events, rng, lv) * (lv["crowd"] * 3)).astype(np.float32)
        self.crowd_noise = _loop(rng, (150, 3000), 3.7) / 3

    def __len__(self) -> int:
        return self.n

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(0, start), min(stop, self.n)
        out = self.court[:, start:stop].copy()
        for d, g, flip in self.reflections:  # early reflections off the arena's walls
            lo = max(start, d)
            if lo < stop:
                src = self.court[:, lo - d:stop - d]
                out[:, lo - start:] += g * (src[::-1] if flip else src)
        blocks = np.arange(start, stop) // BLOCK
        out += self.tail_env[:, blocks] * _looped(self.tail_noise, start, stop)
        out += self.crowd_env[None, blocks] * _looped(self.crowd_noise, start, stop)
        return np.tanh(out, out=out)  # a gentle limiter: quiet sounds pass unchanged

    def samples(self) -> np.ndarray:
        """The whole track, (n, 2) float32 (tests; writing streams it)."""
        return np.ascontiguousarray(self.read(0, self.n).T)


def soundtrack(events: dict, n_frames: int, fps: float, rng: np.random.Generator) -> Soundtrack:
    """The sound of a render (see Soundtrack); events as `train.replay`'s frames give them."""
    return Soundtrack(events, n_frames, fps, rng)


def _court(events: dict, n: int, rng: np.random.Generator, lv: dict) -> np.ndarray:
    """Dry stereo bus (2, n) of everything heard on the court: hits, landings, steps, squeaks,
    applause, umpire."""
    court = np.zeros((2, n), np.float32)
    for h in events["hits"]:
        _add(court, int(round(h["t"] * RATE)), _impact(h["speed"], rng) * lv["hit"], _pan(h["x"]))
    for land in events["landings"]:
        _add(court, int(round(land["t"] * RATE)), _landing(land["speed"], rng) * lv["hit"], _pan(land["x"]))
    steps, squeaks = [_step(rng) for _ in range(8)], [_squeak(rng) for _ in range(6)]
    for s in events["steps"]:
        if s["speed"] > 0.3:
            level = lv["steps"] * min(s["speed"] / 4.0, 1.0) * rng.uniform(0.6, 1.0)
            _add(court, int(round(s["t"] * RATE)), steps[int(rng.integers(len(steps)))] * level, _pan(s["x"]))
    last = {}
    for s in events["squeaks"]:
        key = s.get("who", "")  # at most one squeak per player every 0.3 s
        if rng.random() < 0.6 and s["t"] - last.get(key, -9) > 0.3:
            last[key] = s["t"]
            level = lv["squeak"] * min(s["acc"] / 25.0, 1.0)
            _add(court, int(round(s["t"] * RATE)), squeaks[int(rng.integers(len(squeaks)))] * level, _pan(s["x"]))
    for r in events["rally_ends"]:
        start = int(round((r["t"] + rng.uniform(0.05, 0.3)) * RATE))
        size = 0.6 + 0.4 * min(r["strokes"] / 15.0, 1.0)
        claps = _applause(rng, size * lv["applause"])
        if start < n:
            court[:, start:start + claps.shape[1]] += claps[:, : n - start]
        call = r["t"] + rng.uniform(1.0, 2.0)
        if r["next_serve"] is None or call + 1.2 < r["next_serve"]:
            voice = _umpire(rng, lv["f0"]) * lv["umpire"]
            _add(court, int(round(call * RATE)), voice, 0.0)
    return court


def _levels(rng: np.random.Generator) -> dict:
    db = lambda lo, hi: float(10 ** (rng.uniform(lo, hi) / 20))  # noqa: E731
    return {"hit": db(-6, -1), "steps": db(-34, -24), "squeak": db(-30, -20), "applause": db(-20, -12),
            "umpire": db(-20, -12), "crowd": db(-44, -32), "rt60": float(rng.uniform(0.7, 1.6)),
            "wet": float(rng.uniform(0.08, 0.25)), "f0": float(rng.uniform(95, 190)),
            "hush": float(rng.uniform(0.35, 0.7))}


def _pan(x: float) -> float:
    """Court x (metres across, 0..6.1) -> stereo position -1..1 (the camera looks along the court)."""
    return float(np.clip((x / 6.1 - 0.5) * 0.7, -1, 1))


def _add(bus: np.ndarray, start: int, sound: np.ndarray, pan: float) -> None:
    """Mix a mono sound into a stereo bus from sample `start` (constant-power pan)."""
    n = bus.shape[1]
    if start >= n or start < 0:
        return
    stop = min(n, start + len(sound))
    angle = (pan + 1) * np.pi / 4
    seg = sound[: stop - start]
    bus[0, start:stop] += np.cos(angle) * seg
    bus[1, start:stop] += np.sin(angle) * seg


def _env(n: int, tau_s: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (tau_s * RATE)).astype(np.float32)


def _impact(speed: float, rng: np.random.Generator) -> np.ndarray:
    """A racket impact: loudness, decay and brightness from the shuttle's launch speed (m/s).

    A fast hit is a loud, short, bright crack; a slow touch a quiet, duller tock (its click decays
    slower and is cut lower, and a body tone stands out more).
    """
    f = float(np.clip(speed / REF_SPEED, 0.03, 1.3)) * rng.uniform(0.92, 1.08)
    hard = min(f, 1.0)
    n = int(0.06 * RATE)
    amp = 0.12 + 0.88 * f ** 0.9
    click = rng.normal(0, 1, n).astype(np.float32) * _env(n, 0.0005 + 0.003 * (1 - hard))
    cutoff = min(1500 + 12000 * hard, 0.45 * RATE)
    click = signal.sosfilt(signal.butter(2, cutoff, "low", fs=RATE, output="sos"), click).astype(np.float32)
    click[0] = abs(click[0]) + 1.0  # the onset is the loudest sample
    click /= max(np.abs(click).max(), 1e-6)
    t = np.arange(n) / RATE
    ping = np.sin(2 * np.pi * (rng.uniform(1300, 1700) + 900 * hard) * t) * _env(n, 0.004 + 0.006 * hard)
    body = np.sin(2 * np.pi * rng.uniform(350, 500) * t) * _env(n, 0.008)
    out = click + 0.3 * ping + 0.5 * (1 - hard) * body
    return (amp * out / max(np.abs(out).max(), 1e-6)).astype(np.float32)


def _landing(speed: float, rng: np.random.Generator) -> np.ndarray:
    n = int(0.03 * RATE)
    level = 0.05 + 0.1 * min(speed / 15.0, 1.0)
    tick = rng.normal(0, 1, n).astype(np.float32) * _env(n, 0.004)
    tick = signal.sosfilt(signal.butter(2, [400, 2500], "band", fs=RATE, output="sos"), tick)
    return (level * tick / max(np.abs(tick).max(), 1e-6)).astype(np.float32)


def _step(rng: np.random.Generator) -> np.ndarray:
    n = int(0.05 * RATE)
    thud = rng.normal(0, 1, n).astype(np.float32) * _env(n, rng.uniform(0.006, 0.014))
    thud = signal.sosfilt(signal.butter(2, rng.uniform(250, 500), "low", fs=RATE, output="sos"), thud)
    return (thud / max(np.abs(thud).max(), 1e-6)).astype(np.float32)


def _squeak(rng: np.random.Generator) -> np.ndarray:
    dur = rng.uniform(0.05, 0.16)
    t = np.arange(int(dur * RATE)) / RATE
    f0, f1 = rng.uniform(1800, 2800), rng.uniform(2500, 4200)
    freq = f0 + (f1 - f0) * t / dur + 120 * np.sin(2 * np.pi * rng.uniform(25, 60) * t)
    tone = np.sin(2 * np.pi * np.cumsum(freq) / RATE) + 0.3 * np.sin(4 * np.pi * np.cumsum(freq) / RATE)
    return (tone * np.hanning(len(t))).astype(np.float32)


def _applause(rng: np.random.Generator, level: float) -> np.ndarray:
    """Stereo applause: many short claps, swelling in, then dying away."""
    attack, hold, decay = rng.uniform(0.15, 0.4), rng.uniform(0.4, 1.5), rng.uniform(1.0, 2.5)
    n = int((attack + hold + decay) * RATE)
    t = np.arange(n) / RATE
    env = np.clip(t / attack, 0, 1) * np.where(t < attack + hold, 1.0, np.exp(-(t - attack - hold) / (decay / 3)))
    rate = rng.uniform(150, 500)  # claps per second
    out = np.zeros((2, n), np.float32)
    k = int(0.012 * RATE)
    for ch in range(2):
        train = np.zeros(n, np.float32)
        count = rng.poisson(rate * n / RATE)
        train[rng.integers(0, n, count)] = rng.uniform(0.3, 1.0, count)
        clap = rng.normal(0, 1, k).astype(np.float32) * _env(k, rng.uniform(0.002, 0.005))
        lo = rng.uniform(700, 1200)
        clap = signal.sosfilt(signal.butter(2, [lo, lo * rng.uniform(2.0, 3.5)], "band", fs=RATE, output="sos"), clap)
        out[ch] = signal.fftconvolve(train, clap)[:n] * env
    peak = max(np.abs(out).max(), 1e-6)
    return (out * (level / peak)).astype(np.float32)


def _umpire(rng: np.random.Generator, f0: float) -> np.ndarray:
    """A call of 2-5 syllables: a glottal pulse train through vowel formants, as over a PA."""
    parts = []
    syllables = int(rng.integers(2, 6))
    for k in range(syllables):
        dur = rng.uniform(0.14, 0.32)
        n = int(dur * RATE)
        pitch = f0 * (1.1 - 0.2 * k / max(syllables - 1, 1)) * rng.uniform(0.95, 1.05)  # falling intonation
        phase = np.cumsum(np.full(n, pitch / RATE) * (1 + 0.01 * rng.normal(0, 1, n)))
        pulses = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float32)
        vowel = VOWELS[int(rng.integers(len(VOWELS)))]
        voiced = np.zeros(n, np.float32)
        for j, fc in enumerate(vowel):
            bw = 80 + 40 * j
            r = np.exp(-np.pi * bw / RATE)
            a = [1, -2 * r * np.cos(2 * np.pi * fc / RATE), r * r]
            voiced += signal.lfilter([1 - r], a, pulses).astype(np.float32) * (1.0, 0.6, 0.3)[j]
        env = np.minimum(1, np.arange(n) / (0.02 * RATE)) * np.minimum(1, (n - np.arange(n)) / (0.06 * RATE))
        syl = voiced * env
        if rng.random() < 0.5:  # a consonant: a burst of hiss before the vowel
            m = int(0.04 * RATE)
            hiss = rng.normal(0, 0.3, m).astype(np.float32) * np.hanning(m)
            syl = np.concatenate([hiss * np.abs(syl).max(), syl])
        parts += [syl, np.zeros(int(rng.uniform(0.04, 0.12) * RATE), np.float32)]
    voice = np.concatenate(parts)
    voice = signal.sosfilt(signal.butter(2, [300, 3400], "band", fs=RATE, output="sos"), voice)
    return (voice / max(np.abs(voice).max(), 1e-6)).astype(np.float32)


def _loop(rng: np.random.Generator, band: tuple[float, float], seconds: float) -> np.ndarray:
    """(2, m) band-limited noise, unit deviation: a few seconds per channel, repeated by `_looped`."""
    m = int(seconds * RATE)
    sos = signal.butter(2, band, "band", fs=RATE, output="sos")
    base = signal.sosfilt(sos, rng.normal(0, 1, (2, m + 2000)).astype(np.float32), axis=1)[:, 2000:]
    return (base / max(float(base.std()), 1e-6)).astype(np.float32)


def _looped(loop: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Samples start..stop-1 of the loop repeated forever (the right channel a third of it later)."""
    m = loop.shape[1]
    idx = np.arange(start, stop)
    return np.stack([loop[0, idx % m], loop[1, (idx + m // 3) % m]])


def _blocks(x: np.ndarray, hop: int) -> np.ndarray:
    """Mean square per block of `hop` samples, (channels, n / hop); n a multiple of hop."""
    c, n = x.shape
    out = np.empty((c, n // hop), np.float64)
    step = hop * 4096
    for lo in range(0, n, step):  # in pieces: no second full-length array
        part = x[:, lo:lo + step].astype(np.float64)
        out[:, lo // hop:(lo + part.shape[1]) // hop] = (part ** 2).reshape(c, -1, hop).mean(2)
    return out


def _crowd_env(n: int, events: dict, rng: np.random.Generator, lv: dict) -> np.ndarray:
    """Crowd level per BLOCK: a murmur, hushed while a rally is played, swelling into a cheer at its end."""
    m = n // BLOCK
    env = 1 + 0.25 * np.convolve(rng.normal(0, 1, m), np.hanning(101) / 50, "same")
    times = np.arange(m) * BLOCK / RATE
    for r in events["rally_ends"]:
        serve = r.get("serve")
        if serve is not None:
            env[(times > serve - 1.0) & (times < r["t"])] *= lv["hush"]
        cheer = (times >= r["t"]) & (times < r["t"] + 3.0)
        env[cheer] *= 1 + rng.uniform(0.5, 1.5) * np.exp(-(times[cheer] - r["t"]) / 1.0)
    return np.convolve(env, np.hanning(31) / np.hanning(31).sum(), "same")
