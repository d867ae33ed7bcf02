"""The order in which one rank sees the training pairs of an epoch, from metadata only (paper §4.1
pairs; DESIGN §2). Shared by the in-memory and the streamed (Ray Data) training paths, so both
give the SAME batches for a given ``(seed, epoch, rank, world)``, and a resumed run can skip the
batches it already trained on without reading them.

Design decisions:

* The pair index: every window pair ``(shot, p, n)`` of the training shots, shots sorted by
  ``(film, shot)``, pairs in :func:`lcmftn.data.pairs.sample_window_pairs` order. A pair's
  position in this list is its global index ``i``; augmentation is seeded by ``(seed, epoch, i)``
  on both paths, so the same pair gives the same tensors.
* Blocks: consecutive shots (never split) grouped until a block holds ``frames_per_block``
  frames. A block is the unit of reading in the streamed path: a worker never holds more than a
  few blocks' frames, however big the dataset.
* The epoch order (a "shard shuffle + local shuffle", as in WebDataset): blocks in a seeded
  permutation, dealt greedily to the rank with the fewest pairs so far (balanced), the pairs of
  each block in a seeded permutation. Every rank is cut to the same number of whole batches
  (DDP needs equal step counts). Seeded by ``(seed, epoch)`` only: the same on every rank and
  in every rerun, independent of timing. The price: a batch mixes pairs of one or two blocks,
  not of the whole dataset; ``frames_per_block`` trades memory for mixing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lcmftn.data.pairs import WindowConfig, sample_window_pairs

DEFAULT_FRAMES_PER_BLOCK = 256


@dataclass(frozen=True)
class PairIndex:
    """Every training pair of a dataset and the blocks of shots they are read in.

    shot_ids: training shots, sorted by ``(film, shot)``.
    pairs: int64 ``[P, 3]`` rows ``(shot position, p, n)``; the row number is the global index.
    blocks: per block, the positions of its (consecutive) shots.
    block_of_pair: int64 ``[P]``, the block each pair is read in.
    """

    shot_ids: tuple[str, ...]
    pairs: np.ndarray
    blocks: tuple[tuple[int, ...], ...]
    block_of_pair: np.ndarray

    def __len__(self) -> int:
        return len(self.pairs)


def build_pair_index(shots: Sequence, window: WindowConfig,
                     frames_per_block: int = DEFAULT_FRAMES_PER_BLOCK) -> PairIndex:
    """The :class:`PairIndex` of ``shots`` (``ShotClip``-like: ``shot_id``, ``holds``, ``len``)
    in the given order (callers pass them sorted, as ``ShotFrames`` keeps them)."""
    if frames_per_block < 1:
        raise ValueError(f"frames_per_block must be >= 1, got {frames_per_block}")
    rows: list[tuple[int, int, int]] = []
    blocks: list[tuple[int, ...]] = []
    block_of: list[int] = []
    current: list[int] = []
    frames_in_block = 0
    for k, shot in enumerate(shots):
        pairs = sample_window_pairs(len(shot), window, holds=shot.holds)
        if not pairs:
            continue  # nothing to read for this shot
        current.append(k)
        frames_in_block += len(shot)
        rows += [(k, int(p), int(n)) for p, n in pairs]
        block_of += [len(blocks)] * len(pairs)
        if frames_in_block >= frames_per_block:
            blocks.append(tuple(current))
            current, frames_in_block = [], 0
    if current:
        blocks.append(tuple(current))
    return PairIndex(tuple(s.shot_id for s in shots), np.asarray(rows, np.int64).reshape(-1, 3),
                     tuple(blocks), np.asarray(block_of, np.int64))


def frames_per_block_for(total_frames: int, world: int, frames_per_block: int,
                         min_blocks_per_rank: int = 4) -> int:
    """``frames_per_block``, lowered so that every rank gets ``min_blocks_per_rank`` blocks."""
    return max(1, min(frames_per_block, total_frames // max(1, world * min_blocks_per_rank)))


@dataclass(frozen=True)
class RankSchedule:
    """One rank's pairs for one pass: ``blocks[j] = (block id, global pair indices in order)``.

    ``num_batches`` whole batches of ``batch_size``; the same count on every rank."""

    blocks: tuple[tuple[int, tuple[int, ...]], ...]
    num_batches: int
    batch_size: int

    def pair_indices(self) -> list[int]:
        return [i for _, idx in self.blocks for i in idx]

    def batches(self) -> list[list[int]]:
        flat = self.pair_indices()
        b = self.batch_size
        return [flat[k * b:(k + 1) * b] for k in range(len(flat) // b)]

    def skip(self, num_batches: int) -> RankSchedule:
        """The schedule without its first ``num_batches`` batches (a resumed run's remainder)."""
        drop = num_batches * self.batch_size
        out = []
        for block, idx in self.blocks:
            if drop >= len(idx):
                drop -= len(idx)
                continue
            out.append((block, idx[drop:]))
            drop = 0
        return RankSchedule(tuple(out), max(0, self.num_batches - num_batches), self.batch_size)


def epoch_schedule(index: PairIndex, seed: int, epoch: int, rank: int, world: int,
                   batch_size: int) -> RankSchedule:
    """Rank ``rank``'s pairs for pass ``epoch`` (see the module docstring for the order)."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside world of {world}")
    rng = np.random.default_rng([seed, epoch, 0x5EED])
    order = rng.permutation(len(index.blocks))
    # block_of_pair is non-decreasing (blocks are runs of consecutive shots)
    bounds = np.searchsorted(index.block_of_pair, np.arange(len(index.blocks) + 1))
    members = [np.arange(bounds[b], bounds[b + 1]) for b in range(len(index.blocks))]
    shuffled = [m[rng.permutation(len(m))] for m in members]  # drawn in block-id order
    loads = [0] * world
    mine: list[tuple[int, tuple[int, ...]]] = []
    for b in order.tolist():
        r = min(range(world), key=lambda j: (loads[j], j))
        loads[r] += len(shuffled[b])
        if r == rank:
            mine.append((b, tuple(int(i) for i in shuffled[b])))
    num_batches = min(loads) // batch_size
    keep = num_batches * batch_size
    cut = []
    for b, idx in mine:
        if keep <= 0:
            break
        cut.append((b, idx[:keep]))
        keep -= len(cut[-1][1])
    return RankSchedule(tuple(cut), num_batches, batch_size)
