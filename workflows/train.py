"""Train a colorization system with Ray Train (DDP over N workers), tracked in MLflow.

    python -m workflows.train --data ./demo-out/dataset --recipe smoke --workers 2
    python -m workflows.train --data s3://studio/datasets/v1 --recipe paper-256 \\
        --workers 8 --gpus-per-worker 1 --storage s3://studio/runs --run-name lcmftn-v1
    ray job submit --working-dir . -- python -m workflows.train --data s3://... --recipe cpu-small

Prints one readable line per epoch (from rank 0) and, at the end, one JSON summary line
``{"run_id", "checkpoint", "model_uri", "val_psnr", ...}``.

Design decisions
- Data: two paths giving the same batches (``workflows.train_worker``): ``memory`` (every worker
  loads the PNGs, ``WindowPairDataset``) and ``stream`` (Ray Data reads the Parquet shards one
  block of whole shots per task; worker memory stays flat as the dataset grows). ``--data-path
  auto`` streams when the shards' bytes exceed ``--data-memory-budget-mb`` (per worker: each
  in-memory worker holds the whole dataset). Batches follow ``lcmftn.data.schedule`` (seeded by
  seed, epoch, rank; balanced across ranks), so a resumed run replays them exactly.
- Validation: the paper protocol on whole held-out shots (``split_shots``), each rank scoring
  its share of the sequences; the totals are summed across ranks.
- Checkpoints: one per epoch via ``ray.train.report(..., checkpoint=...)`` from rank 0 (the other
  ranks report metrics only) into ``RunConfig(storage_path, name)``, keep-N. A directory holds
  ``model/`` (``lcmftn.checkpoint``: what colorize loads) and ``train_state.pt`` (optimisers).
- Resume: Ray Train V2 restores a run from its storage folder when the same ``--run-name`` and
  ``--storage`` are used again; ``ray.train.get_checkpoint()`` then returns the latest checkpoint
  and training continues after its epoch. The MLflow run of that name is reopened too.
- Failures: ``FailureConfig(max_failures)`` restarts the worker group from the last checkpoint
  when a worker dies.
- MLflow: the driver creates the run and logs the parameters; inside the workers only rank 0
  logs (losses, validation metrics, samples/s, sample grids); the driver registers the final
  checkpoint. The tracking URI and run id are passed in the loop config: a worker's environment
  is fixed when its raylet starts, so it cannot be relied on.
- Bad input (unknown recipe/model/override, missing or empty dataset, unreachable S3) is
  reported before Ray or any worker starts, with exit code 2 (:mod:`lcmftn.train_plan`: the
  Ray-free checks, ``JobSpec``, MLflow params; this module is the Ray glue).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lcmftn.recipes import RECIPES, SYSTEMS_TRAINABLE
from lcmftn.train_plan import (  # noqa: F401 - re-exported: workflows.tune and tests use them
    DATA_PATH_CHOICES,
    DEFAULT_DATA_MEMORY_BUDGET_MB,
    EXIT_BAD_INPUT,
    PLACEMENT_STRATEGIES,
    BadInput,
    JobSpec,
    check_dataset,
    check_storage,
    checkpoint_uri,
    default_run_name,
    loop_config,
    make_spec,
    resolve_config,
    run_params,
    summary_line,
)
from workflows import args as cli_args

log = logging.getLogger("workflows.train")


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workflows.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cli_args.add_training_inputs(p, recipe_help=f"one of: {', '.join(RECIPES)}",
                                 model_help=f"system to train (default: the recipe's): {', '.join(SYSTEMS_TRAINABLE)}")
    p.add_argument("--workers", type=int, default=1, help="Ray Train workers (DDP ranks)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0,
                   help="GPUs per worker; > 0 trains on GPU with NCCL, 0 on CPU with gloo")
    p.add_argument("--cpus-per-worker", type=float, default=None,
                   help="CPUs per worker (default 1, or 0.5 on CPU-only runs so Ray keeps a core)")
    p.add_argument("--run-name", default=None,
                   help="run name; re-using one (same --storage) resumes that run")
    cli_args.add_run_outputs(p, experiment="lcmftn", storage_help="run storage path (folder or s3://...)",
                             register_help="registered model name (default: the system name, e.g. lcmftn); "
                                           "'none' skips registration")
    p.add_argument("--threads-per-worker", type=int, default=0,
                   help="torch intra-op threads per worker (0 = torch/Ray default)")
    p.add_argument("--max-failures", type=int, default=2,
                   help="worker-group restarts from the last checkpoint before the run fails")
    p.add_argument("--placement-strategy", choices=PLACEMENT_STRATEGIES, default="PACK",
                   help="PACK: workers on as few nodes as possible; SPREAD: one per node where "
                        "possible (soft: a group restarted after a node loss packs onto the rest)")
    p.add_argument("--data-path", choices=DATA_PATH_CHOICES, default="auto",
                   help="memory: every worker loads the PNGs; stream: Ray Data reads shards "
                        "block by block; auto: stream above --data-memory-budget-mb")
    p.add_argument("--data-memory-budget-mb", type=float, default=DEFAULT_DATA_MEMORY_BUDGET_MB,
                   help="per-worker budget for the in-memory path (dataset shard bytes)")
    p.add_argument("--frames-per-block", type=int, default=0,
                   help="frames per read block of whole shots (0: 256; lowered to give each "
                        "worker >= 4 blocks)")
    p.add_argument("--checkpoint-every-steps", type=int, default=0,
                   help="also checkpoint every N steps mid-epoch (resume replays exactly)")
    p.add_argument("--stream-cpus-per-task", type=float, default=0.5,
                   help="CPUs per Ray Data read/decode task (stream path)")
    p.add_argument("--no-verify-data", dest="verify_data", action="store_false",
                   help="skip the driver's pre-flight CRC-32 pass over every shard (one read of "
                        "the whole dataset; workers still verify each frame as they read it)")
    cli_args.add_overrides(p)
    # Test hook: rank 1 SIGKILLs its own process before this global step, once per run.
    p.add_argument("--kill-worker-at-step", type=int, default=0, help=argparse.SUPPRESS)
    cli_args.add_verbose(p)  # quiet hook: -v shows Ray/worker output (workflows.common)
    return p


def plan(argv: list[str] | None = None) -> JobSpec:
    """Parse the command line and :func:`make_spec` it."""
    a = build_parser().parse_args(argv)
    return make_spec(data=a.data, recipe_name=a.recipe, model=a.model, overrides=a.overrides,
                     workers=a.workers, gpus_per_worker=a.gpus_per_worker,
                     cpus_per_worker=a.cpus_per_worker, run_name=a.run_name, storage=a.storage,
                     experiment=a.experiment, register_as=a.register_as,
                     max_failures=a.max_failures, kill_worker_at_step=a.kill_worker_at_step,
                     threads_per_worker=a.threads_per_worker, data_path=a.data_path,
                     data_memory_budget_mb=a.data_memory_budget_mb,
                     frames_per_block=a.frames_per_block,
                     checkpoint_every_steps=a.checkpoint_every_steps,
                     stream_cpus_per_task=a.stream_cpus_per_task, verify_data=a.verify_data,
                     placement_strategy=a.placement_strategy)


# ----------------------------------------------------------------------------- Ray pieces


def build_trainer(spec: JobSpec, config: dict[str, Any], callbacks: list | None = None):
    """The ``TorchTrainer`` for a job (also used by ``workflows.tune`` per trial)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from lcmftn.integrations import storage
    from workflows.common import train_logging_config
    from workflows.train_worker import train_loop_per_worker

    use_gpu = spec.gpus_per_worker > 0
    resources = {"CPU": spec.cpus_per_worker}
    if use_gpu:
        resources["GPU"] = spec.gpus_per_worker
    storage_fs, storage_path = None, spec.storage_uri
    if storage.is_s3(spec.storage_uri):
        bucket, key = storage.split_s3(spec.storage_uri)
        storage_fs, storage_path = spec.storage_fs, f"{bucket}/{key}".rstrip("/")
        if storage_fs is None:  # a spec built without make_spec: use this process's env
            storage_fs = storage.filesystem_for(spec.storage_uri)[0]
    # 1. DDP over N workers: NCCL on GPU, gloo on CPU.
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=spec.workers, use_gpu=use_gpu,
                                     resources_per_worker=resources,
                                     placement_strategy=spec.placement_strategy),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        # 2. Checkpoints to the run's storage path, keep-N; same name = resume; restarts.
        run_config=RunConfig(
            name=spec.run_name, storage_path=storage_path, storage_filesystem=storage_fs,
            checkpoint_config=CheckpointConfig(num_to_keep=spec.cfg.keep_checkpoints),
            failure_config=FailureConfig(max_failures=spec.max_failures),
            callbacks=callbacks,
            logging_config=train_logging_config(),  # quiet hook: Ray Train INFO only with -v
        ),
    )


def register_final(spec: JobSpec, checkpoint, run_id: str, tracking_uri: str,
                   metrics: dict[str, Any]) -> tuple[str | None, str | None]:
    """Copy the final checkpoint's ``model/`` into the MLflow run and register it.

    Returns ``(model_uri, version)``; ``(None, None)`` when registration is off."""
    from lcmftn.integrations import tracking
    from lcmftn.training import MODEL_SUBDIR

    if spec.register_as is None or checkpoint is None:
        return None, None
    with tempfile.TemporaryDirectory(prefix="final-ckpt-") as tmp:
        local = Path(checkpoint.to_directory(tmp))
        tags = {"system": spec.cfg.system, "recipe": spec.cfg.recipe,
                "image_size_px": spec.cfg.image_size_px, "run_name": spec.run_name,
                "checkpoint_uri": checkpoint_uri(spec, checkpoint),
                "data.uri": spec.data_uri, "val_psnr": metrics.get("val_psnr", "n/a")}
        version = tracking.register_checkpoint(run_id, local / MODEL_SUBDIR, spec.register_as,
                                               tags=tags, tracking_uri=tracking_uri)
    return f"models:/{spec.register_as}/{version}", version


def run(spec: JobSpec) -> dict[str, Any]:
    """Start (or resume) the run, fit, register; returns the summary dict."""
    from lcmftn.integrations import tracking
    from workflows.common import ensure_ray

    t0 = time.perf_counter()
    tracking_uri = tracking.default_tracking_uri()
    run_id = tracking.start_run(spec.experiment, spec.run_name, tracking_uri,
                                tags={"system": spec.cfg.system, "recipe": spec.cfg.recipe})
    tracking.log_params(run_id, run_params(spec), tracking_uri)
    if spec.manifest:  # issue 10: link the dataset (manifest digest) to the run
        tracking.log_dataset(run_id, spec.data_uri, spec.manifest, tracking_uri=tracking_uri)
    ensure_ray()
    config = loop_config(spec, tracking_uri, run_id)
    bar = train_progress(spec, config)  # progress hook: steps trained (workflows.progress)
    trainer = build_trainer(spec, config)
    try:
        with bar:
            result = trainer.fit()
        final = {k: v for k, v in (result.metrics or {}).items()
                 if isinstance(v, (int, float)) and math.isfinite(v)}
        # NOTE: inside the try: a failed registration must not leave the run RUNNING forever.
        model_uri, version = register_final(spec, result.checkpoint, run_id, tracking_uri, final)
        if model_uri:
            tracking.set_tags(run_id, {"model_uri": model_uri}, tracking_uri)
    except BaseException:
        tracking.end_run(run_id, "FAILED", tracking_uri)
        raise
    tracking.end_run(run_id, "FINISHED", tracking_uri)
    return summary_line(spec, run_id, result, model_uri, version, time.perf_counter() - t0)


def train_progress(spec: JobSpec, config: dict[str, Any]):
    """The driver's "steps trained" bar; puts its board's handle into the loop ``config``."""
    from workflows.progress import PROGRESS_KEY, DriverBar

    bar = DriverBar("train", spec.cfg.epochs * spec.cfg.steps_per_epoch, "steps")
    config[PROGRESS_KEY] = bar.board
    return bar


def main(argv: list[str] | None = None) -> int:
    from workflows.common import setup_logging

    cli = sys.argv[1:] if argv is None else argv
    setup_logging("-v" in cli or "--verbose" in cli)  # quiet hook (workflows.common)
    try:
        spec = plan(argv)
    except BadInput as e:
        print(f"train: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    log.info("run %s: %s on %s (%d shots, %.1f MiB, %s path), %d worker(s), storage %s",
             spec.run_name, spec.cfg.system, spec.data_uri, spec.counts["shots"],
             spec.counts["data_bytes"] / 2**20, spec.data_path, spec.workers, spec.storage_uri)
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    summary = run(spec)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
