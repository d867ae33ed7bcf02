"""Hold detection: is the drawing of frame t the same as that of frame t-1?

Animation is drawn "on twos/threes" (one drawing shown for 2-3 frames) and still shots hold one
drawing for seconds. A pair of identical drawings teaches the colorizer nothing (DESIGN §2: the
pair sampler skips them) and lets colorize copy the previous output.

Compression makes held frames differ by noise (DCT ringing, 1-px jitter of anti-aliased lines),
so the comparison is on line maps, not pixels:

1. ink map = line art below ``ink_threshold`` after a Gaussian blur (``blur_sigma_px``) that
   removes isolated speckle;
2. a stroke of one frame counts as unchanged when the other frame has ink within
   ``tolerance_px`` (dilation) — symmetric, so added and removed strokes both count;
3. changed fraction = mismatched ink pixels / pixels of the frame; a hold is a pair whose
   fraction is at most ``max_changed_fraction``.
NOTE: the blur also fades 1-px hairlines (a σ=1 blur lifts a lone 1-px black line to ~153),
so a drawing that differs only in hairlines counts as held; raising ``ink_threshold`` to ~190
keeps them but lets Canny's codec speckle through (the anime clip's hold rate drops from 86 % to
58 % with Canny line art), so the default stays 128.
Normalising by the frame area (not by the ink) keeps the threshold independent of how dense
the drawing is; the default (0.2 % of the frame) was calibrated on the real anime clip and the
generator (see the README data section).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["HoldConfig", "ink_map", "changed_fraction", "changed_fraction_inks", "is_hold", "detect_holds"]


@dataclass(frozen=True)
class HoldConfig:
    """Hold detection settings (line art uint8 [H,W], 255 = paper).

    ink_threshold: gray level below which a (blurred) pixel is ink.
    blur_sigma_px: Gaussian σ applied before thresholding (0 = none).
    tolerance_px: a stroke may move this far and still count as unchanged.
    max_changed_fraction: largest fraction of the frame's pixels that may change in a hold.
    """

    ink_threshold: int = 128
    blur_sigma_px: float = 1.0
    tolerance_px: int = 1
    max_changed_fraction: float = 0.002


def ink_map(lineart: np.ndarray, cfg: HoldConfig | None = None) -> np.ndarray:
    """bool ``[H,W]``: True where the (blurred) line art is ink."""
    cfg = cfg or HoldConfig()
    if lineart.ndim != 2:
        raise ValueError(f"expected line art uint8 [H,W], got shape {lineart.shape}")
    la = lineart
    if cfg.blur_sigma_px > 0:
        la = cv2.GaussianBlur(la, (0, 0), cfg.blur_sigma_px, borderType=cv2.BORDER_REPLICATE)
    return la < cfg.ink_threshold


def _dilate(ink: np.ndarray, radius_px: int) -> np.ndarray:
    if radius_px <= 0:
        return ink
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius_px + 1, 2 * radius_px + 1))
    return cv2.dilate(ink.view(np.uint8), kernel).view(bool)


def changed_fraction_inks(a: np.ndarray, b: np.ndarray, tolerance_px: int) -> float:
    """Fraction of the frame's pixels whose ink differs between two :func:`ink_map` results
    (for callers that keep each frame's ink map, e.g. a streaming ingest)."""
    if a.shape != b.shape:
        raise ValueError(f"line-art frames differ in size: {a.shape} vs {b.shape}")
    missing = np.count_nonzero(a & ~_dilate(b, tolerance_px))
    added = np.count_nonzero(b & ~_dilate(a, tolerance_px))
    return (missing + added) / a.size


def changed_fraction(prev: np.ndarray, cur: np.ndarray, cfg: HoldConfig | None = None) -> float:
    """Fraction of the frame's pixels whose ink differs between two line-art frames."""
    cfg = cfg or HoldConfig()
    return changed_fraction_inks(ink_map(prev, cfg), ink_map(cur, cfg), cfg.tolerance_px)


def is_hold(prev_lineart: np.ndarray, cur_lineart: np.ndarray, cfg: HoldConfig | None = None) -> bool:
    """True when ``cur_lineart`` shows the same drawing as ``prev_lineart``."""
    cfg = cfg or HoldConfig()
    return changed_fraction(prev_lineart, cur_lineart, cfg) <= cfg.max_changed_fraction


def detect_holds(
    lineart_frames: Sequence[np.ndarray], cfg: HoldConfig | None = None
) -> np.ndarray:
    """bool ``[T]``: ``holds[t]`` = frame t holds frame t-1's drawing (``holds[0]`` is False).

    Computes each ink map once (T maps, T-1 comparisons).
    """
    cfg = cfg or HoldConfig()
    holds = np.zeros(len(lineart_frames), dtype=bool)
    prev = None
    for t, la in enumerate(lineart_frames):
        ink = ink_map(la, cfg)
        if prev is not None:
            holds[t] = changed_fraction_inks(prev, ink, cfg.tolerance_px) <= cfg.max_changed_fraction
        prev = ink
    return holds
