"""Ray Data readers of an ingested shot dataset (for Ray Train); the plain PyTorch reader is
``lcmftn.data.dataset`` (``load_frames`` + ``WindowPairDataset``).

    ds = read_frames_dataset("s3://studio/datasets/v1")            # one row per frame
    pairs = read_pair_dataset("s3://studio/datasets/v1", WindowConfig(40, 5), image_size_px=256)
    # in a TorchTrainer: datasets={"train": pairs}; per worker:
    #   ray.train.get_dataset_shard("train").iter_torch_batches(batch_size=2)

Design decisions:

* Only COMMITTED shards are read: the manifest's list for ``status == "ok"`` films (the same
  rule as ``lcmftn.data.dataset.shard_paths``), so a half-ingested film is never seen.
* Pairs are sampled at read time from each shot's frames (``groupby("shot_id").map_groups``)
  with ``lcmftn.data.pairs.sample_window_pairs``, so window width/stride are reading settings:
  Tune can sweep them without re-ingesting (DESIGN §2).
* Pair rows carry float32 arrays in the project convention (``s_p``/``s_n`` ``[1,H,W]``,
  ``c_p``/``c_n`` ``[3,H,W]`` in [0,1]); crop/flip augmentation is seeded by
  ``(seed, epoch, shot_id, pair index)`` — build the dataset per epoch with ``epoch=e`` to vary it.
* The S3 filesystem is built on the driver from its AWS_* variables and handed to Ray.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from lcmftn.data.dataset import (
    FRAME_SCHEMA,
    decode_color_png,
    decode_lineart_png,
    pair_sample,
    shard_paths,
)
from lcmftn.data.dataset_format import CorruptFrameError, verify_frames
from lcmftn.data.pairs import WindowConfig, sample_window_pairs

PAIR_COLUMNS = ("s_p", "c_p", "s_n", "c_n")


def read_frames_dataset(uri: str, films: Sequence[str] | None = None):
    """``ray.data.Dataset`` of the committed frames (FRAME_SCHEMA columns, one row per frame)."""
    import ray  # 1. Ray only in workflows/

    fs, paths, _ = shard_paths(uri)
    if not paths:
        raise FileNotFoundError(f"{uri}: the manifest lists no committed film")
    # include_paths: every row names its shard, so a corrupt frame is reported with it
    ds = ray.data.read_parquet(paths, filesystem=fs, schema=FRAME_SCHEMA, include_paths=True)
    if films is not None:
        keep = set(films)
        ds = ds.filter(lambda row: row["film"] in keep)
    return ds


def where(batch: dict, i: int) -> dict:
    """Row ``i``'s location (film, shot, frame, shard) for error messages."""
    return {"film": str(batch["film"][i]), "shot": int(batch["shot"][i]),
            "frame": int(batch["frame"][i]),
            "shard": str(batch["path"][i]) if "path" in batch else None}


def shot_pairs(batch: dict, window: dict, image_size_px: int, augment: bool, seed: int, epoch: int) -> dict:
    """``map_groups`` body: all frames of ONE shot -> its window pairs as float32 arrays.

    Every PNG's checksum is verified first: a mismatch raises ``CorruptFrameError`` naming
    film, shot, frame and shard (never a pair trained from corrupt bytes)."""
    bad = verify_frames(batch)
    if bad:
        raise CorruptFrameError(bad)
    order = np.argsort(batch["frame"], kind="stable")
    holds = np.asarray(batch["hold"], dtype=bool)[order]
    holds[0] = False
    color = [batch["color_png"][i] for i in order]
    line = [batch["lineart_png"][i] for i in order]
    shot_id = str(batch["shot_id"][0])
    out: dict[str, list] = {k: [] for k in (*PAIR_COLUMNS, "shot_id", "frame_p", "frame_n")}
    for k, (p, n) in enumerate(sample_window_pairs(len(order), WindowConfig(**window), holds=holds)):
        rng = np.random.default_rng([seed, epoch, zlib.crc32(shot_id.encode()), k]) if augment else None
        wp, wn = where(batch, order[p]), where(batch, order[n])
        item = pair_sample(decode_lineart_png(line[p], wp), decode_color_png(color[p], wp),
                           decode_lineart_png(line[n], wn), decode_color_png(color[n], wn),
                           image_size_px, augment, rng)  # fmt: skip
        for c in PAIR_COLUMNS:
            out[c].append(item[c].numpy())
        out["shot_id"].append(shot_id)
        out["frame_p"].append(int(batch["frame"][order[p]]))
        out["frame_n"].append(int(batch["frame"][order[n]]))
    if not out["shot_id"]:
        empty = np.zeros((0, 1, image_size_px, image_size_px), np.float32)
        color0 = np.zeros((0, 3, image_size_px, image_size_px), np.float32)
        return {"s_p": empty, "c_p": color0, "s_n": empty, "c_n": color0,
                "shot_id": np.array([], dtype=object), "frame_p": np.zeros(0, np.int64),
                "frame_n": np.zeros(0, np.int64)}  # fmt: skip
    return {k: np.stack(v) if k in PAIR_COLUMNS else np.asarray(v) for k, v in out.items()}


def read_pair_dataset(
    uri: str,
    window: WindowConfig | None = None,
    image_size_px: int = 256,
    augment: bool = True,
    seed: int = 0,
    epoch: int = 0,
    films: Sequence[str] | None = None,
):
    """``ray.data.Dataset`` of window pairs: columns ``s_p, c_p, s_n, c_n`` (float32 arrays),
    ``shot_id, frame_p, frame_n``. Unchanged pairs (holds) are skipped per ``window``."""
    from dataclasses import asdict

    window = window or WindowConfig()
    ds = read_frames_dataset(uri, films)
    # 2. one group per shot: pairs never cross a cut
    return ds.groupby("shot_id").map_groups(
        shot_pairs, batch_format="numpy",
        fn_kwargs={"window": asdict(window), "image_size_px": int(image_size_px),
                   "augment": bool(augment), "seed": int(seed), "epoch": int(epoch)},
    )  # fmt: skip
