"""Line-guided upsampling: colour made at model resolution -> the line art's full resolution.

The model colours a downscaled frame (e.g. 256 px short side); the episode is delivered at the
line art's resolution (e.g. 1080p). Plain bilinear upsampling gives soft colour edges and, worse,
grey/dark halos: the low-resolution output already contains (blurred) dark line pixels, which get
smeared over several full-resolution pixels. The artist's full-resolution line art is known
exactly, so we use it as the guide:

1. ``up``   = bilinear upsample of the model-resolution colour to ``H x W``.
2. ``paper`` = pixels farther than ``halo_px`` from any full-resolution line pixel (line pixels are
   darker than ``line_threshold``). Near lines ``up`` is contaminated by the blurred lines.
3. ``fill``: every contaminated pixel takes the colour of the *nearest clean paper pixel*
   (``cv2.distanceTransformWithLabels``), i.e. a line-aware nearest-neighbour inpainting (the
   limit of a joint-bilateral filter whose range kernel is the paper mask). The nearest clean
   pixel lies on the pixel's own side of the line, so region colours run up to the line with no
   halo and never mix across it (a plain normalised convolution would blend both sides).
4. Ink: ``out = colour * (lineart / 255)`` (a "multiply" ink layer, as in paint programs): the
   full-resolution lines are re-imposed with their exact width and anti-aliasing.

NOTE: colour boundaries that follow no line (two-tone shading edges) stay as sharp as the
model-resolution output allows; step 4 makes lines black even where the source had coloured lines
(the line art is the artist's ink). ``ink="none"`` skips step 4.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class UpsampleConfig:
    """Guided upsampling settings (all sizes in full-resolution pixels unless noted)."""

    line_threshold: int = 128  # line-art value (0..255) below which a pixel is a line pixel
    halo_px: int = 0  # band around lines treated as contaminated; 0 = auto (max(1, round(scale)))
    ink: str = "multiply"  # "multiply" (re-impose the line art) or "none"


def guided_upsample(
    color: np.ndarray, lineart: np.ndarray, cfg: UpsampleConfig = UpsampleConfig()
) -> np.ndarray:
    """Upsample ``color`` (uint8 [h, w, 3] RGB) to the size of ``lineart`` (uint8 [H, W],
    255 = paper) guided by the line art. Returns uint8 [H, W, 3]. Deterministic."""
    if color.dtype != np.uint8 or color.ndim != 3 or color.shape[2] != 3:
        raise ValueError(f"color must be uint8 [h, w, 3], got {color.dtype} {color.shape}")
    if lineart.dtype != np.uint8 or lineart.ndim != 2:
        raise ValueError(f"lineart must be uint8 [H, W], got {lineart.dtype} {lineart.shape}")
    if cfg.ink not in ("multiply", "none"):
        raise ValueError(f"ink must be 'multiply' or 'none', got {cfg.ink!r}")
    big_h, big_w = lineart.shape
    h, w = color.shape[:2]
    scale = max(big_h / h, big_w / w, 1.0)
    # NOTE: uint8 throughout (every value before the ink is a resized uint8 pixel), and work only
    # where it changes something (contaminated pixels, inked pixels): the same bytes as the float
    # version, ~10x faster on 1080p frames (issue 8: it was 0.26 s of every coloured 1080p frame).
    out = cv2.resize(color, (big_w, big_h), interpolation=cv2.INTER_LINEAR)

    lines = (lineart < cfg.line_threshold).astype(np.uint8)
    # auto: the bilinear smear of a model pixel reaches ~scale full-resolution pixels; at scale 1
    # only the line's own anti-aliased edge (1 px). Was ceil(scale) + 1: on the demo episode a
    # perfect colouring scored 20.45 dB through it (64 -> 80 px) vs 22.14 dB with 1 px.
    halo = cfg.halo_px or max(1, int(round(scale)))
    near_line = cv2.dilate(lines, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * halo + 1,) * 2))

    # Nearest clean paper pixel for every pixel (labels index the zero pixels of `near_line` in
    # raster order): each contaminated pixel takes the colour of the closest clean pixel, which
    # lies on its own side of the line, so colours never mix across a line.
    flat_near = near_line.reshape(-1)
    clean_pos = np.flatnonzero(flat_near == 0)  # label k -> raster position of clean pixel k
    if len(clean_pos):
        _, labels = cv2.distanceTransformWithLabels(
            near_line, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
        )
        dirty = np.flatnonzero(flat_near)
        src = clean_pos[np.clip(labels.reshape(-1)[dirty] - 1, 0, len(clean_pos) - 1)]
        flat = out.reshape(-1, 3)
        flat[dirty] = flat[src]
    if cfg.ink == "multiply":  # colour * lineart / 255, only where the line art is not paper
        inked = np.flatnonzero(lineart.reshape(-1) < 255)
        flat = out.reshape(-1, 3)
        flat[inked] = _ink_table()[flat[inked], lineart.reshape(-1)[inked, None]]
    return out


@functools.lru_cache(maxsize=1)
def _ink_table() -> np.ndarray:
    """``[colour, line art] -> round(colour * (line art / 255))`` in float32 (uint8 [256, 256])."""
    c = np.arange(256, dtype=np.float32)[:, None]
    la = np.arange(256, dtype=np.uint8)[None, :]
    table = np.clip(np.rint(c * (la.astype(np.float32) / 255.0)), 0, 255).astype(np.uint8)
    table.setflags(write=False)
    return table


def resize_color(color: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Area-resize (down) or bilinear-resize (up) an RGB uint8 image to ``(H, W)``."""
    h, w = size_hw
    interp = cv2.INTER_AREA if h * w < color.shape[0] * color.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(color, (w, h), interpolation=interp)
