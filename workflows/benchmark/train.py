"""Training throughput: Ray Train DDP on CPU (1 -> 2 workers) and a Ray-free single process.

    python -m workflows.benchmark train                       # CPU: 1 and 2 Ray workers
    python -m workflows.benchmark train --recipe cpu-small --steps 20 --out bench-train.json
    # On a machine with torch only (no Ray/MLflow/PyAV), e.g. the GPU box:
    PYTHONPATH=. python -m workflows.benchmark train --single-process --device cuda \\
        --recipe paper-256 --synthetic --steps 30 --out $OUT/train-gpu.json

Ray mode: a synthetic film (``lcmftn.data.synthetic``) is turned into a small shot dataset in
the ingest layout, then the real ``workflows.train`` trainer runs 2 epochs of ``--steps`` steps
for each worker count (validation off); the steady-state (2nd epoch) samples/s is reported per
worker and in total, with the 1 -> 2 worker scaling ratio (total samples/s at 2 / at 1).

Single-process mode: the same ``lcmftn.training`` train step on random tensors of the recipe's
size (``--synthetic``), bf16 autocast on CUDA as in the recipe; VGG weights are a random
VGG-19 (same compute as the pretrained one; there is no network to fetch weights). This path
imports no Ray, MLflow, PyAV or boto3.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workflows.benchmark train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="smoke", help="training recipe (default smoke)")
    p.add_argument("--model", default=None, help="system (default: the recipe's)")
    p.add_argument("--steps", type=int, default=10, help="timed steps (per worker, per epoch)")
    p.add_argument("--workers", default="1,2", help="Ray mode: worker counts to compare")
    p.add_argument("--batch-size", type=int, default=0, help="per-worker batch (0 = recipe's)")
    p.add_argument("--threads-per-worker", type=int, default=1,
                   help="Ray mode: torch threads per worker (1 = one core each; 0 = default)")
    p.add_argument("--single-process", action="store_true", help="no Ray: one process")
    p.add_argument("--device", default="cpu", help="single-process device (cpu, cuda)")
    p.add_argument("--synthetic", action="store_true",
                   help="single-process: random tensors instead of a dataset")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "off"],
                   help="mixed precision (auto = bf16 on CUDA)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default=None, help="write the results JSON here too")
    return p


def _config(args: argparse.Namespace, extra: list[str]):
    from lcmftn.recipes import apply_overrides, recipe

    sets = [f"mixed_precision={args.precision}", *extra, *args.overrides]
    if args.model:
        sets.insert(0, f"system={args.model}")
    if args.batch_size:
        sets.append(f"batch_size_per_worker={args.batch_size}")
    cfg = recipe(args.recipe)
    if cfg.loss.vgg_weights not in ("none", "random") and cfg.loss.lambda_vgg > 0:
        sets.append("loss.vgg_weights=random")  # same FLOPs; no weights download here
    return apply_overrides(cfg, sets)


# ----------------------------------------------------------------------------- single process


def single_process(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from lcmftn import training

    cfg = _config(args, [])
    device = torch.device(args.device)
    state = training.build_train_state(cfg, device)
    s, b = cfg.image_size_px, cfg.batch_size_per_worker
    g = torch.Generator().manual_seed(0)
    batch = {"s_p": torch.rand(b, 1, s, s, generator=g), "c_p": torch.rand(b, 3, s, s, generator=g),
             "s_n": torch.rand(b, 1, s, s, generator=g), "c_n": torch.rand(b, 3, s, s, generator=g)}
    batch = training.move_batch(batch, device)
    for _ in range(3):  # warm-up (cuDNN autotune, allocator)
        training.train_step(state, batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        training.train_step(state, batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dt = time.perf_counter() - t0
    out = {
        "mode": "single-process", "recipe": cfg.recipe, "system": cfg.system,
        "model_size": cfg.model_size, "image_size_px": s, "batch_size": b,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": str(training.autocast_dtype(cfg, device) or "fp32"),
        "vgg": cfg.loss.vgg_weights if cfg.loss.lambda_vgg > 0 else "off",
        "steps": args.steps, "seconds": round(dt, 3),
        "step_ms": round(1000 * dt / args.steps, 1), "samples_per_s": round(b * args.steps / dt, 2),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        out["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return out


# ----------------------------------------------------------------------------- Ray


def write_synthetic_dataset(root: str | Path, num_films: int = 1, size_px: int = 96,
                            num_shots: int = 6, shot_frames: int = 32, seed: int = 0,
                            motion: float = 1.0) -> Path:
    """A shot dataset in the ingest layout from synthetic films (truth cuts and holds), with
    XDoG line art: FRAME_SCHEMA shards + manifest, what ``workflows.ingest`` writes."""
    from lcmftn.data import dataset_format as fmt
    from lcmftn.data.lineart import extract_lineart
    from lcmftn.data.synthetic import FilmConfig, generate_film

    root = Path(root)
    manifest: dict[str, Any] = {"version": f"synthetic-{seed}", "config": {"size": size_px},
                                "films": {}}
    for f in range(num_films):
        film = f"synth{seed:03d}_{f:02d}"
        frames, truth = generate_film(FilmConfig(seed=seed * 100 + f, size=size_px,
                                                 num_shots=num_shots, shot_frames=shot_frames,
                                                 motion=motion))
        holds = set(truth["holds"])
        starts = [0, *truth["cuts"]]
        shot_of, color_pngs, line_pngs, hold_flags = [], [], [], []
        for t, rgb in enumerate(frames):
            shot = sum(1 for s in starts if s <= t) - 1
            shot_of.append(shot)
            color_pngs.append(fmt.encode_color_png(rgb))
            line_pngs.append(fmt.encode_lineart_png(extract_lineart(rgb)))
            hold_flags.append(t in holds and t not in starts)
        h, w = frames[0].shape[:2]
        rels, shas = fmt.write_film(root, film, fmt.frame_table(film, shot_of, color_pngs, line_pngs,
                                                                hold_flags, h, w))
        manifest["films"][film] = {
            "status": "ok", "source": f"synthetic://{film}", "reason": None,
            "sha256": shas[0], "shots": truth["shots"], "frames": len(shot_of), "shards": rels}
    fmt.write_manifest(str(root), manifest)
    return root


def ray_scaling(args: argparse.Namespace) -> dict[str, Any]:
    from workflows import train
    from workflows.common import ensure_ray

    counts = [int(w) for w in args.workers.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        cfg = _config(args, [])
        data = write_synthetic_dataset(Path(tmp) / "data", size_px=max(64, cfg.image_size_px),
                                       num_shots=6, shot_frames=32)
        ensure_ray()
        for w in counts:
            spec = train.make_spec(
                data=str(data), recipe_name=args.recipe, model=args.model,
                overrides=[f"mixed_precision={args.precision}", "epochs=2",
                           f"steps_per_epoch={args.steps}", "val.val_fraction=0",
                           *([f"batch_size_per_worker={args.batch_size}"] if args.batch_size
                             else []),
                           *(["loss.vgg_weights=random"] if cfg.loss.vgg_weights == "random"
                             or (cfg.loss.lambda_vgg > 0 and cfg.loss.vgg_weights != "none")
                             else []), *args.overrides],
                workers=w, gpus_per_worker=0.0, cpus_per_worker=None,
                run_name=f"bench-{w}w", storage=str(Path(tmp) / "runs"), experiment="bench",
                register_as="none", max_failures=0, threads_per_worker=args.threads_per_worker)
            t0 = time.perf_counter()
            result = train.build_trainer(spec, train.loop_config(spec, None, None)).fit()
            m = result.metrics
            rows.append({"workers": w, "samples_per_s": round(m["samples_per_s"], 2),
                         "samples_per_s_per_worker": round(m["samples_per_s_per_worker"], 2),
                         "torch_threads_per_worker": m.get("torch_threads"),
                         "fit_seconds": round(time.perf_counter() - t0, 1)})
    out: dict[str, Any] = {"mode": "ray-cpu", "recipe": cfg.recipe, "system": cfg.system,
                           "image_size_px": cfg.image_size_px,
                           "batch_size_per_worker": cfg.batch_size_per_worker,
                           "steps_per_epoch": args.steps, "runs": rows}
    by = {r["workers"]: r for r in rows}
    if 1 in by and 2 in by:
        out["scaling_1_to_2"] = round(by[2]["samples_per_s"] / by[1]["samples_per_s"], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    result = single_process(args) if args.single_process else ray_scaling(args)
    text = json.dumps(result)
    print(text, flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
