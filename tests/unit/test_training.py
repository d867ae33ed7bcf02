"""The pure-PyTorch training core: the loss falls, checkpoints round-trip, a run resumes
exactly, the GAN systems step, and the per-epoch line reads well."""

from __future__ import annotations

import json

import pytest
import torch

from lcmftn import checkpoint as ckpt_io
from lcmftn import training
from lcmftn.data.dataset import WindowPairDataset, load_frames, split_shots
from lcmftn.evaluation import load_eval_clips
from lcmftn.models import registry
from lcmftn.recipes import apply_overrides, recipe
from tests.helpers.datasets import write_tiny_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = write_tiny_dataset(tmp_path_factory.mktemp("ds") / "data", shots_per_film=4,
                              frames_per_shot=24, size_px=32, seed=3)
    cfg = recipe("smoke")
    shots = load_frames(str(root))
    train, val = split_shots(shots, cfg.val.val_fraction, seed=cfg.seed)
    pairs = WindowPairDataset(train, cfg.window, cfg.image_size_px, seed=cfg.seed)
    clips = load_eval_clips(val, cfg.val.strides_frames, cfg.image_size_px, cfg.val.seed,
                            cfg.val.max_sequences_per_stride)
    return cfg, pairs, clips


def _fast(cfg, *extra):
    # No VGG: keeps the unit tests to seconds; the VGG path runs in the integration tests.
    return apply_overrides(cfg, ["loss.lambda_vgg=0", "loss.vgg_weights=none", *extra])


def test_loss_falls_when_fitting_a_fixed_batch(tiny):
    cfg, pairs, _ = tiny
    cfg = _fast(cfg, "optim.lr=1e-3")
    state = training.build_train_state(cfg, "cpu")
    batch = next(iter(torch.utils.data.DataLoader(pairs, batch_size=4)))
    losses = [training.train_step(state, batch)["loss"] for _ in range(40)]
    assert all(map(lambda v: v == v, losses)), "NaN loss"
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.75 * first, f"loss did not fall: {first:.3f} -> {last:.3f}"
    assert state.step == 40


def test_single_process_run_writes_a_loadable_checkpoint(tiny, tmp_path):
    cfg, pairs, clips = tiny
    cfg = _fast(cfg)
    rows = []
    summary = training.train_single_process(cfg, pairs, clips, device="cpu",
                                            checkpoint_dir=tmp_path / "ck", on_epoch=rows.append)
    assert summary.epochs == cfg.epochs and summary.steps == cfg.epochs * cfg.steps_per_epoch
    assert [r["epoch"] for r in rows] == list(range(1, cfg.epochs + 1))
    assert "val/psnr" in rows[-1] and "val/copyref_psnr" in rows[-1]
    model, meta = ckpt_io.load_checkpoint(tmp_path / "ck" / training.MODEL_SUBDIR)
    assert meta["system"] == cfg.system and meta["extra"]["epoch"] == cfg.epochs
    assert json.loads((tmp_path / "ck" / "progress.json").read_text())["step"] == summary.steps
    # the saved generator predicts exactly what the trained one does
    batch = next(iter(torch.utils.data.DataLoader(pairs, batch_size=2)))
    state = training.build_train_state(cfg, "cpu")
    training.load_training_checkpoint(state, tmp_path / "ck")
    model.eval()
    with torch.no_grad():
        expected = model(batch["s_p"], batch["c_p"], batch["s_n"]).clamp(0, 1)
    torch.testing.assert_close(training.predict(state, batch), expected)


def test_resumed_run_equals_an_uninterrupted_one(tiny, tmp_path):
    cfg, pairs, _ = tiny
    cfg = _fast(cfg, "epochs=2")
    straight = training.build_train_state(cfg, "cpu")
    for epoch in range(2):
        training.run_epoch(straight, training._loader(pairs, cfg, epoch), cfg.steps_per_epoch)
        straight.epoch += 1
    one = _fast(cfg, "epochs=1")
    training.train_single_process(one, pairs, None, device="cpu", checkpoint_dir=tmp_path)
    summary = training.train_single_process(cfg, pairs, None, device="cpu",
                                            checkpoint_dir=tmp_path)
    assert [r["epoch"] for r in summary.history] == [2], "the resumed run redid epoch 1"
    resumed = training.build_train_state(cfg, "cpu")
    training.load_training_checkpoint(resumed, tmp_path)
    assert resumed.step == straight.step == 2 * cfg.steps_per_epoch
    for (name, a), (_, b) in zip(straight.generator.state_dict().items(),
                                 resumed.generator.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, msg=f"{name} differs after resume")


@pytest.mark.parametrize("system", ["tcvc", "pix2pix-ref", "lcmftn-nocmft"])
def test_other_systems_take_steps(tiny, tmp_path, system):
    cfg, pairs, _ = tiny
    cfg = _fast(cfg, f"system={system}", "loss.lambda_style=0", "loss.lambda_content=0")
    state = training.build_train_state(cfg, "cpu")
    batch = next(iter(torch.utils.data.DataLoader(pairs, batch_size=2)))
    out = training.train_step(state, batch)
    assert out["loss"] == out["loss"]
    if system in registry.GAN_SYSTEMS:
        assert "loss_d" in out and state.discriminator is not None
    training.save_training_checkpoint(state, tmp_path)
    again = training.build_train_state(cfg, "cpu")
    training.load_training_checkpoint(again, tmp_path)
    assert again.step == 1


def test_half_written_checkpoint_is_refused_not_mixed(tiny, tmp_path):
    # A save cut off between model/ and train_state.pt: weights of step 2, optimiser of step 1.
    import shutil

    cfg, pairs, _ = tiny
    state = training.build_train_state(_fast(cfg), "cpu")
    batch = next(iter(torch.utils.data.DataLoader(pairs, batch_size=2)))
    training.train_step(state, batch)
    training.save_training_checkpoint(state, tmp_path / "c")
    shutil.copy(tmp_path / "c" / training.TRAIN_STATE_FILE, tmp_path / "old.pt")
    training.train_step(state, batch)
    training.save_training_checkpoint(state, tmp_path / "c")
    assert json.loads((tmp_path / "c" / "progress.json").read_text())["step"] == 2
    shutil.copy(tmp_path / "old.pt", tmp_path / "c" / training.TRAIN_STATE_FILE)
    fresh = training.build_train_state(_fast(cfg), "cpu")
    with pytest.raises(ckpt_io.CheckpointError, match="model/ is from step 2 but train_state.pt from step 1"):
        training.load_training_checkpoint(fresh, tmp_path / "c")


def test_epoch_batches_repeats_short_passes_and_rejects_empty_data():
    data = [[1], [2], [3]]
    assert list(training.epoch_batches(lambda rep: data, 7)) == (data * 3)[:7]
    assert list(training.epoch_batches(lambda rep: data, 0)) == data
    with pytest.raises(ValueError, match="no batch"):
        list(training.epoch_batches(lambda rep: [], 5))


def test_format_epoch_line():
    line = training.format_epoch_line({"epoch": 3, "step": 150, "loss": 0.42, "val/psnr": 24.3,
                                       "val/ssim": 0.9, "val/copyref_psnr": 19.8,
                                       "samples_per_s": 41.2}, 12)
    assert line == ("epoch 3/12 step 150 loss 0.4200 val PSNR 24.30 SSIM 0.900 "
                    "(copy-ref 19.80) 41.2 samples/s")


def test_driver_checks_count_what_the_workers_will_sample(tmp_path):
    from workflows import train

    root = write_tiny_dataset(tmp_path / "d", films=2, shots_per_film=3, frames_per_shot=24,
                              size_px=32, seed=9)
    spec = train.plan(["--data", str(root), "--recipe", "smoke", "--workers", "2",
                       "--storage", str(tmp_path / "runs"), "--set", "window.width_frames=6"])
    shots = load_frames(str(root))
    tr, va = split_shots(shots, spec.cfg.val.val_fraction, seed=spec.cfg.seed)
    pairs = WindowPairDataset(tr, spec.cfg.window, spec.cfg.image_size_px)
    shard_bytes = sum(p.stat().st_size for p in root.rglob("*.parquet"))
    assert spec.counts == {"shots": 6, "train_shots": len(tr), "val_shots": len(va),
                           "train_pairs": len(pairs), "frames": 144, "data_bytes": shard_bytes}
    assert spec.data_path == "memory"  # 45 KB, far under the default budget
    assert spec.cpus_per_worker == 0.5 and spec.register_as == "lcmftn"
    assert spec.run_name.startswith("lcmftn-smoke-")
    params = train.run_params(spec)
    assert params["data.version"] == "test-v1" and params["window.width_frames"] == 6
    assert params["vgg_source"].startswith("random init") and "git_commit" in params


def test_driver_refuses_a_corrupt_manifest_naming_it(tmp_path):
    from workflows import train

    root = write_tiny_dataset(tmp_path / "d", films=1, shots_per_film=3, frames_per_shot=12,
                              size_px=32, seed=3)
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(train.BadInput, match=r"manifest\.json: not valid JSON"):
        train.plan(["--data", str(root), "--recipe", "smoke", "--storage", str(tmp_path / "r")])
