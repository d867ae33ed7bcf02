"""Window pair sampling (paper §4.1) and evaluation sequences (paper §4.2)."""

from __future__ import annotations

import numpy as np
import pytest

from lcmftn.data.pairs import (
    EVAL_STRIDES,
    WindowConfig,
    sample_eval_sequences,
    sample_window_pairs,
    unchanged_between,
)


def test_paper_window_width_40_stride_5():
    pairs = sample_window_pairs(100, WindowConfig(width_frames=40, stride_frames=5))
    assert pairs[0] == (0, 39) and pairs[1] == (5, 44)
    assert pairs[-1] == (60, 99)  # last window that fits: start 60, 60 + 39 = 99
    assert len(pairs) == 13 and all(b - a == 39 for a, b in pairs)


def test_exactly_one_window_and_short_shots():
    assert sample_window_pairs(40, WindowConfig(40, 5)) == [(0, 39)]
    assert sample_window_pairs(41, WindowConfig(40, 5)) == [(0, 39)]
    assert sample_window_pairs(45, WindowConfig(40, 5)) == [(0, 39), (5, 44)]
    assert sample_window_pairs(12, WindowConfig(40, 5)) == [(0, 11)]  # shorter than the window
    assert sample_window_pairs(1, WindowConfig(40, 5)) == []
    assert sample_window_pairs(0) == []


def test_skip_unchanged_pairs_with_hold_flags():
    holds = np.zeros(20, bool)
    holds[1:10] = True  # frames 0..9 show one drawing (a still), then it moves
    cfg = WindowConfig(width_frames=5, stride_frames=2)
    kept = sample_window_pairs(20, cfg, holds=holds)
    assert (0, 4) not in kept and (4, 8) not in kept  # unchanged: every frame in (a, b] held
    assert (6, 10) in kept  # frame 10 is a new drawing
    everything = sample_window_pairs(20, WindowConfig(5, 2, skip_unchanged=False), holds=holds)
    assert len(everything) == 8 and set(kept) < set(everything)
    assert sample_window_pairs(20, cfg) == everything  # no hold info -> nothing skipped


def test_exact_changed_test_overrides_holds():
    holds = np.ones(10, bool)
    pairs = sample_window_pairs(10, WindowConfig(3, 1), holds=holds, changed=lambda a, b: a % 2 == 0)
    assert pairs == [(0, 2), (2, 4), (4, 6), (6, 8)]


def test_unchanged_between_and_validation():
    holds = np.array([False, True, True, False, True])
    assert unchanged_between(holds, 0, 2) and unchanged_between(holds, 2, 0)
    assert not unchanged_between(holds, 0, 3) and unchanged_between(holds, 3, 4)
    with pytest.raises(ValueError, match="holds has"):
        sample_window_pairs(4, WindowConfig(), holds=holds)
    with pytest.raises(ValueError):
        WindowConfig(width_frames=1)
    with pytest.raises(ValueError):
        WindowConfig(stride_frames=0)


@pytest.mark.parametrize("stride", EVAL_STRIDES)
def test_eval_sequences_strides_1_5_10(stride):
    assert EVAL_STRIDES == (1, 5, 10)
    seq = sample_eval_sequences(60, stride, seed=3)
    assert len(seq) == 5 and all(b - a == stride for a, b in zip(seq, seq[1:], strict=False))
    assert 0 <= seq[0] and seq[-1] < 60
    assert sample_eval_sequences(60, stride, seed=3) == seq  # seeded
    assert sample_eval_sequences(4 * stride, stride) is None  # one frame too short
    assert sample_eval_sequences(4 * stride + 1, stride) == [0, stride, 2 * stride, 3 * stride, 4 * stride]


def test_eval_sequence_t0_covers_the_valid_range_and_drops_unchanged_targets():
    starts = {sample_eval_sequences(30, 5, seed=s)[0] for s in range(200)}
    assert starts == set(range(0, 30 - 20))  # t0 uniform over every valid start
    holds = np.zeros(30, bool)
    holds[1:] = True  # a still shot: every target shows the reference's drawing
    assert sample_eval_sequences(30, 1, unchanged=holds) is None
    holds[:] = False
    assert sample_eval_sequences(30, 1, unchanged=holds) is not None
    assert sample_eval_sequences(30, 1, unchanged=lambda a, b: b == a + 3) is None
    with pytest.raises(ValueError):
        sample_eval_sequences(30, 0)
