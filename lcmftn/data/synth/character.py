"""Characters of the v2 generator: a design (model sheet + colour chart) and a pose -> cel parts.

A character is head (skin, back hair, bangs, eyes with iris and highlight, mouth), neck, torso
in a shirt with a collar and fold shadows, trousers, arms (sleeve, forearm, hand) and legs
(trousers, shoes). Parts are closed polygons in the character's own units (height 1, feet at
the origin, y down), placed in the world by ``(x, y, height)`` and on screen by the camera's
affine map. ``turn`` is the yaw in radians (0 = facing the camera, ±π/2 = profile, π = back):
features slide across the head and hide, the torso narrows, limbs swap depth order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lcmftn.data.synth.canvas import CelCanvas
from lcmftn.data.synth.config import ellipse_poly, highlight_of, rgb, shadow_of

PARTS = ("skin", "hair", "iris", "white", "shirt", "accent", "pants", "shoe", "mouth")


def make_cast(seed: int, n: int) -> list[dict]:
    """``n`` character designs, deterministic in ``seed``; each has a colour chart
    ``palette[part] = (base, shadow, highlight)`` kept for the whole film."""
    rng = np.random.default_rng([seed, 7919, 2])
    cast = []
    for k in range(n):
        hue = rng.uniform(0, 360)
        base = {
            "skin": rgb(rng.uniform(12, 32), rng.uniform(0.15, 0.45), rng.uniform(0.82, 1.0)),
            "hair": rgb(rng.uniform(0, 360), rng.uniform(0.35, 0.9), rng.uniform(0.2, 0.9)),
            "iris": rgb(rng.uniform(0, 360), rng.uniform(0.5, 0.9), rng.uniform(0.4, 0.8)),
            "white": rgb(220, 0.04, 0.98),
            "shirt": rgb(hue, rng.uniform(0.35, 0.85), rng.uniform(0.55, 0.95)),
            "accent": rgb(hue + rng.uniform(120, 240), rng.uniform(0.5, 0.9), rng.uniform(0.5, 0.95)),
            "pants": rgb(hue + rng.uniform(60, 300), rng.uniform(0.25, 0.7), rng.uniform(0.25, 0.7)),
            "shoe": rgb(rng.uniform(0, 360), rng.uniform(0.2, 0.6), rng.uniform(0.15, 0.4)),
            "mouth": rgb(rng.uniform(350, 365), 0.55, 0.55),
        }
        cast.append({
            "id": k,
            "palette": {p: (c, shadow_of(c), highlight_of(c)) for p, c in base.items()},
            "head_r": rng.uniform(0.10, 0.13), "torso_w": rng.uniform(0.10, 0.14),
            "torso_h": rng.uniform(0.25, 0.29), "leg": rng.uniform(0.2, 0.23),
            "arm": rng.uniform(0.15, 0.18), "limb_w": rng.uniform(0.05, 0.065),
            "spikes": int(rng.integers(3, 8)), "spike_len": rng.uniform(0.15, 0.33),
            "long_hair": bool(rng.random() < 0.4), "hair_vol": rng.uniform(1.05, 1.25),
        })  # fmt: skip
    return cast


def cast_chart(cast: list[dict]) -> list[dict]:
    """The sidecar's colour chart: ``[{"id", "palette": {part: {"base","shadow","highlight"}}}]``."""
    return [{"id": d["id"], "palette": {p: dict(zip(("base", "shadow", "highlight"), map(list, c), strict=True))
                                        for p, c in d["palette"].items()}} for d in cast]  # fmt: skip


@dataclass(frozen=True)
class Pose:
    """x, y: feet position (world px); height: character height (world px); turn: yaw (rad);
    phase: walk-cycle phase (rad); swing: walk amplitude (0 = standing); gesture: raise of the
    near arm (rad, 0 = hanging); mouth: 0 closed .. 1 open; blink: eyes closed."""

    x: float
    y: float
    height: float
    turn: float = 0.0
    phase: float = 0.0
    swing: float = 0.0
    gesture: float = 0.0
    mouth: float = 0.0
    blink: bool = False


def _capsule(p, q, ra, rb, n=8):
    ang = math.atan2(q[1] - p[1], q[0] - p[0])
    pts = [(q[0] + rb * math.cos(ang - math.pi / 2 + math.pi * k / n),
            q[1] + rb * math.sin(ang - math.pi / 2 + math.pi * k / n)) for k in range(n + 1)]
    pts += [(p[0] + ra * math.cos(ang + math.pi / 2 + math.pi * k / n),
             p[1] + ra * math.sin(ang + math.pi / 2 + math.pi * k / n)) for k in range(n + 1)]
    return pts  # fmt: skip


def _smooth(p: np.ndarray, seg_px: float = 12.0) -> np.ndarray:
    """Chaikin corner cutting of a closed polygon until its edges are <= ``seg_px`` (smooth
    curves at 1080p; small polygons are left alone)."""
    for _ in range(3):
        if len(p) < 3 or np.abs(np.diff(p, axis=0)).max() <= seg_px:
            break
        q = np.roll(p, -1, axis=0)
        p = np.stack([0.75 * p + 0.25 * q, 0.25 * p + 0.75 * q], axis=1).reshape(-1, 2)
    return p


def _limb(joint, length, angle):
    return (joint[0] + length * math.sin(angle), joint[1] + length * math.cos(angle))


class _Drawer:
    def __init__(self, canvas: CelCanvas, affine: np.ndarray, pose: Pose, design: dict, light):
        a = affine[:, :2] * pose.height
        self.m = np.hstack([a, (affine[:, :2] @ (pose.x, pose.y) + affine[:, 2])[:, None]])
        self.scale = float(math.sqrt(abs(np.linalg.det(a))))
        self.cv, self.pal, self.light = canvas, design["palette"], light
        self.bbox = [math.inf, math.inf, -math.inf, -math.inf]

    def __call__(self, pts, part, size, shade=True, highlight=None, weight=1.0):
        p = _smooth(np.asarray(pts, np.float64) @ self.m[:, :2].T + self.m[:, 2])
        shift = None
        if shade:
            s = size * self.scale * 0.3
            shift = (self.light[0] * s, self.light[1] * s)
        hl = None if highlight is None else _smooth(np.asarray(highlight) @ self.m[:, :2].T + self.m[:, 2])
        box = self.cv.part(p, self.pal[part], shift, hl, weight)
        if box is not None:  # the painted pixels (before later parts occlude them)
            b = self.bbox
            b[0], b[1], b[2], b[3] = min(b[0], box[0]), min(b[1], box[1]), max(b[2], box[2]), max(b[3], box[3])


def _limb_plan(pose: Pose, ws: float, wh: float, hip_y: float, sh_y: float, lw: float) -> list:
    """``(near, kind, joint, (angle1, angle2))`` for both legs and arms: walk swing, knee and
    elbow bends, the near arm's gesture; ``near`` limbs are drawn in front of the torso."""
    c, s = math.cos(pose.turn), math.sin(pose.turn)
    ac, facing = abs(c), (1.0 if s >= 0 else -1.0)
    k, sp = pose.swing * (0.3 + 0.7 * abs(s)) * facing, math.sin(pose.phase)
    limbs = []
    for side in (-1.0, 1.0):
        near = side * facing > 0 if abs(s) > 0.2 else side > 0
        leg_a = side * k * sp
        knee = max(0.0, -side * sp) * pose.swing * 0.8 * facing
        arm_a = -side * k * sp * 1.1 + side * 0.15 * ac
        elbow = (0.2 + 0.35 * max(0.0, side * sp)) * facing * pose.swing + side * 0.1 * ac
        if near and pose.gesture > 0:
            arm_a, elbow = side * pose.gesture * (0.4 + 0.6 * ac) + facing * pose.gesture * 0.3 * abs(s), side * 0.4
        hx = side * (wh * 0.55 * ac + 0.02)
        limbs.append((near, "leg", (hx, hip_y), (leg_a, leg_a - knee)))
        limbs.append((near, "arm", (side * (ws * (0.7 + 0.25 * ac)), sh_y + lw * 0.6), (arm_a, arm_a + elbow)))

    return limbs


def draw_character(canvas: CelCanvas, design: dict, pose: Pose, affine: np.ndarray,
                   light: tuple[float, float]) -> list[float] | None:
    """Draw ``design`` in ``pose`` through the camera ``affine`` (2x3 world->screen); returns the
    screen bbox ``[x0, y0, x1, y1]`` (inclusive px) of its painted pixels (None when off-screen)."""
    d, dr = design, _Drawer(canvas, affine, pose, design, light)
    c, s = math.cos(pose.turn), math.sin(pose.turn)
    ac, facing = abs(c), (1.0 if s >= 0 else -1.0)
    leg, arm, lw = d["leg"], d["arm"], d["limb_w"]
    bob = 0.015 * abs(math.sin(pose.phase)) * min(1.0, pose.swing * 3)
    hip_y = -2 * leg * 0.97 - bob
    th, tw = d["torso_h"], d["torso_w"]
    sh_y = hip_y - th
    ws, wh = tw * (0.62 + 0.38 * ac), tw * (0.52 + 0.3 * ac)
    limbs = _limb_plan(pose, ws, wh, hip_y, sh_y, lw)

    def draw_limb(kind, joint, angles):
        if kind == "leg":
            knee_p = _limb(joint, leg, angles[0])
            foot = _limb(knee_p, leg, angles[1])
            dr(_capsule(joint, knee_p, lw * 1.25, lw * 1.1), "pants", lw)
            dr(_capsule(knee_p, foot, lw * 1.1, lw), "pants", lw)
            fx = foot[0] + facing * lw * (0.2 + 0.8 * abs(s))
            dr(ellipse_poly(fx, foot[1] + lw * 0.2, lw * (1.0 + 0.4 * abs(s)), lw * 0.6, 0, 16), "shoe", lw)
        else:
            elbow_p = _limb(joint, arm, angles[0])
            hand = _limb(elbow_p, arm * 0.9, angles[1])
            dr(_capsule(joint, elbow_p, lw * 1.15, lw * 1.0), "shirt", lw)
            dr(_capsule(elbow_p, hand, lw * 0.85, lw * 0.75), "skin", lw, weight=0.8)
            dr(ellipse_poly(hand[0], hand[1], lw * 0.8, lw * 0.9, 0, 14), "skin", lw * 0.7, weight=0.8)

    for near, kind, joint, angles in limbs:
        if not near:
            draw_limb(kind, joint, angles)
    hr, hx, hy = d["head_r"], s * d["head_r"] * 0.1, sh_y - d["head_r"] * 1.05
    if d["long_hair"]:  # long hair falls behind the shoulders
        dr(ellipse_poly(hx - s * hr * 0.3, hy + hr * 0.9, hr * 1.15 * d["hair_vol"], hr * 1.6, 0, 24), "hair", hr)
    dr(_capsule((hx * 0.5, sh_y + 0.02), (hx * 0.6, hy + hr * 0.6), lw * 0.75, lw * 0.8), "skin", lw, shade=False)
    torso = [(-wh, hip_y + 0.03), (-ws, sh_y + 0.04), (-ws * 0.8, sh_y), (ws * 0.8, sh_y), (ws, sh_y + 0.04), (wh, hip_y + 0.03)]
    dr(torso, "shirt", tw, weight=1.3)
    for j, fx in enumerate((-0.45, 0.35)):  # fold shadows at the waist
        x0 = fx * wh * ac + s * 0.02
        fold = [(x0, hip_y - th * (0.25 + 0.1 * j)), (x0 + 0.015, hip_y - 0.005), (x0 - 0.02, hip_y - 0.005)]
        _fold(dr, fold)
    if c > -0.2:  # collar (accent colour) seen from the front
        dr([(-ws * 0.45 * ac + s * 0.03, sh_y + 0.005), (ws * 0.45 * ac + s * 0.03, sh_y + 0.005),
            (s * 0.03, sh_y + th * 0.28 * ac + 0.02)], "accent", 0.03, shade=False, weight=0.8)  # fmt: skip
    dr([(-wh * 1.08, hip_y - 0.01), (wh * 1.08, hip_y - 0.01), (wh * 1.12, hip_y + 0.08), (-wh * 1.12, hip_y + 0.08)], "pants", tw)
    for near, kind, joint, angles in limbs:
        if near and kind == "leg":
            draw_limb(kind, joint, angles)
    _head(dr, d, pose, hx, hy, hr, c, s)
    for near, kind, joint, angles in limbs:
        if near and kind == "arm":
            draw_limb(kind, joint, angles)
    b = dr.bbox
    return None if b[0] == math.inf else [int(v) for v in b]


def _fold(dr: _Drawer, pts) -> None:
    """A fold: a small closed region in the shirt's shadow colour."""
    p = np.asarray(pts, np.float64) @ dr.m[:, :2].T + dr.m[:, 2]
    base = dr.pal["shirt"][1]
    dr.cv.part(p, (base, base, base), None, None, 0.6)


def _head(dr: _Drawer, d: dict, pose: Pose, hx: float, hy: float, hr: float, c: float, s: float) -> None:
    vol, back = d["hair_vol"], c < -0.25
    dr(ellipse_poly(hx - s * hr * 0.25, hy - hr * 0.1, hr * vol, hr * vol * 1.02, 0, 28), "hair", hr)  # back hair
    face = [(x + s * hr * 0.12 * max(0.0, (y - hy) / hr), hy + (y - hy) * (1.12 if y > hy else 1.0))
            for x, y in ellipse_poly(hx, hy, hr * (0.9 + 0.1 * abs(c)), hr, 0, 28)]  # fmt: skip
    if not back:
        dr(face, "skin", hr, weight=1.2)
        for phi in (-0.45, 0.45):  # eyes
            a = phi + pose.turn
            if math.cos(a) < 0.2:
                continue
            comp, ex, ey = math.cos(a), hx + math.sin(a) * hr * 0.92, hy + hr * 0.3
            if pose.blink:
                dr(ellipse_poly(ex, ey + hr * 0.08, hr * 0.2 * comp, hr * 0.04, 0, 12), "iris", 0, shade=False, weight=0.8)
                continue
            dr(ellipse_poly(ex, ey, hr * 0.2 * comp, hr * 0.27, 0, 16), "white", 0, shade=False, weight=0.9)
            iris = ellipse_poly(ex + math.sin(a) * hr * 0.03, ey + hr * 0.04, hr * 0.13 * comp, hr * 0.2, 0, 14)
            hl = ellipse_poly(ex - hr * 0.04 * comp, ey - hr * 0.04, hr * 0.05 * comp + 0.003, hr * 0.06, 0, 8)
            dr(iris, "iris", 0, shade=False, highlight=hl, weight=0.8)
        ma = pose.turn
        if math.cos(ma) > 0.3:
            mx, my = hx + math.sin(ma) * hr * 0.85, hy + hr * 0.72
            dr(ellipse_poly(mx, my, hr * 0.16 * math.cos(ma), hr * (0.035 + 0.12 * pose.mouth), 0, 14), "mouth", 0, shade=False, weight=0.8)
    # bangs: the top of the head with a jagged fringe; from the back the hair covers the head
    top = ellipse_poly(hx - s * hr * 0.15, hy - hr * 0.05, hr * vol * 1.02, hr * vol * 1.05, 0, 18, math.pi, 2 * math.pi)
    n, x_l, x_r = d["spikes"], top[0][0], top[-1][0]
    fringe = []
    base_y = hy + (hr * 0.7 if back else -hr * 0.4)
    for j in range(2 * n + 1):
        x = x_r + (x_l - x_r) * j / (2 * n)
        fringe.append((x, base_y + (hr * d["spike_len"] if j % 2 else 0.0)))
    dr(top + fringe, "hair", hr, highlight=ellipse_poly(hx - hr * 0.3, hy - hr * 0.7, hr * 0.35, hr * 0.1, -0.3, 12), weight=1.2)
