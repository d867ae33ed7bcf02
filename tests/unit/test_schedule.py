"""The per-epoch pair schedule shared by the in-memory and streamed training paths, the block
reader of the streamed path, and exact mid-epoch resume (pure: no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lcmftn import training
from lcmftn.data.dataset import (
    WindowPairDataset,
    load_frames,
    read_block_pairs,
    scan_shots,
    split_shots,
)
from lcmftn.data.pairs import WindowConfig
from lcmftn.data.schedule import build_pair_index, epoch_schedule, frames_per_block_for
from lcmftn.recipes import recipe
from lcmftn.train_plan import BadInput, choose_data_path
from tests.helpers.datasets import write_tiny_dataset

WINDOW = WindowConfig(width_frames=6, stride_frames=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("d") / "ds", films=2, shots_per_film=4,
                              frames_per_shot=20, size_px=32, seed=3)


def test_schedule_covers_every_pair_once_balanced_and_seeded(tiny):
    shots = scan_shots(str(tiny)).shots
    index = build_pair_index(shots, WINDOW, frames_per_block=30)
    assert len(index.blocks) >= 4 and len(index) > 40
    # blocks are runs of consecutive whole shots; a pair is read in its shot's block
    for b, members in enumerate(index.blocks):
        assert list(members) == list(range(members[0], members[-1] + 1))
        assert set(index.pairs[index.block_of_pair == b, 0].tolist()) <= set(members)
    world, bs = 2, 3
    scheds = [epoch_schedule(index, 7, 5, r, world, bs) for r in range(world)]
    assert scheds[0].num_batches == scheds[1].num_batches > 0
    seen = [i for s in scheds for i in s.pair_indices()]
    assert len(seen) == len(set(seen)) == world * bs * scheds[0].num_batches
    assert len(index) - len(seen) < world * bs + max(map(len, index.blocks)) * 20  # tail only
    again = epoch_schedule(index, 7, 5, 1, world, bs)
    assert again == scheds[1]
    assert epoch_schedule(index, 7, 6, 1, world, bs).pair_indices() != scheds[1].pair_indices()
    assert epoch_schedule(index, 8, 5, 1, world, bs).pair_indices() != scheds[1].pair_indices()


def test_skip_drops_exactly_the_first_batches(tiny):
    index = build_pair_index(scan_shots(str(tiny)).shots, WINDOW, frames_per_block=30)
    s = epoch_schedule(index, 0, 0, 0, 1, 4)
    for k in (0, 1, 3, s.num_batches):
        assert s.skip(k).batches() == s.batches()[k:]
        assert s.skip(k).num_batches == s.num_batches - k
    assert frames_per_block_for(1000, 2, 256) == 125 and frames_per_block_for(10, 8, 256) == 1


def test_scan_matches_load_and_block_reader_matches_dataset(tiny):
    """The streamed path's per-block reader gives the in-memory dataset's tensors, bit for bit."""
    scan = scan_shots(str(tiny))
    loaded = load_frames(str(tiny))
    assert [s.shot_id for s in scan.shots] == [s.shot_id for s in loaded]
    assert all(np.array_equal(a.holds, b.holds) and np.array_equal(a.frames, b.frames)
               for a, b in zip(scan.shots, loaded, strict=True))
    assert scan.shard_bytes == sum(p.stat().st_size for p in tiny.rglob("*.parquet"))
    train_meta, _ = split_shots(scan.shots, 0.25, seed=1)
    train, _ = split_shots(loaded, 0.25, seed=1)
    ds = WindowPairDataset(train, WINDOW, 24, augment=True, seed=5, frames_per_block=30)
    index = build_pair_index(train_meta, WINDOW, 30)
    assert np.array_equal(index.pairs, ds.pair_index.pairs) and index.blocks == ds.pair_index.blocks
    ds.set_epoch(2003)
    for b in (0, len(index.blocks) - 1):
        members = index.blocks[b]
        local = {k: j for j, k in enumerate(members)}
        picked = np.flatnonzero(index.block_of_pair == b)[::-1]  # any order, kept
        rows = [(int(i), local[int(index.pairs[i, 0])], *map(int, index.pairs[i, 1:]))
                for i in picked]
        shards = sorted({p for k in members for p in scan.shards_of[index.shot_ids[k]]})
        out = read_block_pairs([index.shot_ids[k] for k in members], rows, shards, scan.fs, 24,
                               True, 5, 2003)
        assert out["index"].tolist() == picked.tolist()
        for j, i in enumerate(picked.tolist()):
            item = ds[i]
            for key in ("s_p", "c_p", "s_n", "c_n"):
                assert np.array_equal(out[key][j], item[key].numpy()), (i, key)


def test_block_reader_names_the_shards_when_a_shot_is_missing(tiny):
    scan = scan_shots(str(tiny))
    shard = scan.shards_of[scan.shots[0].shot_id]
    with pytest.raises(OSError, match="no rows for shot"):
        read_block_pairs(["nofilm/0000"], [(0, 0, 0, 1)], shard, scan.fs, 24, False, 0, 0)


def test_scheduled_batches_resume_across_passes():
    lengths = {0: 3, 1: 2, 2: 4}

    def make_pass(rep, skip):
        return [(rep, k) for k in range(lengths[rep])][skip:]

    full = list(training.scheduled_batches(make_pass, lengths.get, steps=7))
    assert full == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0), (2, 1)]
    for skip in range(7):
        assert list(training.scheduled_batches(make_pass, lengths.get, 7, skip)) == full[skip:]
    assert list(training.scheduled_batches(make_pass, lengths.get, 0, 1)) == full[1:3]
    with pytest.raises(ValueError, match="no batch"):
        list(training.scheduled_batches(make_pass, lambda r: 0, 5))


def test_choose_data_path():
    assert choose_data_path("auto", 3 * 2**20, 2) == "stream"
    assert choose_data_path("auto", 2 * 2**20, 2) == "memory"
    assert choose_data_path("memory", 10**12, 1) == "memory"
    with pytest.raises(BadInput, match="--data-path"):
        choose_data_path("disk", 0, 1)
    with pytest.raises(BadInput, match="budget"):
        choose_data_path("auto", 0, 0)


def _tiny_cfg():
    from dataclasses import replace

    cfg = recipe("smoke")
    return replace(cfg, epochs=2, steps_per_epoch=4, window=WINDOW,
                   loss=replace(cfg.loss, lambda_vgg=0.0, vgg_weights="none"))


def test_mid_epoch_resume_replays_the_uninterrupted_run(tiny, tmp_path):
    """Memory path (the stream path's batches are the same; tests/integration checks it):
    checkpoint after 1 epoch + 2 steps, rebuild everything, resume -> identical losses/weights."""
    from workflows import train_worker as tw

    cfg = _tiny_cfg()
    config = {"data_uri": str(tiny), "data_path": "memory", "frames_per_block": 30}
    data = tw.prepare_data(config, cfg, world=1)

    def run(state, stop_at=None):
        losses = []
        while state.epoch < cfg.epochs:
            batches = tw.epoch_batches(data, cfg, state.epoch, 0, 1, skip=state.epoch_step)
            for batch in batches:
                losses.append(training.train_step(state, batch)["loss"])
                state.epoch_step += 1
                if stop_at is not None and (state.epoch, state.epoch_step) == stop_at:
                    return losses
            state.epoch, state.epoch_step = state.epoch + 1, 0
        return losses

    full_state = training.build_train_state(cfg)
    full = run(full_state)
    assert len(full) == cfg.epochs * cfg.steps_per_epoch
    first = training.build_train_state(cfg)
    part1 = run(first, stop_at=(1, 2))
    training.save_training_checkpoint(first, tmp_path / "ck")
    resumed = training.build_train_state(cfg)
    torch.manual_seed(1234)  # the resumed process's RNGs must not matter
    training.load_training_checkpoint(resumed, tmp_path / "ck")
    assert (resumed.epoch, resumed.epoch_step) == (1, 2)
    part2 = run(resumed)
    assert part1 + part2 == full
    for a, b in zip(full_state.bare_generator.parameters(), resumed.bare_generator.parameters(),
                    strict=True):
        assert torch.equal(a, b)


def test_budget_switch_on_the_command_line(tiny, tmp_path):
    from workflows import train

    base = ["--data", str(tiny), "--recipe", "smoke", "--storage", str(tmp_path / "runs"),
            "--set", "window.width_frames=6"]
    assert train.plan(base).data_path == "memory"  # ~60 KB of shards, budget 2048 MiB
    spec = train.plan([*base, "--data-memory-budget-mb", "0.01", "--checkpoint-every-steps", "2"])
    assert spec.data_path == "stream" and spec.counts["data_bytes"] > 0.01 * 2**20
    config = train.loop_config(spec, None, None)
    assert (config["data_path"], config["checkpoint_every_steps"]) == ("stream", 2)
    assert train.run_params(spec)["data.path"] == "stream"
    assert train.plan([*base, "--data-path", "stream"]).data_path == "stream"
    with pytest.raises(BadInput, match="frames-per-block"):
        train.plan([*base, "--frames-per-block", "-1"])
