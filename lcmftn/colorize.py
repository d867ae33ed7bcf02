"""Colorize shots: plan (chain / anchor / auto), holds, confidence, lockstep batching (pure).

Paper §3 inference applied to whole shots (DESIGN §2 "colorize"). A system ``G(s_p, c_p, s_n)``
colours target line art ``s_n`` from a reference pair (line art ``s_p``, colour ``c_p``).

Design decisions
- A shot is *planned* first: an ordered list of :class:`Step` ``(target, ref, kind)`` with kind
  ``key`` (a given keyframe), ``model`` (``C_target = G(S_ref, C_ref, S_target)``) or ``copy``
  (a hold: the drawing did not change, so the reference's colour frame is reused byte for byte).
  Plans are pure data, so they are unit-tested exactly and executed by any scheduler.
  * ``chain``:  C_t = G(S_{t-1}, C_{t-1}, S_t) from the latest keyframe at or before t; frames before
    the first keyframe chain backwards from it (C_t = G(S_{t+1}, C_{t+1}, S_t)).
  * ``anchor``: every frame from its nearest keyframe in time (ties: the earlier one); no drift, but
    large motion between reference and target.
  * ``auto``:   nearest keyframe in time, chaining from it: forwards from the previous keyframe or
    backwards from the next one, whichever is nearer (ties: forwards). With keyframes on both sides
    a shot is coloured from both ends towards the middle.
  * Holds (``holds[t]``: drawing t equals drawing t-1) turn a step into ``copy`` when its reference
    is the neighbour across that hold (forward: t-1 with holds[t]; backward: t+1 with holds[t+1];
    anchor: t-1 with holds[t]).
- The model works at *model resolution* (short side ``image_size_px``, the frame's aspect kept to
  the pixel); a system that needs sides in multiples of its ``multiple_of`` gets its inputs padded
  at the bottom and right (line art with blank paper, colour with its border replicated) and its
  outputs cropped back (``fit="pad"``, the
  default; ``fit="round"`` rounds the model resolution itself to the multiple, squeezing the aspect
  by up to ``multiple_of / 2`` px per side, as before); outputs go back to the line art's resolution with
  :func:`lcmftn.upsample.guided_upsample` (keyframes are emitted as given, at full resolution).
- Lockstep batching (:class:`LockstepScheduler`): many shots advance together; each model call
  holds up to ``batch_size`` ready steps, first one per shot (round robin), then extra ready steps
  (anchor frames, the second direction of ``auto``) to fill the batch. Finished shots are replaced
  by waiting ones (continuous batching). Batches are padded to ``batch_size`` by default so each
  sample's arithmetic does not depend on which other shots share its batch: a resumed run that
  colours fewer shots gives byte-identical frames.
- Confidence: the system's ``forward_with_confidence`` map (CMFT attention) when it has one, else a
  line-change proxy: 1 - (blurred |S_ref - S_target|), i.e. low where the drawing changed between
  reference and target. Keyframes have confidence 1; copies inherit their source's. With a
  calibration that holds a pixel model (``lcmftn.calibration.Calibration.pixel``) the map is
  instead the calibrated ``1 - P(error > 0.1)`` over run-time features (flow, line-art change,
  palette, drift: ``lcmftn.pixel_confidence``), and the frame's ``conf``/``low`` are its mean/tail.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from lcmftn import limits
from lcmftn.calibration import Calibration, frame_feature
from lcmftn.paper import keep_paper
from lcmftn.pixel_confidence import pixel_features
from lcmftn.upsample import UpsampleConfig, guided_upsample, resize_color

MODES = ("chain", "anchor", "auto")

# sink(frame_index, rgb_full_res uint8 [H, W, 3] (RGBA [H, W, 4] with paper="alpha"), kind) is called
# once per frame of a shot.
FrameSink = Callable[[int, np.ndarray, str], None]


@dataclass(frozen=True)
class Step:
    """One planned frame: ``target`` coloured from ``ref`` (``ref == target`` for keyframes)."""

    target: int
    ref: int
    kind: str  # "key" | "model" | "copy"


@dataclass(frozen=True)
class ColorizeConfig:
    """How one shot is coloured."""

    mode: str = "chain"  # chain | anchor | auto (see module docstring)
    image_size_px: int = 256  # short side of the model-resolution frames
    multiple_of: int = 8  # the system's H and W must be multiples of this (registry.multiple_of)
    # "pad": model resolution keeps the frame's aspect, the model's input is padded to the multiple
    # (bottom/right: line art with paper, colour with its border replicated) and its output cropped; "round": the model resolution
    # itself is rounded to the multiple (the aspect is squeezed; the behaviour before session 7)
    fit: str = "pad"
    low_confidence: float = 0.5  # a pixel is "low confidence" below this
    flag_fraction: float = 0.05  # a frame is flagged for review above this low-confidence fraction
    proxy_blur_px: float = 2.0  # sigma (model px) of the line-change confidence proxy
    # lcmftn.calibration.Calibration as JSON ("" = none: flag by flag_fraction); with one, a
    # frame is flagged when its expected PSNR is in the calibrated worst tail.
    calibration_json: str = ""
    upsample: UpsampleConfig = field(default_factory=UpsampleConfig)
    paper: str = "off"  # off | white | alpha: output exactly the line art's paper outside the drawing (lcmftn.paper)


def model_size(height: int, width: int, image_size_px: int, multiple_of: int = 1,
               source: str = "frame") -> tuple[int, int]:
    """Model-resolution ``(h, w)``: short side ``image_size_px``, aspect kept, both rounded to
    multiples of ``multiple_of`` (at least one multiple).

    Raises :class:`lcmftn.limits.LimitError` (naming ``source``) for an extreme frame shape or
    model resolution (:func:`lcmftn.limits.check_model_size`) before anything is allocated."""
    limits.check_model_size(height, width, image_size_px, source)
    m = max(1, int(multiple_of))
    short = min(height, width)

    def rnd(x: float) -> int:
        return max(m, int(round(x / m)) * m)

    return rnd(height * image_size_px / short), rnd(width * image_size_px / short)


FITS = ("pad", "round")


def shot_sizes(height: int, width: int, cfg: ColorizeConfig, source: str = "frame"
               ) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(size_hw, input_hw)`` of a shot whose frames are ``height × width``: the model resolution
    (what the model's output is cropped to and upsampled from) and the model's input size (padded
    to ``cfg.multiple_of`` under ``fit="pad"``; the same as ``size_hw`` under ``fit="round"``)."""
    if cfg.fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {cfg.fit!r}")
    m = max(1, int(cfg.multiple_of))
    if cfg.fit == "round":
        hw = model_size(height, width, cfg.image_size_px, m, source=source)
        return hw, hw
    h, w = model_size(height, width, cfg.image_size_px, 1, source=source)
    return (h, w), (-(-h // m) * m, -(-w // m) * m)


def plan_shot(
    n_frames: int, keyframes: Iterable[int], mode: str, holds: Sequence[bool] | np.ndarray | None = None
) -> list[Step]:
    """The ordered steps colouring frames ``0..n_frames-1`` of one shot (module docstring).

    Every step's reference precedes it in the list. Raises ``ValueError`` for an unknown mode, no
    keyframe, or keyframes outside the shot."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    keys = sorted(set(int(k) for k in keyframes))
    if not keys:
        raise ValueError("a shot needs at least one keyframe")
    if keys[0] < 0 or keys[-1] >= n_frames:
        raise ValueError(f"keyframes {keys} outside the shot's frames 0..{n_frames - 1}")
    hold = np.zeros(n_frames, bool) if holds is None else np.asarray(holds, bool)
    if hold.shape != (n_frames,):
        raise ValueError(f"holds must have {n_frames} flags, got {hold.shape}")
    key_set = set(keys)
    steps = [Step(k, k, "key") for k in keys]
    forward: list[Step] = []
    backward: list[Step] = []
    for t in range(n_frames):
        if t in key_set:
            continue
        i = bisect.bisect_right(keys, t)  # keys[i-1] < t < keys[i]
        prev_k = keys[i - 1] if i > 0 else None
        next_k = keys[i] if i < len(keys) else None
        if mode == "anchor":
            if prev_k is None or (next_k is not None and next_k - t < t - prev_k):
                ref = next_k
            else:
                ref = prev_k
            copy = bool(hold[t]) and t > 0
            forward.append(Step(t, t - 1, "copy") if copy else Step(t, ref, "model"))
            continue
        if mode == "chain":
            go_forward = prev_k is not None
        else:  # auto
            go_forward = prev_k is not None and (next_k is None or t - prev_k <= next_k - t)
        if go_forward:
            forward.append(Step(t, t - 1, "copy" if hold[t] else "model"))
        else:
            backward.append(Step(t, t + 1, "copy" if hold[t + 1] else "model"))
    return steps + forward + backward[::-1]


def lineart_at_size(lineart: np.ndarray, size_hw: tuple[int, int]) -> torch.Tensor:
    """uint8 [H, W] (255 = paper) -> float32 [1, h, w] in [0, 1] at model resolution."""
    h, w = size_hw
    small = cv2.resize(lineart, (w, h), interpolation=cv2.INTER_AREA) if lineart.shape != (h, w) else lineart
    return torch.from_numpy(small.astype(np.float32) / 255.0)[None]


def color_at_size(color: np.ndarray, size_hw: tuple[int, int]) -> torch.Tensor:
    """uint8 [H, W, 3] RGB -> float32 [3, h, w] in [0, 1] at model resolution."""
    small = resize_color(color, size_hw) if color.shape[:2] != tuple(size_hw) else color
    return torch.from_numpy(small.astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()


def tensor_to_color(t: torch.Tensor) -> np.ndarray:
    """float [3, h, w] in [0, 1] -> uint8 [h, w, 3] (round half to even, deterministic)."""
    return (t.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()


def line_change_confidence(s_ref: torch.Tensor, s_n: torch.Tensor, blur_px: float) -> torch.Tensor:
    """Confidence proxy [1, h, w]: 1 - blurred |S_ref - S_n| scaled so a changed line band is ~0."""
    diff = (s_ref - s_n).abs()[0].numpy()
    k = int(2 * np.ceil(3 * blur_px) + 1)
    blurred = cv2.GaussianBlur(diff, (k, k), blur_px)
    return torch.from_numpy(np.clip(1.0 - 4.0 * blurred, 0.0, 1.0))[None]


@dataclass
class FrameInfo:
    """Per-frame record of a coloured shot (``conf_mean``/``low_fraction`` over model pixels)."""

    index: int
    kind: str
    ref: int
    conf_mean: float
    low_fraction: float
    change: float = 0.0  # line-art change keyframe -> frame: mean of 1 - line_change_confidence
    distance: int = 0  # frames between this frame and the keyframe its colour chain starts from


class ShotColorizer:
    """The state of one shot being coloured: plan, model-resolution inputs, outputs so far.

    ``lineart``: uint8 [H, W] frames (full resolution; a list, or a lazy sequence that reads them
    from the source on demand, so a shot's memory is a window, not its length); ``keyframes``: {index in shot: RGB uint8
    [H, W, 3]} at the same size; ``holds``: bool per frame. Frames go to ``sink`` (full resolution)
    as soon as they are ready, or are collected in ``self.frames`` when no sink is given;
    confidence maps of model frames go to ``conf_sink`` (or are kept in ``self.conf_maps``)."""

    def __init__(
        self,
        lineart: Sequence[np.ndarray],
        keyframes: dict[int, np.ndarray],
        cfg: ColorizeConfig,
        holds: Sequence[bool] | np.ndarray | None = None,
        sink: FrameSink | None = None,
        name: str = "shot",
        conf_sink: Callable[[int, np.ndarray], None] | None = None,
        feature_sink: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    ) -> None:
        self.name = name
        self.cfg = cfg
        self.calibration = Calibration.from_json(cfg.calibration_json) if cfg.calibration_json else None
        self._pixel_model = self.calibration.pixel_model if self.calibration is not None else None
        # feature_sink(frame, {name: [h, w] map}) receives every model frame's pixel features
        # (lcmftn.pixel_confidence; the confidence benchmark fits the calibrated map on them)
        self.feature_sink = feature_sink
        # A lazy frame sequence (``lazy = True``: e.g. lcmftn.episode.ShotFrames, which reads a
        # window of frames from the file) is indexed as needed, never copied into a list.
        self.lineart = lineart if getattr(lineart, "lazy", False) else list(lineart)
        if not self.lineart:
            raise ValueError(f"{name}: no frames")
        full_hw = self.lineart[0].shape
        for k, img in keyframes.items():
            if img.shape[:2] != full_hw:
                raise ValueError(f"{name}: keyframe {k} is {img.shape[:2]}, line art is {full_hw}")
        self.keyframes = keyframes
        self.steps = plan_shot(len(self.lineart), keyframes, cfg.mode, holds)
        self.size_hw, self.input_hw = shot_sizes(*full_hw, cfg)
        self.frames: dict[int, np.ndarray] = {}
        self.sink = sink
        self.infos: dict[int, FrameInfo] = {}
        self.conf_maps: dict[int, np.ndarray] = {}  # model frames: uint8 [h, w], 255 = sure
        self.conf_sink = conf_sink  # given: each model frame's map goes there, none is kept
        self._s: dict[int, torch.Tensor] = {}
        self._c: dict[int, torch.Tensor] = {}  # model-resolution colour of done frames
        self._full: dict[int, Future | np.ndarray] = {}  # full-res output kept for later copies
        self._uses = np.zeros(len(self.lineart), int)  # pending steps referencing each frame
        self._key_of: dict[int, int] = {}  # frame -> the keyframe its colour chain starts from
        self._copy_uses = np.zeros(len(self.lineart), int)
        for st in self.steps:
            if st.kind == "model":
                self._uses[st.ref] += 1
            elif st.kind == "copy":
                self._copy_uses[st.ref] += 1
                self._uses[st.ref] += 1
        # Steps become ready when their reference frame has its colour: index them by reference
        # so scheduling costs O(1) per step (a plain scan would be O(T^2) on long shots).
        self._ready: deque[Step] = deque(st for st in self.steps if st.kind == "key")
        self._by_ref: dict[int, list[Step]] = {}
        for st in self.steps:
            if st.kind != "key":
                self._by_ref.setdefault(st.ref, []).append(st)
        self._remaining = len(self.steps)  # steps not completed yet
        self._waiting: list[Step] = []  # model steps handed out, not yet completed
        self._futures: list[Future] = []
        self.started_s: float | None = None
        self.elapsed_s = 0.0

    # -- scheduling ------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self._remaining == 0

    def ready_model_steps(self, limit: int, executor: ThreadPoolExecutor | None = None) -> list[Step]:
        """Run every ready key/copy step, then hand out up to ``limit`` ready model steps
        (in plan order; the ones over the limit stay ready for the next call)."""
        if self.started_s is None:
            self.started_s = time.perf_counter()
        out: list[Step] = []
        held: deque[Step] = deque()
        while self._ready:
            st = self._ready.popleft()
            if st.kind == "model":
                if len(out) >= limit:
                    held.append(st)
                else:
                    out.append(st)
                    self._waiting.append(st)
            elif st.kind == "key":
                self._finish_key(st, executor)
            else:
                self._finish_copy(st, executor)
        self._ready = held
        return out

    def _coloured(self, t: int) -> None:
        """Frame ``t`` has its colour: its dependants become ready; one more step completed."""
        self._ready.extend(self._by_ref.pop(t, ()))
        self._remaining -= 1

    def batch_inputs(self, st: Step) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(s_p [1,h,w], c_p [3,h,w], s_n [1,h,w]) of a model step."""
        return self._lineart(st.ref), self._c[st.ref], self._lineart(st.target)

    def complete(
        self, st: Step, color: torch.Tensor, conf: torch.Tensor | None, executor: ThreadPoolExecutor | None = None
    ) -> None:
        """Record the model output (``color`` [3,h,w], ``conf`` [1,h,w] or None) of a handed-out step."""
        self._waiting.remove(st)
        color = color.float().clamp(0, 1)
        key = self._key_of[st.target] = self._key_of.get(st.ref, st.ref)
        pixel_model = self._pixel_model
        feats = None
        if pixel_model is not None or self.feature_sink is not None:
            feats = pixel_features(
                self._lineart(st.ref)[0].numpy(), self._c[st.ref].permute(1, 2, 0).numpy(),
                self._lineart(st.target)[0].numpy(), color.permute(1, 2, 0).numpy(),
                self._lineart(key)[0].numpy(), self._c[key].permute(1, 2, 0).numpy(), abs(st.target - key),
                None if conf is None else conf[0].float().clamp(0, 1).numpy())
            if self.feature_sink is not None:
                self.feature_sink(st.target, feats)
        if pixel_model is not None:  # the calibrated map: 1 - P(large error) (lcmftn.pixel_confidence)
            conf = torch.from_numpy(pixel_model.confidence(feats))[None]
        elif conf is None:
            conf = line_change_confidence(self._lineart(st.ref), self._lineart(st.target), self.cfg.proxy_blur_px)
        conf_np = conf[0].float().clamp(0, 1).numpy()
        conf_u8 = np.rint(conf_np * 255).astype(np.uint8)
        if self.conf_sink is None:
            self.conf_maps[st.target] = conf_u8
        else:
            self.conf_sink(st.target, conf_u8)
        change = 1.0 - float(line_change_confidence(self._lineart(key), self._lineart(st.target),
                                                    self.cfg.proxy_blur_px).mean())
        self._record(st, float(conf_np.mean()), float((conf_np < self.cfg.low_confidence).mean()), change,
                     abs(st.target - key))
        self._c[st.target] = color
        rgb_small = tensor_to_color(color)
        lineart = self.lineart[st.target]
        self._emit(st.target, "model", lambda: guided_upsample(rgb_small, lineart, self.cfg.upsample), executor)
        self._release(st.ref)
        self._coloured(st.target)

    def wait(self) -> None:
        """Block until every frame of the shot reached the sink."""
        for f in self._futures:
            f.result()
        self._futures.clear()
        if self.started_s is not None:
            self.elapsed_s = time.perf_counter() - self.started_s

    # -- internals -------------------------------------------------------------------------
    def _lineart(self, i: int) -> torch.Tensor:
        if i not in self._s:
            self._s[i] = lineart_at_size(self.lineart[i], self.size_hw)
        return self._s[i]

    def _record(self, st: Step, conf_mean: float, low: float, change: float = 0.0, distance: int = 0) -> None:
        self.infos[st.target] = FrameInfo(st.target, st.kind, st.ref, conf_mean, low, change, distance)

    def _finish_key(self, st: Step, executor: ThreadPoolExecutor | None) -> None:
        key = self.keyframes[st.target]
        self._c[st.target] = color_at_size(key, self.size_hw)
        self._record(st, 1.0, 0.0)
        self._emit(st.target, "key", lambda: key, executor)
        self._coloured(st.target)

    def _finish_copy(self, st: Step, executor: ThreadPoolExecutor | None) -> None:
        src = self.infos[st.ref]
        self._c[st.target] = self._c[st.ref]
        if st.ref in self.conf_maps:
            self.conf_maps[st.target] = self.conf_maps[st.ref]
        self._key_of[st.target] = self._key_of.get(st.ref, st.ref)
        self._record(st, src.conf_mean, src.low_fraction, src.change, abs(st.target - self._key_of[st.target]))
        full = self._full[st.ref]
        self._emit(st.target, "copy", (full.result if isinstance(full, Future) else lambda: full), executor)
        self._copy_uses[st.ref] -= 1
        self._release(st.ref)
        self._coloured(st.target)

    def _emit(self, t: int, kind: str, make: Callable[[], np.ndarray], executor: ThreadPoolExecutor | None) -> None:
        la = self.lineart[t] if self.cfg.paper != "off" else None  # (read here: this thread reads the source)

        def task() -> np.ndarray:
            rgb = make()
            out = rgb if la is None else keep_paper(rgb, la, self.cfg.paper)  # lcmftn.paper; copies reuse rgb
            if self.sink is None:
                self.frames[t] = out
            else:
                self.sink(t, out, kind)
            return rgb

        # NOTE: a copy task waits on its source's future; the source was submitted earlier and the
        # executor is FIFO, so it is already running or done: no deadlock.
        result: Future | np.ndarray = executor.submit(task) if executor is not None else task()
        if isinstance(result, Future):
            # NOTE: a finished future holds its full-resolution frame: drop finished ones (their
            # errors surface here) so a long shot does not keep every frame in memory.
            for f in [f for f in self._futures if f.done()]:
                f.result()
                self._futures.remove(f)
            self._futures.append(result)
        if self._copy_uses[t] > 0:
            self._full[t] = result

    def _release(self, ref: int) -> None:
        self._uses[ref] -= 1
        if self._copy_uses[ref] <= 0:
            self._full.pop(ref, None)
        if self._uses[ref] <= 0 and ref not in self.keyframes:
            self._c.pop(ref, None)  # keyframes stay: cheap, and anchor steps reuse them
            self._s.pop(ref, None)

    def stats(self) -> dict:
        """Counts, time and confidence of the shot (JSON-serialisable)."""
        infos = [self.infos[i] for i in sorted(self.infos)]
        model = [f for f in infos if f.kind == "model"]
        cal = self.calibration
        expected = {}
        if cal is not None:  # calibrated rule: expected PSNR in the worst tail (lcmftn.calibration)
            for f in infos:
                if f.kind != "key":
                    raw = frame_feature(cal.feature, f.conf_mean, f.low_fraction, f.change, f.distance)
                    expected[f.index] = float(cal.expected_psnr(raw))
            flagged = [f.index for f in model if expected[f.index] <= cal.flag_psnr_db]
        else:
            flagged = [f.index for f in model if f.low_fraction > self.cfg.flag_fraction]
        return {
            "frames": len(self.lineart),
            "keyframes": sorted(int(k) for k in self.keyframes),
            "mode": self.cfg.mode,
            "model_size_hw": list(self.size_hw),
            "model_input_hw": list(self.input_hw),
            "colorized": len(model),
            "copied": sum(f.kind == "copy" for f in infos),
            "key": sum(f.kind == "key" for f in infos),
            "time_s": round(self.elapsed_s, 4),
            "confidence": round(float(np.mean([f.conf_mean for f in model])) if model else 1.0, 4),
            "flagged": flagged,
            "per_frame": [
                {"i": f.index, "kind": f.kind, "ref": f.ref, "conf": round(f.conf_mean, 4),
                 "low": round(f.low_fraction, 4), "change": round(f.change, 4), "distance": f.distance,
                 **({"expected_psnr": round(expected[f.index], 2)} if f.index in expected else {})}
                for f in infos
            ],
        }


@dataclass
class SchedulerStats:
    """What a :class:`LockstepScheduler` run did (model time excludes upsampling/writing)."""

    model_calls: int = 0
    model_frames: int = 0  # real (unpadded) samples through the model
    padded_frames: int = 0
    model_time_s: float = 0.0
    shots: int = 0


class LockstepScheduler:
    """Advance many shots together so each model call holds one frame from each of B shots.

    ``batch_size``: samples per model call (B). ``max_active_shots``: shots in flight (default B);
    finished shots are replaced by the next ones from the iterable. ``pad_batches``: pad every call
    to B samples (see module docstring: batch-composition-independent results). ``finalize_threads``:
    threads for upsampling + sinks (0 = inline), so the CPU work overlaps the next model call.
    ``amp_dtype``: e.g. ``torch.bfloat16`` for autocast on CUDA (None = float32)."""

    def __init__(
        self,
        system: torch.nn.Module,
        batch_size: int = 1,
        device: str | torch.device = "cpu",
        pad_batches: bool = True,
        max_active_shots: int | None = None,
        finalize_threads: int = 0,
        amp_dtype: torch.dtype | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.system = system.eval().to(self.device)
        self.batch_size = batch_size
        self.pad_batches = pad_batches
        self.max_active_shots = max_active_shots or batch_size
        self.finalize_threads = finalize_threads
        self.amp_dtype = amp_dtype
        self.stats = SchedulerStats()

    def run(
        self, shots: Iterable[ShotColorizer], on_shot_done: Callable[[ShotColorizer], None] | None = None
    ) -> SchedulerStats:
        """Colour every shot; ``on_shot_done(shot)`` is called once all its frames reached its sink."""
        for sh in self.iter_run(shots):
            if on_shot_done is not None:
                on_shot_done(sh)
        return self.stats

    def iter_run(self, shots: Iterable[ShotColorizer]) -> Iterator[ShotColorizer]:
        """Colour every shot, yielding each one as soon as all its frames reached its sink
        (so a caller can stream finished shots out, e.g. a Ray generator method)."""
        queue = iter(shots)
        active: list[ShotColorizer] = []
        executor = ThreadPoolExecutor(self.finalize_threads) if self.finalize_threads > 0 else None
        try:
            exhausted = False
            while True:
                while not exhausted and len(active) < self.max_active_shots:
                    nxt = next(queue, None)
                    if nxt is None:
                        exhausted = True
                    else:
                        active.append(nxt)
                if not active:
                    break
                batch: list[tuple[ShotColorizer, Step]] = []
                for extra_pass in (False, True):  # one step per shot first, then fill the batch
                    for sh in active:
                        room = self.batch_size - len(batch)
                        limit = min(room, 1) if not extra_pass else room
                        batch += [(sh, st) for st in sh.ready_model_steps(max(limit, 0), executor)]
                if batch:
                    self._run_batch(batch, executor)
                done = [sh for sh in active if sh.finished]
                if not batch and not done:
                    raise RuntimeError("lockstep scheduler stalled (a plan step never became ready)")
                for sh in done:
                    sh.wait()
                    active.remove(sh)
                    self.stats.shots += 1
                    yield sh
        finally:
            if executor is not None:
                executor.shutdown(wait=True)

    def _run_batch(self, batch: list[tuple[ShotColorizer, Step]], executor: ThreadPoolExecutor | None) -> None:
        sizes = {(sh.size_hw, sh.input_hw) for sh, _ in batch}
        if len(sizes) != 1:
            raise ValueError(f"shots batched together must share the model size, got {sorted(sizes)}")
        (h, w), (ih, iw) = sizes.pop()
        inputs = [sh.batch_inputs(st) for sh, st in batch]
        n = len(inputs)
        if self.pad_batches and n < self.batch_size:
            inputs += [inputs[-1]] * (self.batch_size - n)
        s_p, c_p, s_n = (torch.stack(x).to(self.device) for x in zip(*inputs, strict=True))
        if (ih, iw) != (h, w):  # fit="pad": to the system's multiple; the output is cropped below
            pad = (0, iw - w, 0, ih - h)  # line art: blank paper (a replicated edge stroke would
            s_p, s_n = (F.pad(x, pad, value=1.0) for x in (s_p, s_n))  # become a band of ink)
            c_p = F.pad(c_p, pad, mode="replicate")  # colour: the border's, continued
        t0 = time.perf_counter()
        with torch.inference_mode():
            if self.amp_dtype is not None:
                with torch.autocast(self.device.type, dtype=self.amp_dtype):
                    color, conf = self.system.forward_with_confidence(s_p, c_p, s_n)
            else:
                color, conf = self.system.forward_with_confidence(s_p, c_p, s_n)
            color = color[:n, :, :h, :w].float().cpu()
            conf = None if conf is None else conf[:n, :, :h, :w].float().cpu()
        self.stats.model_time_s += time.perf_counter() - t0
        self.stats.model_calls += 1
        self.stats.model_frames += n
        self.stats.padded_frames += len(inputs) - n
        for i, (sh, st) in enumerate(batch):
            sh.complete(st, color[i], None if conf is None else conf[i], executor)


def colorize_shot(
    system: torch.nn.Module,
    lineart: Sequence[np.ndarray],
    keyframes: dict[int, np.ndarray],
    cfg: ColorizeConfig,
    holds: Sequence[bool] | np.ndarray | None = None,
    device: str = "cpu",
    feature_sink: Callable[[int, dict[str, np.ndarray]], None] | None = None,
) -> tuple[list[np.ndarray], dict, dict[int, np.ndarray]]:
    """Colour one shot in one process: (full-res RGB frames, stats, {frame: confidence map uint8});
    ``feature_sink`` receives each model frame's pixel features (:class:`ShotColorizer`)."""
    shot = ShotColorizer(lineart, keyframes, cfg, holds, feature_sink=feature_sink)
    LockstepScheduler(system, batch_size=1, device=device).run([shot])
    return [shot.frames[i] for i in range(len(shot.lineart))], shot.stats(), shot.conf_maps
