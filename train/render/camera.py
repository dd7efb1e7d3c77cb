"""A pinhole camera recovered from the court's four image corners.

The corners give the floor homography H (court metres -> pixels). Assuming square pixels and the
principal point at the image centre, H = K [r1 r2 t] fixes the focal length f (r1, r2 must be
orthonormal), and r3 = r1 x r2 adds the vertical axis, so heights above the floor (net, players,
shuttle) project with the same perspective as the lines. On the floor (z = 0) the projection is
exactly the court's homography.
"""
from __future__ import annotations

import numpy as np

from core.court import COURT_WIDTH, NET_Y, Court


class Camera:
    """Projects court points (x across, y along, z up; metres) to image pixels."""

    def __init__(self, court: Court, size: tuple[int, int]):
        self.court = court
        self.size = size
        hmat = court.to_image_matrix
        w, h = size
        c = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1]], float)
        a = c @ hmat
        f = _focal(a, w)
        k_inv = np.diag([1 / f, 1 / f, 1.0])
        m = k_inv @ a
        lam = 2.0 / (np.linalg.norm(m[:, 0]) + np.linalg.norm(m[:, 1]))
        r1, r2 = lam * m[:, 0], lam * m[:, 1]
        r3 = np.cross(r1, r2)
        r3 *= np.sqrt(np.linalg.norm(r1) * np.linalg.norm(r2)) / np.linalg.norm(r3)
        k = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], float)
        # the floor columns are rebuilt from H itself so that z = 0 projects exactly as the court
        floor = hmat * lam
        self.p = np.column_stack([floor[:, 0], floor[:, 1], k @ r3, floor[:, 2]])
        # up must move points up the image (smaller y) above the middle of the court
        if self.project(COURT_WIDTH / 2, NET_Y, 1.0)[1] > self.project(COURT_WIDTH / 2, NET_Y, 0.0)[1]:
            self.p[:, 2] *= -1
        self.focal = f

    def project(self, x, y, z) -> np.ndarray:
        """Court metres (broadcastable arrays) -> pixels, shape (..., 2)."""
        x, y, z = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float), np.asarray(z, float))
        pts = np.stack([x, y, z, np.ones_like(x)], -1) @ self.p.T
        return pts[..., :2] / pts[..., 2:3]

    def project_points(self, pts: np.ndarray) -> np.ndarray:
        """(N, 3) court points -> (N, 2) pixels."""
        q = pts @ self.p[:, :3].T + self.p[:, 3]
        return q[:, :2] / q[:, 2:3]

    def metre_px(self, x: float, y: float) -> float:
        """Image length of one metre across the court at a floor point (for line widths, sizes)."""
        a, b = self.project([x - 0.5, x + 0.5], [y, y], [0.0, 0.0])
        return float(np.hypot(*(b - a)))


def _focal(a: np.ndarray, width: int) -> float:
    """Focal length in pixels from the centred floor homography (orthonormal r1, r2)."""
    (a1x, a2x, _), (a1y, a2y, _), (a1z, a2z, _) = a
    candidates = []
    den = a1z ** 2 - a2z ** 2
    if abs(den) > 1e-12:
        candidates.append(-((a1x ** 2 + a1y ** 2) - (a2x ** 2 + a2y ** 2)) / den)
    den = a1z * a2z
    if abs(den) > 1e-12:
        candidates.append(-(a1x * a2x + a1y * a2y) / den)
    for f2 in candidates:
        if np.isfinite(f2) and (0.3 * width) ** 2 < f2 < (30 * width) ** 2:
            return float(np.sqrt(f2))
    return 1.5 * width  # a degenerate view: a plausible broadcast focal length


def reframed(cam: Camera, matrix: np.ndarray) -> Camera:
    """The same camera with an image-plane map applied (a zoom or pan: another framing, as a
    broadcast's second camera with a longer lens at about the same place)."""
    out = object.__new__(Camera)
    out.__dict__.update(cam.__dict__)
    out.p = np.asarray(matrix, float) @ cam.p
    out.focal = cam.focal * float(np.sqrt(abs(np.linalg.det(np.asarray(matrix, float)[:2, :2]))))
    return out
