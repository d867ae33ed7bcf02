"""Frame-accurate streaming video / image-folder I/O (PyAV + OpenCV).

Design decisions:

* Decoding uses PyAV (FFmpeg): every frame is decoded in presentation order, so frame ``i`` of
  :func:`iter_frames` is frame ``i`` of the film (no seeking, no timestamp arithmetic, no
  dropped or duplicated frames the way OpenCV's ``CAP_PROP_POS_FRAMES`` can produce).
* Image folders (``*.png|jpg|jpeg|bmp|tif|tiff|webp``) are frames sorted by the *last integer*
  in the file stem (``f2.png`` before ``f10.png``), ties broken by name. Alpha is composited
  over white for colour reading (:func:`iter_frames`); :func:`read_image` keeps it.
* Working size policy (:func:`resize_image`): the SHORT side is scaled to ``size_px`` and the
  long side to ``round(long * size_px / short)`` (aspect kept; INTER_AREA when shrinking,
  INTER_LINEAR when enlarging). ``crop="center"`` additionally cuts the central
  ``size_px x size_px`` square (loses the sides of a 16:9 frame; off by default because
  colorization wants the whole frame: training takes random crops, inference pads).
* :func:`write_video` writes H.264 (libx264, yuv420p) atomically: a hidden temporary file in the
  destination folder, renamed into place only when the encoder has flushed. yuv420p needs even
  sizes: an odd width/height is padded by repeating the last column/row. Only containers that
  hold H.264 are written (``WRITE_EXTENSIONS``); ``.webm`` (VP8/VP9/AV1 only) is readable but
  refused for writing with a ``ValueError`` naming the file, before anything is encoded.
* Random access is ONE reader, :func:`iter_frame_range` (segmented ingest and streaming colorize):
  :func:`probe_keyframes` demuxes the packets once (no decoding) into a :class:`FrameIndex`
  (every frame's pts, the keyframes); a range is read by seeking to the last keyframe at or before
  its start and placing decoded frames by pts (exact with B-frames, open GOPs, edit lists and
  variable frame rates: no timestamp arithmetic). A worker gets only :meth:`FrameIndex.window`
  of its range.
* Bad input (missing, empty, non-video, truncated) raises :class:`VideoReadError`, a
  ``ValueError`` whose message names the file and the problem.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v")
# Suffix -> FFmpeg muxer for write_video (containers that can hold H.264).
WRITE_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mkv": "matroska", ".mov": "mov", ".avi": "avi"}
WRITE_EXTENSIONS = tuple(WRITE_FORMATS)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
CROP_POLICIES = ("none", "center")
DEFAULT_FOLDER_FPS = 24.0  # image folders carry no frame rate


class VideoReadError(ValueError):
    """A video, image folder or image could not be read; ``str(err)`` names the file, what it
    was read as (``what``: "video" or "image") and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str, what: str = "video"):
        self.path = str(path)
        self.reason = reason
        self.what = what
        super().__init__(f"cannot read {what} {self.path}: {reason}")


# Suffix -> the FFmpeg demuxer name the CONTENT must probe as (``container.format.name`` lists
# aliases separated by commas). A PNG renamed ``.mkv`` probes as ``png_pipe``: refused.
CONTAINER_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska",
                     ".webm": "webm", ".avi": "avi"}


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` knows without decoding every frame.

    frames: number of frames (container count, else demuxed packet count, else decoded count).
    fps: frames per second (average rate; image folders report ``DEFAULT_FOLDER_FPS``).
    width, height: decoded frame size in pixels (before any resize).
    """

    frames: int
    fps: float
    width: int
    height: int


# ---------------------------------------------------------------------------------------------
# Images and resizing
# ---------------------------------------------------------------------------------------------


def working_size(width: int, height: int, size_px: int) -> tuple[int, int]:
    """(width, height) after scaling the short side to ``size_px`` (aspect kept)."""
    if size_px <= 0:
        raise ValueError(f"size_px must be positive, got {size_px}")
    short = min(width, height)
    if width <= height:
        return size_px, max(1, round(height * size_px / short))
    return max(1, round(width * size_px / short)), size_px


def center_crop(img: np.ndarray, size_px: int) -> np.ndarray:
    """Central ``size_px x size_px`` square (the image must be at least that large)."""
    h, w = img.shape[:2]
    if h < size_px or w < size_px:
        raise ValueError(f"cannot crop {size_px}x{size_px} from a {w}x{h} image")
    y0, x0 = (h - size_px) // 2, (w - size_px) // 2
    return img[y0 : y0 + size_px, x0 : x0 + size_px]


def resize_image(img: np.ndarray, size_px: int | None, crop: str = "none") -> np.ndarray:
    """Scale so the short side is ``size_px`` (aspect kept); ``crop="center"`` then cuts the
    central square. ``size_px=None`` returns the image unchanged (or center-cropped to its
    short side when ``crop="center"``)."""
    if crop not in CROP_POLICIES:
        raise ValueError(f"crop must be one of {CROP_POLICIES}, got {crop!r}")
    h, w = img.shape[:2]
    if size_px is not None and min(h, w) != size_px:
        new_w, new_h = working_size(w, h, size_px)
        interp = cv2.INTER_AREA if new_w * new_h < w * h else cv2.INTER_LINEAR
        img = cv2.resize(img, (new_w, new_h), interpolation=interp)
    if crop == "center":
        img = center_crop(img, min(img.shape[:2]))
    return img


def frame_index_from_name(stem: str) -> int:
    """The frame number a file stem carries: its last run of digits (``"f0012"`` -> 12,
    ``"shot3_f10"`` -> 10); -1 when it has none. Image folders are ordered by this."""
    nums = re.findall(r"\d+", stem)
    return int(nums[-1]) if nums else -1


_last_int = frame_index_from_name  # NOTE: old private name, kept for existing callers


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """Image files of a frame folder, sorted by the last integer in their stem, then by name."""
    files = [p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: (frame_index_from_name(p.stem), p.name))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as uint8 RGB ``[H,W,3]``, RGBA ``[H,W,4]`` (alpha kept) or gray ``[H,W]``."""
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        reason = "empty file (0 bytes)" if not data.size else "undecodable image (corrupt, truncated or not an image file)"
        raise VideoReadError(path, reason, what="image")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    if img.ndim == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def to_rgb(img: np.ndarray) -> np.ndarray:
    """Gray -> RGB; RGBA -> RGB composited over white paper; RGB unchanged."""
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        alpha = img[..., 3:4].astype(np.float32) / 255.0
        rgb = img[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    return img


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


def is_image_folder(path: str | os.PathLike) -> bool:
    return Path(path).is_dir()


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoReadError(path, "no such file or folder")
    if path.is_file() and path.stat().st_size == 0:
        raise VideoReadError(path, "empty file (0 bytes)")


_DECODE_THREADS = [0]  # decoder threads per open video (0 = FFmpeg's choice: every core)


def set_decode_threads(n: int) -> None:
    """Decoder threads per open video in this process (0 = every core). A Ray task or actor
    holding ``k`` CPUs sets ``k`` (:func:`workflows.common.limit_threads`): with FFmpeg's default
    each of the tasks sharing a node decoded on every core (oversubscription: +54 % CPU seconds
    for the same ingest on 2 cores)."""
    _DECODE_THREADS[0] = max(0, int(n))


def _open_container(path: Path | str, src=None) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """``path`` opened (``src``: an open binary file of it, e.g. a ranged S3 reader)."""
    try:
        container = av.open(src if src is not None else str(path), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise VideoReadError(path, f"not a video or corrupt header ({err})") from err
    if not container.streams.video:
        container.close()
        raise VideoReadError(path, "no video stream in the file")
    _check_container_matches_name(path, container)
    return container, container.streams.video[0]


def _check_container_matches_name(path: Path, container: av.container.InputContainer) -> None:
    """The content's container must be what the suffix says (``CONTAINER_FORMATS``), and never a
    still image (``*_pipe`` / ``image2`` demuxers), whatever the name."""
    names = set(container.format.name.split(","))
    suffix = Path(str(path)).suffix
    want = CONTAINER_FORMATS.get(suffix.lower())
    still = any(n.endswith("_pipe") or n == "image2" for n in names)
    if still or (want is not None and want not in names):
        container.close()
        kind = "a still image" if still else "a video"
        raise VideoReadError(path, f"content is {kind} in {container.format.long_name or container.format.name} "
                                   f"format, not the {suffix or 'video'} container its name says "
                                   f"(renamed file?)")


def _stream_fps(stream: av.video.stream.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frames, fps and size of a video or image folder (cheap: demuxes, decodes one frame)."""
    path = Path(path)
    _check_file(path)
    if path.is_dir():
        files = list_image_files(path)
        if not files:
            raise VideoReadError(path, "image folder holds no images")
        h, w = read_image(files[0]).shape[:2]
        return VideoInfo(len(files), DEFAULT_FOLDER_FPS, w, h)
    container, stream = _open_container(path)
    try:
        fps = _stream_fps(stream)
        frames = int(stream.frames or 0)
        width, height = stream.codec_context.width, stream.codec_context.height
        if frames <= 0:  # e.g. mkv/webm: count packets (one coded frame each)
            frames = sum(1 for pkt in container.demux(stream) if pkt.size > 0)
        if frames <= 0 or width <= 0 or height <= 0:
            raise VideoReadError(path, "video stream holds no frames")
        return VideoInfo(frames, fps, width, height)
    except av.error.FFmpegError as err:
        raise VideoReadError(path, f"demux failed ({err})") from err
    finally:
        container.close()


def _iter_video(path: Path) -> Iterator[np.ndarray]:
    container, stream = _open_container(path)
    stream.thread_type = "AUTO"  # frame + slice threads; output order is unchanged
    stream.thread_count = _DECODE_THREADS[0]
    expected = _expected_frames(container, stream)
    count = 0
    try:
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
                count += 1
        except av.error.FFmpegError as err:
            raise VideoReadError(path, f"decode failed after {count} frames ({err})") from err
    finally:
        container.close()
    if count == 0:
        raise VideoReadError(path, "no frame could be decoded (empty or truncated video)")
    # NOTE: duration-based counts (mkv) are approximate, hence the tolerance.
    if expected > 0 and count < expected - max(2, expected // 100):
        raise VideoReadError(path, f"truncated: decoded {count} of about {expected} frames")


def _expected_frames(container: av.container.InputContainer, stream) -> int:
    """Frame count the container announces: the stream's count, else (single-stream files such as
    mkv) its duration x fps, else 0 (unknown)."""
    if stream.frames:
        return int(stream.frames)
    fps = _stream_fps(stream)
    if stream.duration and stream.time_base and fps:
        return int(stream.duration * stream.time_base * fps)
    if len(container.streams) == 1 and container.duration and fps:
        return int(container.duration / 1e6 * fps)
    return 0


def iter_frames(
    path: str | os.PathLike, size_px: int | None = None, crop: str = "none"
) -> Iterator[np.ndarray]:
    """Stream the frames of a video file or image folder as uint8 RGB ``[H,W,3]``, in order.

    ``size_px``: short side in pixels (aspect kept; ``None`` = native size).
    ``crop``: ``"none"`` (default) or ``"center"`` (central square after resizing).
    Raises :class:`VideoReadError` for missing/empty/non-video/truncated inputs (a truncated
    file raises after yielding the frames that could be decoded).
    """
    if crop not in CROP_POLICIES:
        raise ValueError(f"crop must be one of {CROP_POLICIES}, got {crop!r}")
    path = Path(path)
    _check_file(path)
    if path.is_dir():
        files = list_image_files(path)
        if not files:
            raise VideoReadError(path, "image folder holds no images")
        frames: Iterable[np.ndarray] = (to_rgb(read_image(f)) for f in files)
    else:
        frames = _iter_video(path)
    for img in frames:
        yield resize_image(np.ascontiguousarray(img), size_px, crop)


def read_frames(
    path: str | os.PathLike, size_px: int | None = None, crop: str = "none"
) -> list[np.ndarray]:
    """All frames of :func:`iter_frames` as a list (mind the memory for long films)."""
    return list(iter_frames(path, size_px, crop))


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------


def _even(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    if h % 2 or w % 2:
        img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return img


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float,
    crf: int = 18,
    preset: str = "veryfast",
    bframes: int | None = None,
) -> int:
    """Write uint8 RGB ``[H,W,3]`` (or gray ``[H,W]``) frames as H.264 yuv420p; returns the count.
    ``bframes``: x264's B-frame count (None = the preset's; 0 makes pts = dts, for
    :func:`concat_videos`).

    The container follows the suffix (``WRITE_EXTENSIONS``: ``.mp4``, ``.m4v``, ``.mkv``, ``.mov``,
    ``.avi``); any other suffix (e.g. ``.webm``, whose muxer takes no H.264) raises a
    ``ValueError`` naming the file before anything is encoded. The file appears
    only when complete (temp file + ``os.replace``). ``crf`` 0 is lossless in luma (chroma is
    still 4:2:0-subsampled). All frames must have the size of the first one.
    """
    path = Path(path)
    fmt = _container_format(path)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    rate = Fraction(fps).limit_denominator(1001)
    count = 0
    try:
        with av.open(str(tmp), mode="w", format=fmt) as container:
            stream = None
            for img in frames:
                img = _even(to_rgb(np.asarray(img, dtype=np.uint8)))
                if stream is None:
                    stream = container.add_stream("libx264", rate=rate)
                    stream.height, stream.width = img.shape[:2]
                    stream.pix_fmt = "yuv420p"
                    # mbtree=0: x264's macroblock-tree lookahead makes the bytes depend on thread timing
                    # (same frames, different files); without it the same frames encode the same.
                    params = "mbtree=0" + (f":bframes={int(bframes)}" if bframes is not None else "")
                    stream.options = {"crf": str(crf), "preset": preset, "x264-params": params}
                    size = img.shape
                elif img.shape != size:
                    raise ValueError(f"frame {count} has shape {img.shape}, expected {size}")
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                container.mux(stream.encode(frame))
                count += 1
            if stream is None:
                raise ValueError(f"no frames to write to {path}")
            container.mux(stream.encode(None))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return count



def concat_videos(parts: Sequence[str | os.PathLike], path: str | os.PathLike) -> int:
    """Join videos of the same encoding (:func:`write_video` with ``bframes=0``: same size, rate
    and codec settings) into ``path`` without re-encoding: each part's packets in order, their
    timestamps shifted by the frames before it. The file appears only when complete. Returns the
    frame count."""
    path = Path(path)
    fmt = _container_format(path)
    tmp = _temp_path(path)
    count, offset = 0, 0
    try:
        with av.open(str(tmp), mode="w", format=fmt) as dst:
            out_stream = None
            for part in parts:
                with av.open(str(part), mode="r") as src:
                    stream = src.streams.video[0]
                    if out_stream is None:
                        out_stream = dst.add_stream_from_template(stream)
                    n, last = 0, None
                    for packet in src.demux(stream):
                        if packet.dts is None:  # the demuxer's flush packet
                            continue
                        pts = packet.pts
                        packet.pts = pts + offset
                        packet.dts = packet.dts + offset
                        packet.stream = out_stream
                        dst.mux(packet)
                        n += 1
                        last = pts if last is None else max(last, pts)
                    step = int(round(1 / (float(stream.average_rate or stream.guessed_rate) * float(stream.time_base))))
                    offset += (last + step) if last is not None else 0
                    count += n
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return count


def _container_format(path: Path) -> str:
    """The muxer for ``path``'s suffix; ValueError naming the file for containers without H.264."""
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"cannot write video {path}: container {path.suffix or '(no suffix)'!r} cannot hold "
            f"H.264; use one of {', '.join(WRITE_EXTENSIONS)}"
        )
    return fmt


# ---------------------------------------------------------------------------------------------
# Keyframes and frame ranges: the one random-access reader (segmented ingest reads a segment of
# a film, streaming colorize a shot of an episode)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameIndex:
    """Where the frames of a film are, found by demuxing only (no decoding).

    frames: number of frames; pts: presentation timestamp of frame ``offset + j`` at ``j``
    (stream time base), ascending (image folders: ``()``); keyframes: indices of the frames a
    decoder can start at, ascending (a keyframe packet; image folders: every frame); offset:
    first frame ``pts`` covers (0, or the keyframe of a :meth:`window`). Frame ``i`` is frame
    ``i`` of :func:`iter_frames`.
    """

    frames: int
    pts: tuple[int, ...]
    keyframes: tuple[int, ...]
    offset: int = 0

    def keyframe_at_or_before(self, frame: int) -> int:
        """The last keyframe ``<= frame`` (0 when none: decode from the start)."""
        pos = bisect.bisect_right(self.keyframes, frame)
        return self.keyframes[pos - 1] if pos else 0

    def window(self, start: int, stop: int) -> FrameIndex:
        """What :func:`iter_frame_range` needs for any range inside ``[start, stop)`` only (small
        enough to ship to a worker with its segment or shot): the pts from the last keyframe at
        or before ``start`` up to ``stop``, and the keyframes among them (so a read that starts
        mid-window still decodes from the nearest keyframe)."""
        key = self.keyframe_at_or_before(start)
        first, last = bisect.bisect_right(self.keyframes, key), bisect.bisect_left(self.keyframes, stop)
        keys = (key, *self.keyframes[first:last])
        if not self.pts:
            return FrameIndex(self.frames, (), keys)
        pts = self.pts[key - self.offset : stop - self.offset]
        return FrameIndex(self.frames, pts, keys, key)

    def covers(self, start: int, stop: int) -> bool:
        """Whether frames ``[start, stop)`` can be located and decoded with this index (a
        :meth:`window` covers the ranges inside its own)."""
        if not self.pts:
            return True  # image folders: every file is its own frame
        key = self.keyframe_at_or_before(start)
        return self.offset <= key and stop <= self.offset + len(self.pts)


def probe_keyframes(path: str | os.PathLike) -> FrameIndex:
    """The :class:`FrameIndex` of a video (demux packets, read ``packet.is_keyframe`` and pts;
    cheap: no frame is decoded) or image folder. VideoReadError when a packet has no pts or two
    share one (the frames could not be located for seeking)."""
    path = Path(path)
    _check_file(path)
    if path.is_dir():
        n = len(list_image_files(path))
        if not n:
            raise VideoReadError(path, "image folder holds no images")
        return FrameIndex(n, (), tuple(range(n)))
    container, stream = _open_container(path)
    packets: list[tuple[int, bool]] = []
    try:
        for pkt in container.demux(stream):
            if pkt.size <= 0:
                continue  # the flush packet
            if pkt.pts is None:
                raise VideoReadError(path, f"packet {len(packets)} has no timestamp; its frames cannot be located")
            packets.append((int(pkt.pts), bool(pkt.is_keyframe)))
    except av.error.FFmpegError as err:
        raise VideoReadError(path, f"demux failed ({err})") from err
    finally:
        container.close()
    packets.sort()
    pts = tuple(p for p, _ in packets)
    if not pts:
        raise VideoReadError(path, "video stream holds no frames")
    if len(set(pts)) != len(pts):
        raise VideoReadError(path, "two packets share a timestamp; its frames cannot be located")
    return FrameIndex(len(pts), pts, tuple(i for i, (_, key) in enumerate(packets) if key))


def iter_frame_range(path: str | os.PathLike, start: int, stop: int, size_px: int | None = None,
                     crop: str = "none", index: FrameIndex | None = None,
                     filesystem=None) -> Iterator[np.ndarray]:
    """Frames ``start .. stop-1`` of :func:`iter_frames` (the same arrays), decoding from the
    last keyframe at or before ``start`` (``index``: :func:`probe_keyframes` or a
    :meth:`FrameIndex.window` covering the range; probed when None). Memory: one decoded frame
    plus the decoder's own buffers, and a pts -> frame map of the index.

    Decoded frames are placed by their pts (exact for variable frame rates, B-frames, edit lists),
    so frames before ``start`` (the rest of the GOP, open-GOP leading pictures) are dropped; a
    frame missing from the range (truncated or changed file, decode error) raises
    :class:`VideoReadError` naming the file and the frame. ``start == stop`` yields nothing; a
    range outside the film or an index that does not cover it is a ``ValueError`` naming the
    file. ``path`` may be an ``s3://`` video (``index`` required): it is read by ranged GETs
    (:func:`lcmftn.integrations.storage.open_ranged`, through ``filesystem`` when given), not
    downloaded."""
    if crop not in CROP_POLICIES:
        raise ValueError(f"crop must be one of {CROP_POLICIES}, got {crop!r}")
    remote = "://" in str(path)
    path = str(path) if remote else Path(path)
    if remote and index is None:
        raise ValueError(f"{path}: a remote video needs its frame index (probe a local copy)")
    index = index or probe_keyframes(path)
    if not 0 <= start <= stop <= index.frames:
        raise ValueError(f"{path}: frame range [{start}, {stop}) outside [0, {index.frames})")
    if not index.covers(start, stop):
        raise ValueError(f"{path}: the frame index covers frames [{index.offset}, "
                         f"{index.offset + len(index.pts)}), not [{start}, {stop}) (pass a window of the range)")
    if start == stop:
        return
    if not remote and path.is_dir():
        frames: Iterable[np.ndarray] = (to_rgb(read_image(f)) for f in list_image_files(path)[start:stop])
    else:
        frames = _iter_video_range(path, start, stop, index, filesystem)
    for img in frames:
        yield resize_image(np.ascontiguousarray(img), size_px, crop)


def _iter_video_range(path: Path | str, start: int, stop: int, index: FrameIndex,
                      filesystem=None) -> Iterator[np.ndarray]:
    src = None
    if isinstance(path, str):  # a remote video: ranged reads, closed with the container
        from lcmftn.integrations import storage

        src = storage.open_ranged(path, filesystem)
    try:
        yield from _decode_range(path, start, stop, index, src)
    finally:
        if src is not None:
            src.close()


def _decode_range(path: Path | str, start: int, stop: int, index: FrameIndex, src) -> Iterator[np.ndarray]:
    key = index.keyframe_at_or_before(start)
    frame_of = {p: index.offset + j for j, p in enumerate(index.pts)}
    container, stream = _open_container(path, src)
    stream.thread_type = "AUTO"
    stream.thread_count = _DECODE_THREADS[0]
    want = start
    try:
        try:
            if key > 0:
                container.seek(index.pts[key - index.offset], stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                i = frame_of.get(frame.pts)
                if i is None or i < want:
                    continue  # before the range (or a picture of the previous GOP)
                if i != want:
                    raise VideoReadError(path, f"frame {want} missing after seeking to keyframe {key} "
                                               f"(decoder gave frame {i}); not decodable from there")
                yield frame.to_ndarray(format="rgb24")
                want += 1
                if want == stop:
                    return
        except av.error.FFmpegError as err:
            raise VideoReadError(path, f"decode failed at frame {want} ({err})") from err
    finally:
        container.close()
    raise VideoReadError(path, f"truncated: frames {want}..{stop - 1} could not be decoded")
