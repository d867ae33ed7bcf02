"""Colorize a whole episode: line art + coloured keyframes -> frames, H.264 video, QC report.

    python -m workflows.colorize --lineart ep07/lineart.mp4 --refs ep07/keys/ \\
        --model models:/lcmftn@champion --out ep07/color/ [--mode chain|anchor|auto]
    ray job submit -- python -m workflows.colorize --lineart s3://studio/ep07/lineart.mp4 ...
    # evaluation: synthesise line art from a colour episode, first frame of each shot as key
    python -m workflows.colorize --from-color ep07/color.mp4 --model ckpt/ --out eval/

Pipeline (DESIGN §2 "colorize"; the per-shot logic is :mod:`lcmftn.colorize`):
1. The driver reads the line art (video or image folder, local or s3://; any convention,
   :func:`normalize_lineart`), the keyframes (images named by frame index), the shot list
   (:func:`detect_shots` on the line art, or ``--shots``) and the model (``models:/``, ``runs:/``,
   s3:// or a checkpoint dir via :func:`resolve_model_uri`).
2. Each shot becomes a job (its line art, its keyframes, a fingerprint of everything that
   decides its pixels). Shots whose completion marker ``OUT/shots/<id>.json`` carries the same
   fingerprint are done already (resume) and are not coloured again.
3. Pending shots are spread over ``ShotPredictor`` Ray actors (model loaded once per actor).
   Each actor colours its shots in lockstep (:class:`LockstepScheduler`: one model call holds
   one frame from each of B shots) and *streams* every finished shot back (a Ray generator).
4. The driver writes a shot's frames (``OUT/frames/000123.png``, tmp + rename), its
   low-confidence maps (``OUT/confidence/``), then its marker (manifest-last). A crash loses at
   most the shots in flight; a rerun produces byte-identical frames (batches are padded to B,
   so results do not depend on which shots share a batch).
5. At the end: ``OUT/episode.mp4`` (H.264; frames of shots left out show their line art so the
   timing stays right) and ``OUT/report.json`` + ``OUT/report.html`` (:mod:`lcmftn.report`).

Bad input never stops the other shots: a shot without keyframe is reported (or coloured from the
nearest shot's keyframe with ``--borrow-keyframes``); a keyframe whose size differs is resized
with a warning when the aspect matches (else, or with ``--keyframe-size reject``, rejected with
the file named); unreadable line-art frames are named and their shot is reported as failed.
Exit status: 0 all shots done, 3 some shots left out, 2 bad arguments / unusable input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from lcmftn import report as rpt
from lcmftn.colorize import MODES, ColorizeConfig, LockstepScheduler, ShotColorizer, model_size
from lcmftn.data.lineart import LineArtConfig, extract_lineart, normalize_lineart
from lcmftn.integrations import lease, storage

log = logging.getLogger("workflows.colorize")

FAULT_ENV = "LCMFTN_COLORIZE_FAIL_AFTER_SHOTS"  # test hook: crash the driver after K shots written
DELAY_ENV = "LCMFTN_COLORIZE_SHOT_DELAY_S"  # test hook: pause after each shot (a window to kill in)
MARKER_VERSION = 1
# NOTE: on line art ContentDetector (HSV + edges) finds no cut at all (hue/saturation are 0);
# HashDetector (perceptual hash distance) found exactly the cuts of the generated films and of
# the real clip's line art at 120 and 240 px (AdaptiveDetector added a false cut at 120 px).
LINEART_DETECTOR = "hash"


class InjectedFault(RuntimeError):
    """Raised by the ``LCMFTN_COLORIZE_FAIL_AFTER_SHOTS`` hook (simulates a crash)."""


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# Shot jobs and the per-shot worker (plain functions: used by the Ray actor and --local)
# ---------------------------------------------------------------------------------------------
def shot_id(start: int, end: int) -> str:
    return f"{start:06d}-{end:06d}"


def encode_png(img: np.ndarray) -> bytes:
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def colorize_jobs(system, jobs: list[dict], settings: dict) -> Iterator[dict]:
    """Colour shot jobs in lockstep; yield one result per shot as soon as it is finished.

    job: ``{"id", "start", "end", "lineart": uint8 [T, H, W], "keyframes": {i: RGB}, "offset"}``
    (``offset`` 1: frame 0 of ``lineart`` is a borrowed keyframe's drawing, not output).
    result: ``{"id", "frames": {episode index: PNG}, "confidence": {index: PNG}, "stats"}``."""
    from lcmftn.data.holds import detect_holds

    cfg = ColorizeConfig(**settings["colorize"])
    outputs: dict[str, dict] = {}
    shots: list[ShotColorizer] = []
    for job in jobs:
        frames: dict[int, bytes] = {}
        off, start = int(job["offset"]), int(job["start"])

        def sink(t: int, rgb: np.ndarray, kind: str, frames=frames, off=off, start=start) -> None:
            if t >= off:
                frames[start + t - off] = encode_png(rgb)

        la = list(job["lineart"])
        holds = detect_holds(la) if settings["holds"] else np.zeros(len(la), bool)
        if off:
            holds[:off + 1] = False  # the borrowed drawing is never "the same drawing"
        shots.append(ShotColorizer(la, job["keyframes"], cfg, holds, sink=sink, name=job["id"]))
        outputs[job["id"]] = {"job": job, "frames": frames}
    amp = {"bf16": "bfloat16", "fp16": "float16"}.get(settings.get("amp") or "")
    import torch

    sched = LockstepScheduler(system, batch_size=settings["batch_size"], device=settings["device"],
                              finalize_threads=settings.get("finalize_threads", 0),
                              amp_dtype=getattr(torch, amp) if amp else None)
    for sh in sched.iter_run(shots):
        out = outputs.pop(sh.name)
        job = out["job"]
        off, start = int(job["offset"]), int(job["start"])
        yield {
            "id": job["id"],
            "frames": out["frames"],
            "confidence": {start + t - off: encode_png(m) for t, m in sh.conf_maps.items()
                           if t >= off and sh.infos[t].kind == "model"},
            "stats": episode_stats(sh.stats(), start, off, job.get("borrowed_from")),
        }


def episode_stats(stats: dict, start: int, off: int, borrowed: int | None = None) -> dict:
    """Shot stats in episode frame indices, without a borrowed keyframe's virtual frame (a
    reference to it becomes the borrowed frame's index)."""
    per_frame = [dict(f, i=start + f["i"] - off, ref=start + f["ref"] - off if f["ref"] >= off else borrowed)
                 for f in stats["per_frame"] if f["i"] >= off]
    return dict(stats, frames=stats["frames"] - off, key=stats["key"] - off,
                keyframes=[start + k - off for k in stats["keyframes"] if k >= off],
                flagged=[start + i - off for i in stats["flagged"]], per_frame=per_frame)


class ShotPredictor:
    """Ray actor: loads the checkpoint once, colours lists of shots in lockstep and streams
    each finished shot back (``colorize`` is a generator method -> ObjectRefGenerator)."""

    def __init__(self, model_files: dict[str, bytes], settings: dict) -> None:
        import torch

        from lcmftn.checkpoint import load_checkpoint

        if settings.get("threads"):  # Ray actors: their CPU share; --local: torch's default
            torch.set_num_threads(max(1, int(settings["threads"])))
        self.settings = dict(settings)
        with tempfile.TemporaryDirectory(prefix="lcmftn-model-") as tmp:
            for name, data in model_files.items():
                Path(tmp, name).write_bytes(data)
            self.system, _ = load_checkpoint(tmp, map_location="cpu")

    def colorize(self, jobs: list[dict]) -> Iterator[dict]:
        yield from colorize_jobs(self.system, jobs, self.settings)


# ---------------------------------------------------------------------------------------------
# Output folder (local or s3://): frames, confidence maps, markers, video, report
# ---------------------------------------------------------------------------------------------
class Output:
    """Files under ``OUT`` that appear only when complete (local: tmp + rename; s3: one PUT)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/") if storage.is_s3(uri) else str(Path(uri).resolve())

    def path(self, rel: str) -> str:
        return storage.join(self.uri, rel)

    def write(self, rel: str, data: bytes) -> None:
        """``storage.write_bytes_atomic``: local tmp + fsync + rename, s3 one PUT; a failure is
        a ``StorageError`` (an ``OSError``) naming the file."""
        storage.write_bytes_atomic(self.path(rel), data)

    def read(self, rel: str) -> bytes | None:
        try:
            return storage.read_bytes(self.path(rel))
        except storage.ObjectNotFoundError:
            return None

    def write_video(self, name: str, frames: Iterator[np.ndarray], fps: float) -> int:
        from lcmftn.data.video import write_video

        if not storage.is_s3(self.uri):
            return write_video(self.path(name), frames, fps)
        with tempfile.TemporaryDirectory() as tmp:
            n = write_video(Path(tmp) / name, frames, fps)
            storage.upload(Path(tmp) / name, self.path(name))
        return n


# ---------------------------------------------------------------------------------------------
# The episode run
# ---------------------------------------------------------------------------------------------
@dataclass
class RunSettings:
    """Everything of a run that is not input data (see ``--help``)."""

    mode: str = "chain"
    size: int = 256
    batch_size: int = 0  # 0 = 8 on GPU, 1 on CPU
    holds: bool = True
    borrow_keyframes: bool = False
    actors: int = 0  # 0 = auto
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    device: str = "auto"
    amp: str = "none"
    local: bool = False  # no Ray: colour in this process
    low_confidence: float = 0.5
    flag_fraction: float = 0.05


def _hash(*parts: bytes | str) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
    return h.hexdigest()


def plan_jobs(ep: Episode, keyframes: dict[int, np.ndarray], shots: list[tuple[int, int]],
              rs: RunSettings, common_fp: str) -> tuple[list[dict], list[dict]]:
    """(jobs to run, records of shots left out). A job's ``fingerprint`` covers every input
    that decides its pixels: the model and settings (``common_fp``), its line art, its keys."""
    jobs, left_out = [], []
    key_idx = sorted(keyframes)
    for start, end in shots:
        sid = shot_id(start, end)
        rec = {"id": sid, "start": start, "end": end}
        bad = [ep.unreadable[i] for i in range(start, end) if i in ep.unreadable]
        if bad:
            left_out.append(rec | {"status": "failed", "reason": f"{len(bad)} unreadable frame(s): " + "; ".join(bad[:3])})
            continue
        la = ep.lineart[start:end]
        keys = {i - start: keyframes[i] for i in key_idx if start <= i < end}
        off, borrowed = 0, None
        if not keys:
            if not (rs.borrow_keyframes and key_idx):
                hint = "" if rs.borrow_keyframes else " (add one to --refs, or pass --borrow-keyframes)"
                left_out.append(rec | {"status": "skipped", "reason": f"no keyframe in frames {start}..{end - 1}{hint}"})
                continue
            borrowed = min(key_idx, key=lambda i: (start - i if i < start else i - end + 1, i))
            la = [ep.lineart[borrowed], *la]
            keys, off = {0: keyframes[borrowed]}, 1
        fp = _hash(common_fp, sid, *(f.tobytes() for f in la), *(f"{k}".encode() + keys[k].tobytes() for k in sorted(keys)))
        jobs.append(rec | {"lineart": np.stack(la), "keyframes": keys, "offset": off,
                           "borrowed_from": borrowed, "fingerprint": fp})
    return jobs, left_out


def resolve_device(rs: RunSettings) -> str:
    """``cpu`` or ``cuda``: where the model runs (``auto``: CUDA when this process, or with Ray
    the cluster, has a GPU). Asking for CUDA where there is none is an error, not a fallback."""
    if rs.local:
        import torch

        has_gpu = torch.cuda.is_available()
    else:
        import ray

        from workflows.common import ensure_ray

        ensure_ray()  # 1. attach to the cluster (or start a local one)
        has_gpu = ray.cluster_resources().get("GPU", 0) >= max(rs.gpus_per_actor, 1e-6)
    if rs.device == "cuda" and not has_gpu:
        raise ValueError("--device cuda: " + ("no CUDA device in this process" if rs.local else "the Ray cluster has no GPU"))
    return "cuda" if has_gpu and rs.device != "cpu" else "cpu"


def _split(jobs: list[dict], n: int) -> list[list[dict]]:
    """Longest-first greedy partition of jobs over ``n`` actors by frame count."""
    groups: list[list[dict]] = [[] for _ in range(n)]
    load = [0] * n
    for j in sorted(jobs, key=lambda j: -len(j["lineart"])):
        k = load.index(min(load))
        groups[k].append(j)
        load[k] += len(j["lineart"])
    for g in groups:  # colour in episode order within an actor (nicer progress)
        g.sort(key=lambda j: j["start"])
    return [g for g in groups if g]


def _iter_results(jobs: list[dict], settings: dict, model_files: dict[str, bytes], rs: RunSettings) -> Iterator[dict]:
    """Results of all jobs, as they finish: in-process (``--local``) or over Ray actors."""
    if rs.local:
        actor = ShotPredictor(model_files, settings)
        yield from actor.colorize(jobs)
        return
    import ray

    from workflows.common import ensure_ray

    ensure_ray()  # 1. attach to the cluster (or start a local one); a no-op after resolve_device
    cluster = ray.cluster_resources()
    gpus = (rs.gpus_per_actor or 1.0) if settings["device"] == "cuda" else 0.0
    cpus = rs.cpus_per_actor
    n = rs.actors or (int(cluster.get("GPU", 0) // gpus) if gpus else int(max(1, cluster.get("CPU", 1) // max(cpus, 1e-3))))
    groups = _split(jobs, max(1, min(n, len(jobs))))
    actor_settings = dict(settings, threads=max(1, int(cpus)), finalize_threads=2 if gpus else 0)
    files_ref = ray.put(model_files)  # 2. the checkpoint travels once through the object store
    Actor = ray.remote(num_cpus=cpus, num_gpus=gpus)(ShotPredictor)
    actors = [Actor.remote(files_ref, actor_settings) for _ in groups]
    log.info("colouring %d shots on %d actor(s) (%.2g CPU, %.2g GPU each, batch %d)",
             len(jobs), len(actors), cpus, gpus, settings["batch_size"])
    results: queue.Queue = queue.Queue(maxsize=2 * len(actors))
    stop = threading.Event()

    def pump(actor, group) -> None:  # 3. one thread drains each actor's stream of finished shots
        try:
            for ref in actor.colorize.remote(group):
                if stop.is_set():
                    return
                results.put(ray.get(ref))
        except BaseException as err:  # noqa: BLE001 - handed to the driver thread
            results.put(err)
        finally:
            results.put(None)

    threads = [threading.Thread(target=pump, args=(a, g), daemon=True) for a, g in zip(actors, groups, strict=True)]
    for t in threads:
        t.start()
    try:
        open_streams = len(threads)
        while open_streams:
            item = results.get()
            if item is None:
                open_streams -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        stop.set()
        for a in actors:
            ray.kill(a)
        while not results.empty():  # unblock pumps waiting on a full queue
            results.get_nowait()


def run_episode(ep: Episode, keyframes: dict[int, np.ndarray], shots: list[tuple[int, int]],
                out_uri: str, model_files: dict[str, bytes], rs: RunSettings, job_info: dict,
                warnings: list[str] | None = None, errors: list[str] | None = None) -> dict:
    """Colour the episode into ``out_uri`` (resuming finished shots); returns the report."""
    out = Output(out_uri)
    warnings, errors = list(warnings or []), list(errors or []) + list(ep.unreadable.values())
    meta = json.loads(model_files["meta.json"])
    from lcmftn.models.registry import multiple_of

    cfg = ColorizeConfig(mode=rs.mode, image_size_px=rs.size, multiple_of=multiple_of(meta["system"]),
                         low_confidence=rs.low_confidence, flag_fraction=rs.flag_fraction)
    colorize_cfg = {k: v for k, v in asdict(cfg).items() if k != "upsample"}
    model_size(*ep.size_hw, rs.size, cfg.multiple_of, source=job_info.get("lineart", ep.source))  # hook: limits
    device = resolve_device(rs)
    batch_size = rs.batch_size or (8 if device == "cuda" else 1)
    settings = {"colorize": colorize_cfg, "holds": rs.holds, "batch_size": batch_size,
                "device": device, "amp": rs.amp}
    # NOTE: the fingerprint holds the batch size and device: padded batches make results
    # independent of batch *composition*, not of the batch size or the hardware.
    # NOTE: the library version is in it too, but not every code change: after upgrading the
    # model code mid-episode, use a new OUT (or delete OUT/shots) to recolour everything.
    import lcmftn

    common_fp = _hash(model_files["model.safetensors"], json.dumps(settings, sort_keys=True),
                      str(MARKER_VERSION), lcmftn.__version__)
    jobs, records = plan_jobs(ep, keyframes, shots, rs, common_fp)
    for r in records:
        log.warning("shot %s left out: %s", r["id"], r["reason"])
    pending = []
    for job in jobs:
        marker = out.read(f"shots/{job['id']}.json")
        rec = json.loads(marker) if marker else None
        if rec is not None and rec.get("fingerprint") == job["fingerprint"]:
            records.append(rec | {"resumed": True})
        else:
            pending.append(job)
    by_id = {j["id"]: j for j in jobs}
    log.info("%d shots: %d to colour, %d done already, %d left out", len(shots), len(pending),
             len(jobs) - len(pending), len(shots) - len(jobs))
    fail_after = int(os.environ.get(FAULT_ENV, "0") or 0)
    t0 = time.perf_counter()
    written = 0
    if pending:
        for res in _iter_results(pending, settings, model_files, rs):
            job = by_id[res["id"]]
            for i, png in sorted(res["frames"].items()):
                out.write(f"frames/{rpt.frame_name(i)}", png)
            for i, png in sorted(res["confidence"].items()):
                out.write(f"confidence/{rpt.frame_name(i)}", png)
            expected = set(range(job["start"], job["end"]))
            if set(res["frames"]) != expected:
                raise RuntimeError(f"shot {job['id']}: got frames {sorted(set(res['frames']) ^ expected)[:5]} wrong")
            rec = {"id": job["id"], "start": job["start"], "end": job["end"], "status": "done",
                   "borrowed_from": job["borrowed_from"], "fingerprint": job["fingerprint"]} | res["stats"]
            if job["borrowed_from"] is not None:
                warnings.append(f"shot {job['id']}: no keyframe; coloured from frame {job['borrowed_from']}'s keyframe (--borrow-keyframes)")
            out.write(f"shots/{job['id']}.json", json.dumps(rec).encode())  # marker last
            records.append(rec)
            written += 1
            log.info("shot %s done: %d colorized, %d copied (%d/%d)", job["id"], rec["colorized"],
                     rec["copied"], written, len(pending))
            time.sleep(float(os.environ.get(DELAY_ENV, "0") or 0))
            if fail_after and written >= fail_after:
                raise InjectedFault(f"{FAULT_ENV}={fail_after}: stopping after {written} shots")
    elapsed = time.perf_counter() - t0
    records.sort(key=lambda r: r["start"])
    done = {r["id"] for r in records if r["status"] == "done"}
    n_video = out.write_video("episode.mp4", _episode_frames(ep, out, shots, done), ep.fps)
    report = rpt.summarize(job_info | {"mode": rs.mode, "size": rs.size, "batch_size": batch_size, "device": device,
                                       "model_size_hw": list(model_size(*ep.size_hw, rs.size, cfg.multiple_of)),
                                       "system": meta.get("system"), "fps": ep.fps},
                           records, warnings, errors,
                           extra={"video": "episode.mp4", "video_frames": n_video,
                                  "run": {"shots_coloured": written, "wall_s": round(elapsed, 3),
                                          "frames_per_s": round(sum(r["end"] - r["start"] for r in records
                                                                    if r["id"] in {j["id"] for j in pending}) / max(elapsed, 1e-9), 3)}})
    out.write("report.json", rpt.to_json(report))
    out.write("report.html", rpt.render_html(report).encode())
    return report


def _episode_frames(ep: Episode, out: Output, shots: list[tuple[int, int]], done: set[str]) -> Iterator[np.ndarray]:
    for start, end in shots:
        ok = shot_id(start, end) in done
        for i in range(start, end):
            data = out.read(f"frames/{rpt.frame_name(i)}") if ok else None
            yield decode_png(data) if data else cv2.cvtColor(ep.lineart[i], cv2.COLOR_GRAY2RGB)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workflows.colorize", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lineart", help="line-art video or image folder (local or s3://)")
    p.add_argument("--refs", help="keyframe images named by frame index (folder or file, local or s3://)")
    p.add_argument("--model", required=True, help="models:/name@alias, models:/name/version, runs:/id/path, s3:// or checkpoint dir")
    p.add_argument("--out", required=True, help="output folder (local or s3://)")
    p.add_argument("--mode", choices=MODES, default="chain")
    p.add_argument("--shots", help="shot list: JSON file or inline JSON ([[start, end], ...] or {\"shots\": ...})")
    p.add_argument("--size", type=int, default=0,
                   help="model resolution: short side in px (0 = the checkpoint's training size, else 256)")
    p.add_argument("--batch-size", type=int, default=0, help="lockstep batch B (0 = 8 on GPU, 1 on CPU)")
    p.add_argument("--from-color", help="evaluation: a colour episode (video/folder); line art is synthesised")
    p.add_argument("--eval-modes", default="chain,anchor", help="evaluation: modes to compare")
    p.add_argument("--lineart-method", default="xdog", help="evaluation: line-art extractor (xdog|canny)")
    p.add_argument("--eval-size", type=int, default=128,
                   help="evaluation: score PSNR/SSIM at this short side (0 = full resolution; SSIM is slow on CPU)")
    p.add_argument("--borrow-keyframes", action="store_true", help="colour shots without keyframe from the nearest shot's")
    p.add_argument("--keyframe-size", choices=("resize", "reject"), default="resize",
                   help="keyframes of another size: resize (same aspect, with a warning) or reject")
    p.add_argument("--no-holds", action="store_true", help="run the model on held drawings too (benchmarks)")
    p.add_argument("--detector", default=None,
                   help="shot detector (lcmftn.data.shots.DETECTORS; default: hash on line art, "
                        "content on colour: ContentDetector's HSV change misses cuts between line-art frames)")
    p.add_argument("--threshold", type=float)
    p.add_argument("--fps", type=float, help="frame rate of an image-folder input (default 24)")
    p.add_argument("--actors", type=int, default=0, help="Ray actors (0 = one per GPU, else one per CPU)")
    p.add_argument("--cpus-per-actor", type=float, default=1.0)
    p.add_argument("--gpus-per-actor", type=float, default=0.0, help="0 = 1 when the cluster has GPUs")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    p.add_argument("--local", action="store_true", help="no Ray: colour in this process")
    p.add_argument("--flag-fraction", type=float, default=0.05, help="flag frames with more low-confidence pixels")
    p.add_argument("--work-dir", help="scratch folder for downloads (default: a temp dir)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _settings(args: argparse.Namespace) -> RunSettings:
    return RunSettings(mode=args.mode, size=args.size, batch_size=args.batch_size,
                       holds=not args.no_holds, borrow_keyframes=args.borrow_keyframes, actors=args.actors,
                       cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor,
                       device=args.device, amp=args.amp, local=args.local, flag_fraction=args.flag_fraction)


def training_size(meta: dict, default: int = 256) -> int:
    """The image size a checkpoint was trained at (``extra.train_config.image_size_px``)."""
    size = (meta.get("extra") or {}).get("train_config", {}).get("image_size_px")
    log.info("model resolution: %s", f"{size} px (the checkpoint's training size)" if size else f"{default} px (default)")
    return int(size or default)


def load_model_files(uri: str, workdir: Path) -> dict[str, bytes]:
    from lcmftn.checkpoint import validate_files
    from lcmftn.integrations.tracking import resolve_model_uri

    ckpt = resolve_model_uri(uri, workdir / "model")
    files = {p.name: p.read_bytes() for p in ckpt.iterdir() if p.is_file()}
    if "meta.json" not in files or "model.safetensors" not in files:
        raise ValueError(f"--model {uri}: {ckpt} lacks meta.json or model.safetensors")
    validate_files(files, f"--model {uri}")  # reliability hook: limits + integrity, user's name
    return files


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from workflows.common import setup_logging

    setup_logging(args.verbose)
    if bool(args.lineart) == bool(args.from_color):
        print("error: give exactly one of --lineart (with --refs) or --from-color", file=sys.stderr)
        return 2
    if args.lineart and not args.refs:
        print("error: --lineart needs --refs (coloured keyframes named by frame index)", file=sys.stderr)
        return 2
    rs = _settings(args)
    try:  # reliability hook: --out writable and held by this run alone (lcmftn.integrations.lease)
        held = lease.guard_output(args.out, owner="colorize")
    except storage.StorageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with held, tempfile.TemporaryDirectory(prefix="colorize-", dir=args.work_dir) as tmp:
        work = Path(tmp)
        try:
            model_files = load_model_files(args.model, work)
            if not rs.size:
                rs.size = training_size(json.loads(model_files["meta.json"]))
            if args.from_color:
                summary = run_evaluation(args, rs, model_files, work)
            else:
                summary = _run_lineart(args, rs, model_files, work)
        except (ValueError, OSError) as err:
            log.error("%s", err)
            print(f"error: {err}", file=sys.stderr)
            return 2
    print(json.dumps(summary))
    return 0 if summary.get("shots_done") == summary.get("shots") else 3


def _run_lineart(args: argparse.Namespace, rs: RunSettings, model_files: dict[str, bytes], work: Path) -> dict:
    la_path = stage(args.lineart, work, "lineart")
    ep = read_lineart(la_path, args.fps)
    keys, warnings, errors = read_keyframes(stage(args.refs, work, "refs"), len(ep.lineart), ep.size_hw, args.keyframe_size)
    detect_src: Path | list[np.ndarray] = la_path if not ep.unreadable else [cv2.cvtColor(f, cv2.COLOR_GRAY2RGB) for f in ep.lineart]
    shots = load_shots(args.shots, len(ep.lineart), detect_src, args.detector or LINEART_DETECTOR, args.threshold)
    job = {"lineart": args.lineart, "refs": args.refs, "model": args.model, "out": args.out}
    report = run_episode(ep, keys, shots, args.out, model_files, rs, job, warnings, errors)
    return {"out": args.out, **report["totals"]}


# ---------------------------------------------------------------------------------------------
# Evaluation mode (--from-color)
# ---------------------------------------------------------------------------------------------
def score_frames(out: Output, color: list[np.ndarray], report: dict, size_px: int = 0, chunk: int = 16) -> list[dict]:
    """PSNR/SSIM (DESIGN §6, :mod:`lcmftn.metrics`) of every coloured non-key frame vs the truth,
    both area-resized to a short side of ``size_px`` first (0 = full resolution).

    NOTE: SSIM's float64 11x11 convolution costs seconds per frame at 240x320 on CPU, hence
    the option to score a whole episode at a reduced size."""
    import torch

    from lcmftn import metrics
    from lcmftn.data.video import resize_image

    def t(imgs: list[np.ndarray]) -> torch.Tensor:
        imgs = [resize_image(i, size_px) if size_px and min(i.shape[:2]) > size_px else i for i in imgs]
        return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0

    rows = []
    for shot in report["shots"]:
        if shot["status"] != "done":
            continue
        kinds = {f["i"]: f["kind"] for f in shot["per_frame"]}
        idx = [i for i in range(shot["start"], shot["end"]) if kinds.get(i) != "key"]
        for k in range(0, len(idx), chunk):
            part = idx[k:k + chunk]
            pred = t([decode_png(out.read(f"frames/{rpt.frame_name(i)}")) for i in part])
            true = t([color[i] for i in part])
            for i, p_, s_ in zip(part, metrics.psnr(pred, true).tolist(), metrics.ssim(pred, true).tolist(), strict=True):
                rows.append({"i": i, "shot": shot["id"], "offset": i - shot["start"], "kind": kinds[i],
                             "psnr": round(float(p_), 4), "ssim": round(float(s_), 5)})
    return rows


def run_evaluation(args: argparse.Namespace, rs: RunSettings, model_files: dict[str, bytes], work: Path) -> dict:
    """Synthesise line art from a colour episode, key = first frame of each shot, colour it in
    each of ``--eval-modes`` (``OUT/<mode>/``), score against the real frames, plot the drift."""
    from dataclasses import replace

    from lcmftn.data.video import probe_video, read_frames

    modes = [m.strip() for m in args.eval_modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        raise ValueError(f"--eval-modes {args.eval_modes!r}: choose from {MODES}")
    src = stage(args.from_color, work, "color")
    color = read_frames(src)
    if not color:
        raise ValueError(f"--from-color {args.from_color}: no frames")
    lcfg = LineArtConfig(method=args.lineart_method)
    ep = Episode([extract_lineart(f, lcfg) for f in color], float(args.fps or probe_video(src).fps), str(src))
    shots = load_shots(args.shots, len(color), src, args.detector or "content", args.threshold)
    keys = {s: color[s] for s, _ in shots}
    evaluation: dict = {"source": args.from_color, "lineart_method": args.lineart_method,
                        "scored_at_short_side_px": args.eval_size or "full resolution",
                        "keyframes": "first frame of each shot", "modes": {}, "plot": "drift.png"}
    curves = {}
    totals = {}
    for mode in modes:
        job = {"from_color": args.from_color, "lineart": f"{args.lineart_method} line art of {args.from_color}",
               "model": args.model, "out": storage.join(args.out, mode)}
        out_uri = storage.join(args.out, mode)
        report = run_episode(ep, keys, shots, out_uri, model_files, replace(rs, mode=mode), job)
        rows = score_frames(Output(out_uri), color, report, args.eval_size)
        per_shot = {}
        for r in rows:
            per_shot.setdefault(r["shot"], []).append(r)
        curve = rpt.aggregate_by_offset(rows)
        curves[mode] = {"psnr": curve["psnr"], "ssim": curve["ssim"]}
        evaluation["modes"][mode] = {
            "psnr": round(float(np.mean([r["psnr"] for r in rows])), 4) if rows else None,
            "ssim": round(float(np.mean([r["ssim"] for r in rows])), 5) if rows else None,
            "frames": len(rows),
            "per_shot": {k: {"psnr": round(float(np.mean([r["psnr"] for r in v])), 4),
                             "ssim": round(float(np.mean([r["ssim"] for r in v])), 5), "frames": len(v)}
                         for k, v in per_shot.items()},
            "per_offset": curve,
            "per_frame": rows,
        }
        totals = report["totals"]
    out = Output(args.out)
    out.write("drift.png", rpt.plot_curves(curves, title=f"chain vs anchor drift: {Path(str(args.from_color)).name}"))
    out.write("eval.json", rpt.to_json(evaluation))
    return {"out": args.out, **totals, "evaluation": {m: {k: v[k] for k in ("psnr", "ssim", "frames")}
                                                      for m, v in evaluation["modes"].items()}}


if __name__ == "__main__":
    sys.exit(main())
