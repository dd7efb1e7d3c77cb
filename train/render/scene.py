"""The static scene (arena, mat, court, lines, net) and the per-frame camera finish.

Drawing happens on a canvas `MARGIN` pixels larger than the frame on every side; a frame is a crop
of it, moved by a pixel or so for camera shake. Points go to cv2 in fixed point (`SHIFT` bits) so
slow motion stays smooth.
"""
from __future__ import annotations

import cv2
import numpy as np

from core.court import COURT_LENGTH, COURT_WIDTH, NET_Y, SHORT_SERVICE_DIST, SINGLES_INSET
from train.render.camera import Camera
from train.render.style import Style

MARGIN = 3
SHIFT = 4
ONE = 1 << SHIFT
NET_TOP = 1.524  # metres, at the centre; 1.55 at the posts
NET_BOTTOM = 0.76
POST_HEIGHT = 1.55
LONG_SERVICE_DOUBLES = 0.76  # from the baseline
LINE_WIDTH = 0.04


def fixed(px: np.ndarray) -> np.ndarray:
    """Image pixels -> canvas fixed-point int32 coordinates for cv2 (`shift=SHIFT`)."""
    return np.round((np.asarray(px, float) + MARGIN) * ONE).astype(np.int32)


def court_lines() -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """Painted lines as floor segments in court metres."""
    w, l = COURT_WIDTH, COURT_LENGTH
    segs = [((0, 0), (0, l)), ((w, 0), (w, l)),  # doubles sidelines
            ((SINGLES_INSET, 0), (SINGLES_INSET, l)), ((w - SINGLES_INSET, 0), (w - SINGLES_INSET, l)),
            ((0, 0), (w, 0)), ((0, l), (w, l)),  # baselines
            ((0, LONG_SERVICE_DOUBLES), (w, LONG_SERVICE_DOUBLES)),
            ((0, l - LONG_SERVICE_DOUBLES), (w, l - LONG_SERVICE_DOUBLES)),
            ((0, NET_Y - SHORT_SERVICE_DIST), (w, NET_Y - SHORT_SERVICE_DIST)),
            ((0, NET_Y + SHORT_SERVICE_DIST), (w, NET_Y + SHORT_SERVICE_DIST)),
            ((w / 2, 0), (w / 2, NET_Y - SHORT_SERVICE_DIST)),
            ((w / 2, NET_Y + SHORT_SERVICE_DIST), (w / 2, l))]
    return segs


class Scene:
    """Background canvas and net layer of one render."""

    def __init__(self, cam: Camera, style: Style, rng: np.random.Generator):
        self.cam, self.style = cam, style
        w, h = cam.size
        self.canvas_size = (w + 2 * MARGIN, h + 2 * MARGIN)
        self.background = self._draw_background(rng)
        self.net_roi, self.net_keep, self.net_add = self._net_layer()
        self._apply_net(self.background)

    # ------------------------------------------------------------ background

    def _poly(self, img, xs, ys, zs, colour) -> None:
        pts = fixed(self.cam.project(xs, ys, zs)).reshape(-1, 1, 2)
        cv2.fillPoly(img, [pts], colour, cv2.LINE_AA, SHIFT)

    def _draw_background(self, rng: np.random.Generator) -> np.ndarray:
        st, cam = self.style, self.cam
        cw, ch = self.canvas_size
        img = np.empty((ch, cw, 3), np.uint8)
        img[:] = st.floor
        back_y = -4.5  # the arena's back wall, metres behind the far baseline
        # wall + spectators behind the far end: the wall colour with a blurred texture
        base = fixed(cam.project([-30, 36], [back_y] * 2, [0, 0])) // ONE
        edge_y = np.interp([0, cw - 1], [base[0][0], base[1][0]], [base[0][1], base[1][1]])  # at x=0, x=cw-1
        poly = np.array([[0, 0], [cw - 1, 0], [cw - 1, edge_y[1]], [0, edge_y[0]]], np.int32)
        mask = np.zeros((ch, cw), np.uint8)
        cv2.fillPoly(mask, [poly.reshape(-1, 1, 2)], 255)
        tex = rng.normal(0, 1, (ch // 4 + 2, cw // 4 + 2)).astype(np.float32)
        tex = cv2.resize(tex, (cw, ch), interpolation=cv2.INTER_LINEAR)
        wall = np.clip(np.asarray(st.wall, np.float32) * (1 + 0.4 * tex[..., None]), 0, 255).astype(np.uint8)
        img[mask > 0] = wall[mask > 0]
        # advertising boards: plain colour blocks along the back wall
        x = -12.0
        while x < 18:
            width = rng.uniform(2.0, 5.0)
            colour = st.boards[int(rng.integers(len(st.boards)))]
            self._poly(img, [x, x + width, x + width, x], [back_y] * 4, [0, 0, 0.9, 0.9], colour)
            stripe = tuple(int(min(255, c * 1.25 + 10)) for c in colour)
            self._poly(img, [x, x + width, x + width, x], [back_y] * 4, [0.55, 0.55, 0.7, 0.7], stripe)
            x += width
        # mat and court surface
        self._poly(img, [-1.7, COURT_WIDTH + 1.7, COURT_WIDTH + 1.7, -1.7],
                   [-2.3, -2.3, COURT_LENGTH + 2.3, COURT_LENGTH + 2.3], [0] * 4, st.mat)
        self._poly(img, [0, COURT_WIDTH, COURT_WIDTH, 0], [0, 0, COURT_LENGTH, COURT_LENGTH], [0] * 4, st.court)
        # painted lines, their width in perspective
        for (x0, y0), (x1, y1) in court_lines():
            mid = cam.metre_px((x0 + x1) / 2, (y0 + y1) / 2)
            thick = max(1, int(LINE_WIDTH * mid))
            a, b = fixed(cam.project([x0, x1], [y0, y1], [0, 0]))
            cv2.line(img, tuple(a), tuple(b), st.lines, thick, cv2.LINE_AA, SHIFT)
        if st.vignette > 0:
            yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
            r2 = ((xx - cw / 2) / (cw / 2)) ** 2 + ((yy - ch / 2) / (ch / 2)) ** 2
            gain = (1 - st.vignette * np.clip(r2 / 2, 0, 1))[..., None]
            img = (img.astype(np.float32) * gain).astype(np.uint8)
        return img

    # ------------------------------------------------------------ net

    def _net_layer(self):
        """Net as (roi slices, keep = 1 - alpha, add = colour * alpha) for re-blending over players."""
        cam, st = self.cam, self.style
        cw, ch = self.canvas_size
        ends = [0.0 - 0.02, COURT_WIDTH + 0.02]
        corners = cam.project([ends[0], ends[1], ends[1], ends[0]], [NET_Y] * 4,
                              [NET_BOTTOM, NET_BOTTOM, NET_TOP, NET_TOP])
        posts = cam.project([ends[0], ends[0], ends[1], ends[1]], [NET_Y] * 4, [0, POST_HEIGHT] * 2)
        allp = np.vstack([corners, posts]) + MARGIN
        x0, y0 = np.floor(allp.min(0)).astype(int) - 3
        x1, y1 = np.ceil(allp.max(0)).astype(int) + 3
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, cw), min(y1, ch)
        if x1 <= x0 or y1 <= y0:
            return None, None, None
        h, w = y1 - y0, x1 - x0
        alpha = np.zeros((h, w), np.uint8)
        colour = np.zeros((h, w, 3), np.uint8)
        off = np.array([x0, y0]) * ONE
        pts = lambda p: (fixed(p) - off).astype(np.int32)  # noqa: E731
        # mesh: a see-through dark band with a fine grid
        band = pts(corners).reshape(-1, 1, 2)
        cv2.fillPoly(alpha, [band], 90, cv2.LINE_AA, SHIFT)
        cv2.fillPoly(colour, [band], st.net, cv2.LINE_AA, SHIFT)
        # tape along the top and the posts
        px = cam.metre_px(COURT_WIDTH / 2, NET_Y)
        tape = max(1, int(round(0.06 * px)))
        top = pts(cam.project(ends, [NET_Y] * 2, [NET_TOP] * 2))
        cv2.line(alpha, tuple(top[0]), tuple(top[1]), 255, tape, cv2.LINE_AA, SHIFT)
        cv2.line(colour, tuple(top[0]), tuple(top[1]), (245, 245, 245), tape, cv2.LINE_AA, SHIFT)
        post = max(1, int(round(0.05 * px)))
        p = pts(posts)
        for a, b in ((p[0], p[1]), (p[2], p[3])):
            cv2.line(alpha, tuple(a), tuple(b), 255, post, cv2.LINE_AA, SHIFT)
            cv2.line(colour, tuple(a), tuple(b), st.posts, post, cv2.LINE_AA, SHIFT)
        a = alpha.astype(np.float32)[..., None] / 255.0
        return (slice(y0, y1), slice(x0, x1)), 1.0 - a, colour.astype(np.float32) * a

    def _apply_net(self, canvas: np.ndarray) -> None:
        if self.net_roi is None:
            return
        roi = canvas[self.net_roi]
        roi[:] = (roi.astype(np.float32) * self.net_keep + self.net_add).astype(np.uint8)

    def redraw_net(self, canvas: np.ndarray) -> None:
        """Put the net back in front of whatever was drawn behind it (the far player)."""
        self._apply_net(canvas)


class Finish:
    """Per-frame camera finish: crop with shake, lighting curve and falloff, defocus, motion blur
    (frames are finished in order: each keeps a share of the one before), sensor noise."""

    def __init__(self, style: Style, size: tuple[int, int], n_frames: int, rng: np.random.Generator):
        w, h = size
        self.size = size
        self.lut = style.lut()
        self.blur, self.defocus = style.blur, style.defocus * w / 640
        self.light = None
        if any(style.light):
            xs, ys = np.meshgrid(np.linspace(-1, 1, w), np.linspace(-1, 1, h))
            self.light = (1 + style.light[0] * xs + style.light[1] * ys).astype(np.float32)[..., None]
        self.previous: tuple[int, np.ndarray] | None = None
        bank = 6
        self.noise = [np.round(rng.normal(0, style.noise, (h, w, 3))).astype(np.int16) for _ in range(bank)]
        self.noise_pick = rng.integers(0, bank, n_frames)
        self.offsets = _shake(rng, n_frames, style.jitter)

    def __call__(self, canvas: np.ndarray, i: int) -> np.ndarray:
        w, h = self.size
        dx, dy = self.offsets[i]
        frame = canvas[MARGIN + dy: MARGIN + dy + h, MARGIN + dx: MARGIN + dx + w]
        frame = cv2.LUT(frame, self.lut)
        if self.light is not None:
            frame = np.clip(frame * self.light, 0, 255).astype(np.uint8)
        if self.defocus > 0.2:
            frame = cv2.GaussianBlur(frame, (0, 0), self.defocus)
        if self.blur > 0:
            if self.previous is not None and self.previous[0] == i - 1:
                frame = cv2.addWeighted(frame, 1 - self.blur, self.previous[1], self.blur, 0)
            self.previous = (i, frame)
        return cv2.add(frame, self.noise[self.noise_pick[i]], dtype=cv2.CV_8U)


def _shake(rng: np.random.Generator, n: int, amplitude: float) -> np.ndarray:
    """Slowly wandering integer camera offsets within +-MARGIN, shape (n, 2)."""
    if amplitude <= 0 or n == 0:
        return np.zeros((max(n, 1), 2), int)
    walk = rng.normal(0, 1, (n + 24, 2))
    kernel = np.hanning(25)
    smooth = np.stack([np.convolve(walk[:, k], kernel, "valid") for k in range(2)], 1)[:n]
    smooth /= max(np.abs(smooth).max(), 1e-9)
    return np.clip(np.round(smooth * amplitude), -MARGIN + 1, MARGIN - 1).astype(int)
