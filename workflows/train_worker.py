"""The Ray Train worker loop of ``workflows.train``: thin glue over ``lcmftn.training``.

Every rank runs :func:`train_loop_per_worker`; the numbered comments mark the Ray touchpoints.
Only rank 0 talks to MLflow (:class:`RankZeroTracker`); every rank calls ``ray.train.report``
once per epoch (it is a barrier), rank 0 with the checkpoint.
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
from lcmftn.data.dataset import WindowPairDataset, load_frames, split_shots
from lcmftn.evaluation import EvalTotals, load_eval_clips
from lcmftn.recipes import TrainConfig, config_from_dict
from workflows.progress import PROGRESS_KEY, StepReporter


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


def _make_loader(ds: WindowPairDataset, cfg: TrainConfig, epoch: int, rank: int, world: int):
    def make(rep: int):
        # A fresh, deterministic shuffle per (epoch, repetition), disjoint across ranks.
        ds.set_epoch(epoch * 1000 + rep)
        sampler = torch.utils.data.DistributedSampler(ds, num_replicas=world, rank=rank,
                                                      shuffle=True, seed=cfg.seed, drop_last=True)
        sampler.set_epoch(epoch * 1000 + rep)
        return torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size_per_worker,
                                           sampler=sampler, drop_last=True)

    return training.epoch_batches(make, cfg.steps_per_epoch)


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

    shots = load_frames(config["data_uri"], filesystem=config.get("data_fs"))
    train_shots, val_shots = split_shots(shots, cfg.val.val_fraction, seed=cfg.seed)
    pairs = WindowPairDataset(train_shots, cfg.window, cfg.image_size_px, augment=cfg.augment,
                              seed=cfg.seed)
    if len(pairs) // world < cfg.batch_size_per_worker:
        raise ValueError(f"{config['data_uri']}: {len(pairs)} training pairs for {world} "
                         f"worker(s) x batch {cfg.batch_size_per_worker}")
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
    start_epoch = state.epoch
    tracker = RankZeroTracker(config, rank)
    tracker.every = cfg.log_every_steps
    if rank == 0:
        what = f"resumed at epoch {start_epoch}" if checkpoint is not None else "started"
        _say(f"[train] {what}: {len(pairs)} training pairs from {len(train_shots)} shots, "
             f"{len(clips)} validation sequences from {len(val_shots)} shots, "
             f"{world} worker(s) on {device}, {torch.get_num_threads()} torch thread(s) each")
    before_step = _fault_hook(config.get("fault"), rank)
    progress = StepReporter(config.get(PROGRESS_KEY), rank)  # progress hook (workflows.progress)

    def on_step(step: int, losses: dict[str, float]) -> None:
        tracker.on_step(step, losses)
        progress.step(step, loss=round(float(losses.get("loss", math.nan)), 4))  # progress hook

    while state.epoch < cfg.epochs:
        epoch = state.epoch
        stats = training.run_epoch(state, _make_loader(pairs, cfg, epoch, rank, world),
                                   cfg.steps_per_epoch, on_step=on_step,
                                   before_step=before_step)
        state.epoch += 1
        parts = _gather((stats.samples, stats.seconds, stats.mean_losses))
        samples = sum(p[0] for p in parts)
        seconds = max(p[1] for p in parts)
        losses = {k: sum(p[2][k] for p in parts) / len(parts) for k in parts[0][2]}
        metrics: dict[str, Any] = {
            "epoch": state.epoch, "step": state.step, "start_epoch": start_epoch,
            "samples_per_s": samples / seconds if seconds > 0 else 0.0,
            "samples_per_s_per_worker": samples / seconds / world if seconds > 0 else 0.0,
            "torch_threads": torch.get_num_threads(),
            **losses,
        }
        row = dict(metrics)
        due = state.epoch % cfg.val.every_epochs == 0 or state.epoch == cfg.epochs
        if clips and due:
            val = _validate(state, clips, rank, world)
            metrics.update(val_psnr=val["psnr"], val_ssim=val["ssim"],
                           copyref_psnr=val["copyref_psnr"], copyref_ssim=val["copyref_ssim"])
            row.update({f"val/{k}": v for k, v in val.items()})
            if rank == 0:
                tracker.log_grid(training.sample_grid_for(state, clips, cfg.val.num_samples_in_grid),
                                 state.epoch)
        if rank == 0:
            tracker.log_metrics({("epoch/" + k if not k.startswith("val/") else k): v
                                 for k, v in row.items()
                                 if k not in ("epoch", "step", "start_epoch")}, state.step)
            _say("[train] " + training.format_epoch_line(row, cfg.epochs))
        progress.step(state.step, force=True, epoch=state.epoch,  # progress hook
                      **({"val_psnr": round(metrics["val_psnr"], 2)} if "val_psnr" in metrics else {}))
        # 4. Report (a barrier on every rank); rank 0 attaches the checkpoint.
        name = f"epoch{state.epoch:04d}-step{state.step:07d}-{int(time.time())}"
        if rank == 0:
            with tempfile.TemporaryDirectory(prefix="ckpt-") as tmp:
                training.save_training_checkpoint(state, tmp, extra={"data_uri": config["data_uri"]})
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                                 checkpoint_dir_name=name)
        else:
            ray.train.report(metrics, checkpoint=None, checkpoint_dir_name=name)
