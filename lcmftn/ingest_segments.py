"""Split ingest of one film: segments cut at keyframes, processed in parallel, shots stitched.

Issue 8 part 2 (the Ray job is ``workflows.ingest``; the per-film path is
:func:`lcmftn.ingest.stage_film`). A long film would otherwise run on one core whatever the
cluster size. Here:

1. :func:`plan_film` (one task per film): checksum, skip when committed already, probe the
   keyframes by demuxing only (:func:`lcmftn.data.video.probe_keyframes`), cut
   ``[0, frames)`` into segments of about ``segment_frames`` starting at keyframes
   (:func:`split_ranges`; image folders: any file index). A film that makes one segment (or an
   ``s3://`` film, see NOTE) is a "whole" unit, ingested exactly as before by ``stage_film``.
2. :func:`stage_segment` (one task per segment): decodes ``[start - CONTEXT_FRAMES, stop)``
   (seek to the last keyframe before the context frame, frames placed by pts), computes per
   frame the line art, hold flag, both PNGs and the shot detector's FEATURE
   (:class:`lcmftn.data.shots.FrameScorer`); PNGs go to ``_staging/<film>/segments/`` (Arrow IPC scratch), holds and
   features come back to the driver (a float or a small array per frame).
3. :func:`assemble_film` (one task per film, when all its segments are in): replays the
   detector's decisions over the film's stitched features
   (:func:`lcmftn.data.shots.cuts_from_features`), numbers shots, clears the hold flag of every
   shot's first frame, writes the shards exactly as ``stage_film`` does (same table, same
   ``write_film_shards``, one shard in memory) and drops the segment files. The driver commits, manifest last, as before.

Overlap (why one frame of context is enough for EXACT cuts and holds): a detector is a per-frame
feature plus a decision over the feature sequence. The features need at most the previous frame
(``FEATURE_CONTEXT_FRAMES``: content/adaptive 1 — HSV difference to the previous frame; hash,
histogram, threshold 0); a hold compares a frame's ink with the previous frame's (1). The
decisions have unbounded state (the flash filter behind ``min_scene_len`` chains merges across
any number of frames; AdaptiveDetector's rolling mean needs ``window_width`` scores on BOTH
sides; ThresholdDetector keeps the last fade), so no finite decode overlap would make a
per-segment decision exact: they are replayed once, sequentially, over the stitched features
(microseconds per frame). Output is byte-identical to a one-segment run (tests/unit/test_ingest_segments.py).

Only containers with presentation timestamps are split (``SPLITTABLE_SUFFIXES``; AVI is not:
frames cannot be placed after a seek) and image folders; others run as one unit.

``s3://`` films are split too: the plan task streams the object once (checksum + a scratch copy
for the keyframe probe), and each segment task decodes its range through a buffered ranged
reader (:func:`lcmftn.integrations.storage.open_ranged`: 8 MiB GETs from the seek point), so no
task downloads the film.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from lcmftn.data.dataset_format import (
    FRAMES_DIR,
    PNG_FAST_COLOR,
    PNG_FAST_LINEART,
    STAGING_DIR,
    delete_dir,
    encode_png,
    write_film_shards,
)
from lcmftn.data.holds import changed_fraction_inks, ink_map
from lcmftn.data.lineart import extract_lineart
from lcmftn.data.shots import (
    DEFAULT_MIN_SHOT_FRAMES,
    FEATURE_CONTEXT_FRAMES,
    FrameScorer,
    cuts_from_features,
    cuts_to_shots,
)
from lcmftn.data.video import FrameIndex, iter_frame_range, probe_keyframes, probe_video
from lcmftn.ingest import FilmError, config_from_dict, fetch_and_hash, layer_lineart
from lcmftn.integrations import storage

DEFAULT_SEGMENT_FRAMES = 4800  # 200 s at 24 fps: shorter films stay one unit
# Frames decoded before a segment: the detector features' and the hold test's context.
CONTEXT_FRAMES = max(1, *FEATURE_CONTEXT_FRAMES.values())
# Containers whose packets carry presentation timestamps: frames are placed by pts after a seek.
# AVI stores none (FFmpeg guesses them; with B-frames a seek lands on the wrong frames): one unit.
SPLITTABLE_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm")
SEGMENTS_DIR = "segments"  # under _staging/<film>/, next to (never inside) the staged version


def split_ranges(index: FrameIndex, segment_frames: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` tiling ``[0, frames)``; each start is a keyframe, each segment at
    least ``segment_frames`` long (the last one may be shorter; a film with no keyframe after
    ``segment_frames`` is one segment). ``segment_frames <= 0`` = one segment."""
    if segment_frames <= 0:
        return [(0, index.frames)]
    ranges, start = [], 0
    for k in index.keyframes:
        if k >= start + segment_frames and k < index.frames:
            ranges.append((start, k))
            start = k
    return [*ranges, (start, index.frames)]


def _version(sha: str, cfg) -> str:
    return f"{sha[:12]}-{cfg.content_hash()[:8]}"


def _committed(prev: dict | None, version: str, out_root: str, fs_out: pafs.FileSystem) -> bool:
    """The same test as ``stage_film``: ok, same version, every shard present."""
    return bool(prev and prev.get("status") == "ok" and prev.get("version") == version and all(
        storage.retry_transient(fs_out, fs_out.get_file_info, f"{out_root}/{s}").type == pafs.FileType.File
        for s in prev["shards"]))


def plan_film(item: dict, out_root: str, fs_out: pafs.FileSystem, cfg_dict: dict,
              segment_frames: int, fs_in: pafs.FileSystem | None = None) -> list[dict]:  # fmt: skip
    """A film -> its work units: ``[{"kind": "whole", **item}]`` (``stage_film`` does all),
    ``[{"kind": "done", "entry": ...}]`` (skipped or failed here), or one ``"segment"`` unit per
    segment. Never raises for a bad film (it becomes "whole": ``stage_film`` reports it).
    An ``s3://`` film (``fs_in``: the S3 filesystem) is read once here (checksum + keyframe
    probe of a scratch copy, deleted after); its segments read their byte ranges from S3."""
    whole = [{"kind": "whole", **item}]
    source = item["source"]
    remote = storage.is_s3(source)
    splittable = (not remote and Path(source).is_dir()) or Path(source).suffix.lower() in SPLITTABLE_SUFFIXES
    if segment_frames <= 0 or not splittable or (remote and fs_in is None):
        return whole
    t0, c0 = time.time(), time.process_time()
    try:
        cfg = config_from_dict(cfg_dict)
        with tempfile.TemporaryDirectory(prefix="lcmftn-plan-") as tmp:
            if not remote and probe_video(source).frames <= segment_frames:
                return whole  # (before hashing: a short local film costs nothing here)
            local, sha = fetch_and_hash(source, fs_in, Path(tmp))
            info = probe_video(local)
            if info.frames <= segment_frames:
                return whole
            version = _version(sha, cfg)
            prev = json.loads(item["prev"]) if item.get("prev") else None
            if _committed(prev, version, out_root, fs_out):
                return [{"kind": "done", "film": item["film"], "entry": {**prev, "source": source, "skipped": True}}]
            index = probe_keyframes(local)
        ranges = split_ranges(index, segment_frames)
    except Exception:  # noqa: BLE001 - stage_film decodes the film and records the reason
        return whole
    if len(ranges) == 1:
        return whole
    delete_dir(fs_out, f"{out_root}/{STAGING_DIR}/{item['film']}")  # leftovers of a crash
    fps = info.fps or None
    units = []
    for seg, (start, stop) in enumerate(ranges):
        ctx = max(0, start - CONTEXT_FRAMES)
        w = index.window(ctx, stop)
        units.append({"kind": "segment", "film": item["film"], "source": source, "sha256": sha,
                      "version": version, "fps": fps, "seg": seg, "segments": len(ranges),
                      "start": start, "stop": stop, "context_start": ctx,
                      "index": {"frames": w.frames, "pts": list(w.pts), "keyframes": list(w.keyframes),
                                "offset": w.offset},
                      "t0": t0, "plan_cpu_s": time.process_time() - c0})  # fmt: skip
    return units


def segment_path(out_root: str, film: str, seg: int) -> str:
    return f"{out_root}/{STAGING_DIR}/{film}/{SEGMENTS_DIR}/seg-{seg:05d}.arrow"


def _write_segment_pngs(fs: pafs.FileSystem, path: str, color: list[bytes], line: list[bytes]) -> None:
    """A segment's PNG columns as an Arrow IPC file: scratch under ``_staging`` (never a
    dataset shard; those are written by ``dataset_format.write_film_shards`` in the assemble step)."""
    table = pa.table({"color_png": pa.array(color, pa.binary()), "lineart_png": pa.array(line, pa.binary())})
    def write() -> None:
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)

    storage.retry_transient(fs, write)


def _read_segment_pngs(fs: pafs.FileSystem, path: str) -> pa.Table:
    def read() -> pa.Table:
        with fs.open_input_file(path) as src:
            return pa.ipc.open_file(src).read_all()

    return storage.retry_transient(fs, read)


def stage_segment(unit: dict, out_root: str, fs_out: pafs.FileSystem, cfg_dict: dict,
                  fs_in: pafs.FileSystem | None = None) -> dict:
    """Process frames ``[start, stop)`` of a film (decoding from ``context_start``): PNGs to
    :func:`segment_path`; returns ``{"seg", "frames", "holds", "features", "height", "width",
    "cpu_s", "process_s"}`` or ``{"seg", "error"}`` (the reason names the film). Never raises
    for a bad film."""
    cfg = config_from_dict(cfg_dict)
    t0, c0 = time.perf_counter(), time.process_time()
    start, stop, ctx = unit["start"], unit["stop"], unit["context_start"]
    scorer = FrameScorer(cfg.detector, cfg.threshold, cfg.min_shot_frames or DEFAULT_MIN_SHOT_FRAMES)
    color, line, holds, feats = [], [], [], []
    prev_ink, hw = None, (0, 0)
    try:
        frames = iter_frame_range(unit["source"], ctx, stop, cfg.size_px, cfg.crop,
                                  index=FrameIndex(**{**unit["index"], "pts": tuple(unit["index"]["pts"]),
                                                      "keyframes": tuple(unit["index"]["keyframes"])}),
                                 filesystem=fs_in)  # fmt: skip
        last = unit["seg"] == unit["segments"] - 1  # the last segment also checks for extra line art
        lines = layer_lineart(unit["source"], cfg, ctx, None if last else stop)  # a layer's own, or None
        for i, img in enumerate(frames, start=ctx):
            la = extract_lineart(img, cfg.lineart) if lines is None else next(lines, None)
            if la is None or la.shape != img.shape[:2]:
                raise FilmError(f"{unit['source']}: its line art has no frame {i} of {img.shape[1]}x{img.shape[0]}")
            ink = ink_map(la, cfg.holds)
            if i < start:  # context: only what the next frame is compared with
                scorer.prime(img)
                prev_ink = ink
                continue
            holds.append(prev_ink is not None and changed_fraction_inks(prev_ink, ink, cfg.holds.tolerance_px)
                         <= cfg.holds.max_changed_fraction)  # fmt: skip
            prev_ink, hw = ink, img.shape[:2]
            feats.append(scorer.feature(img))
            color.append(encode_png(img, PNG_FAST_COLOR))
            line.append(encode_png(la, PNG_FAST_LINEART))
        if len(color) != stop - start:
            raise FilmError(f"{unit['source']}: segment {unit['seg']} decoded {len(color)} of {stop - start} frames")
        if lines is not None and last and next(lines, None) is not None:
            raise FilmError(f"{unit['source']}: its line art has more frames than its colour ({stop})")
        _write_segment_pngs(fs_out, segment_path(out_root, unit["film"], unit["seg"]), color, line)
    except Exception as exc:  # noqa: BLE001 - recorded as the film's reason
        reason = str(exc) if isinstance(exc, FilmError | ValueError | OSError) else repr(exc)
        return {"seg": unit["seg"], "error": reason if unit["source"] in reason else f"{unit['source']}: {reason}"}
    return {"seg": unit["seg"], "frames": len(color), "holds": holds, "features": feats,
            "height": int(hw[0]), "width": int(hw[1]), "cpu_s": time.process_time() - c0,
            "process_s": time.perf_counter() - t0}  # fmt: skip


def _film_rows(fs: pafs.FileSystem, out_root: str, film: str, results: list[dict]) -> Iterator[tuple[bytes, bytes]]:
    """The film's (colour PNG, line-art PNG) pairs in frame order, one segment file in memory."""
    for r in results:
        t = _read_segment_pngs(fs, segment_path(out_root, film, r["seg"]))
        yield from zip(t.column("color_png").to_pylist(), t.column("lineart_png").to_pylist(), strict=True)
        del t


def assemble_film(unit: dict, results: list[dict], out_root: str, fs_out: pafs.FileSystem,
                  cfg_dict: dict) -> dict:  # fmt: skip
    """All segments of a film -> the manifest entry ``stage_film`` would return (the shards it
    would write, under ``_staging``). ``unit``: any of the film's segment units."""
    cfg = config_from_dict(cfg_dict)
    c0 = time.process_time()
    film, source, version = unit["film"], unit["source"], unit["version"]
    stage = f"{out_root}/{STAGING_DIR}/{film}"
    entry: dict = {"source": source, "status": "failed", "reason": None, "sha256": unit["sha256"]}
    results = sorted(results, key=lambda r: r["seg"])
    try:
        errors = [r["error"] for r in results if "error" in r]
        if errors:
            raise FilmError(errors[0])
        if [r["seg"] for r in results] != list(range(unit["segments"])):
            raise FilmError(f"{source}: segments {[r['seg'] for r in results]} of {unit['segments']}")
        feats = [f for r in results for f in r["features"]]
        n = len(feats)
        shots = cuts_to_shots(cuts_from_features(feats, cfg.detector, cfg.threshold,
                                                 cfg.min_shot_frames or DEFAULT_MIN_SHOT_FRAMES, unit["fps"]), n)
        shot_of = np.zeros(n, dtype=np.int32)
        hold_arr = np.asarray([h for r in results for h in r["holds"]], dtype=bool)
        for k, (s, e) in enumerate(shots):
            shot_of[s:e] = k
            hold_arr[s] = False
        height, width = results[-1]["height"], results[-1]["width"]
        names = write_film_shards(_film_rows(fs_out, out_root, film, results), film, shot_of, hold_arr,
                                       height, width, fs_out, f"{stage}/{version}", cfg.rows_per_shard)
        delete_dir(fs_out, f"{stage}/{SEGMENTS_DIR}")
    except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded reason
        try:
            delete_dir(fs_out, stage)
        except OSError:
            pass  # the next run clears it
        reason = str(exc) if isinstance(exc, FilmError | ValueError | OSError) else repr(exc)
        entry["reason"] = reason if source in reason else f"{source}: {reason}"
        return entry
    entry.update(
        status="ok", version=version, frames=n, fps=unit["fps"],
        shots=[{"shot": k, "start": s, "end": e} for k, (s, e) in enumerate(shots)],
        holds=int(np.count_nonzero(hold_arr)),
        height=int(height), width=int(width),
        staged=[f"{STAGING_DIR}/{film}/{version}/{name}" for name in names],
        shards=[f"{FRAMES_DIR}/{film}/{version}/{name}" for name in names],
        seconds=round(time.time() - unit["t0"], 3),
        process_seconds=round(sum(r["process_s"] for r in results), 3),
        cpu_seconds=round(unit["plan_cpu_s"] + sum(r["cpu_s"] for r in results) + time.process_time() - c0, 3),
    )  # fmt: skip
    return entry


__all__ = ["CONTEXT_FRAMES", "DEFAULT_SEGMENT_FRAMES", "assemble_film", "plan_film", "split_ranges",
           "stage_segment"]
