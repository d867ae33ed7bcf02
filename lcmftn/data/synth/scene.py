"""Painted backgrounds and effects of the v2 generator (no line art in either, as in anime).

Backgrounds are painted once per shot on a world canvas larger than the frame (the camera pans,
zooms and rolls over it): a gradient sky with soft clouds, or an interior wall; hills, trees and
houses painted in gradients without outlines; a low-frequency "brush" texture modulates every
surface. Effects are RGBA layers drawn over the cels: smoke puffs (soft, translucent, rising
and growing) and sparks (bright dots with glows flying out of a point).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from lcmftn.data.synth.config import rgb


def _texture(rng: np.random.Generator, h: int, w: int, amp: float) -> np.ndarray:
    """Multi-octave value noise in [-amp, amp], float32 [H,W] (painted-paper look)."""
    out = np.zeros((h, w), np.float32)
    for cells, wgt in ((4, 0.5), (16, 0.3), (64, 0.2)):
        g = rng.standard_normal((max(2, h * cells // max(h, w)), cells)).astype(np.float32)
        out += wgt * cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(out, -2, 2) * (amp / 2)


def _vgrad(h: int, w: int, top, bottom) -> np.ndarray:
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    col = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
    return np.broadcast_to(col, (h, w, 3)).copy()


def paint_background(rng: np.random.Generator, h: int, w: int, hue: float, horizon: int) -> np.ndarray:
    """A painted world background uint8 [h,w,3] (outdoor or interior by chance)."""
    if rng.random() < 0.3:
        return _interior(rng, h, w, hue, horizon)
    night = rng.random() < 0.2
    v = 0.45 if night else 1.0
    img = np.empty((h, w, 3), np.float32)
    img[:horizon] = _vgrad(horizon, w, rgb(hue, 0.6, 0.75 * v), rgb(hue + 30, 0.25, 0.97 * v))
    img[horizon:] = _vgrad(h - horizon, w, rgb(hue + 80, 0.4, 0.75 * v), rgb(hue + 70, 0.55, 0.5 * v))
    clouds = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(3, 8)) * max(1, w // h)):
        cx, cy = int(rng.uniform(0, w)), int(rng.uniform(0.05, 0.5) * horizon)
        for _ in range(4):
            r = int(rng.uniform(0.03, 0.08) * h)
            cv2.circle(clouds, (cx + int(rng.uniform(-2, 2) * r), cy + int(rng.uniform(-0.4, 0.4) * r)), r, 255, -1)
    ca = cv2.GaussianBlur(clouds, (0, 0), max(1.0, h / 150))[..., None].astype(np.float32) / 255 * 0.85
    img = img * (1 - ca) + np.asarray(rgb(hue + 20, 0.06, 1.0 * v), np.float32) * ca
    xs = np.arange(w, dtype=np.float32)
    for depth in range(2):  # two ridges of hills, far (pale) then near (stronger)
        y = horizon - (0.2 - 0.08 * depth) * h + sum(
            0.05 * h * rng.uniform(0.3, 1) * np.sin(2 * np.pi * xs / (rng.uniform(0.5, 1.8) * h) + rng.uniform(0, 6))
            for _ in range(3))  # fmt: skip
        mask = np.arange(h, dtype=np.float32)[:, None] > y[None, :]
        mask[horizon:] = True if depth else mask[horizon:]
        col = _vgrad(h, w, rgb(hue + 110 + 30 * depth, 0.3 + 0.2 * depth, (0.75 - 0.15 * depth) * v),
                     rgb(hue + 120 + 30 * depth, 0.5, (0.45 - 0.1 * depth) * v))  # fmt: skip
        img[mask & (np.arange(h)[:, None] < horizon + 2)] = col[mask & (np.arange(h)[:, None] < horizon + 2)]
    for _ in range(int(rng.integers(2, 6)) * max(1, w // h)):  # trees and houses, painted
        x0 = rng.uniform(0, w)
        if rng.random() < 0.5:
            r = rng.uniform(0.05, 0.1) * h
            cv2.rectangle(img, (int(x0 - r * 0.15), int(horizon - r)), (int(x0 + r * 0.15), horizon + 2), rgb(25, 0.5, 0.35 * v), -1)
            cv2.circle(img, (int(x0), int(horizon - r * 1.6)), int(r), rgb(hue + 110, 0.55, 0.5 * v), -1, cv2.LINE_AA)
            cv2.circle(img, (int(x0 - r * 0.3), int(horizon - r * 1.9)), int(r * 0.5), rgb(hue + 100, 0.45, 0.65 * v), -1, cv2.LINE_AA)
        else:
            bw, bh = rng.uniform(0.1, 0.2) * h, rng.uniform(0.1, 0.22) * h
            wall = rgb(hue + rng.uniform(150, 210), 0.25, 0.85 * v)
            cv2.rectangle(img, (int(x0), int(horizon - bh)), (int(x0 + bw), horizon + 2), wall, -1)
            cv2.rectangle(img, (int(x0 + bw * 0.7), int(horizon - bh)), (int(x0 + bw), horizon + 2), tuple(0.8 * np.array(wall)), -1)
            roof = np.array([[x0 - bw * 0.1, horizon - bh], [x0 + bw / 2, horizon - bh - bw * 0.45], [x0 + bw * 1.1, horizon - bh]])
            cv2.fillPoly(img, [roof.astype(np.int32)], rgb(hue + 180, 0.55, 0.5 * v), cv2.LINE_AA)
    img *= 1.0 + _texture(rng, h, w, 0.05)[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _interior(rng: np.random.Generator, h: int, w: int, hue: float, horizon: int) -> np.ndarray:
    img = _vgrad(h, w, rgb(hue, 0.25, 0.85), rgb(hue + 15, 0.3, 0.7))
    floor = int(horizon + 0.1 * h)
    img[floor:] = _vgrad(h - floor, w, rgb(hue + 40, 0.45, 0.6), rgb(hue + 40, 0.5, 0.4))
    for x in range(0, w, max(8, int(rng.uniform(0.25, 0.5) * h))):  # windows with sky
        if rng.random() < 0.5:
            ww, wh = int(0.14 * h), int(0.2 * h)
            y0 = int(horizon - 0.35 * h)
            cv2.rectangle(img, (x, y0), (x + ww, y0 + wh), rgb(hue + 180, 0.35, 0.95), -1)
            cv2.rectangle(img, (x, y0), (x + ww, y0 + wh), rgb(hue, 0.3, 0.55), max(1, h // 100))
    img *= 1.0 + _texture(rng, h, w, 0.06)[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def smoke_layer(puffs: list[dict], i: int, h: int, w: int, affine: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Smoke at drawing ``i``: (rgb float32 [h,w,3], alpha float32 [h,w]); drawn at 1/4 size."""
    q = 4 if h >= 128 else 1
    sh, sw = max(1, h // q), max(1, w // q)
    a = np.zeros((sh, sw), np.float32)
    for p in puffs:
        age = i - p["t0"]
        if age < 0 or age > p["life"]:
            continue
        x, y = p["x"] + p["vx"] * age, p["y"] + p["vy"] * age
        sx, sy = affine @ (x, y, 1.0)
        r = (p["r"] * (1 + 0.08 * age)) * math.sqrt(abs(np.linalg.det(affine[:, :2]))) / q
        cv2.circle(a, (int(sx / q), int(sy / q)), max(1, int(r)), alpha * (1 - age / (p["life"] + 1)), -1, cv2.LINE_AA)
    a = cv2.GaussianBlur(a, (0, 0), max(0.7, sh / 90))
    a = cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR)
    col = np.broadcast_to(np.asarray(puffs[0]["color"], np.float32), (h, w, 3)) if puffs else None
    return col, np.clip(a, 0, 0.9)


def spark_layer(sparks: list[dict], i: int, h: int, w: int, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sparks at drawing ``i``: additive glow (float32 [h,w,3]) and core alpha (float32 [h,w])."""
    core = np.zeros((h, w), np.uint8)
    for s in sparks:
        age = i - s["t0"]
        if age < 0 or age > s["life"]:
            continue
        x, y = s["x"] + s["vx"] * age, s["y"] + s["vy"] * age + 0.5 * s["g"] * age * age
        sx, sy = affine @ (x, y, 1.0)
        tx, ty = affine @ (x - s["vx"] * 0.6, y - s["vy"] * 0.6, 1.0)
        rad = max(1, int(s["r"] * (1 - age / (s["life"] + 1)) + 0.5))
        cv2.line(core, (int(tx), int(ty)), (int(sx), int(sy)), 200, max(1, rad // 2), cv2.LINE_AA)
        cv2.circle(core, (int(sx), int(sy)), rad, 255, -1, cv2.LINE_AA)
    glow = cv2.GaussianBlur(core, (0, 0), max(1.0, h / 120)).astype(np.float32) / 255
    return glow, core.astype(np.float32) / 255
