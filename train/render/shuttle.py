"""Shuttle flights: a 3-D path per stroke whose arc, speed profile and contact height follow the
stroke class, and how the shuttle is drawn.

Horizontal progress u along the straight floor line from contact to contact decelerates like a
shuttle under heavy drag, u(tau) = (1 - exp(-k tau)) / (1 - exp(-k)) for flight-time fraction tau.
Height = the straight line between the two contact heights plus an arc bump peaking at u = peak
(or over the net), scaled so the top reaches `apex`; every flight clears the net tape.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from core.court import NET_Y
from train.render.scene import ONE, SHIFT, fixed

NET_CLEARANCE = 1.62  # metres; the tape is 1.524-1.55


@dataclass(frozen=True)
class Profile:
    contact_z: float  # racket contact height of this stroke, metres
    apex: float  # top of the arc, metres (0: no arc, a straight hit down)
    drag: float  # deceleration constant k
    peak: float | None  # where along the flight the arc is highest; None = over the net
    flight_s: float  # flight time to the floor when no next stroke bounds it


PROFILES: dict[str, Profile] = {
    "short serve": Profile(1.05, 1.85, 1.0, None, 0.9),
    "long serve": Profile(0.95, 6.5, 2.6, 0.62, 1.8),
    "smash": Profile(2.6, 0.0, 1.8, 0.5, 0.45),
    "clear": Profile(2.55, 6.0, 2.6, 0.62, 1.6),
    "drop": Profile(2.5, 2.9, 2.0, 0.35, 1.0),
    "lob": Profile(0.55, 5.8, 2.4, 0.62, 1.6),
    "net shot": Profile(0.65, 1.75, 0.8, None, 0.9),
    "return net": Profile(0.55, 1.8, 1.2, None, 0.9),
    "cross-court net shot": Profile(0.7, 1.72, 0.8, None, 0.9),
    "push": Profile(1.1, 1.9, 1.1, None, 0.75),
    "rush": Profile(2.05, 0.0, 0.9, 0.5, 0.35),
    "drive": Profile(1.45, 1.8, 1.3, None, 0.7),
}
UNKNOWN = Profile(1.3, 2.3, 1.4, None, 1.0)


def profile(stroke: str | None) -> Profile:
    return PROFILES.get(stroke or "", UNKNOWN)


class Flight:
    """One shot from `start` (at t0) to `end` (at t1), points (x, y, z) in court metres."""

    def __init__(self, start, end, t0: float, t1: float, prof: Profile):
        self.start, self.end = np.asarray(start, float), np.asarray(end, float)
        self.t0, self.t1 = t0, max(t1, t0 + 1e-3)
        self.k = max(prof.drag, 0.05)
        y0, y1 = self.start[1], self.end[1]
        crosses = (y0 - NET_Y) * (y1 - NET_Y) < 0
        u_net = (NET_Y - y0) / (y1 - y0) if crosses else 0.5
        self.peak = float(np.clip(prof.peak if prof.peak is not None else u_net, 0.15, 0.85))
        z0, z1 = self.start[2], self.end[2]
        amp = max(0.0, prof.apex - (z0 + (z1 - z0) * self.peak)) if prof.apex > 0 else 0.0
        if crosses:  # lift the arc until the net is cleared
            need = NET_CLEARANCE - (z0 + (z1 - z0) * u_net)
            amp = max(amp, need / max(self._bump(np.array([u_net]))[0], 0.05))
        self.amp = amp

    def _bump(self, u: np.ndarray) -> np.ndarray:
        a, b = 3 * self.peak, 3 * (1 - self.peak)
        u = np.clip(u, 0, 1)
        return (u ** a * (1 - u) ** b) / (self.peak ** a * (1 - self.peak) ** b)

    def at(self, t: np.ndarray) -> np.ndarray:
        """Positions (n, 3) at times t (clipped to the flight)."""
        tau = np.clip((np.asarray(t, float) - self.t0) / (self.t1 - self.t0), 0, 1)
        u = (1 - np.exp(-self.k * tau)) / (1 - np.exp(-self.k))
        pos = self.start + (self.end - self.start) * u[:, None]
        pos[:, 2] += self.amp * self._bump(u)
        return pos


def draw_shadow(canvas: np.ndarray, floor_px: np.ndarray, i: int, radius: float, colour) -> None:
    """The shuttle's shadow on the floor at frame i (floor_px: (n, 2), NaN when none)."""
    p = floor_px[i]
    if np.isfinite(p[0]):
        r = int(round(radius * ONE))
        cv2.ellipse(canvas, tuple(fixed(p)), (int(r * 1.3), int(r * 0.7)), 0, 0, 360, colour, -1,
                    cv2.LINE_AA, SHIFT)


def draw_shuttle(canvas: np.ndarray, track_px: np.ndarray, i: int, radius: float, first: int = 0) -> None:
    """The shuttle at frame i: a short motion trail and a bright round head.

    track_px: (n, 2) image pixels of the shuttle per frame, NaN while it is out of play; first: the
    first frame of the current camera shot (the trail never reaches across a cut).
    """
    p = track_px[i]
    if not np.isfinite(p[0]):
        return
    r = int(round(radius * ONE))
    head = fixed(p)
    width = max(1, int(round(radius * 1.2)))
    prev = head
    for back, shade in ((1, 215), (2, 160)):
        j = i - back
        if j < first or not np.isfinite(track_px[j][0]):
            break
        q = fixed(track_px[j])
        cv2.line(canvas, tuple(prev), tuple(q), (shade, shade, shade), width, cv2.LINE_AA, SHIFT)
        prev = q
    cv2.circle(canvas, tuple(head), r, (252, 252, 252), -1, cv2.LINE_AA, SHIFT)
