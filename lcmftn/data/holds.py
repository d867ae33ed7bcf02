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

Thin line art at any resolution (issue 11): with ``keep_thin_lines`` a pixel is also ink when it
is dark in the un-blurred line art and has a dark 8-neighbour (a 1-px stroke survives, an isolated
codec speck does not), and with ``max_changed_ink_fraction`` the change is also judged relative
to the drawing: a pair is held only when the mismatched ink is at most that fraction of the ink
of the two frames (so a blink on a sparse 2000-px drawing, 0.01 % of the frame, is not a hold).
:meth:`HoldConfig.for_thin_lines` is the preset for clean artist line art at 1000-2000 px.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["HoldConfig", "ink_map", "changed_fraction", "changed_fraction_inks", "changed_ink_fraction_inks",
           "is_hold", "detect_holds"]


@dataclass(frozen=True)
class HoldConfig:
    """Hold detection settings (line art uint8 [H,W], 255 = paper).

    ink_threshold: gray level below which a (blurred) pixel is ink.
    blur_sigma_px: Gaussian σ applied before thresholding (0 = none).
    tolerance_px: a stroke may move this far and still count as unchanged.
    max_changed_fraction: largest fraction of the frame's pixels that may change in a hold.
    keep_thin_lines: also count un-blurred dark pixels that touch another dark pixel as ink.
    max_changed_ink_fraction: largest mismatched ink / mean ink of the two frames in a hold
        (None = judge by the frame fraction only).
    """

    ink_threshold: int = 128
    blur_sigma_px: float = 1.0
    tolerance_px: int = 1
    max_changed_fraction: float = 0.002
    keep_thin_lines: bool = False
    max_changed_ink_fraction: float | None = None

    @classmethod
    def for_thin_lines(cls) -> HoldConfig:
        """Clean thin (1-2 px) line art at any resolution, e.g. 1080p artist drawings."""
        return cls(keep_thin_lines=True, max_changed_ink_fraction=0.01)


def ink_map(lineart: np.ndarray, cfg: HoldConfig | None = None) -> np.ndarray:
    """bool ``[H,W]``: True where the (blurred) line art is ink."""
    cfg = cfg or HoldConfig()
    if lineart.ndim != 2:
        raise ValueError(f"expected line art uint8 [H,W], got shape {lineart.shape}")
    la = lineart
    if cfg.blur_sigma_px > 0:
        la = cv2.GaussianBlur(la, (0, 0), cfg.blur_sigma_px, borderType=cv2.BORDER_REPLICATE)
    ink = la < cfg.ink_threshold
    if cfg.keep_thin_lines:
        raw = (lineart < cfg.ink_threshold).view(np.uint8)
        nb = cv2.boxFilter(raw, cv2.CV_16U, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
        ink |= raw.view(bool) & (nb >= 2)  # itself + at least one dark neighbour
    return ink


def _dilate(ink: np.ndarray, radius_px: int) -> np.ndarray:
    if radius_px <= 0:
        return ink
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius_px + 1, 2 * radius_px + 1))
    return cv2.dilate(ink.view(np.uint8), kernel).view(bool)


def _mismatch(a: np.ndarray, b: np.ndarray, tolerance_px: int) -> int:
    if a.shape != b.shape:
        raise ValueError(f"line-art frames differ in size: {a.shape} vs {b.shape}")
    missing = np.count_nonzero(a & ~_dilate(b, tolerance_px))
    added = np.count_nonzero(b & ~_dilate(a, tolerance_px))
    return missing + added


def changed_fraction_inks(a: np.ndarray, b: np.ndarray, tolerance_px: int) -> float:
    """Fraction of the frame's pixels whose ink differs between two :func:`ink_map` results
    (for callers that keep each frame's ink map, e.g. a streaming ingest)."""
    return _mismatch(a, b, tolerance_px) / a.size


def changed_ink_fraction_inks(a: np.ndarray, b: np.ndarray, tolerance_px: int) -> float:
    """Mismatched ink relative to the drawing: mismatches / mean ink pixels of the two maps
    (0 for two empty pages; inf when one page is empty and the other is not)."""
    mis = _mismatch(a, b, tolerance_px)
    ink = (np.count_nonzero(a) + np.count_nonzero(b)) / 2
    return mis / ink if ink else (0.0 if mis == 0 else float("inf"))


def _held(a: np.ndarray, b: np.ndarray, cfg: HoldConfig) -> bool:
    if changed_fraction_inks(a, b, cfg.tolerance_px) > cfg.max_changed_fraction:
        return False
    lim = cfg.max_changed_ink_fraction
    return lim is None or changed_ink_fraction_inks(a, b, cfg.tolerance_px) <= lim


def changed_fraction(prev: np.ndarray, cur: np.ndarray, cfg: HoldConfig | None = None) -> float:
    """Fraction of the frame's pixels whose ink differs between two line-art frames."""
    cfg = cfg or HoldConfig()
    return changed_fraction_inks(ink_map(prev, cfg), ink_map(cur, cfg), cfg.tolerance_px)


def is_hold(prev_lineart: np.ndarray, cur_lineart: np.ndarray, cfg: HoldConfig | None = None) -> bool:
    """True when ``cur_lineart`` shows the same drawing as ``prev_lineart``."""
    cfg = cfg or HoldConfig()
    return _held(ink_map(prev_lineart, cfg), ink_map(cur_lineart, cfg), cfg)


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
            holds[t] = _held(prev, ink, cfg)
        prev = ink
    return holds
