"""Train a colorization system with Ray Train (DDP over N workers), tracked in MLflow.

    python -m workflows.train --data ./demo-out/dataset --recipe smoke --workers 2
    python -m workflows.train --data s3://studio/datasets/v1 --recipe paper-256 \\
        --workers 8 --gpus-per-worker 1 --storage s3://studio/runs --run-name lcmftn-v1
    ray job submit --working-dir . -- python -m workflows.train --data s3://... --recipe cpu-small

Prints one readable line per epoch (from rank 0) and, at the end, one JSON summary line
``{"run_id", "checkpoint", "model_uri", "val_psnr", ...}``.

Design decisions
- Data: every worker reads the dataset itself (``lcmftn.data.dataset.load_frames``; PNG-encoded
  frames in memory, decoded on access) and samples window pairs on the fly
  (``WindowPairDataset``) through a plain ``DistributedSampler``. Not Ray Data: a pair needs
  random access to two frames of one shot, which row streaming does not give, and the sampler
  keeps each worker's share deterministic per epoch, so a resumed run sees the same batches.
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
  reported before Ray or any worker starts, with exit code 2.
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lcmftn.recipes import RECIPES, SYSTEMS_TRAINABLE, TrainConfig, apply_overrides, recipe

log = logging.getLogger("workflows.train")

EXIT_BAD_INPUT = 2


class BadInput(ValueError):
    """A problem with the command line or the inputs, found before anything starts."""


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workflows.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset root (local folder or s3://...)")
    p.add_argument("--recipe", required=True, help=f"one of: {', '.join(RECIPES)}")
    p.add_argument("--model", default=None,
                   help=f"system to train (default: the recipe's): {', '.join(SYSTEMS_TRAINABLE)}")
    p.add_argument("--workers", type=int, default=1, help="Ray Train workers (DDP ranks)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0,
                   help="GPUs per worker; > 0 trains on GPU with NCCL, 0 on CPU with gloo")
    p.add_argument("--cpus-per-worker", type=float, default=None,
                   help="CPUs per worker (default 1, or 0.5 on CPU-only runs so Ray keeps a core)")
    p.add_argument("--run-name", default=None,
                   help="run name; re-using one (same --storage) resumes that run")
    p.add_argument("--storage", default="./runs", help="run storage path (folder or s3://...)")
    p.add_argument("--experiment", default="lcmftn", help="MLflow experiment")
    p.add_argument("--register-as", default=None,
                   help="registered model name (default: the system name, e.g. lcmftn); "
                        "'none' skips registration")
    p.add_argument("--threads-per-worker", type=int, default=0,
                   help="torch intra-op threads per worker (0 = torch/Ray default)")
    p.add_argument("--max-failures", type=int, default=2,
                   help="worker-group restarts from the last checkpoint before the run fails")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. --set optim.lr=2e-4 --set window.width_frames=20")
    # Test hook: rank 1 SIGKILLs its own process before this global step, once per run.
    p.add_argument("--kill-worker-at-step", type=int, default=0, help=argparse.SUPPRESS)
    return p


@dataclass
class JobSpec:
    """Everything the driver resolved before starting Ray."""

    cfg: TrainConfig
    data_uri: str
    storage_uri: str
    run_name: str
    experiment: str
    register_as: str | None
    workers: int
    gpus_per_worker: float
    cpus_per_worker: float
    max_failures: int
    manifest: dict
    counts: dict[str, int]
    kill_worker_at_step: int = 0
    threads_per_worker: int = 0
    data_fs: Any = None
    """pyarrow filesystem of an ``s3://`` dataset, built on the driver from its AWS_* env
    (picklable; a Ray worker's or Tune trial's env is fixed when its raylet starts)."""
    storage_fs: Any = None
    """Same for an ``s3://`` storage path."""


def resolve_config(recipe_name: str, model: str | None, overrides: list[str]) -> TrainConfig:
    """Recipe + ``--model`` + ``--set`` overrides, validated; ``BadInput`` otherwise."""
    try:
        cfg = recipe(recipe_name)
        if model is not None:
            overrides = [f"system={model}", *overrides]
        cfg = apply_overrides(cfg, overrides)
    except ValueError as e:
        raise BadInput(str(e)) from e
    from lcmftn.models import registry

    if cfg.model_size not in registry.SIZES:
        raise BadInput(f"model_size {cfg.model_size!r} is not one of {registry.SIZES}")
    multiple = registry.multiple_of(cfg.system)
    if cfg.image_size_px % multiple:
        raise BadInput(f"image_size_px {cfg.image_size_px} must be a multiple of {multiple} "
                       f"for {cfg.system}")
    from lcmftn import losses

    # Cheap checks of the VGG-19 source here; the weights themselves load in the workers.
    source = losses.vgg_source(cfg.loss, cfg.system)
    weights = cfg.loss.vgg_weights
    if source.startswith("none (invalid"):
        raise BadInput(f"loss.vgg_weights='none' but the loss has a VGG term "
                       f"(loss.lambda_vgg={cfg.loss.lambda_vgg}); set loss.vgg_weights to "
                       f"{losses.VGG_OPTIONS}, or loss.lambda_vgg=0")
    if (not source.startswith("none") and weights not in ("random", "torchvision")
            and not weights.startswith("s3://") and not Path(weights).is_file()):
        raise BadInput(f"loss.vgg_weights={weights!r}: no such file "
                       f"(options: {losses.VGG_OPTIONS})")
    if cfg.e_i_weights and not Path(cfg.e_i_weights).is_file():
        raise BadInput(f"e_i_weights={cfg.e_i_weights!r}: no such file")
    if cfg.e_i_weights and not cfg.system.startswith("lcmftn"):
        raise BadInput(f"e_i_weights is an LCMFTN option; {cfg.system} has no E_I")
    return cfg


def check_dataset(uri: str, cfg: TrainConfig) -> tuple[dict, dict[str, int]]:
    """Fail fast on a missing, unreachable or empty dataset, or one too small for ``cfg``.

    Reads the manifest and the committed shards' small columns only (no images) and counts
    shots, validation shots and training pairs exactly as the workers will sample them.
    Returns ``(manifest, counts)``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lcmftn.data import dataset as ds
    from lcmftn.data.pairs import sample_window_pairs
    from lcmftn.integrations import storage

    try:
        if storage.is_s3(uri):
            storage.check_reachable(uri)
        elif not Path(uri).exists():
            raise BadInput(f"dataset {uri}: no such folder")
        fs, paths, manifest = ds.shard_paths(uri)
    except storage.StorageError as e:
        raise BadInput(f"dataset {e}") from e
    except OSError as e:  # FileNotFoundError from a folder without manifest or shards
        raise BadInput(f"dataset {e}") from e
    except ValueError as e:  # a corrupt manifest.json (the message names it)
        raise BadInput(str(e)) from e
    if not paths:
        films = manifest.get("films", {})
        failed = {k: v.get("reason") for k, v in films.items() if v.get("status") != "ok"}
        raise BadInput(f"dataset {uri}: empty (no committed film in {ds.MANIFEST_NAME}"
                       + (f"; failed films: {failed}" if failed else "") + ")")
    cols = ["film", "shot", "frame", "hold"]
    tables = []
    for path in paths:
        try:
            tables.append(pq.read_table(path, filesystem=fs, columns=cols))
        except Exception as e:
            raise BadInput(f"dataset {uri}: cannot read shard {path}: {e}") from e
    table = pa.concat_tables(tables).sort_by([(c, "ascending") for c in cols[:3]])
    if table.num_rows == 0:
        raise BadInput(f"dataset {uri}: the committed shards hold no frames")
    keys = list(zip(table["film"].to_pylist(), table["shot"].to_pylist(), strict=True))
    holds = np.asarray(table["hold"].to_pylist(), dtype=bool)
    frames = np.asarray(table["frame"].to_pylist(), dtype=np.int32)
    clips, start = [], 0
    for i in range(1, len(keys) + 1):  # same grouping as dataset.shots_from_table, no images
        if i == len(keys) or keys[i] != keys[start]:
            h = holds[start:i].copy()
            h[0] = False
            clips.append(ds.ShotClip(keys[start][0], int(keys[start][1]), frames[start:i], [], [],
                                     h, 0, 0))
            start = i
    train, val = ds.split_shots(clips, cfg.val.val_fraction, seed=cfg.seed)
    pairs = sum(len(sample_window_pairs(len(c), cfg.window, holds=c.holds)) for c in train)
    counts = {"shots": len(clips), "train_shots": len(train), "val_shots": len(val),
              "train_pairs": pairs, "frames": table.num_rows}
    if cfg.val.val_fraction > 0 and not val:
        raise BadInput(f"dataset {uri}: {len(clips)} shot(s); validation holds out whole "
                       "shots, so at least 2 are needed (or --set val.val_fraction=0)")
    return manifest, counts


def check_storage(uri: str) -> None:
    from lcmftn.integrations import storage

    if storage.is_s3(uri):
        try:
            storage.check_reachable(uri)
        except storage.StorageError as e:
            raise BadInput(f"storage {e}") from e


def default_run_name(cfg: TrainConfig) -> str:
    return f"{cfg.system}-{cfg.recipe}-{time.strftime('%Y%m%d-%H%M%S')}"


def make_spec(*, data: str, recipe_name: str, model: str | None, overrides: list[str],
              workers: int, gpus_per_worker: float, cpus_per_worker: float | None,
              run_name: str | None, storage: str, experiment: str, register_as: str | None,
              max_failures: int, kill_worker_at_step: int = 0,
              threads_per_worker: int = 0) -> JobSpec:
    """Check everything and resolve defaults; raises ``BadInput`` before Ray is touched."""
    from lcmftn.integrations import storage as st

    if workers < 1:
        raise BadInput(f"--workers must be >= 1, got {workers}")
    cfg = resolve_config(recipe_name, model, overrides)
    manifest, counts = check_dataset(data, cfg)
    need = workers * cfg.batch_size_per_worker
    if counts["train_pairs"] < need:
        raise BadInput(f"dataset {data}: {counts['train_pairs']} training pairs (window "
                       f"{cfg.window.width_frames}/{cfg.window.stride_frames} over "
                       f"{counts['train_shots']} shots); {workers} worker(s) x batch "
                       f"{cfg.batch_size_per_worker} need at least {need}")
    check_storage(storage)
    if cpus_per_worker is None:
        cpus_per_worker = 1.0 if gpus_per_worker > 0 else 0.5
    register = register_as or cfg.system
    return JobSpec(
        cfg=cfg, data_uri=st.normalize(data), storage_uri=st.normalize(storage),
        run_name=run_name or default_run_name(cfg), experiment=experiment,
        register_as=None if register.lower() == "none" else register, workers=workers,
        gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker,
        max_failures=max_failures, manifest=manifest, counts=counts,
        kill_worker_at_step=kill_worker_at_step, threads_per_worker=threads_per_worker,
        data_fs=st.filesystem_for(data)[0] if st.is_s3(data) else None,
        storage_fs=st.filesystem_for(storage)[0] if st.is_s3(storage) else None,
    )


def plan(argv: list[str] | None = None) -> JobSpec:
    """Parse the command line and :func:`make_spec` it."""
    a = build_parser().parse_args(argv)
    return make_spec(data=a.data, recipe_name=a.recipe, model=a.model, overrides=a.overrides,
                     workers=a.workers, gpus_per_worker=a.gpus_per_worker,
                     cpus_per_worker=a.cpus_per_worker, run_name=a.run_name, storage=a.storage,
                     experiment=a.experiment, register_as=a.register_as,
                     max_failures=a.max_failures, kill_worker_at_step=a.kill_worker_at_step,
                     threads_per_worker=a.threads_per_worker)


# ----------------------------------------------------------------------------- MLflow params


def run_params(spec: JobSpec) -> dict[str, Any]:
    """What the run logs as MLflow params: the flattened config plus data/cluster provenance."""
    from lcmftn import losses
    from lcmftn.integrations import storage, tracking
    from lcmftn.recipes import flatten_config

    manifest = spec.manifest
    return {
        **flatten_config(spec.cfg),
        "data.uri": spec.data_uri,
        "data.manifest_uri": storage.join(spec.data_uri, "manifest.json") if manifest else "none",
        "data.version": str(manifest.get("version", "unversioned")),
        "data.films": ",".join(sorted(manifest.get("films", {}))) if manifest else "?",
        **{f"data.{k}": v for k, v in spec.counts.items()},
        "vgg_source": losses.vgg_source(spec.cfg.loss, spec.cfg.system),
        "e_i_source": spec.cfg.e_i_weights or "off (no E_I weights given)",
        "cluster.workers": spec.workers,
        "cluster.gpus_per_worker": spec.gpus_per_worker,
        "cluster.cpus_per_worker": spec.cpus_per_worker,
        "git_commit": tracking.git_commit() or "unknown",
        "run_storage": storage.join(spec.storage_uri, spec.run_name),
    }


# ----------------------------------------------------------------------------- Ray pieces


def loop_config(spec: JobSpec, tracking_uri: str | None, run_id: str | None) -> dict[str, Any]:
    """The ``train_loop_config`` every worker receives (picklable; config as a plain dict)."""
    fault = None
    if spec.kill_worker_at_step:
        fault = {"rank": min(1, spec.workers - 1), "step": spec.kill_worker_at_step,
                 "marker": tempfile.mkdtemp(prefix="fault-") + "/killed"}
    return {"cfg": asdict(spec.cfg), "data_uri": spec.data_uri, "data_fs": spec.data_fs,
            "tracking_uri": tracking_uri, "run_id": run_id, "fault": fault,
            "threads_per_worker": spec.threads_per_worker}


def build_trainer(spec: JobSpec, config: dict[str, Any], callbacks: list | None = None):
    """The ``TorchTrainer`` for a job (also used by ``workflows.tune`` per trial)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from lcmftn.integrations import storage
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
                                     resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        # 2. Checkpoints to the run's storage path, keep-N; same name = resume; restarts.
        run_config=RunConfig(
            name=spec.run_name, storage_path=storage_path, storage_filesystem=storage_fs,
            checkpoint_config=CheckpointConfig(num_to_keep=spec.cfg.keep_checkpoints),
            failure_config=FailureConfig(max_failures=spec.max_failures),
            callbacks=callbacks,
        ),
    )


def checkpoint_uri(spec: JobSpec, checkpoint) -> str:
    if checkpoint is None:
        return ""
    return f"s3://{checkpoint.path}" if spec.storage_uri.startswith("s3://") else checkpoint.path


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


def summary_line(spec: JobSpec, run_id: str, result, model_uri: str | None,
                 version: str | None, seconds: float) -> dict[str, Any]:
    m = dict(result.metrics or {})
    return {
        "run_id": run_id, "run_name": spec.run_name, "experiment": spec.experiment,
        "system": spec.cfg.system, "recipe": spec.cfg.recipe,
        "checkpoint": checkpoint_uri(spec, result.checkpoint), "model_uri": model_uri,
        "model_version": version, "epoch": m.get("epoch"), "step": m.get("step"),
        "start_epoch": m.get("start_epoch"), "val_psnr": m.get("val_psnr"),
        "val_ssim": m.get("val_ssim"), "copyref_psnr": m.get("copyref_psnr"),
        "samples_per_s": m.get("samples_per_s"), "workers": spec.workers,
        "seconds": round(seconds, 1),
    }


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
    trainer = build_trainer(spec, loop_config(spec, tracking_uri, run_id))
    try:
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


def main(argv: list[str] | None = None) -> int:
    from workflows.common import setup_logging

    setup_logging()
    try:
        spec = plan(argv)
    except BadInput as e:
        print(f"train: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    log.info("run %s: %s on %s (%d shots), %d worker(s), storage %s", spec.run_name,
             spec.cfg.system, spec.data_uri, spec.counts["shots"], spec.workers, spec.storage_uri)
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    summary = run(spec)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
