"""An episode's inputs for colorization: line art, keyframes, shot list (Ray-free).

Used by ``workflows.colorize`` (DESIGN §2 "colorize") and its benchmarks:

* :func:`stage`: a local path for a local or ``s3://`` input (downloads via
  :mod:`lcmftn.integrations.storage`).
* :func:`read_lineart`: a line-art video or image folder, normalised (any convention,
  :func:`lcmftn.data.lineart.normalize_lineart`) into an :class:`Episode`; unreadable frames are
  named and replaced by their nearest readable neighbour so indexing stays aligned.
* :func:`read_keyframes`: coloured keyframes named by frame index; a keyframe of another size
  is resized (same aspect, warning) or rejected, every problem naming the file. The streaming
  job keeps only a :class:`KeyframeRef` per keyframe (location + digest); workers read it.
* :func:`load_shots`: ``--shots`` JSON or shot detection; contiguous ``[start, end)`` ranges.
* :func:`episode_from_color`: evaluation input, line art synthesised from a colour episode.

Streaming (the colorize job; no process holds the episode):

* :func:`open_source`: a :class:`LineartSource` from metadata only (probe / folder listing; a
  video's :class:`lcmftn.data.video.FrameIndex`, demuxed once, no decoding).
* :func:`scan_lineart`: the driver's one pass (one frame in memory): per-frame digests,
  unreadable frames, the detected shots.
* :class:`ShotFrames`: a worker's windowed random access to a shot's frames (the one frame-range
  reader, :func:`lcmftn.data.video.iter_frame_range`: seek to a keyframe, frames placed by pts;
  the worker holds only its shot's :meth:`LineartSource.window`), checked against the planned
  digests.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from lcmftn.data.lineart import LineArtConfig, extract_lineart, normalize_lineart
from lcmftn.integrations import storage

if TYPE_CHECKING:
    from lcmftn.data.video import FrameIndex

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


def key_digest(img: np.ndarray) -> str:
    """Content digest of a keyframe as coloured from (shape + RGB bytes; blake2b-128 hex): what
    a shot's fingerprint holds, and what a worker checks a lazily read keyframe against."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(tuple(img.shape)).encode())
    h.update(np.ascontiguousarray(img).tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class KeyframeRef:
    """A keyframe the driver checked and fingerprinted but does not hold (issue 8: the driver's
    and the actors' memory must not grow with the number of shots). A worker reads it when it
    starts the shot (:meth:`load`): from the driver's copy when that path exists here (same
    machine or shared storage), else from ``uri`` (``s3://``, another node)."""

    uri: str  # the keyframe's own location (s3:// or a local path)
    local: str  # the driver's copy (stage() downloads s3 refs)
    size_hw: tuple[int, int]  # the line art's size: a resized keyframe is resized again on load
    digest: str  # key_digest() of the RGB the driver read (after the resize)

    def load(self) -> np.ndarray:
        import tempfile

        from lcmftn.data.video import read_image, to_rgb

        if Path(self.local).exists() or not storage.is_s3(self.uri):
            img = to_rgb(read_image(self.local))
        else:
            with tempfile.TemporaryDirectory(prefix="lcmftn-key-") as tmp:
                p = Path(tmp) / self.uri.rsplit("/", 1)[-1]
                p.write_bytes(storage.read_bytes(self.uri))
                img = to_rgb(read_image(p))
        img = _fit_keyframe(img, self.size_hw)
        if key_digest(img) != self.digest:
            raise ValueError(f"keyframe {self.uri}: changed since the job was planned (digest differs)")
        return img


def _fit_keyframe(img: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    H, W = size_hw
    h, w = img.shape[:2]
    if (h, w) != (H, W):
        interp = cv2.INTER_AREA if h * w > H * W else cv2.INTER_CUBIC
        img = cv2.resize(img, (W, H), interpolation=interp)
    return np.ascontiguousarray(img)


def load_keyframe(key: np.ndarray | KeyframeRef) -> np.ndarray:
    """A job's keyframe as RGB: an in-memory one as it is, a :class:`KeyframeRef` read now."""
    return key.load() if isinstance(key, KeyframeRef) else key


def read_keyframes(refs: Path, n_frames: int, size_hw: tuple[int, int], policy: str = "resize",
                   aspect_tolerance: float = 0.01, uri: str | None = None,
                   ) -> tuple[dict[int, np.ndarray] | dict[int, KeyframeRef], list[str], list[str]]:
    """Keyframes ``{frame index: RGB uint8 [H, W, 3]}`` from images named by frame index
    (the last integer of the file name: ``000120.png``, ``key_120.jpg``). Returns
    (keyframes, warnings, errors); every problem names the file.

    ``uri`` (the streaming job: the ``--refs`` given, ``refs`` being this process's copy): the
    keyframes are checked one at a time and returned as :class:`KeyframeRef` (no pixels held)."""
    from lcmftn.data.video import (
        VideoReadError,
        frame_index_from_name,
        list_image_files,
        read_image,
        to_rgb,
    )

    files = list_image_files(refs) if refs.is_dir() else [refs]
    keys: dict = {}
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
            else:
                reason = "aspect differs" if policy == "resize" else "--keyframe-size reject"
                errors.append(f"{what}: rejected ({reason})")
                continue
        img = _fit_keyframe(img, size_hw)
        if uri is None:
            keys[idx] = img
        else:
            rel = f.relative_to(refs).as_posix() if refs.is_dir() else ""
            own = storage.join(uri, rel) if rel else uri
            keys[idx] = KeyframeRef(own, str(f), (H, W), key_digest(img))
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


# ---------------------------------------------------------------------------------------------
# Streaming: the line art stays in its file; the driver scans it once, workers read their shots
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LineartSource:
    """Where an episode's line art is, and its metadata; picklable (sent to the workers).

    uri: what the user gave (local path or ``s3://``); local: this driver's copy of it (the path
    itself for local inputs); kind: ``video`` | ``folder`` | ``memory``; files: a folder's image
    names in frame order; frames: the normalised frames of a ``memory`` source (evaluation mode);
    index: a video's :class:`lcmftn.data.video.FrameIndex` (where each frame's packet is: the
    whole film's on the driver, one shot's :meth:`window` in a worker's job; None: probed by the
    reader where needed)."""

    uri: str
    local: str
    kind: str
    n_frames: int
    fps: float
    size_hw: tuple[int, int]
    files: tuple[str, ...] = ()
    frames: tuple[np.ndarray, ...] | None = None
    index: FrameIndex | None = None

    @property
    def source(self) -> str:
        return self.local if self.kind != "memory" else self.uri

    def window(self, start: int, stop: int) -> FrameIndex | None:
        """The part of a video's index that reads frames ``[start, stop)`` (a few bytes per frame
        of the range; what a worker's job carries); None for folders and memory sources."""
        return self.index.window(start, stop) if self.index is not None else None

    def with_index(self, index: FrameIndex | None) -> LineartSource:
        """This source reading with ``index`` (a job's :meth:`window`); unchanged for None."""
        return self if index is None else replace(self, index=index)

    def without_index(self) -> LineartSource:
        """The metadata alone, for the colorize actors (their jobs carry their shots' windows, so
        no actor receives the whole film's index)."""
        return replace(self, index=None)


def open_source(uri: str, local: Path, fps: float | None = None) -> LineartSource:
    """Metadata only (PyAV probe / folder listing): frame count, rate, size and, for a video, its
    :class:`lcmftn.data.video.FrameIndex` (packets demuxed once). Nothing decoded but the first
    frame. ``local``: this process's copy of ``uri`` (:func:`stage` downloads an ``s3://`` one)."""
    from lcmftn.data.video import (
        DEFAULT_FOLDER_FPS,
        VideoReadError,
        list_image_files,
        probe_keyframes,
        probe_video,
        read_image,
    )

    if local.is_dir():
        files = list_image_files(local)
        if not files:
            raise ValueError(f"--lineart {local}: the folder holds no images")
        size = None
        for f in files:  # the first readable image gives the size
            try:
                size = read_image(f).shape[:2]
                break
            except VideoReadError:
                continue
        if size is None:
            raise ValueError(f"--lineart {local}: no frame could be read")
        return LineartSource(uri, str(local), "folder", len(files), float(fps or DEFAULT_FOLDER_FPS),
                             tuple(size), tuple(f.name for f in files))
    try:
        info = probe_video(local)
        index = probe_keyframes(local)
    except VideoReadError as err:
        raise ValueError(f"--lineart {err}") from err
    return LineartSource(uri, str(local), "video", info.frames, float(fps or info.fps),
                         (info.height, info.width), index=index)


def memory_source(ep: Episode) -> LineartSource:
    """An in-memory episode (``--from-color`` evaluation) as a source."""
    return LineartSource(ep.source, ep.source, "memory", len(ep.lineart), ep.fps, ep.size_hw,
                         frames=tuple(ep.lineart))


_STAGED: dict[str, Path] = {}  # uri -> this process's local copy (one download per worker)


def local_path(src: LineartSource) -> Path:
    """This process's path to the source: the driver's when it exists here (same machine / shared
    storage), else an ``s3://`` video staged once per process to a temp dir (image folders on s3
    are read file by file instead, see :func:`iter_raw`)."""
    if Path(src.local).exists() or not storage.is_s3(src.uri):
        return Path(src.local)
    if src.kind == "folder":
        return Path(src.local)  # not staged: read per file
    if src.uri not in _STAGED:
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix="lcmftn-lineart-"))
        _STAGED[src.uri] = storage.download(src.uri, tmp / src.uri.rsplit("/", 1)[-1])
    return _STAGED[src.uri]


def _read_folder_frame(src: LineartSource, i: int, base: Path) -> np.ndarray:
    from lcmftn.data.video import read_image

    name = src.files[i]
    if base.is_dir():
        return read_image(base / name)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="lcmftn-frame-") as tmp:  # s3 folder, other node
        p = Path(tmp) / name
        p.write_bytes(storage.read_bytes(storage.join(src.uri, name)))
        return read_image(p)


def iter_raw(src: LineartSource, start: int, end: int) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
    """``(index, raw frame or None, error)`` for frames ``start..end-1``, as decoded (not
    normalised). A video that stops decoding yields None (with the reason) for the rest, as do
    frames the container announces but has no packet for (``src.index`` counts fewer)."""
    from lcmftn.data.video import VideoReadError, iter_frame_range

    if src.kind == "memory":
        for i in range(start, end):
            yield i, src.frames[i], None
        return
    base = local_path(src)
    if src.kind == "folder":
        for i in range(start, end):
            try:
                yield i, _read_folder_frame(src, i, base), None
            except VideoReadError as err:
                yield i, None, f"line-art frame {i} ({base / src.files[i]}): {err.reason}"
        return
    i, stop = start, min(end, src.index.frames) if src.index is not None else end
    try:
        for img in iter_frame_range(base, start, stop, index=src.index) if start < stop else ():
            yield i, img, None
            i += 1
    except VideoReadError as err:
        for j in range(i, end):
            yield j, None, f"line-art frame {j} of {src.local}: unreadable ({err.reason})"
        return
    for j in range(i, end):  # no packet: the file holds fewer frames than it announces
        yield j, None, (f"line-art frame {j} of {src.local}: unreadable (the container announces "
                        f"{src.n_frames} frames, {src.index.frames} were found by demuxing: truncated?)")


def _normalise(src: LineartSource, i: int, img: np.ndarray) -> np.ndarray:
    la = img if src.kind == "memory" else normalize_lineart(img)
    if la.shape[:2] != tuple(src.size_hw):
        raise ValueError(f"line-art frame {i} ({src.local}): size {la.shape[1]}x{la.shape[0]} differs "
                         f"from the first frame's")
    return la


def iter_lineart(src: LineartSource, start: int, end: int) -> Iterator[np.ndarray]:
    """Normalised line art of frames ``start..end-1`` (uint8 [H, W], 255 = paper), one at a time.
    Raises ``ValueError`` naming the frame and file for an unreadable frame."""
    for i, img, err in iter_raw(src, start, end):
        if img is None:
            raise ValueError(err)
        yield _normalise(src, i, img)


def frame_digest(la: np.ndarray) -> bytes:
    """blake2b-128 of a normalised line-art frame (what shot fingerprints are made of)."""
    import hashlib

    return hashlib.blake2b(la.tobytes(), digest_size=16).digest()


@dataclass
class Scan:
    """What the driver's one streaming pass over the line art found (O(1) frames held).

    digests: 16 bytes per frame (:func:`frame_digest`); unreadable: frame index -> message;
    shots: detected ``[start, end)`` ranges (None when not asked for)."""

    digests: bytes
    unreadable: dict[int, str]
    shots: list[tuple[int, int]] | None

    def digest(self, i: int) -> bytes:
        return self.digests[16 * i:16 * (i + 1)]


def scan_lineart(src: LineartSource, detect: bool, detector: str = LINEART_DETECTOR,
                 threshold: float | None = None) -> Scan:
    """One pass over the line art: per-frame digests, unreadable frames (named) and, with
    ``detect``, the shot list (:func:`lcmftn.data.shots.detect_shots` fed frame by frame with
    the decoded frames, as the in-memory job fed it the file). An unreadable frame is replaced,
    for detection only, by the previous readable one (leading ones by the first readable)."""
    from lcmftn.data.video import to_rgb

    digests = bytearray()
    bad: dict[int, str] = {}
    state: dict = {"prev": None, "lead": 0}

    def frames() -> Iterator[np.ndarray]:
        for i, img, err in iter_raw(src, 0, src.n_frames):
            la = None
            if img is not None:
                try:
                    la = _normalise(src, i, img)
                except ValueError as e:
                    err = str(e)
            if la is None:
                bad[i] = err
                digests.extend(bytes(16))
                if state["prev"] is None:
                    state["lead"] += 1
                else:
                    yield state["prev"]
                continue
            digests.extend(frame_digest(la))
            rgb = cv2.cvtColor(la, cv2.COLOR_GRAY2RGB) if src.kind == "memory" else to_rgb(img)
            for _ in range(state["lead"]):
                yield rgb
            state["prev"], state["lead"] = rgb, 0
            yield rgb

    shots = None
    if detect:
        from lcmftn.data.shots import detect_shots

        kwargs = {"detector": detector} | ({"threshold": threshold} if threshold is not None else {})
        shots = [(int(a), int(b)) for a, b in detect_shots(frames(), fps=src.fps, **kwargs).shots]
    else:
        for _ in frames():
            pass
    if len(bad) == src.n_frames:
        raise ValueError(f"--lineart {src.local}: no frame could be read ({next(iter(bad.values()))})")
    for msg in bad.values():
        log.error("%s", msg)
    return Scan(bytes(digests), bad, shots)


class ShotFrames:
    """Random access to frames ``start..end-1`` of a source, holding at most ``window`` frames.

    Forward reads decode on from the current position; a read behind it (backward chains,
    keyframes in the middle of a shot) seeks once and decodes a window ending at that frame.
    Every frame is checked against the digest the driver planned with (``digests``), so a
    source that changed during the run is an error, not silently different pixels."""

    lazy = True  # lcmftn.colorize.ShotColorizer indexes it, never copies it into a list

    def __init__(self, src: LineartSource, start: int, end: int, digests: bytes | None = None,
                 window: int = 16) -> None:
        self.src, self.start, self.end = src, int(start), int(end)
        self.digests, self.window = digests, max(2, int(window))
        self._cache: dict[int, np.ndarray] = {}
        self._it: Iterator[np.ndarray] | None = None
        self._pos = self.start  # next frame the open iterator yields

    def __len__(self) -> int:
        return self.end - self.start

    def __getitem__(self, t: int) -> np.ndarray:
        """Frame ``t`` of the shot (0-based)."""
        i = self.start + int(t)
        if not self.start <= i < self.end:
            raise IndexError(f"frame {t} outside the shot's {len(self)} frames")
        if i in self._cache:
            return self._cache[i]
        if self._it is None or i < self._pos or i >= self._pos + 4 * self.window:
            first = max(self.start, i - self.window + 1) if (self._it is not None and i < self._pos) else i
            self._open(first)
        while self._pos <= i:
            self._put(self._pos, next(self._it))
            self._pos += 1
        return self._cache[i]

    def _open(self, first: int) -> None:
        self.close()
        self._it, self._pos = iter_lineart(self.src, first, self.end), first

    def _put(self, i: int, la: np.ndarray) -> None:
        if self.digests is not None:
            k = i - self.start
            if frame_digest(la) != self.digests[16 * k:16 * (k + 1)]:
                raise ValueError(f"line-art frame {i} of {self.src.source} changed since the job was "
                                 f"planned; rerun the job")
        self._cache[i] = la
        while len(self._cache) > self.window:
            self._cache.pop(max(self._cache, key=lambda j: abs(j - i) * 2 + (j > i)))

    def close(self) -> None:
        if self._it is not None:
            self._it.close()
            self._it = None

    def __iter__(self) -> Iterator[np.ndarray]:
        for t in range(len(self)):
            yield self[t]
