"""Procedural 2D cel-animation films with ground truth (DESIGN §7).

A film is a sequence of shots separated by hard cuts. Each shot has a new painted background
(sky gradient, clouds, hills, houses, ground) in a new palette whose hue is far from the previous
shot's, and a few articulated characters picked from the film's cast (same model sheet in every
shot, as in a real production). Characters are ellipse parts (torso, head, hair, eyes, upper/lower
arms and legs) hung on joints whose angles swing with a walk cycle; they walk in from outside the
frame, stand and turn (profile <-> front), bob, and pass in front of one another (depth order).
Cameras pan over the wider background; foreground pillars move with parallax and occlude the
characters; props (balls) fly in. Every part is flat colour with a two-tone cel shade (a shadow
crescent on the side away from the shot's light) and a dark outline.

Timing: a shot is animated on ones, twos or threes (``hold_prob`` chooses twos/threes) or is a
still shot (``still_prob``): the drawing index is ``t // step`` and a frame whose drawing index
equals its predecessor's is NOT re-rendered but repeated, so the truth "frame t holds frame t-1"
is exact in the pixels before encoding (the renderer also checks that consecutive new drawings
differ, nudging the camera by a pixel in the rare case they do not).

Determinism: all randomness comes from ``numpy.random.default_rng([seed, ...])`` streams, one for
the cast and one per shot; drawing is OpenCV (deterministic). Same config -> same frames, same
truth; libx264 then writes the same video.

Truth (``write_film`` writes it to ``<video>.json``)::

    {"version": 1, "frames": N, "fps": F, "width": W, "height": H,
     "cuts": [first frame of shots 1..],            # frame indices, shot 0 starts at 0
     "shots": [{"start": s, "end": e, "step": 1|2|3, "still": bool, "pan_px": p}, ...],
     "holds": [t, ...],                              # frame t shows frame t-1's drawing
     "config": {...}}                                # dataclasses.asdict(FilmConfig)

Speed: vectorised background painting once per shot, ~40 small ``cv2.ellipse`` calls per
character per drawing; see the README data section for measured figures.
"""

from __future__ import annotations

import colorsys
import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from lcmftn.data.synth.config import rgb as _rgb  # one HSV -> RGB for v1 and v2
from lcmftn.data.video import write_video

__all__ = ["FilmConfig", "SyntheticFilm", "generate_film", "write_film", "plan_film", "sidecar_path"]

OUTLINE_RGB = (28, 22, 34)  # ink colour of the outlines
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel positions, so slow motion is still smooth
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class FilmConfig:
    """A synthetic film. Difficulty knobs: ``motion``, ``num_characters``, ``shot_frames``.

    seed: everything (cast, palettes, motion, timing) is a function of the seed.
    size: frame height in pixels (width = ``size * aspect`` rounded to even).
    aspect: width / height (1.0 = square frames).
    fps: frames per second written to the video.
    num_shots: number of shots (hard cuts between them).
    seconds: when set, overrides ``num_shots`` with ``max(1, round(seconds * fps / shot_frames))``
        (the film lasts about that long).
    shot_frames: mean shot length in frames.
    shot_frames_jitter: shot lengths are uniform in ``shot_frames * [1-j, 1+j]`` (0 = all equal).
    num_characters: characters in each shot (taken from a cast of ``cast_size``).
    cast_size: designs in the film's cast (0 = ``max(4, 2 * num_characters)``).
    motion: motion scale: walk speed, limb swing, camera pan and prop speed (0 = nothing moves).
    hold_prob: probability that a shot is animated on twos or threes (else on ones).
    still_prob: probability that a shot is a still (one drawing held for the whole shot).
    pan_prob: probability that the camera pans over the background in a shot.
    occluder_prob: probability of foreground pillars (parallax occlusion) in a shot.
    prop_prob: probability of a prop flying into the frame in a shot.
    """

    seed: int = 0
    size: int = 256
    aspect: float = 1.0
    fps: float = 24.0
    num_shots: int = 8
    seconds: float | None = None
    shot_frames: int = 48
    shot_frames_jitter: float = 0.0
    num_characters: int = 2
    cast_size: int = 0
    motion: float = 1.0
    hold_prob: float = 0.5
    still_prob: float = 0.1
    pan_prob: float = 0.5
    occluder_prob: float = 0.4
    prop_prob: float = 0.4

    def __post_init__(self) -> None:
        if self.seconds is not None:
            if self.seconds <= 0 or self.fps <= 0 or self.shot_frames < 2:
                raise ValueError(f"seconds, fps must be > 0 and shot_frames >= 2, got {self.seconds}")
            object.__setattr__(self, "num_shots", max(1, round(self.seconds * self.fps / self.shot_frames)))
        if self.size < 16:
            raise ValueError(f"size must be >= 16 px, got {self.size}")
        if self.num_shots < 1 or self.shot_frames < 2:
            raise ValueError(f"need num_shots >= 1 and shot_frames >= 2, got {self.num_shots}, {self.shot_frames}")
        if self.num_characters < 0 or self.motion < 0 or self.fps <= 0 or self.aspect <= 0:
            raise ValueError("num_characters, motion must be >= 0 and fps, aspect > 0")
        if not 0.0 <= self.shot_frames_jitter < 1.0:
            raise ValueError(f"shot_frames_jitter must be in [0, 1), got {self.shot_frames_jitter}")

    @property
    def height(self) -> int:
        return int(self.size)

    @property
    def width(self) -> int:
        return max(2, 2 * round(self.size * self.aspect / 2))


class SyntheticFilm(NamedTuple):
    """``frames``: a one-shot iterator of uint8 RGB ``[H,W,3]``; ``truth``: the truth dict."""

    frames: Iterator[np.ndarray]
    truth: dict


# ---------------------------------------------------------------------------------------------
# Colours
# ---------------------------------------------------------------------------------------------
def _shade(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """Cel shadow tone: darker, a little more saturated, hue pulled toward blue."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255.0 for c in rgb))
    h_deg = h * 360.0
    h_deg += 0.15 * (((240.0 - h_deg + 180.0) % 360.0) - 180.0)
    return _rgb(h_deg, min(1.0, s * 1.15 + 0.05), v * 0.68)


# ---------------------------------------------------------------------------------------------
# Plan: shot timing and content parameters (cheap; gives the truth without drawing)
# ---------------------------------------------------------------------------------------------
def _cast(cfg: FilmConfig) -> list[dict]:
    rng = np.random.default_rng([cfg.seed, 7919])
    n = cfg.cast_size or max(4, 2 * cfg.num_characters)
    cast = []
    for _ in range(n):
        hue = rng.uniform(0, 360)
        parts = {
            "skin": _rgb(rng.uniform(15, 35), rng.uniform(0.2, 0.5), rng.uniform(0.8, 1.0)),
            "hair": _rgb(rng.uniform(0, 360), rng.uniform(0.4, 0.9), rng.uniform(0.25, 0.9)),
            "shirt": _rgb(hue, rng.uniform(0.5, 0.9), rng.uniform(0.6, 0.95)),
            "sleeve": _rgb(hue + rng.choice([0, 30, 180]), rng.uniform(0.4, 0.9), rng.uniform(0.5, 0.9)),
            "pants": _rgb(hue + rng.uniform(90, 270), rng.uniform(0.3, 0.8), rng.uniform(0.3, 0.8)),
            "shoe": _rgb(rng.uniform(0, 360), rng.uniform(0.2, 0.6), rng.uniform(0.15, 0.45)),
        }
        cast.append({
            "colors": {k: (c, _shade(c)) for k, c in parts.items()},
            "head_r": rng.uniform(0.09, 0.13),  # fractions of the character height
            "torso_w": rng.uniform(0.09, 0.14),
            "torso_h": rng.uniform(0.24, 0.3),
            "arm": rng.uniform(0.15, 0.19),
            "leg": rng.uniform(0.2, 0.24),
            "limb_w": rng.uniform(0.035, 0.05),
        })  # fmt: skip
    return cast


def _shot_lengths(cfg: FilmConfig) -> list[int]:
    if cfg.shot_frames_jitter == 0:
        return [cfg.shot_frames] * cfg.num_shots
    rng = np.random.default_rng([cfg.seed, 104729])
    j = cfg.shot_frames_jitter
    return [max(2, round(cfg.shot_frames * rng.uniform(1 - j, 1 + j))) for _ in range(cfg.num_shots)]


def plan_film(cfg: FilmConfig) -> list[dict]:
    """Per-shot parameters (timing, palette, characters, camera), deterministic by seed."""
    shots, start, hue = [], 0, float(np.random.default_rng([cfg.seed, 1]).uniform(0, 360))
    for k, n in enumerate(_shot_lengths(cfg)):
        rng = np.random.default_rng([cfg.seed, 1000 + k])
        if k:  # a new palette far from the previous one, so the cut is a real change
            hue = (hue + rng.uniform(100, 260)) % 360
        still = cfg.motion == 0 or rng.random() < cfg.still_prob
        step = 1 if still else (int(rng.choice([2, 3])) if rng.random() < cfg.hold_prob else 1)
        drawings = 1 if still else -(-n // step)
        pan = 0.0
        if not still and rng.random() < cfg.pan_prob:
            pan = float(rng.choice([-1, 1]) * rng.uniform(0.004, 0.009) * cfg.motion * cfg.size * step)
        shots.append({
            "start": start, "end": start + n, "step": step, "still": bool(still),
            "drawings": drawings, "hue": hue, "pan_per_drawing": pan,
            "pan_px": int(math.ceil(abs(pan) * max(drawings - 1, 0))) + 1,
            "seed": [cfg.seed, 1000 + k],
        })  # fmt: skip
        start += n
    return shots


def _truth(cfg: FilmConfig, shots: list[dict]) -> dict:
    holds: list[int] = []
    for s in shots:
        step = s["end"] - s["start"] if s["still"] else s["step"]
        holds += [t for t in range(s["start"] + 1, s["end"]) if (t - s["start"]) % step != 0]
    return {
        "version": 1,
        "generator": "lcmftn.data.synthetic",
        "frames": shots[-1]["end"],
        "fps": float(cfg.fps),
        "width": cfg.width,
        "height": cfg.height,
        "cuts": [s["start"] for s in shots[1:]],
        "shots": [
            {"start": s["start"], "end": s["end"], "step": s["step"], "still": s["still"], "pan_px": s["pan_px"]}
            for s in shots
        ],
        "holds": holds,
        "config": asdict(cfg),
    }


# ---------------------------------------------------------------------------------------------
# Background painting (once per shot, world canvas wider than the frame by the pan distance)
# ---------------------------------------------------------------------------------------------
def _ridge(rng: np.random.Generator, width: int, base: float, amp: float, h: int) -> np.ndarray:
    x = np.arange(width, dtype=np.float64)
    y = np.full(width, base)
    for _ in range(3):
        period = rng.uniform(0.4, 1.6) * h
        y += amp * rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * x / period + rng.uniform(0, 2 * np.pi))
    return y


def _paint_background(rng: np.random.Generator, h: int, w: int, hue: float, horizon: int) -> np.ndarray:
    night = rng.random() < 0.25
    v_sky = 0.45 if night else 0.95
    top, bottom = np.array(_rgb(hue, 0.55, v_sky * 0.8)), np.array(_rgb(hue + 25, 0.25, v_sky))
    ramp = np.linspace(0.0, 1.0, horizon, dtype=np.float32)[:, None]
    bg = np.empty((h, w, 3), np.uint8)
    bg[:horizon] = (top * (1 - ramp) + bottom * ramp)[:, None, :].astype(np.uint8)
    bg[horizon:] = _rgb(hue + 60, 0.45, 0.55 if night else 0.8)
    cloud = _rgb(hue + 10, 0.08, 0.7 if night else 1.0)
    for _ in range(int(rng.integers(2, 6)) * max(1, w // h)):
        c = (int(rng.uniform(0, w)), int(rng.uniform(0.05, 0.45) * horizon))
        ax = (int(rng.uniform(0.06, 0.14) * h), int(rng.uniform(0.025, 0.05) * h))
        cv2.ellipse(bg, c, ax, 0, 0, 360, cloud, -1, cv2.LINE_AA)
    xs = np.arange(w)
    for depth, (sat, val) in enumerate([(0.35, 0.6), (0.5, 0.45)]):
        ridge = _ridge(rng, w, horizon - (0.22 - 0.1 * depth) * h, 0.06 * h, h)
        pts = np.concatenate([np.stack([xs, ridge], 1), [[w - 1, horizon + 1], [0, horizon + 1]]])
        col = _rgb(hue + 120 + 40 * depth, sat, val * (0.6 if night else 1.0))
        cv2.fillPoly(bg, [np.round(pts).astype(np.int32)], col, cv2.LINE_AA)
    ground_dark = _rgb(hue + 70, 0.5, 0.45 if night else 0.65)
    for _ in range(int(rng.integers(1, 4))):  # paths / furrows on the ground
        y0 = int(rng.uniform(horizon + 0.05 * h, h))
        cv2.rectangle(bg, (0, y0), (w, y0 + max(1, h // 40)), ground_dark, -1)
    lw = max(1, round(h / 160))
    for _ in range(int(rng.integers(1, 3)) * max(1, w // h)):  # houses with roofs and windows
        bw, bh = int(rng.uniform(0.12, 0.22) * h), int(rng.uniform(0.12, 0.25) * h)
        x0, y1 = int(rng.uniform(0, w - bw)), horizon + int(0.02 * h)
        wall, roof = _rgb(hue + rng.uniform(150, 210), 0.3, 0.85), _rgb(hue + 180, 0.6, 0.55)
        cv2.rectangle(bg, (x0, y1 - bh), (x0 + bw, y1), wall, -1)
        cv2.rectangle(bg, (x0, y1 - bh), (x0 + bw, y1), _shade(wall), lw)
        roof_pts = np.array([[x0 - bw // 8, y1 - bh], [x0 + bw // 2, y1 - bh - bw // 2], [x0 + bw + bw // 8, y1 - bh]])
        cv2.fillPoly(bg, [roof_pts], roof, cv2.LINE_AA)
        win = _rgb(60, 0.6, 0.95) if night else _rgb(hue + 200, 0.4, 0.5)
        cv2.rectangle(bg, (x0 + bw // 5, y1 - bh * 2 // 3), (x0 + bw // 5 + bw // 5, y1 - bh // 3), win, -1)
    return bg


# ---------------------------------------------------------------------------------------------
# Characters, props, occluders
# ---------------------------------------------------------------------------------------------
def _fp(v: float) -> int:
    return int(round(v * _ONE))


def _part(img, center, axes, angle_deg, colors, light_dx, lw) -> None:
    """One cel-shaded ellipse part: shadow fill, lit fill shifted toward the light, outline."""
    (lit, shadow), (ax, ay) = colors, axes
    if ax < 0.5 or ay < 0.5:
        return
    c = (_fp(center[0]), _fp(center[1]))
    a = (_fp(ax), _fp(ay))
    cv2.ellipse(img, c, a, angle_deg, 0, 360, shadow, -1, cv2.LINE_AA, _SHIFT)
    lc = (_fp(center[0] + light_dx * ax * 0.25), _fp(center[1] - 0.15 * ay))
    cv2.ellipse(img, lc, (_fp(ax * 0.78), _fp(ay * 0.8)), angle_deg, 0, 360, lit, -1, cv2.LINE_AA, _SHIFT)
    cv2.ellipse(img, c, a, angle_deg, 0, 360, OUTLINE_RGB, lw, cv2.LINE_AA, _SHIFT)


def _segment(img, p, length, angle, width, colors, light_dx, lw):
    """A limb segment from joint ``p`` at ``angle`` (radians, 0 = straight down); returns its end."""
    end = (p[0] + length * math.sin(angle), p[1] + length * math.cos(angle))
    mid = ((p[0] + end[0]) / 2, (p[1] + end[1]) / 2)
    deg = 90.0 - math.degrees(angle)
    _part(img, mid, (length / 2 + width / 2, width / 2), deg, colors, light_dx, lw)
    return end


def _draw_character(img, design: dict, x: float, feet_y: float, height: float, phase: float,
                    swing: float, turn: float, light_dx: float, lw: int) -> None:  # fmt: skip
    """Articulated character at screen ``x`` standing on ``feet_y``; ``turn`` -1 (profile left)
    .. 0 (front) .. 1 (profile right); ``phase`` drives the walk cycle, ``swing`` its amplitude."""
    d, col, hgt = design, design["colors"], height
    facing = 1.0 if turn >= 0 else -1.0
    prof = abs(turn)
    bob = 0.02 * hgt * abs(math.sin(phase)) * min(1.0, swing * 3)
    leg, arm, lwid = d["leg"] * hgt, d["arm"] * hgt, d["limb_w"] * hgt
    hip_y = feet_y - 2 * leg * 0.95 - bob
    tw = d["torso_w"] * hgt * (1 - 0.35 * prof)
    th = d["torso_h"] * hgt
    sh_y = hip_y - th * 0.85
    spread = tw * 0.75 * (1 - prof) + tw * 0.15
    # Limb angles: in profile the swing is a front/back swing; facing front it is a small sway.
    k = swing * (0.3 + 0.7 * prof) * facing
    s = math.sin(phase)
    limbs = []  # (draw order key, kind, joint, angles, colors)
    for side in (-1.0, 1.0):
        near = side * facing >= 0  # the limb on the camera side is drawn after the torso
        leg_a = side * k * s
        knee = max(0.0, -side * s) * swing * 0.8 * facing
        arm_a = -side * k * s * 1.1 + side * 0.12 * (1 - prof)
        elbow = (0.25 + 0.35 * max(0.0, side * s)) * facing * swing
        limbs.append((near, "leg", (x + side * spread * 0.6, hip_y), (leg_a, leg_a - knee)))
        limbs.append((near, "arm", (x + side * (tw * 0.95), sh_y), (arm_a, arm_a + elbow)))

    def draw_limb(kind, joint, angles):
        if kind == "leg":
            knee_p = _segment(img, joint, leg, angles[0], lwid * 1.2, col["pants"], light_dx, lw)
            foot = _segment(img, knee_p, leg, angles[1], lwid * 1.1, col["pants"], light_dx, lw)
            _part(img, (foot[0] + facing * lwid * 0.5 * (0.3 + prof), foot[1]), (lwid * 1.0, lwid * 0.55), 0,
                  col["shoe"], light_dx, lw)  # fmt: skip
        else:
            elbow_p = _segment(img, joint, arm, angles[0], lwid, col["sleeve"], light_dx, lw)
            hand = _segment(img, elbow_p, arm * 0.9, angles[1], lwid * 0.9, col["skin"], light_dx, lw)
            _part(img, hand, (lwid * 0.6, lwid * 0.6), 0, col["skin"], light_dx, lw)

    for near, kind, joint, angles in limbs:
        if not near:
            draw_limb(kind, joint, angles)
    _part(img, (x, (sh_y + hip_y) / 2 - th * 0.05), (tw, th * 0.62), 0, col["shirt"], light_dx, lw)
    for near, kind, joint, angles in limbs:
        if near and kind == "leg":
            draw_limb(kind, joint, angles)
    hr = d["head_r"] * hgt
    hx, hy = x + facing * prof * hr * 0.15, sh_y - hr * 0.95
    _part(img, (hx, hy), (hr * (1 - 0.1 * prof), hr), 0, col["skin"], light_dx, lw)
    # hair: a cap over the top of the head, pushed back in profile
    _part(img, (hx - facing * prof * hr * 0.3, hy - hr * 0.45), (hr * 1.02, hr * 0.6), 0, col["hair"], light_dx, lw)
    er = max(0.6, hr * 0.13)
    for ex in ((0.45 * turn - 0.35 * (1 - prof)), (0.45 * turn + 0.35 * (1 - prof))):
        if prof > 0.85 and ex * facing < 0.3:  # the far eye is hidden in profile
            continue
        c = (_fp(hx + ex * hr), _fp(hy + hr * 0.1))
        cv2.ellipse(img, c, (_fp(er), _fp(er * 1.5)), 0, 0, 360, OUTLINE_RGB, -1, cv2.LINE_AA, _SHIFT)
    for near, kind, joint, angles in limbs:
        if near and kind == "arm":
            draw_limb(kind, joint, angles)


class _ShotRenderer:
    """Draws the frames of one shot; ``render(i)`` draws drawing ``i`` (0 .. drawings-1)."""

    def __init__(self, cfg: FilmConfig, shot: dict, cast: list[dict]):
        rng = np.random.default_rng(shot["seed"])
        h, w = cfg.height, cfg.width
        self.h, self.w, self.lw = h, w, max(1, round(h / 128))
        self.pan = shot["pan_per_drawing"]
        self.world_w = w + shot["pan_px"] + 2
        self.cam0 = 0.0 if self.pan >= 0 else float(self.world_w - w - 1)
        self.horizon = int(rng.uniform(0.45, 0.62) * h)
        self.bg = _paint_background(rng, h, self.world_w, shot["hue"], self.horizon)
        self.light_dx = float(rng.choice([-1.0, 1.0]))
        m = cfg.motion
        self.chars = []
        picks = rng.choice(len(cast), size=min(cfg.num_characters, len(cast)), replace=False)
        for j, c in enumerate(picks):
            depth = rng.uniform(0.55, 1.0)
            mode = rng.choice(["walk", "enter", "turn", "idle"], p=[0.35, 0.3, 0.2, 0.15])
            speed = rng.uniform(0.006, 0.014) * m * h * shot["step"] * (0 if mode in ("turn", "idle") else 1)
            x0 = rng.uniform(0.15, 0.85) * w + self.cam0
            direction = float(rng.choice([-1, 1]))
            if mode == "enter":  # starts outside the frame and walks in
                x0 = self.cam0 + (-0.12 * w if direction > 0 else 1.12 * w)
                speed *= 1.5
            self.chars.append({
                "design": cast[c], "depth": depth, "mode": mode, "x0": x0, "dir": direction,
                "speed": speed, "phase0": rng.uniform(0, 2 * np.pi),
                "cycle": rng.uniform(0.35, 0.6) * shot["step"] * min(1.0, 0.3 + m),
                "turn0": direction * rng.uniform(0.5, 1.0), "order": j,
            })  # fmt: skip
        self.chars.sort(key=lambda ch: ch["depth"])  # far ones first: nearer ones occlude them
        self.occluders = []
        if not shot["still"] and rng.random() < cfg.occluder_prob:
            for _ in range(int(rng.integers(1, 3))):
                self.occluders.append({
                    "x": rng.uniform(0, self.world_w), "w": rng.uniform(0.06, 0.12) * h,
                    "color": _rgb(shot["hue"] + 150, 0.5, 0.35),
                })  # fmt: skip
        self.prop = None
        if not shot["still"] and m > 0 and rng.random() < cfg.prop_prob:
            side = float(rng.choice([-1, 1]))
            self.prop = {
                "side": side, "r": rng.uniform(0.03, 0.06) * h, "vx": rng.uniform(0.02, 0.04) * h * m * shot["step"],
                "y0": rng.uniform(0.2, 0.5) * h, "vy": -rng.uniform(0.0, 0.02) * h * m * shot["step"],
                "g": 0.002 * h * m * shot["step"] ** 2, "color": _rgb(shot["hue"] + 200, 0.8, 0.95),
            }  # fmt: skip

    def render(self, i: int, nudge_px: int = 0) -> np.ndarray:
        h, w = self.h, self.w
        cam = self.cam0 + self.pan * i + nudge_px
        cx = int(math.floor(cam))
        cx = min(max(cx, 0), self.world_w - w)
        img = self.bg[:, cx : cx + w].copy()
        for ch in self.chars:
            height = ch["depth"] * 0.7 * h
            feet_y = self.horizon + (h - self.horizon) * (ch["depth"] - 0.4) / 0.7
            x = ch["x0"] + ch["dir"] * ch["speed"] * i - cam
            turn = ch["turn0"] if ch["mode"] != "turn" else ch["turn0"] * math.cos(i * ch["cycle"] * 0.25)
            swing = 0.55 if ch["mode"] in ("walk", "enter") else 0.15
            phase = ch["phase0"] + i * ch["cycle"]
            if -0.5 * w < x < 1.5 * w:
                _draw_character(img, ch["design"], x, feet_y, height, phase, swing, turn, self.light_dx, self.lw)
        if self.prop is not None:
            p = self.prop
            px = (-p["r"] * 2 + p["vx"] * i) if p["side"] > 0 else (w + p["r"] * 2 - p["vx"] * i)
            py = p["y0"] + p["vy"] * i + p["g"] * i * i
            if -p["r"] < px < w + p["r"] and py < h + p["r"]:
                colors = (p["color"], _shade(p["color"]))
                _part(img, (px, py), (p["r"], p["r"]), 0, colors, self.light_dx, self.lw)
        for oc in self.occluders:  # foreground: moves 1.6x the camera (parallax), drawn last
            ox = oc["x"] - 1.6 * (cam - self.cam0)
            ox = (ox % (w + 2 * oc["w"])) - oc["w"]
            pts = np.array([[ox - oc["w"] / 2, -1], [ox + oc["w"] / 2, -1], [ox + oc["w"] * 0.6, h], [ox - oc["w"] * 0.6, h]])
            pts = np.round(pts * _ONE).astype(np.int32)
            cv2.fillPoly(img, [pts], oc["color"], cv2.LINE_AA, _SHIFT)
            cv2.polylines(img, [pts], True, OUTLINE_RGB, self.lw, cv2.LINE_AA, _SHIFT)
        return img


def _iter_frames(cfg: FilmConfig, shots: list[dict]) -> Iterator[np.ndarray]:
    cast = _cast(cfg)
    for shot in shots:
        r = _ShotRenderer(cfg, shot, cast)
        prev, prev_idx = None, -1
        for t in range(shot["end"] - shot["start"]):
            idx = 0 if shot["still"] else t // shot["step"]
            if idx != prev_idx:
                frame = r.render(idx)
                nudge = 0
                while prev is not None and np.array_equal(frame, prev) and nudge < 4:
                    nudge += 1  # NOTE: keeps the truth exact: a new drawing always differs
                    frame = r.render(idx, nudge_px=nudge)
                prev, prev_idx = frame, idx
            yield prev.copy()  # consumers may draw on their frame; held frames stay intact


def generate_film(cfg: FilmConfig) -> SyntheticFilm:
    """``frames, truth = generate_film(cfg)``: frames are rendered lazily as they are iterated."""
    shots = plan_film(cfg)
    return SyntheticFilm(_iter_frames(cfg, shots), _truth(cfg, shots))


def sidecar_path(video_path: str | os.PathLike) -> Path:
    """Where :func:`write_film` puts the truth: ``<video>.json`` (e.g. ``film.mp4.json``)."""
    p = Path(video_path)
    return p.with_name(p.name + ".json")


def write_film(path: str | os.PathLike, cfg: FilmConfig, crf: int = 18) -> dict:
    """Render ``cfg`` as H.264 to ``path`` (container by suffix) and its truth to ``<path>.json``.

    Both appear only when complete (video first, then the sidecar, each tmp + rename). Returns
    the truth dict."""
    film = generate_film(cfg)
    n = write_video(path, film.frames, cfg.fps, crf=crf)
    if n != film.truth["frames"]:
        raise RuntimeError(f"wrote {n} frames to {path}, truth says {film.truth['frames']}")
    side = sidecar_path(path)
    tmp = side.with_name(f".{side.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(film.truth, indent=1))
    os.replace(tmp, side)
    return film.truth
