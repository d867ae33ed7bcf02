"""NOTE: superseded by ``python -m workflows.evaluate`` (film-level split, several seeds, every
system, whole shots, timings, MLflow). This earlier comparison holds out SHOTS of the training
films (``split_shots``), not whole films; it is kept for ingested datasets without split tags.

The paper's comparison at CPU scale: LCMFTN vs its no-CMFT ablation vs TCVC and Pix2Pix-ref
vs the no-training references copy-ref and flow-warp, on the SAME held-out clips.

    python -m workflows.benchmark compare --data /tmp/demo4/dataset --recipe cpu-small \\
        --epochs 8 --json /tmp/compare.json
    python -m workflows.benchmark compare --data DS --systems lcmftn,copy-ref --set optim.lr=1e-3

Ray-free and MLflow-free. One recipe (``--recipe`` + ``--set key=value`` + ``--epochs``) and
one seed for every system. The dataset is read once (``load_frames``), split into training and
held-out shots with the recipe's validation settings (``split_shots``), and each trainable
system is trained on the same ``WindowPairDataset`` with ``lcmftn.training.train_single_process``
(the step code of the Ray worker). The trained generator is read back from the checkpoint the
run wrote (the same files colorize loads) and every system, including the untrained
``copy-ref`` and ``flow-warp`` (``registry.build_generator``), is scored with the paper protocol
(DESIGN §6, ``lcmftn.evaluation.load_eval_clips`` + ``evaluate_sequences``) on one list of
clips, by default with strides 1/5/10 whatever the recipe's training-time validation uses.

Prints a markdown table (system, parameters, train seconds, PSNR/SSIM overall and per stride)
and writes the full per-(stride, position) figures to ``--json``. Torch runs on ``--threads``
threads (default 1) so timings compare on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PAPER_STRIDES = (1, 5, 10)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workflows.benchmark compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset URI (ingest layout; local or s3://)")
    p.add_argument("--recipe", default="cpu-small", help="training recipe (default cpu-small)")
    from lcmftn.models.registry import SYSTEMS  # every registered system (SystemSpec records)

    p.add_argument("--systems", default=",".join(SYSTEMS),
                   help=f"comma-separated systems (default: {','.join(SYSTEMS)})")
    p.add_argument("--epochs", type=int, default=0, help="epochs (0 = the recipe's)")
    p.add_argument("--steps", type=int, default=-1,
                   help="steps per epoch (-1 = the recipe's; 0 = one pass over the pairs)")
    p.add_argument("--seed", type=int, default=None, help="seed for every system (default: recipe's)")
    p.add_argument("--strides", default=",".join(str(s) for s in PAPER_STRIDES),
                   help="evaluation strides (default 1,5,10, the paper's)")
    p.add_argument("--max-sequences-per-stride", type=int, default=-1,
                   help="cap on evaluation sequences per stride (-1 = the recipe's; 0 = all)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="recipe override, repeatable (e.g. --set optim.lr=2e-4)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument("--eval-batch-size", type=int, default=8)
    p.add_argument("--json", default=None, help="write the results JSON here")
    return p


def _config(args: argparse.Namespace, system: str):
    from lcmftn.recipes import apply_overrides, recipe

    sets = [f"system={system}"]
    if args.epochs:
        sets.append(f"epochs={args.epochs}")
    if args.steps >= 0:
        sets.append(f"steps_per_epoch={args.steps}")
    if args.seed is not None:
        sets.append(f"seed={args.seed}")
    return apply_overrides(recipe(args.recipe), [*sets, *args.overrides])


def _stride_figures(totals: Any) -> dict[str, float]:
    """Pooled PSNR/SSIM per stride (all positions k of that stride) from raw sums/counts."""
    out: dict[str, float] = {}
    strides = sorted({int(k.split("/s")[1].split("_")[0]) for k in totals.sums
                      if k.startswith("psnr/s")})
    for s in strides:
        for name in ("psnr", "ssim", "copyref_psnr", "copyref_ssim"):
            keys = [k for k in totals.sums if k.startswith(f"{name}/s{s}_k")]
            n = sum(totals.counts[k] for k in keys)
            if n:
                out[f"{name}/s{s}"] = sum(totals.sums[k] for k in keys) / n
    return out


def _evaluate(model: Any, clips: list, device: Any, batch_size: int) -> tuple[dict, float]:
    from lcmftn.evaluation import evaluate_sequences

    model.eval()
    t0 = time.perf_counter()
    totals = evaluate_sequences(model, clips, device, batch_size=batch_size)
    seconds = time.perf_counter() - t0
    return {**totals.metrics(), **_stride_figures(totals)}, seconds


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train and score ``args.systems``; torch's thread count is restored afterwards."""
    import torch

    before = torch.get_num_threads()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(before)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from lcmftn import checkpoint as ckpt_io
    from lcmftn import training
    from lcmftn.data.dataset import WindowPairDataset, load_frames, split_shots
    from lcmftn.evaluation import load_eval_clips
    from lcmftn.models import registry
    from lcmftn.recipes import flatten_config

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in registry.SYSTEMS]
    if unknown or not systems:
        raise ValueError(f"--systems: unknown {unknown or 'none given'}; "
                         f"known: {', '.join(registry.SYSTEMS)}")
    device = torch.device(args.device)
    strides = tuple(int(s) for s in args.strides.split(",") if s.strip())

    # One base config: data split, pairs and evaluation clips are shared by every system
    # (none of them depends on `system`).
    base = _config(args, "lcmftn")
    shots = load_frames(args.data)
    if len(shots) < 2:
        raise ValueError(f"dataset {args.data}: {len(shots)} shot(s); held-out evaluation "
                         "needs at least 2")
    val_fraction = base.val.val_fraction if base.val.val_fraction > 0 else 0.2
    train_shots, val_shots = split_shots(shots, val_fraction, seed=base.seed)
    cap = (base.val.max_sequences_per_stride if args.max_sequences_per_stride < 0
           else args.max_sequences_per_stride)
    clips = load_eval_clips(val_shots, strides, base.image_size_px, base.val.seed, cap)
    if not clips:
        raise ValueError(f"dataset {args.data}: no evaluation sequence in the {len(val_shots)} "
                         f"held-out shot(s) for strides {strides} (shots too short?)")
    pairs = WindowPairDataset(train_shots, base.window, base.image_size_px,
                              augment=base.augment, seed=base.seed)
    per_stride = {s: sum(1 for c in clips if c.stride == s) for s in strides}
    print(f"[compare] {len(shots)} shots: {len(train_shots)} train ({len(pairs)} pairs), "
          f"{len(val_shots)} held out -> {len(clips)} sequences {per_stride}; "
          f"recipe {base.recipe}, {base.epochs} epochs x {base.steps_per_epoch or 'all'} steps, "
          f"batch {base.batch_size_per_worker}, {base.image_size_px} px, seed {base.seed}, "
          f"torch threads {torch.get_num_threads()}", flush=True)

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="compare-") as tmp:
        for system in systems:
            entry: dict[str, Any] = {"trainable": registry.is_trainable(system)}
            if registry.is_trainable(system):
                cfg = _config(args, system)
                ck = Path(tmp) / system
                t0 = time.perf_counter()
                summary = training.train_single_process(cfg, pairs, None, device=device,
                                                        checkpoint_dir=ck)
                entry["train_seconds"] = time.perf_counter() - t0
                entry["steps"] = summary.steps
                entry["epochs"] = summary.epochs
                entry["final_loss"] = summary.history[-1].get("loss") if summary.history else None
                model, _ = ckpt_io.load_checkpoint(ck / training.MODEL_SUBDIR)
                model = model.to(device)
                disc = registry.build_discriminator(system, cfg.model_size)
                entry["discriminator_params"] = (registry.count_parameters(disc)
                                                 if disc is not None else 0)
            else:
                model = registry.build_generator(system, base.model_size).to(device)
                entry["train_seconds"] = 0.0
                entry["steps"] = 0
            entry["params"] = registry.count_parameters(model)
            entry["metrics"], entry["eval_seconds"] = _evaluate(model, clips, device,
                                                                args.eval_batch_size)
            m = entry["metrics"]
            entry["psnr"], entry["ssim"] = m["psnr"], m["ssim"]
            results[system] = entry
            print(f"[compare] {system}: PSNR {m['psnr']:.2f} SSIM {m['ssim']:.3f} "
                  f"(copy-ref {m['copyref_psnr']:.2f}) train {entry['train_seconds']:.0f} s",
                  flush=True)

    first = next(iter(results.values()))["metrics"]
    copyref = {k: v for k, v in first.items() if k.startswith("copyref_")}
    return {
        "benchmark": "compare", "data": args.data, "recipe": base.recipe,
        "seed": base.seed, "device": str(device), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "strides": list(strides),
        "config": {k: v for k, v in flatten_config(base).items() if k != "system"},
        "counts": {"shots": len(shots), "train_shots": len(train_shots),
                   "val_shots": len(val_shots), "train_pairs": len(pairs),
                   "eval_sequences": len(clips),
                   "eval_sequences_per_stride": {str(k): v for k, v in per_stride.items()}},
        "copyref": copyref, "systems": results,
    }


def format_table(result: dict[str, Any]) -> str:
    """Markdown: one row per system, PSNR/SSIM overall and per stride."""
    strides = result["strides"]
    head = ("| system | params | train s | PSNR | SSIM | "
            + " | ".join(f"S={s} PSNR/SSIM" for s in strides) + " |")
    lines = [head, "|" + "---|" * (5 + len(strides))]

    def cell(m: dict, s: int) -> str:
        if f"psnr/s{s}" not in m:
            return "-"
        return f"{m[f'psnr/s{s}']:.2f}/{m[f'ssim/s{s}']:.3f}"

    for name, e in result["systems"].items():
        m = e["metrics"]
        lines.append(f"| {name} | {e['params']:,} | {e['train_seconds']:.0f} | {m['psnr']:.2f} | "
                     f"{m['ssim']:.3f} | " + " | ".join(cell(m, s) for s in strides) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
        result["argv"] = argv
    except (ValueError, OSError) as e:
        print(f"compare: {e}", file=sys.stderr)
        return 2
    bad = [n for n, e in result["systems"].items()
           if not all(math.isfinite(e["metrics"][k]) for k in ("psnr", "ssim"))]
    print(format_table(result), flush=True)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        tmp.replace(path)
    if bad:
        print(f"compare: non-finite figures for {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
