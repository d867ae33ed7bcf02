"""Planning a training run, Ray-free: validate every input before anything starts, resolve the
:class:`JobSpec`, and what the run logs (MLflow params, the summary line). The Ray Train job is
``workflows.train`` (and ``workflows.tune`` per trial); the loop itself is :mod:`lcmftn.training`.

Bad input (unknown recipe/model/override, missing or empty dataset, unreachable S3) raises
:class:`BadInput` naming the problem, before Ray or any worker starts (exit code 2).
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from lcmftn.recipes import TrainConfig, apply_overrides, recipe

EXIT_BAD_INPUT = 2
SEARCH_KEYS = ("lambda_l1", "lambda_vgg", "window_width", "window_stride", "lr")
"""The hyper-parameters ``workflows.tune`` searches (names of its trial params)."""


class BadInput(ValueError):
    """A problem with the command line or the inputs, found before anything starts."""


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
    data_path: str = "memory"
    """Where workers get frames: ``memory`` (each loads every PNG) or ``stream`` (Ray Data)."""
    frames_per_block: int = 0
    """Streamed/scheduled reading unit in frames (0: ``lcmftn.data.schedule`` default)."""
    checkpoint_every_steps: int = 0
    """Mid-epoch checkpoints every N steps (0: at epoch ends only)."""
    stream_cpus_per_task: float = 0.5
    """CPUs of each Ray Data read/decode task on the stream path."""
    placement_strategy: str = "PACK"
    """Ray placement of the workers: ``PACK`` (fewest nodes) or ``SPREAD`` (one per node where
    possible; soft: after a node loss the restarted group packs onto the nodes left)."""


DATA_PATH_CHOICES = ("auto", "memory", "stream")
PLACEMENT_STRATEGIES = ("PACK", "SPREAD")
DEFAULT_DATA_MEMORY_BUDGET_MB = 2048


def choose_data_path(choice: str, data_bytes: int, budget_mb: float) -> str:
    """``auto``: ``stream`` when the dataset's PNG bytes (what every in-memory worker would hold)
    exceed ``budget_mb`` MiB, else ``memory`` (no Ray Data start-up per pass; same batches)."""
    if choice not in DATA_PATH_CHOICES:
        raise BadInput(f"--data-path must be one of {DATA_PATH_CHOICES}, got {choice!r}")
    if budget_mb <= 0:
        raise BadInput(f"--data-memory-budget-mb must be > 0, got {budget_mb}")
    if choice != "auto":
        return choice
    return "stream" if data_bytes > budget_mb * 2**20 else "memory"


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
    if cfg.generator:
        from lcmftn.models import registry

        try:
            overrides = registry.parse_generator_overrides(cfg.system, cfg.generator)
            registry.config_from_dict(cfg.system, {**asdict(registry.generator_config(cfg.system, cfg.model_size)),
                                                   **overrides}, source="--set generator")
        except ValueError as exc:
            raise BadInput(f"generator={cfg.generator!r}: {exc}") from exc
    return cfg


def _verify_shards(uri: str, fs, paths: list[str]) -> None:
    """Every PNG's CRC-32, shard by shard (one shard in memory at a time), before Ray starts:
    corrupt frames are a deterministic error, a named exit 2, never a Ray retry."""
    from lcmftn.data import dataset_format as fmt

    corrupt = []
    for path in paths:
        try:
            fmt.read_shard(path, fs)
        except fmt.CorruptFrameError as e:
            corrupt += e.frames
        except OSError as e:
            raise BadInput(f"dataset {uri}: {e}") from e
    if corrupt:
        raise BadInput(f"dataset {uri}: {fmt.CorruptFrameError(corrupt)}")


def check_dataset(uri: str, cfg: TrainConfig,
                  verify: bool = True) -> tuple[dict, dict[str, int]]:
    """Fail fast on a missing, unreachable or empty dataset, or one too small for ``cfg``.

    Reads the manifest and the committed shards' small columns and counts
    shots, validation shots and training pairs exactly as the workers will sample them; with
    ``verify``, every frame's checksum too, one shard at a time. Returns ``(manifest, counts)``."""
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
    try:
        scan = ds.scan_shots(uri)
    except OSError as e:
        raise BadInput(f"dataset {uri}: {e}") from e
    if verify:  # reads every shard once; workers verify again on read either way
        _verify_shards(uri, fs, paths)
    clips = list(scan.shots)
    if not clips:
        raise BadInput(f"dataset {uri}: the committed shards hold no frames")
    train, val = ds.split_shots(clips, cfg.val.val_fraction, seed=cfg.seed)
    pairs = sum(len(sample_window_pairs(len(c), cfg.window, holds=c.holds)) for c in train)
    counts = {"shots": len(clips), "train_shots": len(train), "val_shots": len(val),
              "train_pairs": pairs, "frames": scan.shots.num_frames,
              "data_bytes": scan.shard_bytes}
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
              threads_per_worker: int = 0, data_path: str = "auto",
              data_memory_budget_mb: float = DEFAULT_DATA_MEMORY_BUDGET_MB,
              frames_per_block: int = 0, checkpoint_every_steps: int = 0,
              stream_cpus_per_task: float = 0.5, verify_data: bool = True,
              placement_strategy: str = "PACK") -> JobSpec:
    """Check everything and resolve defaults; raises ``BadInput`` before Ray is touched."""
    from lcmftn.integrations import storage as st

    if workers < 1:
        raise BadInput(f"--workers must be >= 1, got {workers}")
    cfg = resolve_config(recipe_name, model, overrides)
    manifest, counts = check_dataset(data, cfg, verify=verify_data)
    need = workers * cfg.batch_size_per_worker
    if counts["train_pairs"] < need:
        raise BadInput(f"dataset {data}: {counts['train_pairs']} training pairs (window "
                       f"{cfg.window.width_frames}/{cfg.window.stride_frames} over "
                       f"{counts['train_shots']} shots); {workers} worker(s) x batch "
                       f"{cfg.batch_size_per_worker} need at least {need}")
    path = choose_data_path(data_path, counts["data_bytes"], data_memory_budget_mb)
    if frames_per_block < 0 or checkpoint_every_steps < 0 or stream_cpus_per_task <= 0:
        raise BadInput("--frames-per-block and --checkpoint-every-steps must be >= 0, "
                       "--stream-cpus-per-task > 0")
    if placement_strategy not in PLACEMENT_STRATEGIES:
        raise BadInput(f"--placement-strategy must be one of {PLACEMENT_STRATEGIES}, got {placement_strategy!r}")
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
        data_path=path, frames_per_block=frames_per_block,
        checkpoint_every_steps=checkpoint_every_steps, stream_cpus_per_task=stream_cpus_per_task,
        placement_strategy=placement_strategy,
    )


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
        "data.path": spec.data_path,
        "data.frames_per_block": spec.frames_per_block,
        "cluster.workers": spec.workers,
        "cluster.gpus_per_worker": spec.gpus_per_worker,
        "cluster.cpus_per_worker": spec.cpus_per_worker,
        "cluster.placement_strategy": spec.placement_strategy,
        "git_commit": tracking.git_commit() or "unknown",
        "run_storage": storage.join(spec.storage_uri, spec.run_name),
    }


def loop_config(spec: JobSpec, tracking_uri: str | None, run_id: str | None) -> dict[str, Any]:
    """The ``train_loop_config`` every worker receives (picklable; config as a plain dict)."""
    fault = None
    if spec.kill_worker_at_step:
        fault = {"rank": min(1, spec.workers - 1), "step": spec.kill_worker_at_step,
                 "marker": tempfile.mkdtemp(prefix="fault-") + "/killed"}
    return {"cfg": asdict(spec.cfg), "data_uri": spec.data_uri, "data_fs": spec.data_fs,
            "tracking_uri": tracking_uri, "run_id": run_id, "fault": fault,
            "threads_per_worker": spec.threads_per_worker, "data_path": spec.data_path,
            "frames_per_block": spec.frames_per_block,
            "checkpoint_every_steps": spec.checkpoint_every_steps,
            "stream_cpus_per_task": spec.stream_cpus_per_task}


def checkpoint_uri(spec: JobSpec, checkpoint) -> str:
    """Where a (Ray Train) checkpoint lives, as a URI (``""`` for none)."""
    if checkpoint is None:
        return ""
    return f"s3://{checkpoint.path}" if spec.storage_uri.startswith("s3://") else checkpoint.path


def summary_line(spec: JobSpec, run_id: str, result, model_uri: str | None,
                 version: str | None, seconds: float) -> dict[str, Any]:
    """The JSON summary line of a finished run (``result``: a Ray Train ``Result``)."""
    m = dict(result.metrics or {})
    return {
        "run_id": run_id, "run_name": spec.run_name, "experiment": spec.experiment,
        "system": spec.cfg.system, "recipe": spec.cfg.recipe,
        "checkpoint": checkpoint_uri(spec, result.checkpoint), "model_uri": model_uri,
        "model_version": version, "epoch": m.get("epoch"), "step": m.get("step"),
        "start_epoch": m.get("start_epoch"), "start_step": m.get("start_step"), "val_psnr": m.get("val_psnr"),
        "val_ssim": m.get("val_ssim"), "copyref_psnr": m.get("copyref_psnr"),
        "samples_per_s": m.get("samples_per_s"), "workers": spec.workers, "nodes": m.get("nodes"),
        "seconds": round(seconds, 1),
    }


# ----------------------------------------------------------------------------- sweeps (workflows.tune)


def trial_spec(base: JobSpec, params: dict[str, Any], trial_name: str, storage: str) -> JobSpec:
    """The ``JobSpec`` of one trial: the base config with the sampled values."""
    from lcmftn.recipes import validate_config

    cfg = base.cfg
    cfg = replace(
        cfg,
        loss=replace(cfg.loss, lambda_l1=float(params["lambda_l1"]),
                     lambda_vgg=float(params["lambda_vgg"])),
        window=replace(cfg.window, width_frames=int(params["window_width"]),
                       stride_frames=int(params["window_stride"])),
        optim=replace(cfg.optim, lr=float(params["lr"])),
        val=replace(cfg.val, every_epochs=1),  # ASHA needs the metric in every report
    )
    validate_config(cfg)
    return replace(base, cfg=cfg, run_name=trial_name, storage_uri=storage, register_as=None)


def best_table(rows: list[dict[str, Any]], metric: str, top: int = 10) -> str:
    """Markdown table of the best trials (by ``metric``, descending)."""
    cols = ["trial", "epoch", metric, "copyref_psnr", *SEARCH_KEYS]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    ranked = sorted(rows, key=lambda r: -r.get(metric, -math.inf)
                    if isinstance(r.get(metric), (int, float)) else math.inf)
    for r in ranked[:top]:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append(f"{v:.4g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
