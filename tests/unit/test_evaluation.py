"""The paper protocol (DESIGN §6): which sequences, per-position totals that add across
workers, the copy-reference baseline, and the sample grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lcmftn.data.dataset import eval_sequences, load_frames
from lcmftn.evaluation import (
    EvalTotals,
    evaluate_sequences,
    format_table,
    load_eval_clips,
    sample_grid,
)
from tests.helpers.datasets import write_tiny_dataset


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    root = write_tiny_dataset(tmp_path_factory.mktemp("ev") / "d", shots_per_film=3,
                              frames_per_shot=48, size_px=32, seed=2, hold_every=2)
    return load_frames(str(root))


def test_clips_follow_the_dataset_sequence_rule(shots):
    clips = load_eval_clips(shots, (1, 5, 10), 32, seed=7)
    expected = eval_sequences(shots, (1, 5, 10), 5, seed=7)
    assert [(c.shot_id, c.stride, c.frames) for c in clips] == \
        [(e.shot_id, e.stride, e.frames) for e in expected]
    for c in clips:
        assert c.color.shape == (5, 3, 32, 32) and c.lineart.shape == (5, 1, 32, 32)
        assert np.all(np.diff(c.frames) == c.stride)
        # a target equal to the reference would have been dropped
        for k in range(1, 5):
            assert not torch.equal(c.lineart[k], c.lineart[0])


def test_cap_per_stride(shots):
    clips = load_eval_clips(shots, (1, 5), 32, seed=7, max_sequences_per_stride=1)
    assert sorted(c.stride for c in clips) == [1, 5]


def copy_ref(s_p, c_p, s_n):
    return c_p.clone()


def test_copy_reference_scores_exactly_the_baseline_and_totals_add(shots):
    clips = load_eval_clips(shots, (1, 5), 32, seed=3)
    assert len(clips) >= 4
    whole = evaluate_sequences(copy_ref, clips, batch_size=3).metrics()
    assert whole["psnr"] == pytest.approx(whole["copyref_psnr"])
    assert whole["ssim"] == pytest.approx(whole["copyref_ssim"])
    assert {"psnr/s1_k1", "psnr/s5_k4", "ssim/s5_k2"} <= set(whole)
    # two "workers" each scoring half give the same totals as one scoring all
    a = evaluate_sequences(copy_ref, clips[0::2])
    b = evaluate_sequences(copy_ref, clips[1::2])
    merged = a.add(b).metrics()
    for k, v in whole.items():
        assert merged[k] == pytest.approx(v), k
    assert "| 1 |" in format_table(whole) and "| 5 |" in format_table(whole)


def test_perfect_prediction_beats_copy_reference():
    t = EvalTotals()
    t.update("psnr/s1_k1", torch.tensor([30.0, 40.0]))
    t.update("copyref_psnr/s1_k1", torch.tensor([10.0]))
    m = t.metrics()
    assert m["psnr"] == 35.0 and m["copyref_psnr"] == 10.0


def test_sample_grid_layout():
    b, s = 3, 8
    s_p, s_n = torch.zeros(b, 1, s, s), torch.ones(b, 1, s, s)
    c_p, pred, gt = torch.full((b, 3, s, s), 0.5), torch.rand(b, 3, s, s), torch.rand(b, 3, s, s)
    grid = sample_grid(s_p, c_p, s_n, pred, gt, max_rows=2)
    assert grid.shape == (2 * s, 5 * s, 3) and grid.dtype == np.uint8
    assert (grid[:s, :s] == 0).all() and (grid[:s, 2 * s:3 * s] == 255).all()
    assert (grid[:s, s:2 * s] == 128).all()
