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

__all__ = ["DETECTORS", "FEATURE_CONTEXT_FRAMES", "FrameScorer", "ShotList", "cuts_from_features",
           "detect_shots", "cuts_to_shots", "match_cuts"]

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


# ---------------------------------------------------------------------------------------------
# Split detection: per-frame features (parallel, per segment) + decisions (sequential, cheap)
# ---------------------------------------------------------------------------------------------
# Every scenedetect detector is "a per-frame feature" followed by "a decision over the feature
# sequence". The features are the costly part (colour conversion, DCT, histogram of every frame)
# and each needs at most the previous frame: that is the overlap a segment must decode before its
# first frame. The decisions carry unbounded state (the flash filter / ``min_scene_len`` merges
# chains of cuts; AdaptiveDetector averages ``window_width`` scores on BOTH sides of a frame;
# ThresholdDetector remembers the last fade), so they are NOT recomputed per segment: they are
# replayed once over the stitched features of the whole film, by the real detector object whose
# feature method is replaced by a lookup. Cuts are then exactly those of a one-pass run.
#
# NOTE: this reaches into scenedetect 0.7.2's detectors (``_calculate_frame_score``, ``hash_frame``,
# ``calculate_histogram``, ``_size``/``_factor``/``_bins``); tests/unit/test_ingest_segments.py
# compares the replay with ``detect_shots`` for every detector, so an upgrade that changes them
# fails there, not silently.
# name -> frames of context a feature needs before the frame it describes.
FEATURE_CONTEXT_FRAMES: dict[str, int] = {
    "content": 1,     # content_val = mean |HSV(frame) - HSV(previous frame)|
    "adaptive": 1,    # same content_val; its +-window_width rolling mean runs in the replay
    "hash": 0,        # perceptual hash of the frame (the distance is taken in the replay)
    "histogram": 0,   # luma histogram of the frame (the correlation is taken in the replay)
    "threshold": 0,   # mean intensity of the frame
}


def _detection_bgr(rgb: np.ndarray) -> np.ndarray:
    """The image a detector sees in :func:`detect_shots` (RGB -> downscaled BGR)."""
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = cv2.cvtColor(rgb, cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(_downscale(rgb)[..., 2::-1])


class FrameScorer:
    """Per-frame detection features of one segment (see ``FEATURE_CONTEXT_FRAMES``).

    Feed the context frame(s) before the segment with ``prime`` (only the last
    ``FEATURE_CONTEXT_FRAMES[detector]`` count), then every frame of the segment with
    ``feature``; features of consecutive segments concatenate to the features of the film."""

    def __init__(self, detector: str = "content", threshold: float | None = None,
                 min_shot_frames: int = DEFAULT_MIN_SHOT_FRAMES):  # fmt: skip
        self.detector = detector
        self._det = _make_detector(detector, threshold, min_shot_frames)
        self._tc = None

    def _timecode(self):
        from scenedetect.common import FrameTimecode

        if self._tc is None:
            self._tc = FrameTimecode(0, DEFAULT_FPS_FOR_FEATURES)
        return self._tc

    def prime(self, rgb: np.ndarray) -> None:
        """A frame before the segment: updates the context, yields no feature."""
        self.feature(rgb)

    def feature(self, rgb: np.ndarray):
        """The feature of ``rgb`` (a float, or a small array for hash/histogram)."""
        bgr, det = _detection_bgr(rgb), self._det
        if self.detector in ("content", "adaptive"):
            return float(det._calculate_frame_score(self._timecode(), bgr))
        if self.detector == "hash":
            return det.hash_frame(frame_img=bgr, hash_size=det._size, factor=det._factor)
        if self.detector == "histogram":
            return det.calculate_histogram(bgr, bins=det._bins)
        return float(np.mean(bgr))  # threshold


DEFAULT_FPS_FOR_FEATURES = 24.0  # features do not depend on the frame rate


def cuts_from_features(features: list, detector: str = "content", threshold: float | None = None,
                       min_shot_frames: int = DEFAULT_MIN_SHOT_FRAMES,
                       fps: float | None = None) -> list[int]:  # fmt: skip
    """Replay the detector's decisions over a whole film's features -> cut frames (the cuts
    :func:`detect_shots` finds on the same frames, computed without any image)."""
    from scenedetect.common import FrameTimecode

    from lcmftn.data.video import DEFAULT_FOLDER_FPS

    if not features:
        raise ValueError("no frame features to detect shots in")
    det, rate = _make_detector(detector, threshold, min_shot_frames), fps or DEFAULT_FOLDER_FPS
    if detector in ("content", "adaptive"):
        det._calculate_frame_score = lambda timecode, frame_img: features[timecode.frame_num]
    elif detector == "hash":
        det.hash_frame = lambda frame_img, hash_size, factor: features[int(frame_img)]
    elif detector == "histogram":  # called exactly once per process_frame, in frame order
        stored = iter(features)
        det.calculate_histogram = lambda frame_img, bins: next(stored)
    dummy_rgb = np.zeros((1, 1, 3), np.uint8)  # passes HistogramDetector's dtype/channel checks
    cuts = []
    for i, feat in enumerate(features):
        if detector == "histogram":
            img = dummy_rgb
        elif detector == "threshold":
            img = np.asarray(feat, dtype=np.float64)  # np.mean(img) == the stored mean
        else:
            img = np.asarray(i)  # hash: the frame's index (``.copy()`` is kept as last frame)
        cuts += det.process_frame(FrameTimecode(i, rate), img)
    cuts += det.post_process(FrameTimecode(len(features) - 1, rate))
    return [c.frame_num for c in cuts]
