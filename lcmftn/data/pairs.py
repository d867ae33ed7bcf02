"""Training pairs and evaluation sequences within a shot (paper §4.1 and §4.2; DESIGN §2, §6).

Positions are 0-based indices into one shot's frame list (frame ``shot.start + i`` of the film).

Training (paper §4.1): a window of ``width_frames`` frames slides over the shot by
``stride_frames`` (paper: 40 and 5); each window gives one pair (first, last) = (reference,
target). Windows that do not fit are not taken, except that a shot SHORTER than the window gives
the single pair ``(0, n-1)`` when ``n >= 2`` (so short shots still contribute one pair, with the
widest interval they have); shots of 0-1 frames give nothing.

Unchanged pairs (the target shows the reference's drawing) teach nothing and are skipped when
``skip_unchanged``: a pair (a, b) is unchanged when ``changed(a, b)`` is False, or, given only the
per-frame hold flags, when every frame in ``(a, b]`` is a hold (the drawing never changed).

Evaluation (paper §4.2): for a stride S, 5 frames ``t0, t0+S, …, t0+4S`` with a seeded ``t0``;
frame t0 is the reference, frames 1-4 the targets. A sequence with a target unchanged from the
reference is dropped (None). Both use :func:`unchanged_between`, the same rule as training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "WindowConfig",
    "unchanged_between",
    "sample_window_pairs",
    "sample_eval_sequences",
    "EVAL_STRIDES",
]

EVAL_STRIDES = (1, 5, 10)  # paper §4.2


@dataclass(frozen=True)
class WindowConfig:
    """Sliding-window pair sampling within a shot.

    width_frames: window width; a pair spans ``width_frames - 1`` frame intervals (paper: 40).
    stride_frames: step between window starts (paper: 5).
    skip_unchanged: drop pairs whose target shows the reference's drawing.
    """

    width_frames: int = 40
    stride_frames: int = 5
    skip_unchanged: bool = True

    def __post_init__(self) -> None:
        if self.width_frames < 2:
            raise ValueError(f"width_frames must be >= 2, got {self.width_frames}")
        if self.stride_frames < 1:
            raise ValueError(f"stride_frames must be >= 1, got {self.stride_frames}")


def unchanged_between(holds: np.ndarray, a: int, b: int) -> bool:
    """True when every frame in ``(a, b]`` is a hold, i.e. frame b shows frame a's drawing."""
    lo, hi = min(a, b), max(a, b)
    return bool(np.all(holds[lo + 1 : hi + 1]))


def _unchanged_fn(
    holds: np.ndarray | None, changed: Callable[[int, int], bool] | None
) -> Callable[[int, int], bool] | None:
    if changed is not None:
        return lambda a, b: not changed(a, b)
    if holds is not None:
        holds = np.asarray(holds, dtype=bool)
        return lambda a, b: unchanged_between(holds, a, b)
    return None


def sample_window_pairs(
    n_frames: int,
    cfg: WindowConfig | None = None,
    holds: np.ndarray | None = None,
    changed: Callable[[int, int], bool] | None = None,
) -> list[tuple[int, int]]:
    """(reference, target) positions of every window of the shot, in order of window start.

    ``holds``: bool ``[n_frames]`` hold flags of the shot (``holds[i]``: frame i = frame i-1).
    ``changed(a, b)``: an exact test; takes precedence over ``holds``. Neither given: no skipping.
    """
    cfg = cfg or WindowConfig()
    if holds is not None and len(holds) != n_frames:
        raise ValueError(f"holds has {len(holds)} flags for a shot of {n_frames} frames")
    if n_frames < 2:
        return []
    if n_frames < cfg.width_frames:
        pairs = [(0, n_frames - 1)]
    else:
        last = cfg.width_frames - 1
        pairs = [(s, s + last) for s in range(0, n_frames - last, cfg.stride_frames)]
    unchanged = _unchanged_fn(holds, changed) if cfg.skip_unchanged else None
    if unchanged is not None:
        pairs = [(a, b) for a, b in pairs if not unchanged(a, b)]
    return pairs


def sample_eval_sequences(
    n_frames: int,
    stride: int,
    num_frames: int = 5,
    seed: int = 0,
    unchanged: Callable[[int, int], bool] | np.ndarray | None = None,
) -> list[int] | None:
    """Positions ``[t0, t0+S, …]`` of one evaluation sequence of the shot, or None.

    ``t0`` is drawn uniformly from the valid starts with ``numpy.random.default_rng(seed)``.
    None when the shot is shorter than ``(num_frames-1)*stride + 1`` frames or when a target is
    unchanged from the reference. ``unchanged``: ``fn(ref, target) -> bool`` or the shot's bool
    hold flags (then "unchanged" = all frames in between are holds).
    """
    if stride < 1 or num_frames < 2:
        raise ValueError(f"need stride >= 1 and num_frames >= 2, got {stride}, {num_frames}")
    span = (num_frames - 1) * stride + 1
    if n_frames < span:
        return None
    t0 = int(np.random.default_rng(seed).integers(0, n_frames - span + 1))
    seq = [t0 + k * stride for k in range(num_frames)]
    if unchanged is not None:
        test = unchanged if callable(unchanged) else _unchanged_fn(np.asarray(unchanged), None)
        if any(test(seq[0], t) for t in seq[1:]):
            return None
    return seq
