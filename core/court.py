"""Badminton court geometry: camera pixels <-> court metres, sides and hit zones.

Court frame: X across the court (0 = image-left sideline, 6.10 m = image-right),
Y along it (0 = far/upper baseline, 13.40 m = near/bottom baseline), net at Y = 6.70.
Left/right are always the camera's view, never the hitter's, so the same zone
looks the same on screen for both players (a mirrored convention is invisible
to a model that only sees pixels).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COURT_WIDTH = 6.10  # doubles sidelines, metres
COURT_LENGTH = 13.40
NET_Y = COURT_LENGTH / 2
SHORT_SERVICE_DIST = 1.98  # from the net
SINGLES_INSET = 0.46  # singles sideline inside the doubles one
NET_DEPTH = 2.2  # depth bands of a half court, metres from the net
BACK_DEPTH = 4.5


@dataclass(frozen=True)
class Court:
    """A camera view of the court, given by the image pixels of its four outer corners."""

    upleft: tuple[float, float]
    upright: tuple[float, float]
    downleft: tuple[float, float]
    downright: tuple[float, float]

    @property
    def to_image_matrix(self) -> np.ndarray:
        src = [(0, 0), (COURT_WIDTH, 0), (0, COURT_LENGTH), (COURT_WIDTH, COURT_LENGTH)]
        dst = [self.upleft, self.upright, self.downleft, self.downright]
        return _homography(src, dst)

    def to_image(self, x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
        """Court metres -> image pixels, shape (..., 2)."""
        return _apply(self.to_image_matrix, x, y)

    def to_court(self, px: np.ndarray | float, py: np.ndarray | float) -> np.ndarray:
        """Image pixels -> court metres, shape (..., 2)."""
        return _apply(np.linalg.inv(self.to_image_matrix), px, py)

    def side(self, px: float, py: float) -> str:
        """'upper' or 'bottom': which half of the net a point on the floor is in."""
        return "upper" if float(self.to_court(px, py)[1]) < NET_Y else "bottom"

    def scaled(self, sx: float, sy: float) -> "Court":
        """The same view in an image resized by (sx, sy)."""
        s = lambda p: (p[0] * sx, p[1] * sy)  # noqa: E731
        return Court(s(self.upleft), s(self.upright), s(self.downleft), s(self.downright))


def zone_of(x: float, y: float) -> int:
    """Zone id (the reference system's hit-area ids) of a court point, in the hitter's half.

    Depth from the net: < 2.2 m net, 2.2-4.5 m middle, beyond that backcourt; left/right are
    thirds of the court width in the camera's view. Middle depths are one zone (5).
    """
    return int(zones_of(np.array([x], float), np.array([y], float))[0])


def zones_of(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """zone_of over arrays of court points (NaN: -1), e.g. every stroke's landing point."""
    out = np.full(len(x), -1, np.int32)
    ok = ~(np.isnan(x) | np.isnan(y))
    depth = np.abs(y[ok] - NET_Y)
    third = np.clip((x[ok] / (COURT_WIDTH / 3)).astype(int), 0, 2)  # 0 left, 1 centre, 2 right
    out[ok] = np.where(depth < NET_DEPTH, np.array([2, 7, 1])[third],
                       np.where(depth < BACK_DEPTH, 5, np.array([4, 9, 3])[third]))
    return out


def _homography(src: list, dst: list) -> np.ndarray:
    """3x3 projective map from 4 point pairs (direct linear transform)."""
    rows = []
    for (x, y), (u, v) in zip(src, dst):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
    _, _, vt = np.linalg.svd(np.asarray(rows, dtype=np.float64))
    h = vt[-1].reshape(3, 3)
    return h / h[2, 2]


def _apply(h: np.ndarray, x, y) -> np.ndarray:
    pts = np.stack([np.asarray(x, float), np.asarray(y, float), np.ones_like(np.asarray(x, float))], -1)
    out = pts @ h.T
    return out[..., :2] / out[..., 2:3]
