"""Keep the paper of a cel layer: colorize output is exactly paper outside the drawing (issue 11.3).

A character or effect layer is drawn on transparent (or white) paper. A model that never saw paper
without a background paints it (green, cyan, ...). Outside every closed drawn region there is
nothing to colour, so the output there must be the paper itself, untouched.

:func:`paper_mask` finds that region from the line art alone: the pixels reachable from the frame
border without crossing ink.

* ink: a pixel whose ink coverage (normalised line art, 255 = paper) is at least
  ``ink_min`` (default 0.25, i.e. line art <= 191: the core of a 1-px anti-aliased line);
* gaps: the ink is closed (dilate then erode) with a ``(2 close_px + 1)``-square kernel before the
  fill, so gaps in the outline of up to ``2 * close_px`` pixels (default 2) do not let the paper
  leak in; wider gaps do (the region counts as paper);
* fill: 4-connected, from every non-ink border pixel; 8-connected 1-px lines stop it.

:func:`keep_paper` makes the output the paper there: white RGB for white paper; RGBA with alpha 0
for transparent paper (``alpha=True``), the drawn regions opaque with the model's colours. A pixel of
the paper region that holds faint ink (the outer anti-aliasing of a line) keeps the line art's
value (gray on white, or ink with alpha = coverage), so lines keep their soft edge.

Limitation (documented, tested): a drawn region cut open by the frame border (a character walking
out of frame) is reachable from the border and counts as paper.

When to keep the paper (``mode``): ``auto`` keeps it for line art with transparent paper (an RGBA
layer: the paper is unambiguous) and leaves opaque line art alone, because white paper in a
full-frame drawing is indistinguishable from an open region the model must colour (sky, walls);
``keep`` keeps it for any line art (a layer on white paper); ``off`` never.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["PAPER_MODES", "PaperConfig", "paper_mask", "keep_paper", "has_transparent_paper", "resolve_paper_mode",
           "paper_of_source"]

PAPER_MODES = ("auto", "keep", "off")


@dataclass(frozen=True)
class PaperConfig:
    """ink_min: ink coverage (0..1) from which a pixel is a line (blocks the fill).
    close_px: closing radius (px) applied to the ink before the fill; bridges gaps <= 2 * close_px."""

    ink_min: float = 0.25
    close_px: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.ink_min <= 1.0 or self.close_px < 0:
            raise ValueError(f"PaperConfig: ink_min must be in (0, 1] and close_px >= 0, got {self}")


def has_transparent_paper(img: np.ndarray, min_fraction: float = 0.01) -> bool:
    """True for RGBA line art whose alpha is transparent (< 128) on >= ``min_fraction`` of the
    pixels (the normaliser's rule: :func:`lcmftn.data.lineart.normalize_lineart`)."""
    if img.ndim != 3 or img.shape[2] != 4:
        return False
    half = {np.dtype(np.uint8): 128, np.dtype(np.uint16): 32768}.get(img.dtype, 0.5)  # float: [0, 1]
    return float(np.mean(img[..., 3] < half)) >= min_fraction


def resolve_paper_mode(mode: str, raw_first_frame: np.ndarray) -> str:
    """``auto`` | ``keep`` | ``off`` and the raw (decoded, not normalised) first line-art frame ->
    ``"alpha"`` (keep, RGBA output), ``"white"`` (keep, RGB output) or ``"off"``."""
    if mode not in PAPER_MODES:
        raise ValueError(f"paper mode {mode!r}: expected one of {', '.join(PAPER_MODES)}")
    alpha = has_transparent_paper(raw_first_frame)
    if mode == "off" or (mode == "auto" and not alpha):
        return "off"
    return "alpha" if alpha else "white"


def paper_of_source(src, mode: str) -> str:
    """:func:`resolve_paper_mode` on the first readable raw frame of a
    :class:`lcmftn.episode.LineartSource` (``"off"`` when none of its first 8 frames reads)."""
    from lcmftn.episode import iter_raw

    if mode not in PAPER_MODES:
        raise ValueError(f"paper mode {mode!r}: expected one of {', '.join(PAPER_MODES)}")
    if mode == "off":
        return "off"
    for _i, img, _err in iter_raw(src, 0, min(src.n_frames, 8)):
        if img is not None:
            return resolve_paper_mode(mode, img)
    return "off"


def paper_mask(lineart: np.ndarray, cfg: PaperConfig = PaperConfig()) -> np.ndarray:
    """bool [H,W]: the paper of normalised line art (uint8 [H,W], 255 = paper): non-ink pixels
    4-connected to the frame border through non-ink pixels, ink closed by ``cfg.close_px`` first."""
    if lineart.ndim != 2 or lineart.dtype != np.uint8:
        raise ValueError(f"paper_mask: expected uint8 [H,W] line art, got {lineart.dtype} {lineart.shape}")
    ink = (lineart <= int(255 * (1 - cfg.ink_min))).astype(np.uint8)
    if cfg.close_px:
        k = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * cfg.close_px + 1,) * 2)
        ink = cv2.morphologyEx(ink, cv2.MORPH_CLOSE, k)
    # one 4-connected flood fill from a 1-px frame of paper around the image = from every border pixel
    free = np.pad((1 - ink) * np.uint8(255), 1, constant_values=255)
    cv2.floodFill(free, None, (0, 0), 128, 0, 0, 4)
    return free[1:-1, 1:-1] == 128


def keep_paper(rgb: np.ndarray, lineart: np.ndarray, paper: str, cfg: PaperConfig = PaperConfig()) -> np.ndarray:
    """Colour frame ``rgb`` (uint8 [H,W,3]) with its line art's paper restored.

    ``paper``: ``"white"`` -> RGB, the paper region = the line art's gray (white on bare paper);
    ``"alpha"`` -> RGBA, alpha 255 on the drawing, on the paper region ink colour black with
    alpha = the line art's ink (0 on bare paper, whose RGB is white so an alpha-blind reader sees
    white paper); ``"off"`` -> ``rgb`` unchanged."""
    if paper == "off":
        return rgb
    if paper not in ("white", "alpha"):
        raise ValueError(f"keep_paper: paper must be 'white', 'alpha' or 'off', got {paper!r}")
    if rgb.shape[:2] != lineart.shape:
        raise ValueError(f"keep_paper: colour {rgb.shape[:2]} and line art {lineart.shape} differ in size")
    mask = paper_mask(lineart, cfg)
    if paper == "white":
        out = rgb.copy()
        np.copyto(out, lineart[..., None], where=mask[..., None])
        return out
    out = np.empty((*lineart.shape, 4), np.uint8)
    out[..., :3], out[..., 3] = rgb, 255
    bare = (lineart == 255).view(np.uint8) * np.uint8(255)  # RGB white on bare paper, black ink on the fringe
    np.copyto(out[..., :3], bare[..., None], where=mask[..., None])
    np.copyto(out[..., 3], 255 - lineart, where=mask)
    return out
