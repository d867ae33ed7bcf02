"""Thin-line extraction at the working size and line-art augmentations (issue 11)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lcmftn.data.lineart import (
    LineAugConfig,
    augment_lineart,
    extract_lineart,
    extract_thin_lineart,
    normalize_lineart,
    skeletonize,
    thin_lineart,
)


def _hairlines(size: int) -> np.ndarray:
    img = np.full((size, size), 255, np.uint8)
    cv2.circle(img, (size // 2, size // 2), size // 3, 0, 1, cv2.LINE_8)
    cv2.line(img, (10, size // 5), (size - 10, size // 4), 0, 1, cv2.LINE_8)
    return img


def test_thin_lineart_keeps_1px_strokes_dark_where_plain_resize_fades_them():
    full = _hairlines(1024)
    thin = thin_lineart(full, 256)
    plain = cv2.resize(full, (256, 256), interpolation=cv2.INTER_AREA)
    assert thin.shape == (256, 256)
    assert np.count_nonzero(thin < 128) > 0.8 * np.count_nonzero(skeletonize(thin < 250))
    assert np.count_nonzero(plain < 128) < 0.1 * np.count_nonzero(thin < 128)  # plain area-resize fades them
    # still thin: about one ink pixel per skeleton pixel
    assert np.count_nonzero(thin < 128) < 1.6 * np.count_nonzero(skeletonize(thin < 128))
    assert set(np.unique(thin_lineart(full, 256, binarize=True))) <= {0, 255}
    with pytest.raises(ValueError, match="line art"):
        thin_lineart(np.zeros((8, 8, 3), np.uint8), 4)


def test_extract_thin_lineart_from_a_large_frame_has_thinner_lines_than_downscale_then_extract():
    rgb = np.full((1024, 1024, 3), 230, np.uint8)
    cv2.circle(rgb, (512, 512), 300, (200, 40, 40), -1)
    cv2.rectangle(rgb, (100, 100), (400, 300), (40, 40, 200), -1)
    thin = extract_thin_lineart(rgb, 256)
    thick = extract_lineart(cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_AREA))
    w_thin = np.count_nonzero(thin < 128) / max(1, np.count_nonzero(skeletonize(thin < 128)))
    w_thick = np.count_nonzero(thick < 128) / max(1, np.count_nonzero(skeletonize(thick < 128)))
    assert np.count_nonzero(thin < 128) > 500 and w_thin < w_thick


def test_skeleton_of_a_thick_bar_is_one_pixel_wide():
    ink = np.zeros((40, 80), bool)
    ink[15:24, 10:70] = True
    sk = skeletonize(ink)
    assert 40 <= sk.sum() <= 62 and sk[:, 20:60].sum(axis=0).max() == 1


def test_augmentations_binary_when_asked_deterministic_and_varied():
    la = _hairlines(128)
    cfg = LineAugConfig(binarize=True, thickness_prob=1, gap_prob=1, jitter_prob=1, blur_prob=1, noise_prob=1)
    outs = [augment_lineart(la, cfg, np.random.default_rng(s)) for s in range(6)]
    for o in outs:
        assert o.dtype == np.uint8 and o.shape == la.shape
        assert set(np.unique(o)) <= {0, 255}, "binarize=True must give only ink and paper"
    assert np.array_equal(outs[0], augment_lineart(la, cfg, np.random.default_rng(0)))
    assert len({o.tobytes() for o in outs}) == 6
    soft = augment_lineart(la, LineAugConfig(blur_prob=1, binarize_prob=0, noise_prob=0), np.random.default_rng(1))
    assert len(np.unique(soft)) > 2  # without binarisation the blur makes gray levels


def test_thickness_gaps_and_white_on_black():
    la = _hairlines(128)
    ink = np.count_nonzero(la < 128)
    none = dict(gap_prob=0, jitter_prob=0, blur_prob=0, noise_prob=0, binarize_prob=0)
    thick = augment_lineart(la, LineAugConfig(thickness_prob=1, thickness_px=(2, 2), **none), np.random.default_rng(0))
    assert np.count_nonzero(thick < 128) > 3 * ink
    gaps = augment_lineart(la, LineAugConfig(thickness_prob=0, gap_prob=1, gaps_per_mpx=3000, **{k: v for k, v in none.items() if k != "gap_prob"}), np.random.default_rng(0))
    assert 0 < np.count_nonzero(gaps < 128) < ink
    inv = augment_lineart(la, LineAugConfig(thickness_prob=0, invert_prob=1, **none), np.random.default_rng(0))
    assert np.mean(inv) < 30 and np.array_equal(normalize_lineart(inv), la)  # the normaliser undoes it


def test_torch_batch_augmentation_is_reproducible_and_binary_when_asked():
    import torch

    from lcmftn.data.lineart import augment_lineart_batch

    la = torch.from_numpy(np.stack([_hairlines(64)] * 3)).float().div(255).unsqueeze(1)
    cfg = LineAugConfig(binarize=True, thickness_prob=1, jitter_prob=1, noise_prob=1)
    a, b = augment_lineart_batch(la, cfg, (0, 1, 2)), augment_lineart_batch(la, cfg, (0, 1, 2))
    assert a.shape == la.shape and a.dtype == la.dtype and torch.equal(a, b)
    assert set(torch.unique(a).tolist()) <= {0.0, 1.0}
    assert not torch.equal(a[0], a[1])  # each sample draws its own augmentation
    assert not torch.equal(a, augment_lineart_batch(la, cfg, (0, 1, 3)))
    with pytest.raises(ValueError, match="line art"):
        augment_lineart_batch(torch.zeros(2, 3, 8, 8), cfg, 0)
