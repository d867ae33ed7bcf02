"""The Ray Train worker loop of ``workflows.train``: thin glue over ``lcmftn.training``.

Every rank runs :func:`train_loop_per_worker`; the numbered comments mark the Ray touchpoints.
Only rank 0 talks to MLflow (:class:`RankZeroTracker`); every rank calls ``ray.train.report``
once per epoch (it is a barrier), rank 0 with the checkpoint, and every
``checkpoint_every_steps`` steps when that is set (mid-epoch checkpoints).

Training data (:func:`workflows.train_data.prepare_data`, :func:`~workflows.train_data.epoch_batches`):
two paths with the SAME batches, ``memory`` (each worker loads the PNGs) and ``stream`` (Ray Data
over the Parquet shards, a few blocks in memory); see :mod:`workflows.train_data`.

* NOT ``get_dataset_shard`` / ``streaming_split``: its ``OutputSplitter`` hands each block to
  the consumer with the fewest rows at that moment and "does not provide any ordering
  guarantees" (ray/data/_internal/execution/operators/output_splitter.py), so which rank trains
  on which pair would depend on timing, and a resumed run could not replay its batches.
  Each rank instead builds its own small pipeline for its share of the schedule.
* Resume: a checkpoint records ``epoch_step``; the resumed epoch drops that many batches from
  the schedule before reading anything.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from lcmftn import training
from lcmftn.evaluation import EvalTotals, load_eval_clips
from lcmftn.recipes import config_from_dict
from workflows.progress import PROGRESS_KEY, StepReporter
from workflows.train_data import DATA_PATHS, TrainData, epoch_batches, epoch_length, prepare_data  # noqa: F401


class RankZeroTracker:
    """MLflow logging from rank 0 only (a no-op elsewhere or when no run id is given)."""

    def __init__(self, config: dict[str, Any], rank: int):
        self.run_id = config.get("run_id") if rank == 0 else None
        self.uri = config.get("tracking_uri")
        self.every = 1

    @property
    def active(self) -> bool:
        return self.run_id is not None

    def on_step(self, step: int, losses: dict[str, float]) -> None:
        if self.active and step % self.every == 0:
            from lcmftn.integrations import tracking

            tracking.log_metrics(self.run_id, {f"train/{k}": v for k, v in losses.items()}, step,
                                 self.uri)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if self.active:
            from lcmftn.integrations import tracking

            tracking.log_metrics(self.run_id, metrics, step, self.uri)

    def log_grid(self, grid, epoch: int) -> None:
        if self.active and grid is not None:
            from lcmftn.integrations import tracking

            tracking.log_image(self.run_id, grid, f"samples/epoch_{epoch:04d}.png", self.uri)


STEP_DELAY_ENV = "LCMFTN_TRAIN_STEP_DELAY_S"  # test hook: every rank pauses after each step


def _say(line: str) -> None:
    # NOTE: not print(): Train V2 patches print() into its logger, which the driver then shows
    # twice (stdout and stderr). Ray forwards a worker's stdout to the driver once.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _gather(obj: Any) -> list[Any]:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _fault_hook(fault: dict | None, rank: int):
    """Test hook: SIGKILL this worker before global step ``fault["step"]``, once per run."""
    if not fault or fault["rank"] != rank:
        return None

    def before_step(step: int) -> None:
        if step == fault["step"] and not os.path.exists(fault["marker"]):
            Path(fault["marker"]).touch()
            # NOTE: Train V2's controller collects reports when it polls the workers (every
            # 2 s); a worker that dies before the poll loses its last report, so the run would
            # resume one checkpoint earlier. Die "mid-epoch", a while after the checkpoint.
            time.sleep(5.0)
            os.kill(os.getpid(), signal.SIGKILL)

    return before_step


def _validate(state: training.TrainState, clips, rank: int, world: int) -> dict[str, float]:
    totals = training.validate(state, clips[rank::world]) if clips[rank::world] else EvalTotals()
    merged = EvalTotals()
    for part in _gather(totals):
        merged = merged.add(part)
    return merged.metrics()


def train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    cfg = config_from_dict(config["cfg"])
    # Ray Train logs every report and checkpoint at INFO; the epoch line below says it all.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    if config.get("threads_per_worker"):
        torch.set_num_threads(int(config["threads_per_worker"]))
    # 1. Rank, world size and device from the Train context.
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()

    data = prepare_data(config, cfg, world)
    if len(data.index) // world < cfg.batch_size_per_worker:
        raise ValueError(f"{config['data_uri']}: {len(data.index)} training pairs for {world} "
                         f"worker(s) x batch {cfg.batch_size_per_worker}")
    val_shots = data.val_shots
    clips = load_eval_clips(val_shots, cfg.val.strides_frames, cfg.image_size_px, cfg.val.seed,
                            cfg.val.max_sequences_per_stride)

    # 2. The model wrapped for DDP by Ray (gloo on CPU, NCCL on GPU).
    state = training.build_train_state(cfg, device, wrap=ray.train.torch.prepare_model)
    # 3. Resume: the latest checkpoint of this run (a rerun with the same name, or a restart
    #    after a worker failure).
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            training.load_training_checkpoint(state, d)
    start_epoch, start_step = state.epoch, state.step
    tracker = RankZeroTracker(config, rank)
    tracker.every = cfg.log_every_steps
    if rank == 0:
        what = (f"resumed at epoch {start_epoch} step {start_step} ({state.epoch_step} into the "
                f"epoch)" if checkpoint is not None else "started")
        _say(f"[train] {what}: {len(data.index)} training pairs from {data.num_train_shots} "
             f"shots ({data.path} path, {len(data.index.blocks)} blocks), "
             f"{len(clips)} validation sequences from {len(val_shots)} shots, "
             f"{world} worker(s) on {device}, {torch.get_num_threads()} torch thread(s) each")
    before_step = _fault_hook(config.get("fault"), rank)
    import ray

    nodes = sorted(set(_gather(ray.get_runtime_context().get_node_id())))  # where the group runs
    progress = StepReporter(config.get(PROGRESS_KEY), rank)  # progress hook (workflows.progress)
    every = int(config.get("checkpoint_every_steps") or 0)
    delay_s = float(os.environ.get(STEP_DELAY_ENV, "0") or 0)  # test hook (node-loss window)
    while state.epoch < cfg.epochs:
        epoch = state.epoch
        length = epoch_length(data, cfg, epoch, world)

        def on_step(step: int, losses: dict[str, float], _length: int = length) -> None:
            tracker.on_step(step, losses)
            progress.step(step, loss=round(float(losses.get("loss", math.nan)), 4))  # progress hook
            time.sleep(delay_s)
            if rank == 0 and cfg.log_every_steps and step % cfg.log_every_steps == 0:
                # progress in the job's logs (a lost node's steps redone are counted from it)
                _say(f"[train] step {step} done (epoch {state.epoch}, {state.epoch_step}/{_length})")
            if every and state.epoch_step % every == 0 and state.epoch_step < _length:
                _report(state, {"epoch": state.epoch, "step": state.step}, rank, config)

        batches = epoch_batches(data, cfg, epoch, rank, world, skip=state.epoch_step,
                                cpus_per_task=float(config.get("stream_cpus_per_task", 0.5)))
        stats = training.run_epoch(state, batches, 0, on_step=on_step, before_step=before_step)
        state.epoch_step = 0
        state.epoch += 1
        parts = _gather((stats.samples, stats.seconds, stats.mean_losses))
        samples = sum(p[0] for p in parts)
        seconds = max(p[1] for p in parts)
        losses = {k: sum(p[2][k] for p in parts) / len(parts) for k in parts[0][2]}
        metrics: dict[str, Any] = {
            "epoch": state.epoch, "step": state.step, "start_epoch": start_epoch,
            "start_step": start_step,
            "samples_per_s": samples / seconds if seconds > 0 else 0.0,
            "samples_per_s_per_worker": samples / seconds / world if seconds > 0 else 0.0,
            "torch_threads": torch.get_num_threads(),
            **losses,
        }
        row = dict(metrics)
        metrics["nodes"] = nodes  # the Ray node ids of this worker group (the run's summary line)
        due = state.epoch % cfg.val.every_epochs == 0 or state.epoch == cfg.epochs
        if clips and due:
            val = _validate(state, clips, rank, world)
            metrics.update(val_psnr=val["psnr"], val_ssim=val["ssim"],
                           copyref_psnr=val["copyref_psnr"], copyref_ssim=val["copyref_ssim"])
            row.update({f"val/{k}": v for k, v in val.items()})
            if rank == 0:
                tracker.log_grid(training.sample_grid_for(state, clips, cfg.val.num_samples_in_grid),
                                 state.epoch)
                tracker.log_metrics(training.attention_metrics(state, clips), state.step)  # {} without CMFT
        if rank == 0:
            tracker.log_metrics({("epoch/" + k if not k.startswith("val/") else k): v
                                 for k, v in row.items()
                                 if k not in ("epoch", "step", "start_epoch", "start_step")},
                                state.step)
            _say("[train] " + training.format_epoch_line(row, cfg.epochs))
        progress.step(state.step, force=True, epoch=state.epoch,  # progress hook
                      **({"val_psnr": round(metrics["val_psnr"], 2)} if "val_psnr" in metrics else {}))
        # 4. Report (a barrier on every rank); rank 0 attaches the checkpoint.
        _report(state, metrics, rank, config)


def _report(state: training.TrainState, metrics: dict[str, Any], rank: int,
            config: dict[str, Any]) -> None:
    """``ray.train.report`` on every rank (a barrier); rank 0 attaches the checkpoint."""
    import ray.train

    name = f"epoch{state.epoch:04d}-step{state.step:07d}-{int(time.time())}"
    if rank == 0:
        with tempfile.TemporaryDirectory(prefix="ckpt-") as tmp:
            training.save_training_checkpoint(state, tmp, extra={"data_uri": config["data_uri"]})
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                             checkpoint_dir_name=name)
    else:
        ray.train.report(metrics, checkpoint=None, checkpoint_dir_name=name)
