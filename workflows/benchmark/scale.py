"""Scale benchmark of the colorize job: peak RSS per process vs episode length (streaming).

    python -m workflows.benchmark scale colorize [--frames 480 1920 7680] [--width 640 --height 360]
        [--system copy-ref] [--size 128] [--ray] [--shot-frames 48]
    python -m workflows.benchmark scale colorize --frames 2400 --width 1920 --height 1080 --ray \\
        --project-minutes 24 --project-nodes 1 4 8      # a fraction of a 10-min 1080p episode

The episode is a cheap drawn pattern (:func:`make_episode`: black shapes on white paper, a new
layout per shot, animated on twos, H.264), one keyframe per shot, the shot list given. The
model is a no-training reference system (``copy-ref`` by default: the reference colour, so the
figures are the job's own costs: decode, holds, upsampling, PNG writes, the encode) saved as a
checkpoint. ``python -m workflows.colorize`` runs in a subprocess (``--local``: one process;
``--ray``: a local Ray instance started by that driver, actors = ``ray::ShotPredictor``
processes, the encode = ``ray::encode_episode`` or its parts ``ray::encode_video_part`` and
``ray::concat_video_parts``); psutil samples the RSS of every process of its
tree every 0.1 s. Prints one row per length and the ratio largest/smallest peak per role
(streaming target: <= 1.2). Figures only, no asserts (README colorize section, "Benchmarks").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def make_episode(root: Path, frames: int, width: int = 640, height: int = 360, shot_frames: int = 48,
                 fps: float = 24.0, system: str = "copy-ref", seed: int = 0) -> dict:
    """``root/{lineart.mp4, keys/, shots.json, ckpt/}``: a drawn line-art episode (shapes move on
    twos; every shot a new layout), one keyframe per shot, a no-training checkpoint."""
    from lcmftn.checkpoint import save_checkpoint
    from lcmftn.data.video import write_video
    from lcmftn.models.registry import build_generator, generator_config, spec

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shots = [(s, min(s + shot_frames, frames)) for s in range(0, frames, shot_frames)]
    (root / "keys").mkdir(exist_ok=True)

    def drawing(layout: np.ndarray, t: int) -> np.ndarray:
        img = np.full((height, width), 255, np.uint8)
        for x, y, r, vx, vy in layout:
            c = (int(x + vx * t) % width, int(y + vy * t) % height)
            cv2.circle(img, c, int(r), 0, max(1, height // 180))
            cv2.line(img, c, (c[0] + int(r), c[1] - int(r)), 0, max(1, height // 180))
        return img

    def gen():
        for s, e in shots:
            n = int(rng.integers(3, 8))
            layout = np.stack([rng.uniform(0, width, n), rng.uniform(0, height, n),
                               rng.uniform(height / 20, height / 5, n), rng.uniform(-3, 3, n),
                               rng.uniform(-2, 2, n)], 1)
            for t in range(e - s):
                la = drawing(layout, t - t % 2)  # on twos
                if t == 0:
                    key = cv2.cvtColor(la, cv2.COLOR_GRAY2RGB)
                    key[la > 128] = rng.integers(60, 250, 3).astype(np.uint8)
                    cv2.imwrite(str(root / "keys" / f"{s:06d}.png"), cv2.cvtColor(key, cv2.COLOR_RGB2BGR))
                yield la

    write_video(root / "lineart.mp4", gen(), fps)
    (root / "shots.json").write_text(json.dumps([list(s) for s in shots]))
    size = "tiny" if spec(system).trainable else "small"  # references have no tiny preset
    model = build_generator(system, size)
    cfg = dataclasses.asdict(generator_config(system, size))
    save_checkpoint(root / "ckpt", model, system, cfg)
    return {"root": root, "frames": frames, "shots": shots}


def _role(proc, driver_pid: int) -> str | None:
    if proc.pid == driver_pid:
        return "driver"
    try:
        cmd = " ".join(proc.cmdline())
    except Exception:  # noqa: BLE001 - the process ended between listing and reading
        return None
    if "ShotPredictor" in cmd:
        return "actor"
    if any(t in cmd for t in ("encode_episode", "encode_video_part", "concat_video_parts")):
        return "encode"
    return None


def run_sampled(cmd: list[str], env: dict, log_path: Path, interval_s: float = 0.1,
                rescan_s: float = 1.0) -> tuple[int, dict, float]:
    """Run ``cmd``; (rc, {role: [peak RSS MB of each process]}, wall s). Roles: driver, actor
    (``ray::ShotPredictor``), encode (``ray::encode_episode``); other Ray processes ignored.
    The process tree is listed (and each new process's role read) every ``rescan_s``; the RSS of
    the role processes is read every ``interval_s`` (listing /proc and reading every command line
    10 times a second took ~40 % of a core from the job being measured)."""
    import psutil

    t0 = time.perf_counter()
    log_file = open(log_path, "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log_file, text=True)
    peaks: dict[int, tuple[str, float]] = {}
    roles: dict[int, str | None] = {}  # pid -> role, kept once known (None: not (yet) measured)
    watched: list = []
    root = psutil.Process(proc.pid)
    last_scan = float("-inf")
    while proc.poll() is None:
        if time.perf_counter() - last_scan >= rescan_s:
            last_scan = time.perf_counter()
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for p in procs:  # a Ray worker starts as ray::IDLE: re-read until it has a role
                if roles.get(p.pid) is None:
                    roles[p.pid] = _role(p, proc.pid)
            watched = [p for p in procs if roles.get(p.pid)]
        for p in watched:
            try:
                rss = p.memory_info().rss / 2**20
            except psutil.Error:
                continue
            role = roles[p.pid]
            peaks[p.pid] = (role, max(rss, peaks.get(p.pid, (role, 0.0))[1]))
        time.sleep(interval_s)
    proc.communicate()
    log_file.close()
    by_role: dict[str, list[float]] = {}
    for role, mb in peaks.values():
        by_role.setdefault(role, []).append(round(mb, 1))
    return proc.returncode, by_role, time.perf_counter() - t0


def colorize_cmd(ep: dict, out: Path, size: int, ray: bool, extra: list[str] = ()) -> list[str]:
    r = ep["root"]
    return [sys.executable, "-m", "workflows.colorize", "--lineart", str(r / "lineart.mp4"),
            "--refs", str(r / "keys"), "--model", str(r / "ckpt"), "--out", str(out), "--size", str(size),
            "--shots", str(r / "shots.json"), *(["--cpus-per-actor", "1"] if ray else ["--local"]), *extra]


def bench_colorize(args: argparse.Namespace) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.pop("RAY_ADDRESS", None)  # --ray: the driver starts (and ends) its own local instance
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-", dir=args.work_dir) as tmp:
        for n in args.frames:
            t0 = time.perf_counter()
            ep = make_episode(Path(tmp) / f"ep{n}", n, args.width, args.height, args.shot_frames, system=args.system)
            gen_s = time.perf_counter() - t0
            out = Path(tmp) / f"out{n}"
            log_path = Path(tmp) / f"colorize{n}.log"
            rc, peaks, wall = run_sampled(colorize_cmd(ep, out, args.size, args.ray), env, log_path)
            if rc not in (0, 3):
                print(log_path.read_text()[-3000:], file=sys.stderr)
                raise SystemExit(f"colorize failed (rc {rc}) on the {n}-frame episode")
            rep = json.loads((out / "report.json").read_text())
            phases = rep.get("run", {}).get("phases_s", {})  # the job's own timings (driver)
            scan_s, encode_s = float(phases.get("scan", 0.0)), float(phases.get("encode", 0.0))
            row = {"frames": n, "rc": rc, "wall_s": round(wall, 1), "generate_s": round(gen_s, 1),
                   "colour_loop_s": rep.get("run", {}).get("wall_s"), "scan_s": round(scan_s, 1),
                   "phases_s": phases,
                   "encode_s": round(encode_s, 1),
                   "frames_per_s": round(n / wall, 2), "copied": rep.get("totals", {}).get("copied"),
                   "video_frames": rep.get("video_frames"),
                   **{f"{k}_peak_mb": max(v) for k, v in peaks.items()}, "processes": {k: len(v) for k, v in peaks.items()}}
            rows.append(row)
            print(json.dumps(row), flush=True)
            for p in (out, ep["root"]):
                subprocess.run(["rm", "-rf", str(p)], check=False)
    roles = sorted({k for r in rows for k in r if k.endswith("_peak_mb")})
    print(f"\n{'frames':>7} {'wall s':>7} {'fr/s':>6} " + " ".join(f"{r:>16}" for r in roles))
    for r in rows:
        print(f"{r['frames']:>7} {r['wall_s']:>7} {r['frames_per_s']:>6} " + " ".join(f"{r.get(k, float('nan')):>16}" for k in roles))
    ratios = {k: round(rows[-1][k] / rows[0][k], 3) for k in roles if k in rows[0] and k in rows[-1]}
    print(f"peak RSS ratio {rows[-1]['frames']} / {rows[0]['frames']} frames: {ratios} (target <= 1.2)")
    result = {"rows": rows, "ratio_largest_smallest": ratios, "width": args.width, "height": args.height,
              "system": args.system, "size": args.size, "ray": args.ray}
    if args.project_minutes:
        result["projection"] = project(rows[-1], args)
    return result


def project(row: dict, args: argparse.Namespace) -> dict:
    """Projected wall time of a ``--project-minutes`` episode on N nodes of
    ``--project-actors-per-node`` actors from the measured per-frame costs: colouring (the colour
    loop's wall x actors / frames, parallel over actors), the driver's serial scan, and the
    encode (parallel over the parts of ``lcmftn.jobs.VIDEO_PART_FRAMES`` frames, one per node at
    a time; the measured encode ran its parts on this machine's cores, so its per-frame cost is
    taken x the cores it had). Ray start-up and model loading (seconds) are left out."""
    from lcmftn.jobs import VIDEO_PART_FRAMES

    n = row["frames"]
    actors = max(1, row["processes"].get("actor", 1))
    colour = (row["colour_loop_s"] or row["wall_s"]) * actors / n
    parts_measured = max(1, -(-n // VIDEO_PART_FRAMES))
    encode = row["encode_s"] * min(parts_measured, os.cpu_count() or 1) / n  # one core's s per frame
    total = int(args.project_minutes * 60 * 24)
    parts = max(1, -(-total // VIDEO_PART_FRAMES))
    out = {"frames": total, "measured_frames": n, "colour_s_per_frame_per_actor": round(colour, 4),
           "scan_s_per_frame": round(row["scan_s"] / n, 4), "encode_s_per_frame_per_core": round(encode, 4),
           "video_parts": parts}
    for nodes in args.project_nodes:
        workers = nodes * args.project_actors_per_node
        enc = encode * total / min(parts, nodes)
        out[f"{nodes}_nodes_h"] = round((total * colour / workers + row["scan_s"] / n * total + enc) / 3600, 2)
    print(f"projection for {args.project_minutes} min ({total} frames): {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workflows.benchmark scale", description=__doc__.split("\n\n")[0])
    p.add_argument("job", choices=("colorize",))
    p.add_argument("--frames", type=int, nargs="+", default=[480, 1920, 7680])
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--shot-frames", type=int, default=48)
    p.add_argument("--system", default="copy-ref", help="copy-ref | flow-warp | lcmftn (tiny, untrained)")
    p.add_argument("--size", type=int, default=128, help="model resolution (short side px)")
    p.add_argument("--ray", action="store_true", help="Ray actors (1 CPU each) instead of --local")
    p.add_argument("--project-minutes", type=float, default=0.0)
    p.add_argument("--project-nodes", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--project-actors-per-node", type=int, default=1)
    p.add_argument("--work-dir")
    p.add_argument("--json", help="also write the result here")
    args = p.parse_args(argv)
    res = bench_colorize(args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
