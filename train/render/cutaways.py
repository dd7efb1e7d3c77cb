"""Broadcast cut-aways in the pause between rallies: what is shown, for how long, from which framing.

After a rally the director cuts away (hard cuts) to some of:
- `replay`: the end of the rally again, slowed down (0.3-0.5x), from a tighter framing;
- `closeup`: one player, framed tight (2.2-3.2x zoom on him);
- `crowd`: the stands, a noisy textured image with a slow pan;
- `walkback`: the players walking back to their places, from a closer framing.
Then the main camera comes back for the next serve. Which of them follow a rally, their order and
lengths come from the render's seed, never from a stroke's label.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

KINDS = ("replay", "closeup", "crowd", "walkback")
CHANCE = {"replay": 0.45, "closeup": 0.5, "crowd": 0.25, "walkback": 0.35}
DURATION_S = {"closeup": (1.2, 2.4), "crowd": (1.0, 2.0), "walkback": (1.5, 2.5)}
REPLAY_RATE = (0.3, 0.5)
REPLAY_SOURCE_S = (1.2, 2.4)  # how much of the rally's end a replay shows, in live seconds
REPLAY_AFTER_S = 0.4  # a replay runs on this long after the last hit


@dataclass
class Cut:
    """One cut-away shot: frames start..end (inclusive)."""

    kind: str
    start: int
    end: int
    zoom: float = 1.0
    centre: tuple[float, float, float] = (3.05, 6.7, 1.0)  # court point the framing centres on
    who: str = "A"  # closeup: the player framed
    src_t0: float = 0.0  # replay: live time shown on its first frame
    rate: float = 1.0  # replay: live seconds per second

    def as_json(self) -> dict:
        return {"kind": self.kind, "start_frame": self.start, "end_frame": self.end}


def plan(rng: np.random.Generator, rally_first_t: float, rally_last_t: float, fps: float,
         start: int) -> list[Cut]:
    """The cut-aways after one rally, from frame `start` on (consecutive, no gaps).

    rally_first_t / rally_last_t: live times of the rally's first and last hits. A close-up's
    framing centre is set by the renderer (where its player is during the shot).
    """
    cuts: list[Cut] = []
    frame = start
    if rng.random() < CHANCE["replay"]:
        rate = float(rng.uniform(*REPLAY_RATE))
        span = float(rng.uniform(*REPLAY_SOURCE_S))
        t_end = rally_last_t + REPLAY_AFTER_S
        t0 = max(rally_first_t - 0.5, t_end - span)
        n = max(1, int(round((t_end - t0) / rate * fps)))
        cuts.append(Cut("replay", frame, frame + n - 1, zoom=float(rng.uniform(1.3, 1.8)),
                        centre=(float(rng.uniform(1.5, 4.6)), float(rng.uniform(4.5, 8.9)), 0.8),
                        src_t0=t0, rate=rate))
        frame += n
    others = [k for k in KINDS[1:] if rng.random() < CHANCE[k]]
    for kind in rng.permutation(others):
        lo, hi = DURATION_S[kind]
        n = max(1, int(round(rng.uniform(lo, hi) * fps)))
        cut = Cut(str(kind), frame, frame + n - 1)
        if kind == "closeup":
            cut.who = "A" if rng.random() < 0.5 else "B"
            cut.zoom = float(rng.uniform(2.2, 3.2))
        elif kind == "walkback":
            cut.zoom = float(rng.uniform(1.3, 1.7))
            cut.centre = (float(rng.uniform(2.0, 4.1)), float(rng.uniform(4.0, 9.4)), 0.5)
        cuts.append(cut)
        frame += n
    return cuts


def zoom_matrix(centre_px, zoom: float, size: tuple[int, int]) -> np.ndarray:
    """3x3 image map that enlarges `zoom` times about centre_px and puts it in the frame's middle."""
    w, h = size
    cx, cy = float(centre_px[0]), float(centre_px[1])
    return np.array([[zoom, 0, w / 2 - zoom * cx], [0, zoom, h / 2 - zoom * cy], [0, 0, 1.0]])


class Crowd:
    """A crowd shot: rows of blurred heads and shirts on a dark stand, slowly panned across."""

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], n_frames: int):
        w, h = size
        self.size, self.n = size, max(n_frames, 1)
        pad_w, pad_h = int(w * 1.35) + 8, int(h * 1.15) + 8
        img = np.empty((pad_h, pad_w, 3), np.uint8)
        img[:] = rng.integers(15, 60, 3)
        head = max(2, int(h / rng.uniform(9, 16)))
        y = head
        while y < pad_h + head:
            xs = np.arange(int(rng.uniform(0, head)), pad_w, int(head * rng.uniform(1.6, 2.2)))
            for x in xs:
                jx, jy = rng.integers(-head // 3, head // 3 + 1, 2)
                shirt = tuple(int(c) for c in rng.integers(20, 230, 3))
                cv2.ellipse(img, (int(x + jx), int(y + jy + head * 1.3)), (int(head * 0.9), head), 0, 0, 360,
                            shirt, -1, cv2.LINE_AA)
                skin = tuple(int(c) for c in np.array([60, 100, 160]) * rng.uniform(0.5, 1.3))
                cv2.circle(img, (int(x + jx), int(y + jy)), max(1, int(head * 0.55)), skin, -1, cv2.LINE_AA)
            y += int(head * rng.uniform(1.9, 2.4))
        tex = cv2.resize(rng.normal(0, 1, (pad_h // 3 + 2, pad_w // 3 + 2)).astype(np.float32), (pad_w, pad_h))
        img = np.clip(img.astype(np.float32) * (1 + 0.15 * tex[..., None]), 0, 255).astype(np.uint8)
        self.image = cv2.GaussianBlur(img, (0, 0), max(0.6, head / 6))
        self.pad = (pad_w, pad_h)
        self.forward = rng.random() < 0.5
        self.top_share = float(rng.uniform(0, 1))
        self.bob = rng.integers(-1, 2, (self.n, 2))

    def frame(self, k: int, canvas_size: tuple[int, int]) -> np.ndarray:
        """Shot frame k as a canvas of `canvas_size` (the frame and its margin), for the camera finish."""
        cw, ch = canvas_size
        k = min(max(k, 0), self.n - 1)
        span_x, span_y = max(self.pad[0] - cw, 0), max(self.pad[1] - ch, 0)
        share = k / max(self.n - 1, 1)
        x = int(round(span_x * (share if self.forward else 1 - share)))
        y = int(round(span_y * self.top_share))
        crop = self.image[y:y + ch, x:x + cw]
        if crop.shape[:2] != (ch, cw):
            crop = cv2.resize(crop, (cw, ch))
        return np.roll(crop, tuple(int(v) for v in self.bob[k]), (0, 1))
