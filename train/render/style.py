"""Seeded look of one render: colours, lighting, noise, camera offset, player builds.

Everything here is per render (or per player), never per stroke, so no pixel colour can tell a
stroke type, zone or side.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np


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

    def lut(self) -> np.ndarray:
        """256-entry lookup table applying gain, bias and gamma."""
        x = np.arange(256, dtype=np.float64) / 255.0
        y = np.clip(x ** self.gamma * self.gain + self.bias / 255.0, 0, 1)
        return (y * 255 + 0.5).astype(np.uint8)


def make_style(rng: np.random.Generator) -> Style:
    """Draw a style; courts stay mid-dark so the white shuttle and lines keep their contrast."""
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
