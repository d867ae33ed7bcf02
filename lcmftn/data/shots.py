"""Shot (hard-cut) detection with PySceneDetect's detectors on our own frame stream.

Design decisions:

* Frames come from :func:`lcmftn.data.video.iter_frames` (PyAV, frame-accurate), or from an
  in-memory list/iterator of uint8 RGB frames, or an image folder — so shot boundaries are frame
  indices of exactly the frames every other stage (holds, line art, the dataset) sees. The
  scenedetect detectors are driven directly (``process_frame`` / ``post_process`` with a
  ``FrameTimecode`` per frame) instead of through ``scenedetect.detect``, whose OpenCV backend
  could number frames differently from PyAV on odd files and cannot read frame lists.
* Like ``SceneManager``, frames wider than 256 px are downscaled to 256 px wide (linear
  interpolation) before detection: the detectors' thresholds are calibrated at that size, and the
  reference cut lists of PySceneDetect's test video are reproduced (README data section).
* Shots are ``(start, end)`` with ``start`` inclusive and ``end`` exclusive; they tile
  ``[0, frames)``. A cut at frame ``c`` means ``c`` is the first frame of a new shot.
* ``min_shot_frames`` (default 6, a quarter second of animation) suppresses cuts closer than
  that to the previous one; PySceneDetect's own default is 15 frames, which would merge the
  short shots of fast-cut animation (and of the generator's test films).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

__all__ = ["DETECTORS", "ShotList", "detect_shots", "cuts_to_shots", "match_cuts"]

DEFAULT_MIN_SHOT_FRAMES = 6
DETECTION_WIDTH_PX = 256  # scenedetect.scene_manager.DEFAULT_MIN_WIDTH

# name -> (scenedetect class name, threshold keyword, what the threshold means)
DETECTORS: dict[str, tuple[str, str, str]] = {
    "content": ("ContentDetector", "threshold", "weighted HSV+edge change, 0-255 (default 27)"),
    "adaptive": ("AdaptiveDetector", "adaptive_threshold", "ratio to the rolling mean (default 3)"),
    "hash": ("HashDetector", "threshold", "perceptual-hash distance, 0-1 (default 0.35)"),
    "histogram": ("HistogramDetector", "threshold", "luma histogram difference, 0-1 (default 0.2)"),
    "threshold": ("ThresholdDetector", "threshold", "fade-to-black level, 0-255 (default 12)"),
}


@dataclass
class ShotList:
    """Shots of a video: ``shots[k] = (start, end)`` frame indices, end exclusive."""

    frames: int
    fps: float
    shots: list[tuple[int, int]]
    detector: str = "content"
    threshold: float | None = None
    source: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def cuts(self) -> list[int]:
        """First frame of every shot but the first."""
        return [s for s, _ in self.shots[1:]]

    def to_json(self) -> dict:
        """JSON-ready dict: ``{"frames", "fps", "shots": [{"start", "end"}, ...], "detector", ...}``."""
        return {
            "frames": self.frames,
            "fps": self.fps,
            "shots": [{"start": s, "end": e} for s, e in self.shots],
            "detector": self.detector,
            "threshold": self.threshold,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json())


def cuts_to_shots(cuts: Iterable[int], frames: int) -> list[tuple[int, int]]:
    """Cut frames -> shots tiling ``[0, frames)`` (cuts outside ``(0, frames)`` are ignored)."""
    bounds = [0, *sorted({int(c) for c in cuts if 0 < int(c) < frames}), frames]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def match_cuts(found: Iterable[int], truth: Iterable[int], tolerance_frames: int = 0) -> dict:
    """Precision/recall of detected cuts against true cuts (greedy one-to-one matching within
    ``tolerance_frames``). Empty sets count as perfect (1.0)."""
    found, truth = sorted(set(found)), sorted(set(truth))
    unmatched = list(truth)
    tp = 0
    for c in found:
        best = min(unmatched, key=lambda t: abs(t - c), default=None)
        if best is not None and abs(best - c) <= tolerance_frames:
            unmatched.remove(best)
            tp += 1
    precision = tp / len(found) if found else 1.0
    recall = tp / len(truth) if truth else 1.0
    return {"precision": precision, "recall": recall, "true_positives": tp,
            "false_positives": len(found) - tp, "missed": unmatched}  # fmt: skip


def _make_detector(detector: str, threshold: float | None, min_shot_frames: int):
    import scenedetect  # imported here: scenedetect logs setup at import

    if detector not in DETECTORS:
        raise ValueError(f"unknown shot detector {detector!r}; known: {sorted(DETECTORS)}")
    cls_name, key, _ = DETECTORS[detector]
    kwargs: dict = {"min_scene_len": int(min_shot_frames)}
    if threshold is not None:
        kwargs[key] = float(threshold)
    return getattr(scenedetect, cls_name)(**kwargs)


def _downscale(rgb: np.ndarray) -> np.ndarray:
    w = rgb.shape[1]
    if w <= DETECTION_WIDTH_PX:
        return rgb
    f = w / DETECTION_WIDTH_PX
    size = (max(1, round(w / f)), max(1, round(rgb.shape[0] / f)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)


def detect_shots(
    path_or_frames: str | os.PathLike | Iterable[np.ndarray],
    detector: str = "content",
    threshold: float | None = None,
    min_shot_frames: int = DEFAULT_MIN_SHOT_FRAMES,
    fps: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> ShotList:
    """Detect hard cuts in a video file, an image folder, or frames (uint8 RGB ``[H,W,3]``).

    detector: a key of :data:`DETECTORS`; threshold: that detector's threshold (None = its
    default); min_shot_frames: shortest shot allowed; fps: frame rate reported for frame lists
    (files use their own; image folders 24). Raises :class:`lcmftn.data.video.VideoReadError`
    for unreadable inputs and ValueError for an empty frame list.
    """
    from scenedetect.common import FrameTimecode

    from lcmftn.data.video import DEFAULT_FOLDER_FPS, iter_frames, probe_video

    det = _make_detector(detector, threshold, min_shot_frames)
    source = None
    if isinstance(path_or_frames, str | os.PathLike):
        source = str(path_or_frames)
        rate = fps or probe_video(Path(source)).fps or DEFAULT_FOLDER_FPS
        frames: Iterable[np.ndarray] = iter_frames(source)
    else:
        rate, frames = fps or DEFAULT_FOLDER_FPS, path_or_frames
    cuts, n = [], 0
    for i, rgb in enumerate(frames):
        rgb = np.asarray(rgb)
        if rgb.ndim == 2:
            rgb = cv2.cvtColor(rgb, cv2.COLOR_GRAY2RGB)
        bgr = np.ascontiguousarray(_downscale(rgb)[..., 2::-1])  # detectors expect BGR
        cuts += det.process_frame(FrameTimecode(i, rate), bgr)
        n = i + 1
        if progress is not None:
            progress(n)
    if n == 0:
        raise ValueError(f"no frames to detect shots in{f' ({source})' if source else ''}")
    cuts += det.post_process(FrameTimecode(n - 1, rate))
    cut_frames = [c.frame_num for c in cuts]
    return ShotList(n, float(rate), cuts_to_shots(cut_frames, n), detector, threshold, source)
