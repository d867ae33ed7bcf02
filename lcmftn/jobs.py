"""Colorize-episode shot jobs (Ray-free): settings, planning, fingerprints, the per-shot
worker, the output folder and its layout (DESIGN §2 "colorize"; per-shot logic:
:mod:`lcmftn.colorize`). ``workflows.colorize`` spreads the jobs over Ray actors.

Output layout (``OUT``, local or ``s3://``; every file appears only when complete)::

    OUT/frames/000123.png        coloured frames (episode index)
    OUT/confidence/000123.png    low-confidence maps of model-coloured frames
    OUT/shots/<id>.json          completion marker of a shot, written last; carries the
                                 fingerprint of everything that decides the shot's pixels
    OUT/episode.mp4              H.264 (shots left out show their line art)
    OUT/report.json, report.html QC report (:mod:`lcmftn.report`)

A shot whose marker carries the same fingerprint is done already (resume).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from lcmftn import report as rpt
from lcmftn.calibration import CALIBRATION_FILE  # confidence hook
from lcmftn.colorize import ColorizeConfig, LockstepScheduler, ShotColorizer, shot_sizes
from lcmftn.data.dataset_format import decode_color_png, encode_png
from lcmftn.episode import KeyframeRef, LineartSource, Scan, ShotFrames, key_digest, load_keyframe
from lcmftn.integrations import storage
from lcmftn.paper import paper_of_source

log = logging.getLogger("workflows.colorize")  # NOTE: the job's logger name, kept for its users

MARKER_VERSION = 3


def shot_id(start: int, end: int) -> str:
    return f"{start:06d}-{end:06d}"


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
    paper: str = "auto"  # auto | keep | off: keep the line art's paper in the output (lcmftn.paper)
    max_actor_losses: int = 3  # shot workers lost (node loss, OOM kill) tolerated per run
    fit: str = "pad"  # pad | round: how a system's multiple_of is met (lcmftn.colorize.ColorizeConfig.fit)


def fingerprint(*parts: bytes | str) -> str:
    """blake2b-128 hex digest of ``parts`` (str as UTF-8)."""
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
    return h.hexdigest()


def _key_digest(key: np.ndarray | KeyframeRef) -> str:
    return key.digest if isinstance(key, KeyframeRef) else key_digest(key)


def plan_jobs(scan: Scan, keyframes: dict[int, np.ndarray] | dict[int, KeyframeRef], shots: list[tuple[int, int]],
              rs: RunSettings, common_fp: str) -> tuple[list[dict], list[dict]]:
    """(jobs to run, records of shots left out). A job's ``fingerprint`` covers every input
    that decides its pixels: the model and settings (``common_fp``), its line art (the frames'
    digests from the driver's scan, :func:`lcmftn.episode.scan_lineart`), its keys. A job holds
    no frames: the worker reads them from the source."""
    jobs, left_out = [], []
    key_idx = sorted(keyframes)
    for start, end in shots:
        sid = shot_id(start, end)
        rec = {"id": sid, "start": start, "end": end}
        bad = [scan.unreadable[i] for i in range(start, end) if i in scan.unreadable]
        if bad:
            left_out.append(rec | {"status": "failed", "reason": f"{len(bad)} unreadable frame(s): " + "; ".join(bad[:3])})
            continue
        digests = scan.digests[16 * start:16 * end]
        keys = {i - start: keyframes[i] for i in key_idx if start <= i < end}
        off, borrowed, head = 0, None, b""
        if not keys:
            if not (rs.borrow_keyframes and key_idx):
                hint = "" if rs.borrow_keyframes else " (add one to --refs, or pass --borrow-keyframes)"
                left_out.append(rec | {"status": "skipped", "reason": f"no keyframe in frames {start}..{end - 1}{hint}"})
                continue
            borrowed = min(key_idx, key=lambda i: (start - i if i < start else i - end + 1, i))
            head = scan.digest(borrowed)
            keys, off = {0: keyframes[borrowed]}, 1
        fp = fingerprint(common_fp, sid, head, digests, *(f"{k}:{_key_digest(keys[k])}" for k in sorted(keys)))
        jobs.append(rec | {"keyframes": keys, "offset": off, "borrowed_from": borrowed, "fingerprint": fp,
                           "digests": digests, "borrowed_digest": head})
    return jobs, left_out


class _Prefixed:
    """A borrowed keyframe's drawing followed by the shot's frames (``ShotFrames``)."""

    lazy = True

    def __init__(self, first: np.ndarray, rest: ShotFrames) -> None:
        self.first, self.rest = first, rest

    def __len__(self) -> int:
        return len(self.rest) + 1

    def __getitem__(self, t: int) -> np.ndarray:
        return self.first if t == 0 else self.rest[t - 1]

    def __iter__(self) -> Iterator[np.ndarray]:
        yield self.first
        yield from self.rest


def add_index_windows(jobs: list[dict], src: LineartSource) -> list[dict]:
    """Give each job the part of the video's frame index it reads (``"index"``: its shot's
    :meth:`LineartSource.window`; ``"borrowed_index"``: the borrowed keyframe's frame), so the
    actors get the source without its index (:meth:`LineartSource.without_index`) and hold a
    few bytes per frame of their own shots only. None for folders and memory sources."""
    for job in jobs:
        job["index"] = src.window(int(job["start"]), int(job["end"]))
        b = job.get("borrowed_from")
        job["borrowed_index"] = src.window(int(b), int(b) + 1) if b is not None else None
    return jobs


def _shot_frames(src: LineartSource, job: dict, window: int) -> tuple[ShotFrames, ShotFrames | _Prefixed]:
    reader = ShotFrames(src.with_index(job.get("index")), job["start"], job["end"], job["digests"], window)
    if not job["offset"]:
        return reader, reader
    b = int(job["borrowed_from"])
    first = ShotFrames(src.with_index(job.get("borrowed_index")), b, b + 1, job["borrowed_digest"])[0]
    return reader, _Prefixed(first, reader)


def colorize_jobs(system, jobs: list[dict], settings: dict, src: LineartSource, out_uri: str,
                  on_frames: Callable[[int], None] | None = None) -> Iterator[dict]:
    """Colour shot jobs in lockstep, reading each shot's line art from ``src`` and writing its
    frames, confidence maps and review line art straight to ``out_uri``; yield one small result
    per shot as soon as all its files are written (the caller writes the marker, last).
    ``on_frames(n)``: called after each output frame is written (``n`` = 1; from the writing
    thread, so it must be thread-safe): a progress hook.

    job: ``{"id", "start", "end", "keyframes": {i: RGB}, "offset", "digests", "index", ...}``
    (``offset`` 1: frame 0 is a borrowed keyframe's drawing, not output; ``index``: where its
    frames are, :func:`add_index_windows`; ``src`` may then come without its index). result: ``{"id", "written"
    (episode indices of the frames written), "stats"}``. Memory: per shot in flight, a window
    of line-art frames (``settings["window"]``) and the model-resolution references its plan
    still needs (chain: the previous frame; holds: the previous drawing's ink map)."""
    from lcmftn.data.holds import HoldConfig, _held, ink_map

    cfg = ColorizeConfig(**settings["colorize"])
    out = Output(out_uri)
    window = int(settings.get("window", 16))
    outputs: dict[str, dict] = {}

    def shots() -> Iterator[ShotColorizer]:  # built lazily: the scheduler pulls B at a time
        for job in jobs:
            off, start = int(job["offset"]), int(job["start"])
            reader, seq = _shot_frames(src, job, window)
            holds = np.zeros(len(seq), bool)
            prev = None
            for t, la in enumerate(seq):  # pre-pass: holds, digests checked, review line art
                if settings["holds"]:
                    ink = ink_map(la, HoldConfig())
                    holds[t] = prev is not None and _held(prev, ink, HoldConfig())
                    prev = ink
                if t >= off:
                    for rel, png in rpt.lineart_files({start + t - off: la}, start + t - off, start + t - off + 1):
                        out.write(rel, png)
            if off:
                holds[:off + 1] = False  # the borrowed drawing is never "the same drawing"
            written: list[int] = []

            def sink(t: int, rgb: np.ndarray, kind: str, off=off, start=start, written=written) -> None:
                if t >= off:
                    out.write(f"frames/{rpt.frame_name(start + t - off)}", encode_png(rgb))
                    written.append(start + t - off)
                    if on_frames is not None:
                        on_frames(1)  # progress hook

            def conf_sink(t: int, m: np.ndarray, off=off, start=start) -> None:
                if t >= off:
                    out.write(f"confidence/{rpt.frame_name(start + t - off)}", encode_png(m))

            outputs[job["id"]] = {"job": job, "written": written, "reader": reader}
            keys = {t: load_keyframe(k) for t, k in job["keyframes"].items()}  # read now, not planned
            yield ShotColorizer(seq, keys, cfg, holds, sink=sink, name=job["id"], conf_sink=conf_sink)

    amp = {"bf16": "bfloat16", "fp16": "float16"}.get(settings.get("amp") or "")
    import torch

    sched = LockstepScheduler(system, batch_size=settings["batch_size"], device=settings["device"],
                              finalize_threads=settings.get("finalize_threads", 0),
                              amp_dtype=getattr(torch, amp) if amp else None)
    for sh in sched.iter_run(shots()):
        o = outputs.pop(sh.name)
        o["reader"].close()
        job = o["job"]
        yield {"id": job["id"], "written": sorted(o["written"]),
               "stats": episode_stats(sh.stats(), int(job["start"]), int(job["offset"]), job.get("borrowed_from"))}


def episode_stats(stats: dict, start: int, off: int, borrowed: int | None = None) -> dict:
    """Shot stats in episode frame indices, without a borrowed keyframe's virtual frame (a
    reference to it becomes the borrowed frame's index)."""
    per_frame = [dict(f, i=start + f["i"] - off, ref=start + f["ref"] - off if f["ref"] >= off else borrowed)
                 for f in stats["per_frame"] if f["i"] >= off]
    return dict(stats, frames=stats["frames"] - off, key=stats["key"] - off,
                keyframes=[start + k - off for k in stats["keyframes"] if k >= off],
                flagged=[start + i - off for i in stats["flagged"]], per_frame=per_frame)


class ActorsLostError(RuntimeError):
    """A run lost more shot workers (actor deaths: node loss, OOM kill) than it tolerates."""


class LossBudget:
    """The shot workers lost in one run, shared by its streams (thread-safe). Each loss is
    counted and described in ``events``; one more than ``max_losses`` raises
    :class:`ActorsLostError` (bounded: a cluster that keeps losing nodes fails, named)."""

    def __init__(self, max_losses: int) -> None:
        self.max_losses = max_losses
        self.events: list[str] = []
        self._lock = threading.Lock()

    def spend(self, err: BaseException, pending: list[dict]) -> None:
        first = (str(err).strip().splitlines() or [""])[0][:200]
        what = (f"a shot worker was lost ({type(err).__name__}: {first}); {len(pending)} unfinished "
                f"shot(s) resubmitted: {', '.join(j['id'] for j in pending[:8])}")
        with self._lock:
            self.events.append(what)
            n = len(self.events)
        if n > self.max_losses:
            raise ActorsLostError(f"{n} shot workers lost, more than the {self.max_losses} allowed "
                                  f"(--max-actor-losses); last: {what}") from err
        log.warning("%s (loss %d of %d allowed)", what, n, self.max_losses)


def resubmit_on_loss(jobs: list[dict], start: Callable[[list[dict]], Iterator[dict]],
                     is_loss: Callable[[BaseException], bool], budget: LossBudget) -> Iterator[dict]:
    """Results of ``jobs`` from ``start(jobs)`` (a stream of per-shot results from one worker);
    when the stream dies of a worker loss (``is_loss``), the shots it had not returned go to
    ``start(unfinished)`` (a replacement worker), within ``budget``. Any other error is raised
    as it is. Shots are deterministic and written atomically, so a redone shot rewrites the
    same bytes; its marker is written by the caller only once its result is here."""
    pending = list(jobs)
    while pending:
        try:
            for res in start(pending):
                pending = [j for j in pending if j["id"] != res["id"]]
                yield res
        except Exception as err:  # noqa: BLE001 - losses resubmitted, the rest re-raised
            if not is_loss(err):
                raise
            if not pending:  # lost after its last shot came back: nothing to redo
                return
            budget.spend(err, pending)
            continue
        if pending:
            raise RuntimeError(f"a shot worker's stream ended without shots {[j['id'] for j in pending]}")


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

    def sweep_temp(self) -> int:
        """Delete the temp files (``.NAME.xxxxxxxx.tmp``) a killed writer left in a local OUT:
        called when a run starts (the output lease makes it the only writer). Never output, never
        read; returns how many. S3 writes are one PUT and leave none."""
        if storage.is_s3(self.uri) or not Path(self.uri).is_dir():
            return 0
        stale = [p for p in Path(self.uri).rglob(".*.tmp") if p.is_file()]
        for p in stale:
            p.unlink(missing_ok=True)
        return len(stale)

    def write_video(self, name: str, frames: Iterator[np.ndarray], fps: float, **options) -> int:
        from lcmftn.data.video import write_video

        if not storage.is_s3(self.uri):
            return write_video(self.path(name), frames, fps, **options)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / Path(name).name
            n = write_video(local, frames, fps, **options)
            storage.upload(local, self.path(name))
        return n


def split_jobs(jobs: list[dict], n: int) -> list[list[dict]]:
    """Longest-first greedy partition of jobs over ``n`` actors by frame count."""
    groups: list[list[dict]] = [[] for _ in range(n)]
    load = [0] * n
    def frames(j: dict) -> int:
        return int(j["end"]) - int(j["start"]) + int(j.get("offset", 0))

    for j in sorted(jobs, key=lambda j: -frames(j)):
        k = load.index(min(load))
        groups[k].append(j)
        load[k] += frames(j)
    for g in groups:  # colour in episode order within an actor (nicer progress)
        g.sort(key=lambda j: j["start"])
    return [g for g in groups if g]


# ---------------------------------------------------------------------------------------------
# One episode run: plan (with resume) -> write each finished shot -> video + report
# ---------------------------------------------------------------------------------------------
@dataclass
class EpisodeRun:
    """A planned run: what to colour, with which settings, and what is recorded so far."""

    out: Output
    cfg: ColorizeConfig
    settings: dict  # what the per-shot worker gets (colorize config, holds, batch, device, amp)
    meta: dict  # the checkpoint's meta.json
    jobs: list[dict]
    pending: list[dict]  # jobs without a matching completion marker
    records: list[dict]  # per-shot records: left out, resumed, then done as written
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def by_id(self) -> dict[str, dict]:
        return {j["id"]: j for j in self.jobs}


def plan_episode(src: LineartSource, scan: Scan, keyframes: dict[int, np.ndarray], shots: list[tuple[int, int]],
                 out_uri: str, model_files: dict[str, bytes], rs: RunSettings, device: str,
                 warnings: list[str] | None = None, errors: list[str] | None = None) -> EpisodeRun:
    """Settings, fingerprints and jobs of a run on ``device``; shots whose marker in ``out_uri``
    carries the same fingerprint are recorded as resumed, the others are pending."""
    out = Output(out_uri)
    if (swept := out.sweep_temp()):  # a killed run's half-written temp files (never output)
        log.info("removed %d temp file(s) a stopped run left in %s", swept, out_uri)
    warnings, errors = list(warnings or []), list(errors or []) + list(scan.unreadable.values())
    meta = json.loads(model_files["meta.json"])
    from lcmftn.models.registry import multiple_of

    cfg = ColorizeConfig(mode=rs.mode, image_size_px=rs.size, multiple_of=multiple_of(meta["system"]),
                         low_confidence=rs.low_confidence, flag_fraction=rs.flag_fraction,
                         calibration_json=model_files.get(CALIBRATION_FILE, b"").decode(),  # confidence hook
                         paper=paper_of_source(src, rs.paper), fit=rs.fit)
    colorize_cfg = {k: v for k, v in asdict(cfg).items() if k != "upsample"}
    shot_sizes(*src.size_hw, cfg, source=src.source)  # limits, before any allocation
    batch_size = rs.batch_size or (8 if device == "cuda" else 1)
    settings = {"colorize": colorize_cfg, "holds": rs.holds, "batch_size": batch_size,
                "device": device, "amp": rs.amp}
    # NOTE: MARKER_VERSION 2: fingerprints hash per-frame digests (streaming), not frame bytes;
    # 3: keyframes enter as their content digest (lcmftn.episode.key_digest), not their bytes.
    # NOTE: the fingerprint holds the batch size and device: padded batches make results
    # independent of batch *composition*, not of the batch size or the hardware.
    # NOTE: the library version is in it too, but not every code change: after upgrading the
    # model code mid-episode, use a new OUT (or delete OUT/shots) to recolour everything.
    import lcmftn

    common_fp = fingerprint(model_files["model.safetensors"], json.dumps(settings, sort_keys=True),
                            str(MARKER_VERSION), lcmftn.__version__)
    jobs, records = plan_jobs(scan, keyframes, shots, rs, common_fp)
    add_index_windows(jobs, src)  # not in the fingerprint: where the frames are, not what they are
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
    log.info("%d shots: %d to colour, %d done already, %d left out", len(shots), len(pending),
             len(jobs) - len(pending), len(shots) - len(jobs))
    return EpisodeRun(out, cfg, settings, meta, jobs, pending, records, warnings, errors)


def write_shot(run: EpisodeRun, res: dict) -> dict:
    """Record one shot whose files a worker wrote (frames, confidence maps, review line art):
    check it wrote every frame, then write its marker (manifest-last); returns the record."""
    out, job = run.out, run.by_id[res["id"]]
    expected = set(range(job["start"], job["end"]))
    if set(res["written"]) != expected:
        raise RuntimeError(f"shot {job['id']}: got frames {sorted(set(res['written']) ^ expected)[:5]} wrong")
    rec = {"id": job["id"], "start": job["start"], "end": job["end"], "status": "done",
           "borrowed_from": job["borrowed_from"], "fingerprint": job["fingerprint"]} | res["stats"]
    if job["borrowed_from"] is not None:
        run.warnings.append(f"shot {job['id']}: no keyframe; coloured from frame {job['borrowed_from']}'s keyframe (--borrow-keyframes)")
    out.write(f"shots/{job['id']}.json", json.dumps(rec).encode())  # marker last
    run.records.append(rec)
    return rec


VIDEO_PART_FRAMES = 2400  # frames per part of a parted episode.mp4 encode (100 s at 24 fps)
VIDEO_PART_FRAMES_ENV = "LCMFTN_VIDEO_PART_FRAMES"  # override (tests: small parts)
VIDEO_PARTS_DIR = "_video_parts"


def plan_video_parts(shots: list[tuple[int, int]], part_frames: int | None = None) -> list[list[tuple[int, int]]]:
    """The episode's shots in contiguous groups of at least ``part_frames`` frames (default
    ``VIDEO_PART_FRAMES``, or ``LCMFTN_VIDEO_PART_FRAMES``; the last group may be shorter): the
    parts of ``episode.mp4`` encoded in parallel. A function of the shot list only, so the video
    does not depend on the cluster's size."""
    part_frames = part_frames or int(os.environ.get(VIDEO_PART_FRAMES_ENV) or VIDEO_PART_FRAMES)
    parts: list[list[tuple[int, int]]] = [[]]
    n = 0
    for shot in shots:
        if n >= part_frames:
            parts.append([])
            n = 0
        parts[-1].append(shot)
        n += shot[1] - shot[0]
    return [p for p in parts if p]


def encode_episode(src: LineartSource, out_uri: str, shots: list[tuple[int, int]], done: set[str]) -> int:
    """``OUT/episode.mp4`` from the frames on disk, in order (one frame in memory at a time).
    An episode of one part (:func:`plan_video_parts`) is encoded straight into it; a longer one
    part by part (:func:`encode_video_part`, which the Ray job runs in parallel) and then
    joined without re-encoding (:func:`concat_video_parts`). Returns the frame count."""
    parts = plan_video_parts(shots)
    out = Output(out_uri)
    if len(parts) == 1:
        return out.write_video("episode.mp4", episode_frames(src, out, shots, done), src.fps)
    for k, part in enumerate(parts):
        encode_video_part(src, out_uri, part, done, k)
    return concat_video_parts(out_uri, len(parts), src.fps)


def encode_video_part(src: LineartSource, out_uri: str, shots: list[tuple[int, int]], done: set[str],
                      k: int) -> int:
    """Part ``k`` of a parted ``episode.mp4`` (``OUT/_video_parts/part-K.mp4``): the frames of
    ``shots``, H.264 without B-frames (so the parts' timestamps join without overlap)."""
    out = Output(out_uri)
    return out.write_video(f"{VIDEO_PARTS_DIR}/part-{k:05d}.mp4", episode_frames(src, out, shots, done),
                           src.fps, bframes=0)


def concat_video_parts(out_uri: str, n_parts: int, fps: float) -> int:
    """``OUT/episode.mp4`` = the parts' packets in order, timestamps shifted, not re-encoded
    (PyAV remux); then the parts are deleted. Returns the frame count."""
    from lcmftn.data.video import concat_videos

    out = Output(out_uri)
    with tempfile.TemporaryDirectory(prefix="lcmftn-parts-") as tmp:
        local = []
        for k in range(n_parts):
            rel = f"{VIDEO_PARTS_DIR}/part-{k:05d}.mp4"
            if storage.is_s3(out.uri):
                local.append(storage.download(out.path(rel), Path(tmp) / f"part-{k:05d}.mp4"))
            else:
                local.append(Path(out.path(rel)))
        if storage.is_s3(out.uri):
            n = concat_videos(local, Path(tmp) / "episode.mp4")
            storage.upload(Path(tmp) / "episode.mp4", out.path("episode.mp4"))
        else:
            n = concat_videos(local, Path(out.path("episode.mp4")))
    storage.delete_prefix(out.path(VIDEO_PARTS_DIR))
    return n


def finish_episode(run: EpisodeRun, src: LineartSource, shots: list[tuple[int, int]], rs: RunSettings,
                   job_info: dict, written: int, elapsed: float, n_video: int | None = None,
                   nodes: dict[str, list[str]] | None = None, phases: dict[str, float] | None = None) -> dict:
    """``OUT/episode.mp4`` (unless already encoded: ``n_video``) + ``OUT/report.json`` /
    ``report.html``; returns the report. ``nodes``: cluster node id -> shots coloured there
    this run (``report["run"]["nodes"]``; empty in-process)."""
    out, records = run.out, run.records
    records.sort(key=lambda r: r["start"])
    done = {r["id"] for r in records if r["status"] == "done"}
    if n_video is None:
        n_video = encode_episode(src, out.uri, shots, done)
    pending_ids = {j["id"] for j in run.pending}
    report = rpt.summarize(job_info | {"mode": rs.mode, "size": rs.size, "batch_size": run.settings["batch_size"],
                                       "device": run.settings["device"],
                                       "model_size_hw": list(shot_sizes(*src.size_hw, run.cfg)[0]),
                                       "system": run.meta.get("system"), "fps": src.fps},
                           records, run.warnings, run.errors,
                           extra={"video": "episode.mp4", "video_frames": n_video,
                                  "review": {"lineart": f"{rpt.LINEART_DIR}/"},
                                  "run": {"shots_coloured": written, "wall_s": round(elapsed, 3),
                                          "nodes": {k: sorted(v) for k, v in (nodes or {}).items()},
                                          "phases_s": {k: round(v, 3) for k, v in (phases or {}).items()},
                                          "frames_per_s": round(sum(r["end"] - r["start"] for r in records
                                                                    if r["id"] in pending_ids) / max(elapsed, 1e-9), 3)}})
    out.write("report.json", rpt.to_json(report))
    out.write("report.html", rpt.render_html(report).encode())
    return report


def episode_frames(src: LineartSource, out: Output, shots: list[tuple[int, int]], done: set[str]) -> Iterator[np.ndarray]:
    """The episode's frames for the video: coloured ones of done shots, else the line art read
    from the source (an unreadable frame shows the previous readable one, else white paper)."""
    from lcmftn.episode import _normalise, iter_raw

    prev = None
    for start, end in shots:
        ok = shot_id(start, end) in done
        for i, img, _err in iter_raw(src, start, end) if not ok else ((i, None, None) for i in range(start, end)):
            data = out.read(f"frames/{rpt.frame_name(i)}") if ok else None
            if data is not None:
                yield decode_color_png(data)
                continue
            if ok:  # a done shot lost a frame: show its line art, say so
                log.error("%s: missing although its shot is done; the video shows its line art",
                          out.path(f"frames/{rpt.frame_name(i)}"))
                _, img, _err = next(iter_raw(src, i, i + 1))
            la = _normalise(src, i, img) if img is not None else prev
            prev = la if la is not None else prev
            yield _gray_rgb(la, src)


def _gray_rgb(la: np.ndarray | None, src: LineartSource) -> np.ndarray:
    if la is None:
        la = np.full(tuple(src.size_hw), 255, np.uint8)
    return cv2.cvtColor(la, cv2.COLOR_GRAY2RGB)


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
def training_size(meta: dict, default: int = 256) -> int:
    """The image size a checkpoint was trained at (``extra.train_config.image_size_px``)."""
    size = (meta.get("extra") or {}).get("train_config", {}).get("image_size_px")
    log.info("model resolution: %s", f"{size} px (the checkpoint's training size)" if size else f"{default} px (default)")
    return int(size or default)


def load_model_files(uri: str, workdir: Path) -> dict[str, bytes]:
    """The checkpoint's files (``models:/``, ``runs:/``, s3:// or a folder) as bytes."""
    from lcmftn.integrations.tracking import resolve_model_uri  # lazy: mlflow only here

    ckpt = resolve_model_uri(uri, workdir / "model")
    files = {p.name: p.read_bytes() for p in ckpt.iterdir() if p.is_file()}
    if "meta.json" not in files or "model.safetensors" not in files:
        raise ValueError(f"--model {uri}: {ckpt} lacks meta.json or model.safetensors")
    from lcmftn.checkpoint import validate_files

    validate_files(files, f"--model {uri}")  # limits + integrity, named by the user's URI
    return files
