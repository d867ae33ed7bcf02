"""Training worker memory and speed vs dataset size, in-memory vs streamed (Ray Data) data path.

    PYTHONPATH=. python -m workflows.benchmark scale-train                  # 1x and 8x, both paths
    PYTHONPATH=. python -m workflows.benchmark scale-train --frames 500 --steps 10 --paths stream

Writes two synthetic datasets (``--frames`` and ``--scale`` x as many frames, 64-px noise
frames so the PNGs do not compress: bytes grow with frames), then for each path and size runs
ONE child process that does what a Ray Train worker does (``workflows.train_worker``:
``prepare_data`` + ``epoch_batches`` + ``lcmftn.training.train_step`` of the tiny model) for
``--steps`` steps, sampling its RSS with psutil every 10 ms. The stream path's child starts a
local Ray (its Ray Data read tasks run in Ray worker processes, as on a cluster); the memory
path needs no Ray. Prints peak RSS per size, the ratio (target: flat for ``stream``) and
steps/s (after the first batch, and including start-up); one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

FRAMES_PER_SHOT = 40


def write_noise_dataset(root: Path, frames: int, size_px: int, seed: int = 0,
                        rows_per_shard: int = 512) -> Path:
    """``frames`` frames of noise in shots of 40 (one film), FRAME_SCHEMA shards + manifest."""
    from lcmftn.data.dataset_format import (
        encode_color_png,
        encode_lineart_png,
        frame_table,
        write_film,
        write_manifest,
    )

    rng = np.random.default_rng(seed)
    color, line = [], []
    for _ in range(frames):
        color.append(encode_color_png(rng.integers(0, 256, (size_px, size_px, 3), np.uint8)))
        line.append(encode_lineart_png(rng.integers(0, 256, (size_px, size_px), np.uint8)))
    shot_of = np.arange(frames) // FRAMES_PER_SHOT
    table = frame_table("noise", shot_of, color, line, np.zeros(frames, bool), size_px, size_px)
    rels, shas = write_film(root, "noise", table, rows_per_shard=rows_per_shard)
    write_manifest(str(root), {"version": f"noise-{frames}", "films": {"noise": {
        "status": "ok", "source": "generated://noise", "sha256": shas[0], "reason": None,
        "frames": frames, "shards": rels}}})
    return root


class PeakRSS:
    """Peak resident set size of this process, sampled with psutil in a thread."""

    def __init__(self, every_s: float = 0.01):
        import psutil

        self._proc, self._every, self.peak = psutil.Process(), every_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self._every)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def bench_config(size_px: int, steps: int, batch: int):
    """The tiny training config of the benchmark (smoke recipe, VGG off, window 8/2)."""
    from dataclasses import replace

    from lcmftn.data.pairs import WindowConfig
    from lcmftn.recipes import recipe

    cfg = recipe("smoke")
    return replace(cfg, image_size_px=size_px, batch_size_per_worker=batch, epochs=1,
                   steps_per_epoch=steps, window=WindowConfig(width_frames=8, stride_frames=2),
                   loss=replace(cfg.loss, lambda_vgg=0.0, vgg_weights="none"),
                   val=replace(cfg.val, val_fraction=0.0))


def child(path: str, data: str, steps: int, size_px: int, batch: int) -> dict:
    """One worker's data + training steps; returns its figures (run in a fresh process)."""
    import torch

    from lcmftn import training
    from workflows import train_worker as tw

    torch.set_num_threads(1)
    cfg = bench_config(size_px, steps, batch)
    with PeakRSS() as rss:
        if path == "stream":
            import ray

            ray.init(address="local", num_cpus=2, include_dashboard=False,
                     configure_logging=False, log_to_driver=False)
        t0 = time.perf_counter()
        data_ = tw.prepare_data({"data_uri": data, "data_path": path}, cfg, world=1)
        state = training.build_train_state(cfg)
        t_first = None
        n = 0
        for batch_ in tw.epoch_batches(data_, cfg, 0, 0, 1):
            training.train_step(state, batch_)
            n += 1
            if t_first is None:
                t_first = time.perf_counter()
        t1 = time.perf_counter()
    return {"path": path, "frames": _frames(data_),
            "steps": n, "peak_rss_mb": rss.peak / 2**20,
            "steps_per_s": (n - 1) / (t1 - t_first) if n > 1 else 0.0,
            "steps_per_s_with_startup": n / (t1 - t0)}


def _frames(data) -> int:
    return int(sum(len(s) for s in data.scan.shots)) if data.scan else \
        int(sum(len(s) for s in data.pairs.shots))


def run_child(path: str, data: str, steps: int, size_px: int, batch: int,
              timeout_s: float = 600) -> dict:
    """Run :func:`child` in a fresh interpreter (so peaks do not mix); returns its JSON."""
    env = dict(os.environ, OMP_NUM_THREADS="1", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                         env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "workflows.benchmark.scale_train", "--child", path,
           "--data", data, "--steps", str(steps), "--size-px", str(size_px), "--batch", str(batch)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"scale-train child ({path}, {data}) failed rc={out.returncode}:\n"
                           f"{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workflows.benchmark scale-train",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=1000, help="frames of the 1x dataset")
    p.add_argument("--scale", type=int, default=8, help="the large dataset has scale x frames")
    p.add_argument("--size-px", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--paths", default="memory,stream")
    p.add_argument("--work", default=None, help="folder for the datasets (default: a tmp dir)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--data", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.data, a.steps, a.size_px, a.batch)), flush=True)
        return 0
    with tempfile.TemporaryDirectory(prefix="scale-train-", dir=a.work) as tmp:
        sizes = {1: a.frames, a.scale: a.frames * a.scale}
        roots = {k: str(write_noise_dataset(Path(tmp) / f"x{k}", n, a.size_px))
                 for k, n in sizes.items()}
        rows = []
        for path in a.paths.split(","):
            res = {k: run_child(path, roots[k], a.steps, a.size_px, a.batch) for k in sizes}
            small, big = res[1], res[a.scale]
            rows.append({"path": path, "frames_1x": sizes[1], "frames_big": sizes[a.scale],
                         "peak_rss_mb_1x": round(small["peak_rss_mb"], 1),
                         "peak_rss_mb_big": round(big["peak_rss_mb"], 1),
                         "rss_ratio": round(big["peak_rss_mb"] / small["peak_rss_mb"], 3),
                         "steps_per_s_1x": round(small["steps_per_s"], 2),
                         "steps_per_s_big": round(big["steps_per_s"], 2),
                         "steps_per_s_with_startup_big": round(big["steps_per_s_with_startup"], 2)})
    print(f"{'path':7s} {'frames':>13s} {'peak RSS MiB':>17s} {'ratio':>6s} {'steps/s':>11s} "
          f"{'(incl. start)':>13s}")
    for r in rows:
        print(f"{r['path']:7s} {r['frames_1x']:>6d}/{r['frames_big']:<6d} "
              f"{r['peak_rss_mb_1x']:>8.1f}/{r['peak_rss_mb_big']:<8.1f} {r['rss_ratio']:>6.2f} "
              f"{r['steps_per_s_1x']:>5.2f}/{r['steps_per_s_big']:<5.2f} "
              f"{r['steps_per_s_with_startup_big']:>13.2f}")
    print(json.dumps({"benchmark": "scale-train", "size_px": a.size_px, "steps": a.steps,
                      "batch": a.batch, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
