"""An episode's inputs for colorization: line art, keyframes, shot list (Ray-free).

Used by ``workflows.colorize`` (DESIGN §2 "colorize") and its benchmarks:

* :func:`stage`: a local path for a local or ``s3://`` input (downloads via
  :mod:`lcmftn.integrations.storage`).
* :func:`read_lineart`: a line-art video or image folder, normalised (any convention,
  :func:`lcmftn.data.lineart.normalize_lineart`) into an :class:`Episode`; unreadable frames are
  named and replaced by their nearest readable neighbour so indexing stays aligned.
* :func:`read_keyframes`: coloured keyframes named by frame index; a keyframe of another size
  is resized (same aspect, warning) or rejected, every problem naming the file.
* :func:`load_shots`: ``--shots`` JSON or shot detection; contiguous ``[start, end)`` ranges.
* :func:`episode_from_color`: evaluation input, line art synthesised from a colour episode.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from lcmftn.data.lineart import LineArtConfig, extract_lineart, normalize_lineart
from lcmftn.integrations import storage

log = logging.getLogger("workflows.colorize")  # NOTE: the job's logger name, kept for its users

# NOTE: on line art ContentDetector (HSV + edges) finds no cut at all (hue/saturation are 0);
# HashDetector (perceptual hash distance) found exactly the cuts of the generated films and of
# the real clip's line art at 120 and 240 px (AdaptiveDetector added a false cut at 120 px).
LINEART_DETECTOR = "hash"


@dataclass
class Episode:
    """The episode in memory: normalised line art (uint8 [H, W], 255 = paper) per frame."""

    lineart: list[np.ndarray]
    fps: float
    source: str
    unreadable: dict[int, str] = field(default_factory=dict)  # frame index -> message

    @property
    def size_hw(self) -> tuple[int, int]:
        return self.lineart[0].shape[:2]


def stage(uri: str, workdir: Path, name: str) -> Path:
    """A local path for ``uri``: local paths as they are, s3:// files/prefixes downloaded."""
    if not storage.is_s3(uri):
        path = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
        if not path.exists():
            raise ValueError(f"--{name} {uri}: no such file or folder")
        return path
    files = storage.list_uris(uri)
    dest = workdir / name
    if files:  # a prefix ("folder") of frames/keyframes
        base = uri.rstrip("/") + "/"
        for f in files:
            storage.download(f, dest / f[len(base):])
        return dest
    if not storage.exists(uri):
        raise ValueError(f"--{name} {uri}: no such object or prefix")
    return storage.download(uri, dest / uri.rsplit("/", 1)[-1])


def read_lineart(path: Path, fps: float | None = None) -> Episode:
    """Line art of a video or image folder, normalised; unreadable frames are recorded (named)
    and replaced by their neighbour so shot detection and indexing stay aligned."""
    from lcmftn.data.video import (
        DEFAULT_FOLDER_FPS,
        VideoReadError,
        iter_frames,
        list_image_files,
        probe_video,
        read_image,
    )

    frames: list[np.ndarray | None] = []
    bad: dict[int, str] = {}
    if path.is_dir():
        files = list_image_files(path)
        if not files:
            raise ValueError(f"--lineart {path}: the folder holds no images")
        for i, f in enumerate(files):
            try:
                la = normalize_lineart(read_image(f))
                if frames and la.shape != next(x for x in frames if x is not None).shape:
                    raise ValueError(f"size {la.shape[1]}x{la.shape[0]} differs from the first frame's")
                frames.append(la)
            except (ValueError, StopIteration) as err:
                bad[i] = f"line-art frame {i} ({f}): {getattr(err, 'reason', err)}"
                frames.append(None)
        rate = fps or DEFAULT_FOLDER_FPS
    else:
        info = probe_video(path)
        rate = fps or info.fps
        try:
            for img in iter_frames(path):
                frames.append(normalize_lineart(img))
        except VideoReadError as err:
            if not frames:
                raise ValueError(f"--lineart {err}") from err
            for i in range(len(frames), max(info.frames, len(frames) + 1)):
                bad[i] = f"line-art frame {i} of {path}: unreadable ({err.reason})"
                frames.append(None)
    good = [i for i, f in enumerate(frames) if f is not None]
    if not good:
        raise ValueError(f"--lineart {path}: no frame could be read ({next(iter(bad.values()))})")
    for msg in bad.values():
        log.error("%s", msg)
    for i, f in enumerate(frames):  # placeholders: nearest readable frame (never coloured)
        if f is None:
            frames[i] = frames[min(good, key=lambda j: (abs(j - i), j))]
    return Episode(frames, float(rate), str(path), bad)


def read_keyframes(refs: Path, n_frames: int, size_hw: tuple[int, int], policy: str = "resize",
                   aspect_tolerance: float = 0.01) -> tuple[dict[int, np.ndarray], list[str], list[str]]:
    """Keyframes ``{frame index: RGB uint8 [H, W, 3]}`` from images named by frame index
    (the last integer of the file name: ``000120.png``, ``key_120.jpg``). Returns
    (keyframes, warnings, errors); every problem names the file."""
    from lcmftn.data.video import (
        VideoReadError,
        frame_index_from_name,
        list_image_files,
        read_image,
        to_rgb,
    )

    files = list_image_files(refs) if refs.is_dir() else [refs]
    keys: dict[int, np.ndarray] = {}
    warnings: list[str] = []
    errors: list[str] = []
    H, W = size_hw
    for f in files:
        idx = frame_index_from_name(f.stem)  # the same rule that orders image folders
        if idx < 0:
            errors.append(f"keyframe {f}: no frame index in the file name (name it e.g. 000120.png)")
            continue
        if idx >= n_frames:
            errors.append(f"keyframe {f}: frame {idx} is beyond the episode's {n_frames} frames")
            continue
        if idx in keys:
            errors.append(f"keyframe {f}: frame {idx} already has a keyframe; ignored")
            continue
        try:
            img = to_rgb(read_image(f))
        except VideoReadError as err:
            errors.append(f"keyframe {err}")
            continue
        h, w = img.shape[:2]
        if (h, w) != (H, W):
            aspect, want = w / h, W / H
            what = f"keyframe {f}: {w}x{h} (aspect {aspect:.3f}) but the line art is {W}x{H} (aspect {want:.3f})"
            if policy == "resize" and abs(aspect / want - 1) <= aspect_tolerance:
                warnings.append(f"{what}: resized to {W}x{H}")
                interp = cv2.INTER_AREA if h * w > H * W else cv2.INTER_CUBIC
                img = cv2.resize(img, (W, H), interpolation=interp)
            else:
                reason = "aspect differs" if policy == "resize" else "--keyframe-size reject"
                errors.append(f"{what}: rejected ({reason})")
                continue
        keys[idx] = np.ascontiguousarray(img)
    for w_ in warnings:
        log.warning("%s", w_)
    for e in errors:
        log.error("%s", e)
    return keys, warnings, errors


def load_shots(spec: str | None, n_frames: int, detect_source: Path | list[np.ndarray],
               detector: str = "content", threshold: float | None = None) -> list[tuple[int, int]]:
    """Shots ``[(start, end_exclusive)]`` from ``--shots`` (a JSON file or inline JSON: a list of
    pairs, or ``{"shots": [...]}`` as written by ``lcmftn shots --json``) or shot detection."""
    if spec:
        text = Path(spec).read_text() if Path(spec).is_file() else spec
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"--shots {spec[:80]}: not a JSON file or JSON text ({err})") from err
        try:  # [[start, end], ...] or [{"start": s, "end": e}, ...] (`lcmftn shots --json`)
            raw = data["shots"] if isinstance(data, dict) else data
            shots = [(int(s["start"]), int(s["end"])) if isinstance(s, dict) else (int(s[0]), int(s[1]))
                     for s in raw]
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise ValueError(f"--shots {spec[:80]}: entries must be [start, end] pairs or "
                             f"{{\"start\": s, \"end\": e}} objects ({err!r})") from err
    else:
        from lcmftn.data.shots import detect_shots

        kwargs = {"detector": detector} | ({"threshold": threshold} if threshold is not None else {})
        shots = [(int(a), int(b)) for a, b in detect_shots(detect_source, **kwargs).shots]
    if not shots or shots[0][0] != 0 or shots[-1][1] != n_frames or any(
            a >= b for a, b in shots) or any(shots[i][1] != shots[i + 1][0] for i in range(len(shots) - 1)):
        raise ValueError(f"shots {shots[:6]}{'...' if len(shots) > 6 else ''} must be contiguous "
                         f"[start, end) ranges covering frames 0..{n_frames - 1}")
    return shots


def episode_from_color(color: list[np.ndarray], method: str, fps: float, source: str) -> Episode:
    """Evaluation input: line art synthesised (``method`` "xdog" | "canny") from colour frames."""
    lcfg = LineArtConfig(method=method)
    return Episode([extract_lineart(f, lcfg) for f in color], float(fps), str(source))
