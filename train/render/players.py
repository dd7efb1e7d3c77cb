"""Players: smooth movement between annotated positions, and a stick-and-blob figure with a racket.

Movement: per player, keyframes (time, court x, y) at every stroke; inside a rally a cubic Hermite
spline with Catmull-Rom velocities (capped at a sprinting speed), from and to rest at rally ends,
and a cut (jump) in a pause where the player changes ends.

Drawing: joints in court metres (so perspective sizes come for free), projected by the camera.
Around each of his hits the racket arm swings in the plane of the stroke's form: overhead
(smash, clear, drop, rush), underarm (serves, lob, net strokes) or side-arm (drive, push,
unknown), reaching for the contact point at the hit.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from core.court import NET_Y
from train.render.scene import SHIFT, fixed
from train.render.style import PlayerLook

MAX_SPEED = 6.0  # m/s, spline velocities are capped here
STRIDE = 1.3  # metres per gait cycle
BACKSWING_S = 0.42
FOLLOW_S = 0.3
RECOVER_S = 0.2
FORMS = {
    "smash": "overhead", "clear": "overhead", "drop": "overhead", "rush": "overhead",
    "short serve": "underarm", "long serve": "underarm", "lob": "underarm", "net shot": "underarm",
    "return net": "underarm", "cross-court net shot": "underarm",
    "drive": "side", "push": "side",
}
# swing plane angles (degrees): backswing, contact, follow-through
ANGLES = {"overhead": (-150, 10, 130), "underarm": (-80, 50, 140), "side": (-70, 60, 170)}
UP = np.array([0.0, 0.0, 1.0])


def form_of(stroke: str | None) -> str:
    return FORMS.get(stroke or "", "side")


# ---------------------------------------------------------------- movement


def track(times: np.ndarray, keys: list[tuple[float, float, float, int]]) -> np.ndarray:
    """Positions (n, 2) at frame times from keys (t, x, y, rally); see the module docstring."""
    if not keys:
        return np.full((len(times), 2), np.nan)
    keys = sorted(keys)
    t = np.array([k[0] for k in keys])
    p = np.array([(k[1], k[2]) for k in keys])
    rally = np.array([k[3] for k in keys])
    n = len(keys)
    v = np.zeros_like(p)
    for i in range(n):
        lo = i - 1 if i > 0 and rally[i - 1] == rally[i] else None
        hi = i + 1 if i + 1 < n and rally[i + 1] == rally[i] else None
        if lo is None or hi is None:
            continue  # at rest at the start and end of a rally
        vi = (p[hi] - p[lo]) / max(t[hi] - t[lo], 1e-3)
        speed = np.linalg.norm(vi)
        v[i] = vi if speed <= MAX_SPEED else vi * MAX_SPEED / speed
    out = np.empty((len(times), 2))
    j = np.clip(np.searchsorted(t, times, side="right") - 1, 0, n - 1)
    before, after = times <= t[0], times >= t[-1]
    out[before], out[after] = p[0], p[-1]
    mid = ~(before | after)
    if mid.any():
        i0 = j[mid]
        i1 = i0 + 1
        dt = np.maximum(t[i1] - t[i0], 1e-3)
        s = ((times[mid] - t[i0]) / dt)[:, None]
        h00, h10 = 2 * s ** 3 - 3 * s ** 2 + 1, s ** 3 - 2 * s ** 2 + s
        h01, h11 = -2 * s ** 3 + 3 * s ** 2, s ** 3 - s ** 2
        pos = h00 * p[i0] + h10 * dt[:, None] * v[i0] + h01 * p[i1] + h11 * dt[:, None] * v[i1]
        # a change of ends between rallies is a cut, not a walk through the net
        cut = (p[i0, 1] - NET_Y) * (p[i1, 1] - NET_Y) < 0
        if cut.any():
            pos[cut] = np.where(s[cut] < 0.5, p[i0][cut], p[i1][cut])
        out[mid] = pos
    return out


def gait(pos: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Speed (m/s) and gait phase (radians) per frame from a track (n, 2)."""
    step = np.linalg.norm(np.diff(pos, axis=0, prepend=pos[:1]), axis=1)
    step[step > 1.5] = 0  # cuts
    speed = np.convolve(step * fps, np.ones(3) / 3, "same")
    return speed, np.cumsum(step) / STRIDE * 2 * np.pi


# ---------------------------------------------------------------- drawing


@dataclass
class Swing:
    form: str
    d: float  # seconds from the hit (negative before)
    contact: np.ndarray  # (3,) court metres


def _plane_dir(form: str, theta: float, f: np.ndarray, r: np.ndarray) -> np.ndarray:
    th = np.radians(theta)
    if form == "overhead":
        v = np.cos(th) * UP + np.sin(th) * f + 0.25 * r
    elif form == "underarm":
        v = -np.cos(th) * UP + np.sin(th) * f + 0.3 * r
    else:
        v = np.cos(th) * r + np.sin(th) * f + 0.15 * UP
    return v / np.linalg.norm(v)


def _swing_theta(form: str, d: float) -> tuple[float, float]:
    """Swing-plane angle at time d from the hit, and the weight of the swing vs the ready pose."""
    back, hit, follow = ANGLES[form]
    if d < -BACKSWING_S or d > FOLLOW_S + RECOVER_S:
        return hit, 0.0
    if d < -0.15:  # raise into the backswing
        a = (d + BACKSWING_S) / (BACKSWING_S - 0.15)
        return back, float(np.clip(a * 1.5, 0, 1))
    if d <= 0:
        a = (d + 0.15) / 0.15
        return back + (hit - back) * a ** 1.5, 1.0
    if d <= FOLLOW_S:
        return hit + (follow - hit) * np.sqrt(d / FOLLOW_S), 1.0
    return follow, 1.0 - (d - FOLLOW_S) / RECOVER_S


def draw_player(canvas: np.ndarray, cam, look: PlayerLook, x: float, y: float, facing: float,
                speed: float, phase: float, swing: Swing | None) -> None:
    """One player standing at floor point (x, y), facing +y (upper half) or -y (bottom half)."""
    s, b = look.height / 1.8, look.build
    f = np.array([0.0, facing, 0.0])
    right = np.array([-facing, 0.0, 0.0])  # the player's right hand side
    hand_side = -right if look.left_handed else right
    base = np.array([x, y, 0.0])
    amp = float(np.clip(speed / 3.0, 0, 1))
    move = f  # legs swing along the facing axis; good enough from a broadcast camera
    crouch = 0.0
    if swing is not None and swing.form == "underarm":
        crouch = 0.14 * np.exp(-(swing.d / 0.25) ** 2)
    hip_z = (0.92 - crouch) * s
    lean = f * (0.05 + 0.12 * crouch)
    lift = 0.0
    if swing is not None:  # lean (and for high contacts jump) toward a contact out of reach
        near = float(np.exp(-(swing.d / 0.15) ** 2))
        flat = swing.contact[:2] - base[:2]
        dist = float(np.linalg.norm(flat))
        if dist > 0.45:
            lean = lean + np.append(flat / dist * min(dist - 0.45, 0.45) * near, 0.0)
        if swing.form == "overhead":
            lift = float(np.clip(swing.contact[2] - 2.45 * s, 0, 0.35)) * near
    joints = {}
    for name, side in (("l", -1.0), ("r", 1.0)):
        ph = phase + (0 if side > 0 else np.pi)
        foot = base + right * side * 0.16 * b * s + move * 0.3 * np.sin(ph) * amp
        foot[2] = 0.03 + 0.1 * max(0.0, np.cos(ph)) * amp + lift
        if np.dot(right * side, hand_side) > 0:  # lunge: the racket-side foot steps with the lean
            foot[:2] += lean[:2] * 1.2
        hip = base + lean * 0.5 + right * side * 0.11 * b * s + UP * (hip_z + lift)
        knee = (hip + foot) / 2 + f * 0.1 * s + right * side * 0.03
        joints["foot" + name], joints["hip" + name], joints["knee" + name] = foot, hip, knee
    for name, side in (("l", -1.0), ("r", 1.0)):
        joints["sh" + name] = base + lean + right * side * 0.2 * b * s + UP * ((1.42 - crouch) * s + lift)
    joints["head"] = base + lean * 1.15 + UP * ((1.63 - crouch) * s + lift)
    sh_racket = joints["shr"] if not look.left_handed else joints["shl"]
    sh_free = joints["shl"] if not look.left_handed else joints["shr"]
    arm, racket = 0.6 * s, 0.58
    ready = f * 0.75 + hand_side * 0.4 + UP * 0.25
    ready /= np.linalg.norm(ready)
    direction, reach = ready, arm
    free_hand = sh_free + f * 0.22 - UP * 0.38 * s - hand_side * 0.05
    if swing is not None:
        theta, wgt = _swing_theta(swing.form, swing.d)
        plane = _plane_dir(swing.form, theta, f, hand_side)
        direction = (1 - wgt) * ready + wgt * plane
        to_contact = swing.contact - sh_racket
        dist = float(np.linalg.norm(to_contact))
        near = float(np.exp(-(swing.d / 0.09) ** 2))
        if dist > 1e-6:
            direction = (1 - near) * direction + near * to_contact / dist
            reach = (1 - near) * arm + near * float(np.clip(dist - racket, 0.2 * s, arm))
        if swing.form == "overhead" and abs(swing.d) < 0.4:
            free_hand = sh_free + UP * 0.5 * s + f * 0.25
    direction = direction / max(np.linalg.norm(direction), 1e-6)
    hand = sh_racket + direction * reach
    joints["hand"], joints["free"] = hand, free_hand
    joints["racket"] = hand + direction * racket
    names = list(joints)
    px = cam.project_points(np.array([joints[k] for k in names]))
    q = dict(zip(names, fixed(px)))
    m = cam.metre_px(x, y)
    _draw_figure(canvas, q, look, m, b * s, facing > 0)


def _draw_figure(canvas, q: dict, look: PlayerLook, m: float, scale: float, face_visible: bool) -> None:
    """cv2 drawing of projected joints `q` (fixed point); m = pixels per metre at the feet."""
    aa = cv2.LINE_AA
    t = lambda metres: max(1, int(round(metres * m)))  # noqa: E731
    leg, arm = t(0.13 * scale), t(0.075 * scale)
    for side in "lr":
        cv2.line(canvas, tuple(q["knee" + side]), tuple(q["foot" + side]), look.skin, leg, aa, SHIFT)
        cv2.line(canvas, tuple(q["hip" + side]), tuple(q["knee" + side]), look.shorts, leg + 1, aa, SHIFT)
        cv2.circle(canvas, tuple(q["foot" + side]), max(1 << SHIFT, int(0.07 * m * (1 << SHIFT))),
                   look.shoes, -1, aa, SHIFT)
    torso = np.array([q["shl"], q["shr"], q["hipr"], q["hipl"]], np.int32).reshape(-1, 1, 2)
    cv2.fillConvexPoly(canvas, torso, look.shirt, aa, SHIFT)
    cv2.line(canvas, tuple(q["hipl"]), tuple(q["hipr"]), look.shorts, leg, aa, SHIFT)
    free_sh = q["shl"] if not look.left_handed else q["shr"]
    cv2.line(canvas, tuple(free_sh), tuple(q["free"]), look.skin, arm, aa, SHIFT)
    head_r = max(1 << SHIFT, int(0.115 * scale * m * (1 << SHIFT)))
    cv2.circle(canvas, tuple(q["head"]), head_r, look.hair, -1, aa, SHIFT)
    if face_visible:  # the upper player faces the camera
        face = q["head"] + np.array([0, head_r // 4], np.int32)
        cv2.circle(canvas, tuple(face), head_r * 3 // 4, look.skin, -1, aa, SHIFT)
    racket_sh = q["shr"] if not look.left_handed else q["shl"]
    cv2.line(canvas, tuple(racket_sh), tuple(q["hand"]), look.skin, arm, aa, SHIFT)
    cv2.line(canvas, tuple(q["hand"]), tuple(q["racket"]), (60, 60, 60), max(1, arm // 2), aa, SHIFT)
    cv2.circle(canvas, tuple(q["racket"]), max(1 << SHIFT, int(0.12 * m * (1 << SHIFT))), (40, 40, 40), 1,
               aa, SHIFT)
