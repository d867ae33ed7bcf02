"""Training data of a Ray Train worker (``workflows.train_worker``): two paths, the SAME batches.

* ``memory``: every worker loads the dataset's PNGs (``load_frames``) and indexes pairs
  (``WindowPairDataset``); a ``DataLoader`` draws the batches of :func:`epoch_schedule`.
* ``stream``: only the small columns are scanned (``scan_shots``); per pass, a Ray Data pipeline
  ``from_items(blocks of this rank).map_batches(read_block_pairs)`` reads the Parquet shards of
  one block of whole shots per task, decodes and augments its pairs in schedule order, and
  ``iter_torch_batches`` rebatches them (``preserve_order=True``). Worker memory: a few blocks,
  not the dataset. (Why not ``get_dataset_shard``: see ``workflows.train_worker``.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lcmftn import training
from lcmftn.data.dataset import (
    ShotFrames,
    ShotScan,
    WindowPairDataset,
    load_frames,
    read_block_pairs,
    scan_shots,
    split_shots,
)
from lcmftn.data.schedule import (
    DEFAULT_FRAMES_PER_BLOCK,
    PairIndex,
    RankSchedule,
    build_pair_index,
    epoch_schedule,
    frames_per_block_for,
)
from lcmftn.recipes import TrainConfig

DATA_PATHS = ("memory", "stream")


@dataclass
class TrainData:
    """A worker's training data: the pair index and where the frames come from.

    path: ``memory`` or ``stream``. pairs: the in-memory dataset (``memory``); scan: the
    metadata scan (``stream``). val_shots: the held-out shots (always in memory: small)."""

    path: str
    index: PairIndex
    val_shots: ShotFrames
    num_train_shots: int
    pairs: WindowPairDataset | None = None
    scan: ShotScan | None = None


def prepare_data(config: dict[str, Any], cfg: TrainConfig, world: int) -> TrainData:
    """Scan (``stream``) or load (``memory``) the dataset and index its training pairs."""
    uri, fs, path = config["data_uri"], config.get("data_fs"), config.get("data_path", "memory")
    if path not in DATA_PATHS:
        raise ValueError(f"data_path must be one of {DATA_PATHS}, got {path!r}")
    want = int(config.get("frames_per_block") or DEFAULT_FRAMES_PER_BLOCK)
    if path == "memory":
        shots = load_frames(uri, filesystem=fs)
        train, val = split_shots(shots, cfg.val.val_fraction, seed=cfg.seed)
        fpb = frames_per_block_for(train.num_frames, world, want)
        pairs = WindowPairDataset(train, cfg.window, cfg.image_size_px, augment=cfg.augment,
                                  seed=cfg.seed, frames_per_block=fpb)
        return TrainData(path, pairs.pair_index, val, len(train), pairs=pairs)
    scan = scan_shots(uri, filesystem=fs)
    train, val_meta = split_shots(scan.shots, cfg.val.val_fraction, seed=cfg.seed)
    index = build_pair_index(train, cfg.window, frames_per_block_for(train.num_frames, world, want))
    val = (load_frames(uri, filesystem=fs, shot_ids=[s.shot_id for s in val_meta]) if val_meta
           else ShotFrames([]))
    return TrainData(path, index, val, len(train), scan=scan)


def _block_items(data: TrainData, sched: RankSchedule) -> list[dict[str, str]]:
    """One Ray Data row per block: its shots, shards and ``(index, shot, p, n)`` rows (JSON)."""
    index, items = data.index, []
    for b, idx in sched.blocks:
        positions = index.blocks[b]
        local = {k: j for j, k in enumerate(positions)}
        ids = [index.shot_ids[k] for k in positions]
        rows = [[int(i), local[int(index.pairs[i, 0])], int(index.pairs[i, 1]),
                 int(index.pairs[i, 2])] for i in idx]
        shards = sorted({p for sid in ids for p in data.scan.shards_of[sid]})
        items.append({"block": json.dumps({"shot_ids": ids, "pairs": rows, "shards": shards})})
    return items


def read_blocks(batch: dict[str, Any], fs, image_size_px: int, augment: bool, seed: int,
                epoch: int) -> dict[str, Any]:
    """``map_batches`` body (one block per call): :func:`read_block_pairs` of the block."""
    cols: dict[str, list] = {}
    for text in batch["block"]:
        blk = json.loads(text)
        out = read_block_pairs(blk["shot_ids"], blk["pairs"], blk["shards"], fs, image_size_px,
                               augment, seed, epoch)
        for k, v in out.items():
            cols.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in cols.items()}


def _stream_pass(data: TrainData, cfg: TrainConfig, sched: RankSchedule, aug_epoch: int,
                 cpus_per_task: float):
    import ray.data

    # 5. Ray Data, per rank and pass: one task per block, results in schedule order.
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    items = _block_items(data, sched)
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.map_batches(read_blocks, batch_size=1, batch_format="numpy", num_cpus=cpus_per_task,
                        fn_kwargs={"fs": data.scan.fs, "image_size_px": cfg.image_size_px,
                                   "augment": cfg.augment, "seed": cfg.seed, "epoch": aug_epoch})
    n = 0
    for batch in ds.iter_torch_batches(batch_size=sched.batch_size, drop_last=True,
                                       prefetch_batches=1):
        if n >= sched.num_batches:
            break
        n += 1
        yield batch


def epoch_batches(data: TrainData, cfg: TrainConfig, epoch: int, rank: int, world: int,
                  skip: int = 0, cpus_per_task: float = 0.5):
    """This rank's batches of ``epoch`` (``skip``: batches already trained on), either path.

    Pass ``rep`` of the epoch uses the schedule and augmentation of ``epoch * 1000 + rep``."""
    B = cfg.batch_size_per_worker

    def sched(rep: int) -> RankSchedule:
        return epoch_schedule(data.index, cfg.seed, epoch * 1000 + rep, rank, world, B)

    def make_pass(rep: int, skip_in_pass: int):
        s = sched(rep).skip(skip_in_pass)
        if data.path == "stream":
            return _stream_pass(data, cfg, s, epoch * 1000 + rep, cpus_per_task)
        data.pairs.set_epoch(epoch * 1000 + rep)
        return torch.utils.data.DataLoader(data.pairs, batch_sampler=s.batches())

    return training.scheduled_batches(make_pass, lambda rep: sched(rep).num_batches,
                                      cfg.steps_per_epoch, skip)


def epoch_length(data: TrainData, cfg: TrainConfig, epoch: int, world: int) -> int:
    """Steps in ``epoch`` (the same on every rank)."""
    if cfg.steps_per_epoch:
        return cfg.steps_per_epoch
    return epoch_schedule(data.index, cfg.seed, epoch * 1000, 0, world,
                          cfg.batch_size_per_worker).num_batches
