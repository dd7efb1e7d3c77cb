"""The render's sound: impacts start at the hit frames' samples, louder and brighter for faster
shuttles, levels vary with the seed, and in a rendered mp4 the decoded AAC track keeps that timing
and carries no impact inside a replay."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import signal

from train.render.audio import RATE, soundtrack
from train.render.cutaways import CHANCE

FPS = 25


def _events(hit_frames, speeds, **extra) -> dict:
    ev = {"hits": [{"t": f / FPS, "speed": v, "x": 3.0, "z": 1.0} for f, v in zip(hit_frames, speeds)],
          "landings": [], "steps": [], "squeaks": [], "rally_ends": []}
    ev.update(extra)
    return ev


def _highpass(x: np.ndarray, hz: float = 5000) -> np.ndarray:
    return signal.sosfilt(signal.butter(4, hz, "high", fs=RATE, output="sos"), x)


def _onset(x: np.ndarray, expected: int, before: int = 2000) -> tuple[int, float, float]:
    """(onset offset from `expected` in samples, peak just after it, loudest level before it)."""
    env = np.abs(x)
    after = env[expected - 48: expected + 480]
    peak = float(after.max())
    onset = int(np.argmax(after > 0.5 * peak)) - 48
    return onset, peak, float(env[expected - before: expected - 48].max())


def test_impacts_start_at_the_hit_samples_and_follow_the_shuttle_speed():
    frames, speeds = [25, 61, 98, 140, 171], [4.0, 45.0, 12.0, 30.0, 8.0]
    track = soundtrack(_events(frames, speeds), 200, FPS, np.random.default_rng(1))
    x = track.samples()
    assert x.shape == (int(round(200 / FPS * RATE)), 2) and x.dtype == np.float32
    mono = x.mean(1)
    peaks, brightness = [], []
    for f in frames:
        expected = int(round(f / FPS * RATE))
        onset, peak, quiet = _onset(mono, expected)
        assert -1 <= onset <= 2, (f, onset)
        assert peak > 2 * quiet  # above the crowd even for a slow touch
        peaks.append(peak)
        spec = np.abs(np.fft.rfft(mono[expected: expected + 480])) ** 2
        freqs = np.fft.rfftfreq(480, 1 / RATE)
        brightness.append(float((spec * freqs).sum() / spec.sum()))
    order = np.argsort(speeds)
    assert list(np.argsort(peaks)) == list(order)  # louder for a faster shuttle
    assert brightness[1] > brightness[0] * 1.3  # a smash-speed hit is brighter than a slow touch


def test_levels_vary_with_the_seed_and_repeat_with_it():
    ev = _events([30, 80], [20.0, 20.0], steps=[{"t": t, "speed": 3.0, "x": 2.0} for t in np.arange(0, 6, 0.3)],
                 rally_ends=[{"t": 4.0, "strokes": 6, "serve": 1.0, "next_serve": None}])
    a = soundtrack(ev, 150, FPS, np.random.default_rng(3)).samples()
    b = soundtrack(ev, 150, FPS, np.random.default_rng(3)).samples()
    c = soundtrack(ev, 150, FPS, np.random.default_rng(4)).samples()
    assert np.array_equal(a, b)
    quiet = slice(int(0.2 * RATE), int(1.0 * RATE))  # crowd and steps only
    ra, rc = (float(np.sqrt((s[quiet] ** 2).mean())) for s in (a, c))
    assert abs(20 * np.log10(ra / rc)) > 0.5
    # reading in pieces gives the same samples as reading at once
    track = soundtrack(ev, 150, FPS, np.random.default_rng(3))
    pieces = np.concatenate([track.read(k, min(k + 1000, len(track))) for k in range(0, len(track), 1000)], 1)
    assert np.allclose(pieces.T, a)


def _replay_seed() -> int:
    """A seed whose render of one rally is followed by a slow-motion replay (train.replay draws the
    cut-aways from default_rng([seed, 3]), the replay first)."""
    return next(s for s in range(100) if np.random.default_rng([s, 3]).random() < CHANCE["replay"])


def test_rendered_sound_is_aligned_and_replays_carry_no_impacts(tmp_path):
    av = pytest.importorskip("av")
    from tests.test_replay import SHUTTLESET, VIDEO, _copy_set

    if not (SHUTTLESET / VIDEO / "set1.csv").is_file():
        pytest.skip("ShuttleSet annotations not found beside the repo")
    from core.annotations import load_shuttleset_set
    from train.replay import render_set

    src = _copy_set(tmp_path / "src", {3})
    out = render_set(src, tmp_path / "out", seed=_replay_seed(), size=(64, 36))
    seg = json.loads(out.with_suffix(".segments.json").read_text())
    replays = [c for c in seg["cutaways"] if c["kind"] == "replay"]
    assert replays and seg["audio"] is True
    with av.open(str(out.with_suffix(".mp4"))) as container:
        stream = container.streams.audio[0]
        assert stream.rate == RATE
        x = np.concatenate([f.to_ndarray() for f in container.decode(stream)], 1).mean(0)
    assert len(x) >= round(seg["frames"] / FPS * RATE)
    hp = _highpass(x)
    peaks = []
    for s in load_shuttleset_set(out).strokes:
        expected = int(round(s.frame / FPS * RATE))
        onset, peak, _ = _onset(hp, expected, before=480)
        assert -48 <= onset <= 96, (s.ball_round, onset)  # within 1 ms before .. 2 ms after
        peaks.append(peak)
    for r in replays:
        lo, hi = (int(round(f / FPS * RATE)) for f in (r["start_frame"], r["end_frame"] + 1))
        assert np.abs(hp[lo:hi]).max() < 0.5 * np.median(peaks)
