"""Seeded look of one render: colours, lighting, noise, camera, player builds, lens and codec.

Everything here is per render (or per player), never per stroke, so no pixel colour can tell a
stroke type, zone or side.

Two draws: `make_style(rng)` is the narrow broadcast look ("broadcast": the detector's renders and
the tests keep it), and `make_style(rng, family=...)` draws from a wide look family
(`FAMILIES`): camera tilt, pan, roll, zoom and position, court and surround colours, lighting,
player sizes and skin tones, motion blur, defocus, noise and compression, as broadcasts differ.
A family fixes the court palette and the camera's range, so one family can be left out of
training entirely and the model measured on it.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from core.encode import CRF


def _bgr(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))
    return int(b * 255), int(g * 255), int(r * 255)


@dataclass(frozen=True)
class PlayerLook:
    shirt: tuple[int, int, int]
    shorts: tuple[int, int, int]
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    shoes: tuple[int, int, int]
    height: float  # metres
    build: float  # width factor
    left_handed: bool


@dataclass(frozen=True)
class Style:
    court: tuple[int, int, int]
    mat: tuple[int, int, int]  # the playing mat around the lines
    floor: tuple[int, int, int]  # arena floor beyond the mat
    wall: tuple[int, int, int]
    boards: tuple[tuple[int, int, int], ...]  # advertising boards (plain colour blocks)
    lines: tuple[int, int, int]
    net: tuple[int, int, int]
    posts: tuple[int, int, int]
    players: dict  # 'A' / 'B' -> PlayerLook
    gain: float
    bias: float
    gamma: float
    noise: float  # sensor noise sigma, grey levels
    zoom: float  # camera zoom about the image centre
    shift: tuple[float, float]  # camera offset, fraction of the image size
    jitter: float  # camera shake amplitude, pixels
    vignette: float
    # the wide looks only (the narrow look keeps these defaults: a straight camera, sharp frames)
    tilt: float = 0.0  # camera rotations, degrees: about the image's x axis (higher or lower view),
    pan: float = 0.0  # its y axis (the court off to one side) and its optical axis
    roll: float = 0.0
    blur: float = 0.0  # motion blur: share of the previous frame kept in each frame
    defocus: float = 0.0  # Gaussian sigma, in pixels of a 640-wide frame
    light: tuple[float, float] = (0.0, 0.0)  # lighting falloff across / down the frame (gain at the edges)
    crf: int = CRF  # H.264 quality

    def lut(self) -> np.ndarray:
        """256-entry lookup table applying gain, bias and gamma."""
        x = np.arange(256, dtype=np.float64) / 255.0
        y = np.clip(x ** self.gamma * self.gain + self.bias / 255.0, 0, 1)
        return (y * 255 + 0.5).astype(np.uint8)


@dataclass(frozen=True)
class Family:
    """A family of wide looks: court hues and the camera's range."""

    hues: tuple[float, ...]
    tilt: tuple[float, float]  # degrees
    zoom: tuple[float, float]
    pan: float  # at most, degrees either way


FAMILIES = {
    "arena": Family(hues=(0.33, 0.38), tilt=(-3.0, 3.0), zoom=(0.95, 1.08), pan=2.0),
    "high": Family(hues=(0.55, 0.6), tilt=(2.0, 7.0), zoom=(0.85, 1.0), pan=3.0),
    "low": Family(hues=(0.98, 0.05), tilt=(-7.0, -2.0), zoom=(0.95, 1.1), pan=3.0),
    "wide": Family(hues=(0.47, 0.38), tilt=(-2.0, 4.0), zoom=(0.8, 0.92), pan=5.0),
    # left out of the demo model's training: violet courts seen from a camera panned off-centre
    "offside": Family(hues=(0.75, 0.82), tilt=(-4.0, 4.0), zoom=(0.95, 1.12), pan=7.0),
}


NARROW = "broadcast"  # the narrow look's name where a family is asked for


def make_style(rng: np.random.Generator, family: str = NARROW) -> Style:
    """Draw a style of a family (NARROW: the narrow broadcast look); courts stay mid-dark so the
    white shuttle and lines keep their contrast."""
    if family != NARROW:
        return _wide_style(rng, FAMILIES[family])
    court_hue = rng.choice([0.33, 0.38, 0.55, 0.6, 0.47, 0.98]) + rng.uniform(-0.03, 0.03)
    court_v = rng.uniform(0.35, 0.6)
    court = _bgr(court_hue, rng.uniform(0.45, 0.85), court_v)
    mat = _bgr(court_hue + rng.uniform(-0.04, 0.04), rng.uniform(0.4, 0.85), court_v * rng.uniform(0.8, 1.1))
    floor = _bgr(rng.uniform(0, 1), rng.uniform(0.2, 0.7), rng.uniform(0.15, 0.45))
    wall = _bgr(rng.uniform(0, 1), rng.uniform(0.1, 0.6), rng.uniform(0.05, 0.25))
    boards = tuple(_bgr(rng.uniform(0, 1), rng.uniform(0.3, 0.9), rng.uniform(0.25, 0.65))
                   for _ in range(int(rng.integers(3, 7))))
    line = int(rng.integers(215, 250))
    players = {}
    hues = rng.uniform(0, 1) + np.array([0.0, rng.uniform(0.3, 0.7)])  # two clearly different shirts
    for key, hue in zip(("A", "B"), hues):
        players[key] = PlayerLook(
            shirt=_bgr(hue, rng.uniform(0.5, 1.0), rng.uniform(0.55, 1.0)),
            shorts=_bgr(rng.uniform(0, 1), rng.uniform(0.0, 0.8), rng.uniform(0.1, 0.9)),
            skin=_bgr(rng.uniform(0.04, 0.09), rng.uniform(0.3, 0.6), rng.uniform(0.45, 0.9)),
            hair=_bgr(0.08, 0.5, rng.uniform(0.05, 0.3)),
            shoes=_bgr(rng.uniform(0, 1), rng.uniform(0, 0.5), rng.uniform(0.6, 1.0)),
            height=float(rng.uniform(1.70, 1.95)),
            build=float(rng.uniform(0.85, 1.2)),
            left_handed=bool(rng.random() < 0.12),
        )
    return Style(
        court=court, mat=mat, floor=floor, wall=wall, boards=boards,
        lines=(line, line, line), net=_bgr(0, 0, rng.uniform(0.05, 0.2)), posts=_bgr(rng.uniform(0, 1), 0.6, 0.5),
        players=players,
        gain=float(rng.uniform(0.85, 1.15)), bias=float(rng.uniform(-12, 12)), gamma=float(rng.uniform(0.85, 1.15)),
        noise=float(rng.uniform(1.0, 4.0)),
        zoom=float(rng.uniform(0.95, 1.05)), shift=(float(rng.uniform(-0.03, 0.03)), float(rng.uniform(-0.03, 0.03))),
        jitter=float(rng.uniform(0.0, 1.5)), vignette=float(rng.uniform(0.0, 0.25)),
    )


def _wide_style(rng: np.random.Generator, fam: Family) -> Style:
    court_hue = rng.choice(fam.hues) + rng.uniform(-0.03, 0.03)
    court_v = rng.uniform(0.3, 0.65)
    court = _bgr(court_hue, rng.uniform(0.35, 0.9), court_v)
    mat = _bgr(court_hue + rng.uniform(-0.06, 0.06), rng.uniform(0.3, 0.9), court_v * rng.uniform(0.7, 1.15))
    floor = _bgr(rng.uniform(0, 1), rng.uniform(0.1, 0.8), rng.uniform(0.1, 0.55))
    wall = _bgr(rng.uniform(0, 1), rng.uniform(0.05, 0.7), rng.uniform(0.03, 0.35))
    boards = tuple(_bgr(rng.uniform(0, 1), rng.uniform(0.2, 1.0), rng.uniform(0.2, 0.8))
                   for _ in range(int(rng.integers(2, 8))))
    line = int(rng.integers(200, 252))
    players = {}
    hues = rng.uniform(0, 1) + np.array([0.0, rng.uniform(0.25, 0.75)])
    for key, hue in zip(("A", "B"), hues):
        skin_v = rng.uniform(0.2, 0.95)  # dark to light skin
        players[key] = PlayerLook(
            shirt=_bgr(hue, rng.uniform(0.2, 1.0), rng.uniform(0.3, 1.0)),
            shorts=_bgr(rng.uniform(0, 1), rng.uniform(0.0, 0.9), rng.uniform(0.05, 0.95)),
            skin=_bgr(rng.uniform(0.02, 0.1), rng.uniform(0.25, 0.7), skin_v),
            hair=_bgr(rng.uniform(0.02, 0.12), rng.uniform(0.2, 0.7), rng.uniform(0.03, 0.6)),
            shoes=_bgr(rng.uniform(0, 1), rng.uniform(0, 0.8), rng.uniform(0.3, 1.0)),
            height=float(rng.uniform(1.60, 2.00)),
            build=float(rng.uniform(0.75, 1.3)),
            left_handed=bool(rng.random() < 0.12),
        )
    return Style(
        court=court, mat=mat, floor=floor, wall=wall, boards=boards,
        lines=(line, line, line), net=_bgr(0, 0, rng.uniform(0.03, 0.3)), posts=_bgr(rng.uniform(0, 1), 0.6, 0.5),
        players=players,
        gain=float(rng.uniform(0.75, 1.25)), bias=float(rng.uniform(-20, 20)), gamma=float(rng.uniform(0.75, 1.35)),
        noise=float(rng.uniform(0.5, 7.0)),
        zoom=float(rng.uniform(*fam.zoom)), shift=(float(rng.uniform(-0.05, 0.05)), float(rng.uniform(-0.05, 0.05))),
        jitter=float(rng.uniform(0.0, 2.0)), vignette=float(rng.uniform(0.0, 0.4)),
        tilt=float(rng.uniform(*fam.tilt)), pan=float(rng.uniform(-fam.pan, fam.pan)), roll=float(rng.uniform(-2, 2)),
        blur=float(rng.choice([0.0, rng.uniform(0.1, 0.5)])), defocus=float(rng.choice([0.0, rng.uniform(0.3, 1.5)])),
        light=(float(rng.uniform(-0.25, 0.25)), float(rng.uniform(-0.25, 0.25))),
        crf=int(rng.integers(18, 33)),
    )
