"""Colorize a whole episode: line art + coloured keyframes -> frames, H.264 video, QC report.

    python -m workflows.colorize --lineart ep07/lineart.mp4 --refs ep07/keys/ \\
        --model models:/lcmftn@champion --out ep07/color/ [--mode chain|anchor|auto]
    ray job submit -- python -m workflows.colorize --lineart s3://studio/ep07/lineart.mp4 ...
    # evaluation: synthesise line art from a colour episode, first frame of each shot as key
    python -m workflows.colorize --from-color ep07/color.mp4 --model ckpt/ --out eval/

Pipeline (DESIGN §2 "colorize"). This module is the Ray glue only: the per-shot logic is
:mod:`lcmftn.colorize`, the inputs :mod:`lcmftn.episode`, planning / fingerprints / the worker /
the output folder :mod:`lcmftn.jobs`, evaluation scoring :mod:`lcmftn.evaluation`.
1. The driver plans from metadata (PyAV probe / folder listing), the keyframes (checked and
   digested one at a time, kept as references that the actors read), the model
   (``models:/``, ``runs:/``, s3:// or a checkpoint dir via :func:`resolve_model_uri`) and one
   streaming scan of the line art (:func:`scan_lineart`: a digest per frame, unreadable frames,
   the shot list by :func:`detect_shots` unless ``--shots``); it never holds the frames.
2. Each shot becomes a job (its range, its keyframes, a fingerprint of everything that decides
   its pixels: model, settings, its frames' digests, its keys). Shots whose completion marker
   ``OUT/shots/<id>.json`` carries the same fingerprint are done already (resume).
3. Pending shots are spread over ``ShotPredictor`` Ray actors (model loaded once per actor;
   :mod:`workflows.colorize_actors`).
   Each actor reads its shots' frames from the source (PyAV seek by frame range, a window of
   frames in memory), colours them in lockstep (:class:`LockstepScheduler`) and writes the
   frames (``OUT/frames/000123.png``, tmp + rename), confidence maps and review line art itself;
   its Ray generator streams back a small record per finished shot.
4. The driver writes each finished shot's marker (manifest-last). A crash loses at most the
   shots in flight; a rerun produces byte-identical frames (batches are padded to B).
5. At the end: ``OUT/episode.mp4`` by one streaming Ray task (:func:`encode_episode`: frames
   read back in order; shots left out show their line art) and ``OUT/report.json`` +
   ``OUT/report.html`` (:mod:`lcmftn.report`). ``--local`` runs the same code in-process.

Bad input never stops the other shots: a shot without keyframe is reported (or coloured from the
nearest shot's keyframe with ``--borrow-keyframes``); a keyframe whose size differs is resized
with a warning when the aspect matches (else, or with ``--keyframe-size reject``, rejected with
the file named); unreadable line-art frames are named and their shot is reported as failed.
Exit status: 0 all shots done, 3 some shots left out, 2 bad arguments / unusable input.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from lcmftn import report as rpt
from lcmftn.colorize import MODES
from lcmftn.episode import (
    LINEART_DETECTOR,
    LineartSource,
    Scan,
    episode_from_color,
    load_shots,
    memory_source,
    open_source,
    read_keyframes,
    scan_lineart,
    stage,
)
from lcmftn.evaluation import parse_eval_modes, score_confidence, score_frames, summarize_scores
from lcmftn.integrations import lease, storage
from lcmftn.jobs import (
    LossBudget,
    Output,
    RunSettings,
    concat_video_parts,
    encode_episode,
    encode_video_part,
    finish_episode,
    load_model_files,
    plan_episode,
    plan_video_parts,
    training_size,
    write_shot,
)
from lcmftn.paper import PAPER_MODES
from workflows import args as cli_args
from workflows.colorize_actors import ACTOR_DELAY_ENV, iter_results, resolve_device  # noqa: F401 - test hook name
from workflows.progress import frames_progress

log = logging.getLogger("workflows.colorize")

FAULT_ENV = "LCMFTN_COLORIZE_FAIL_AFTER_SHOTS"  # test hook: crash the driver after K shots written
DELAY_ENV = "LCMFTN_COLORIZE_SHOT_DELAY_S"  # test hook: pause after each shot (a window to kill in)


class InjectedFault(RuntimeError):
    """Raised by the ``LCMFTN_COLORIZE_FAIL_AFTER_SHOTS`` hook (simulates a crash)."""


def run_episode(src: LineartSource, scan: Scan, keyframes: dict[int, np.ndarray], shots: list[tuple[int, int]],
                out_uri: str, model_files: dict[str, bytes], rs: RunSettings, job_info: dict,
                warnings: list[str] | None = None, errors: list[str] | None = None,
                phases: dict[str, float] | None = None) -> dict:
    """Colour the episode into ``out_uri`` (resuming finished shots); returns the report.
    ``phases``: seconds of the caller's steps (keyframes, scan), reported with the colour loop's
    and the encode's as ``report["run"]["phases_s"]``."""
    device = resolve_device(rs)
    run = plan_episode(src, scan, keyframes, shots, out_uri, model_files, rs, device, warnings, errors)
    fail_after = int(os.environ.get(FAULT_ENV, "0") or 0)
    t0 = time.perf_counter()
    written = 0
    budget = LossBudget(rs.max_actor_losses)
    nodes: dict[str, list[str]] = {}  # Ray node id -> shots coloured there (this run)
    if run.pending:
        total = sum(int(j["end"]) - int(j["start"]) for j in run.pending)
        with frames_progress(rs, total) as bar:  # progress hook: frames written by the actors
            for res in iter_results(run.pending, run.settings, model_files, rs, src, out_uri,
                                     budget, bar):
                node = res.pop("node_id", None)
                if node:
                    nodes.setdefault(node, []).append(res["id"])
                rec = write_shot(run, res)
                written += 1
                log.info("shot %s done: %d colorized, %d copied (%d/%d)", rec["id"], rec["colorized"],
                         rec["copied"], written, len(run.pending))
                time.sleep(float(os.environ.get(DELAY_ENV, "0") or 0))
                if fail_after and written >= fail_after:
                    raise InjectedFault(f"{FAULT_ENV}={fail_after}: stopping after {written} shots")
    elapsed = time.perf_counter() - t0
    run.warnings.extend(budget.events)  # the report names every lost worker and what was redone
    done = {r["id"] for r in run.records if r["status"] == "done"}
    t_enc = time.perf_counter()
    n_video = _encode(src, out_uri, shots, done, rs)
    phases = dict(phases or {}, colour=elapsed, encode=time.perf_counter() - t_enc)
    return finish_episode(run, src, shots, rs, job_info, written, elapsed, n_video, nodes, phases)


def _encode(src: LineartSource, out_uri: str, shots: list[tuple[int, int]], done: set[str], rs: RunSettings) -> int:
    """``OUT/episode.mp4``: streaming encodes (frames read from OUT in order, one in memory) in
    this process (``--local``) or as Ray tasks, so the driver never holds frames. A long episode
    is encoded in parts of ~``VIDEO_PART_FRAMES`` frames, one Ray task each, in parallel over the
    cluster, then joined by one task without re-encoding (the same file as ``--local``)."""
    if rs.local:
        return encode_episode(src, out_uri, shots, done)
    import ray

    parts = plan_video_parts(shots)
    if len(parts) == 1:
        task = ray.remote(num_cpus=1)(encode_episode)
        return int(ray.get(task.remote(src, out_uri, shots, done)))
    part = ray.remote(num_cpus=1)(encode_video_part)
    ray.get([part.remote(src, out_uri, p, done, k) for k, p in enumerate(parts)])
    concat = ray.remote(num_cpus=1)(concat_video_parts)
    return int(ray.get(concat.remote(out_uri, len(parts), src.fps)))


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
    p.add_argument("--max-actor-losses", type=int, default=3,
                   help="actors lost (node loss, OOM kill) tolerated: each lost actor's unfinished "
                        "shots go to a replacement; one more fails the job (ActorsLostError)")
    p.add_argument("--gpus-per-actor", type=float, default=0.0, help="0 = 1 when the cluster has GPUs")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    p.add_argument("--local", action="store_true", help="no Ray: colour in this process")
    p.add_argument("--flag-fraction", type=float, default=0.05, help="flag frames with more low-confidence pixels")
    p.add_argument("--paper", choices=PAPER_MODES, default="auto",
                   help="keep the line art's paper (outside every closed drawn region) untouched in the output: "
                        "auto = for line art on transparent paper (RGBA out), keep = also on white paper, off")
    p.add_argument("--fit", choices=("pad", "round"), default="pad",
                   help="systems whose sides must be multiples of their multiple_of (8 for LCMFTN, 4 for tcvc): pad = "
                        "keep the frame's aspect, pad the model's input and crop its output; round = round the model size (squeezes the aspect; "
                        "before session 7)")
    p.add_argument("--work-dir", help="scratch folder for downloads (default: a temp dir)")
    p.add_argument("--calibration", help="confidence calibration JSON (default: the model folder's "
                   "confidence_calibration.json, if any; python -m workflows.benchmark confidence)")
    cli_args.add_verbose(p)
    return p


def _settings(args: argparse.Namespace) -> RunSettings:
    return RunSettings(mode=args.mode, size=args.size, batch_size=args.batch_size,
                       holds=not args.no_holds, borrow_keyframes=args.borrow_keyframes, actors=args.actors,
                       cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor,
                       device=args.device, amp=args.amp, local=args.local, flag_fraction=args.flag_fraction,
                       paper=args.paper, max_actor_losses=args.max_actor_losses, fit=args.fit)


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
            if args.calibration:  # confidence hook: calibrated flag rule (lcmftn.calibration)
                from lcmftn.calibration import CALIBRATION_FILE, Calibration

                model_files[CALIBRATION_FILE] = Path(args.calibration).read_bytes()
                Calibration.from_json(model_files[CALIBRATION_FILE], f"--calibration {args.calibration}")
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
    # The driver holds metadata, keyframes and 16 bytes per frame; never the frames (streaming).
    t0 = time.perf_counter()
    src = open_source(args.lineart, stage(args.lineart, work, "lineart"), args.fps)
    # keyframes as references (location + digest): actors read their shot's own (issue 8)
    keys, warnings, errors = read_keyframes(stage(args.refs, work, "refs"), src.n_frames, src.size_hw,
                                            args.keyframe_size, uri=args.refs)
    given = load_shots(args.shots, src.n_frames, []) if args.shots else None
    t1 = time.perf_counter()
    scan = scan_lineart(src, given is None, args.detector or LINEART_DETECTOR, args.threshold)
    phases = {"inputs": t1 - t0, "scan": time.perf_counter() - t1}
    shots = given or load_shots(json.dumps(scan.shots), src.n_frames, [])  # (validated)
    job = {"lineart": args.lineart, "refs": args.refs, "model": args.model, "out": args.out}
    report = run_episode(src, scan, keys, shots, args.out, model_files, rs, job, warnings, errors, phases)
    return {"out": args.out, **report["totals"]}


# ---------------------------------------------------------------------------------------------
# Evaluation mode (--from-color)
# ---------------------------------------------------------------------------------------------
def run_evaluation(args: argparse.Namespace, rs: RunSettings, model_files: dict[str, bytes], work: Path) -> dict:
    """Synthesise line art from a colour episode, key = first frame of each shot, colour it in
    each of ``--eval-modes`` (``OUT/<mode>/``), score against the real frames, plot the drift."""
    from lcmftn.data.video import probe_video, read_frames

    modes = parse_eval_modes(args.eval_modes)
    src = stage(args.from_color, work, "color")
    color = read_frames(src)
    if not color:
        raise ValueError(f"--from-color {args.from_color}: no frames")
    ep = episode_from_color(color, args.lineart_method, args.fps or probe_video(src).fps, str(src))
    shots = load_shots(args.shots, len(color), src, args.detector or "content", args.threshold)
    keys = {s: color[s] for s, _ in shots}
    msrc = memory_source(ep)  # evaluation holds the episode in memory (it scores every frame)
    scan = scan_lineart(msrc, detect=False)
    evaluation: dict = {"source": args.from_color, "lineart_method": args.lineart_method,
                        "scored_at_short_side_px": args.eval_size or "full resolution",
                        "keyframes": "first frame of each shot", "modes": {}, "plot": "drift.png"}
    curves = {}
    totals = {}
    for mode in modes:
        job = {"from_color": args.from_color, "lineart": f"{args.lineart_method} line art of {args.from_color}",
               "model": args.model, "out": storage.join(args.out, mode)}
        out_uri = storage.join(args.out, mode)
        report = run_episode(msrc, scan, keys, shots, out_uri, model_files, replace(rs, mode=mode), job)
        rows = score_frames(Output(out_uri), color, report, args.eval_size)
        mode_out = Output(out_uri)  # review page: truth/ + error/ maps, report rewritten
        report = rpt.add_evaluation(report, rows, color, mode_out.read, mode_out.write,
                                    {"mode": mode, "plot": "../drift.png"})
        summary = summarize_scores(rows)
        summary["confidence"] = score_confidence(Output(out_uri), color, report, rows)  # confidence hook
        curves[mode] = {"psnr": summary["per_offset"]["psnr"], "ssim": summary["per_offset"]["ssim"]}
        evaluation["modes"][mode] = summary
        totals = report["totals"]
    out = Output(args.out)
    out.write("drift.png", rpt.plot_curves(curves, title=f"chain vs anchor drift: {Path(str(args.from_color)).name}"))
    out.write("eval.json", rpt.to_json(evaluation))
    return {"out": args.out, **totals, "evaluation": {m: {k: v[k] for k in ("psnr", "ssim", "frames", "confidence")}
                                                      for m, v in evaluation["modes"].items()}}


if __name__ == "__main__":
    sys.exit(main())
