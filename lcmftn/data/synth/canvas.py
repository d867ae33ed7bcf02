"""Cel rasteriser: closed vector parts -> colour, region ids and anti-aliased ink (v2 generator).

Every part is a closed polygon painted in flat colour (no anti-aliasing inside a cel, as in
ink-and-paint), optionally split into a shadow band (the part minus a copy shifted toward the
light) and a highlight band; each band boundary is drawn as a line, like the colour-trace lines
of real cels. Lines are anti-aliased strokes whose width varies per stroke (``weight``) and
along long strokes. A part erases the lines and colours of the parts under it (occlusion).

Guarantee used by the tests: after :meth:`CelCanvas.seal`, any two 4-neighbour pixels with a
different region id have ink >= 0.55 on one of them, so every 4-connected component of
"paper" pixels (ink < 0.5) of the cel layer lies in one region, i.e. has one colour.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

_SHIFT = 4
_ONE = float(1 << _SHIFT)

Colors = tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]


class CelCanvas:
    """Screen-space cel layer of one frame: ``color`` uint8 [H,W,3], ``region`` int32 [H,W]
    (0 = empty), ``ink`` uint8 [H,W] (255 = full ink)."""

    def __init__(self, h: int, w: int, line_px: float):
        self.h, self.w, self.line_px = h, w, line_px
        self.color = np.zeros((h, w, 3), np.uint8)
        self.region = np.zeros((h, w), np.int32)
        self.ink = np.zeros((h, w), np.uint8)
        self.palette: dict[int, tuple[int, int, int]] = {}  # region id -> colour
        self._next = 1

    def _roi(self, pts: np.ndarray, pad: float):
        x0 = max(0, int(math.floor(pts[:, 0].min() - pad)))
        y0 = max(0, int(math.floor(pts[:, 1].min() - pad)))
        x1 = min(self.w, int(math.ceil(pts[:, 0].max() + pad)) + 1)
        y1 = min(self.h, int(math.ceil(pts[:, 1].max() + pad)) + 1)
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None

    def _stroke_px(self, weight: float) -> int:
        return max(1, int(round(self.line_px * weight)))

    def part(self, poly: Sequence[tuple[float, float]] | np.ndarray, colors: Colors,
             shadow_shift: tuple[float, float] | None = None,
             highlight: np.ndarray | None = None, weight: float = 1.0,
             lines: bool = True) -> tuple[int, int, int, int] | None:
        """Paint one closed part (screen px). ``shadow_shift``: the lit band is the part shifted by
        this vector; the rest is shadow. ``highlight``: polygon of a highlight band (clipped to
        the part). Returns the painted pixels' bbox ``(x0, y0, x1, y1)`` (inclusive), None when
        the part is off-screen."""
        pts = np.asarray(poly, np.float64)
        sw = self._stroke_px(weight)
        roi = self._roi(pts, sw + 2)
        if roi is None:
            return None
        x0, y0, x1, y1 = roi
        rh, rw = y1 - y0, x1 - x0
        ip = np.round((pts - (x0, y0)) * _ONE).astype(np.int32)
        m = np.zeros((rh, rw), np.uint8)
        cv2.fillPoly(m, [ip], 1, cv2.LINE_8, _SHIFT)
        mask = m.view(bool)
        rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        if not len(rows):
            return None
        base, shade, high = colors
        col, reg, ink = self.color[y0:y1, x0:x1], self.region[y0:y1, x0:x1], self.ink[y0:y1, x0:x1]
        bands = [(mask, base)]
        inner = np.zeros((rh, rw), np.uint8)
        if shadow_shift is not None:
            lit = np.zeros((rh, rw), np.uint8)
            sp = np.round((pts - (x0, y0) + shadow_shift) * _ONE).astype(np.int32)
            cv2.fillPoly(lit, [sp], 1, cv2.LINE_8, _SHIFT)
            bands.append((mask & ~lit.view(bool), shade))
            if lines:
                cv2.polylines(inner, [sp], True, 255, max(1, sw - 1), cv2.LINE_AA, _SHIFT)
        if highlight is not None:
            hm = np.zeros((rh, rw), np.uint8)
            hp = np.round((np.asarray(highlight) - (x0, y0)) * _ONE).astype(np.int32)
            cv2.fillPoly(hm, [hp], 1, cv2.LINE_8, _SHIFT)
            bands.append((mask & hm.view(bool), high))
            if lines:
                cv2.polylines(inner, [hp], True, 255, max(1, sw - 1), cv2.LINE_AA, _SHIFT)
        for band, c in bands:
            rid = self._next
            self._next += 1
            self.palette[rid] = tuple(int(v) for v in c)
            col[band] = c
            reg[band] = rid
        ink[mask] = 0  # this part covers the lines under it
        if lines:
            inner[~mask] = 0
            outer = np.zeros((rh, rw), np.uint8)
            self._outline(outer, ip, sw)
            np.maximum(ink, np.maximum(inner, outer), out=ink)
        return x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]), y0 + int(rows[-1])

    def _outline(self, img: np.ndarray, ip: np.ndarray, sw: int) -> None:
        """Closed outline; on long contours the width swells and thins along the stroke."""
        n = len(ip)
        if sw < 2 or n < 12:
            cv2.polylines(img, [ip], True, 255, sw, cv2.LINE_AA, _SHIFT)
            return
        for k in range(0, n, 4):  # 4-segment pieces with a slowly varying width
            seg = ip[[(k + j) % n for j in range(5)]]
            wk = max(1, int(round(sw * (0.75 + 0.35 * math.sin(2 * math.pi * k / n * 2)))))
            cv2.polylines(img, [seg], False, 255, wk, cv2.LINE_AA, _SHIFT)

    def seal(self) -> None:
        """Ink every region boundary that anti-aliasing left faint (see the module docstring)."""
        r = self.region
        edge = np.zeros(r.shape, bool)
        edge[:, :-1] |= r[:, :-1] != r[:, 1:]
        edge[:-1, :] |= r[:-1, :] != r[1:, :]
        weak = edge & (self.ink < 141)
        self.ink[weak] = 141

    def rgba(self) -> np.ndarray:
        """uint8 [H,W,4]: cel colour with alpha = covered (line art not included)."""
        out = np.empty((self.h, self.w, 4), np.uint8)
        out[..., :3] = self.color
        out[..., 3] = (self.region > 0).view(np.uint8) * 255
        return out

    def lineart(self) -> np.ndarray:
        """The artist line art of the layer: uint8 [H,W], 255 = paper, 0 = ink."""
        return 255 - self.ink
