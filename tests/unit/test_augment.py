"""Training-time pair augmentations (``lcmftn.data.augment``): one palette transform for C_p and
C_n, one pen for S_p and S_n, seeded, wired into ``train_step``; ``lcmftn-ours``' flow-aware base."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lcmftn import training
from lcmftn.data.augment import PALETTE_TRANSFORMS, augment_pair_batch, palette_transform
from lcmftn.data.lineart import LineAugConfig, augment_lineart, augment_lineart_many
from lcmftn.models import registry
from lcmftn.recipes import apply_overrides, recipe


def _lineart(B: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lines = (F.avg_pool2d(torch.rand(B, 1, size, size, generator=g), 5, 1, 2) > 0.56).float()
    return 1.0 - lines


def _batch(B: int = 4, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s_p = _lineart(B, size, seed)
    s_n = s_p.clone()
    s_n[..., : size // 4, : size // 4] = _lineart(B, size, seed + 1)[..., : size // 4, : size // 4]
    return {"s_p": s_p, "c_p": torch.rand(B, 3, size, size, generator=g), "s_n": s_n,
            "c_n": torch.rand(B, 3, size, size, generator=g), "index": torch.arange(B)}


def _which_transform(before: torch.Tensor, after: torch.Tensor) -> list[int]:
    return [k for k in range(len(PALETTE_TRANSFORMS)) if torch.equal(palette_transform(before, k), after)]


def test_palette_transforms_are_48_distinct_exact_and_keep_the_range() -> None:
    c = torch.rand(3, 8, 8)
    outs = [palette_transform(c, k) for k in range(len(PALETTE_TRANSFORMS))]
    assert len(PALETTE_TRANSFORMS) == 48 and torch.equal(outs[0], c)
    assert len({o.numpy().tobytes() for o in outs}) == 48
    assert all(0 <= o.min() and o.max() <= 1 for o in outs)


def test_palette_augmentation_applies_one_transform_to_both_colour_frames() -> None:
    b = _batch()
    out = augment_pair_batch(b, palette_prob=1.0, lineart_prob=0.0, seed=(3, 7))
    for i in range(4):
        ks = _which_transform(b["c_p"][i], out["c_p"][i])
        assert ks and ks[0] != 0  # the identity is never drawn when the augmentation fires
        assert torch.equal(palette_transform(b["c_n"][i], ks[0]), out["c_n"][i])
    assert torch.equal(out["s_p"], b["s_p"]) and torch.equal(out["s_n"], b["s_n"])  # line art untouched
    assert torch.equal(out["index"], b["index"])
    # the input batch is not modified; seeded; another seed draws other transforms
    assert not torch.equal(out["c_p"], b["c_p"])
    again = augment_pair_batch(b, 1.0, 0.0, seed=(3, 7))
    assert all(torch.equal(again[k], out[k]) for k in ("c_p", "c_n"))
    other = augment_pair_batch(b, 1.0, 0.0, seed=(3, 8))
    assert not torch.equal(other["c_p"], out["c_p"])


def test_probability_zero_is_the_identity_and_bad_probabilities_are_refused() -> None:
    b = _batch()
    out = augment_pair_batch(b, 0.0, 0.0, seed=1)
    assert all(out[k] is b[k] for k in b)
    half = augment_pair_batch(_batch(B=64, size=8), 0.5, 0.0, seed=1)
    src = _batch(B=64, size=8)
    changed = sum(not torch.equal(half["c_p"][i], src["c_p"][i]) for i in range(64))
    assert 16 <= changed <= 48
    with pytest.raises(ValueError, match="probabilities"):
        augment_pair_batch(b, 1.5, 0.0, seed=1)


def test_lineart_augmentation_uses_one_pen_for_both_drawings() -> None:
    b = _batch(B=6, size=64)
    cfg = LineAugConfig(thickness_prob=1, gap_prob=1, jitter_prob=0, blur_prob=0, noise_prob=1,
                        binarize=True)
    out = augment_pair_batch(b, 0.0, 1.0, seed=(0, 5), line_cfg=cfg)
    assert torch.equal(out["c_p"], b["c_p"]) and torch.equal(out["c_n"], b["c_n"])
    assert not torch.equal(out["s_p"], b["s_p"])
    assert set(torch.unique(out["s_p"]).tolist()) <= {0.0, 1.0}  # binary where asked
    # away from the redrawn corner (16x16 + the pen's reach) the two drawings stay identical
    far = torch.ones(64, 64, dtype=torch.bool)
    far[:24, :24] = False
    assert torch.equal(out["s_p"][:, 0][:, far], out["s_n"][:, 0][:, far])
    # identical drawings stay identical (a hold stays a hold)
    same = dict(b, s_n=b["s_p"].clone())
    out2 = augment_pair_batch(same, 0.0, 1.0, seed=(0, 5))
    assert torch.equal(out2["s_p"], out2["s_n"])


def test_augment_lineart_many_on_one_image_is_augment_lineart() -> None:
    la = (_lineart(1, 48, 4)[0, 0].numpy() * 255).astype(np.uint8)
    for s in range(5):
        one = augment_lineart(la, LineAugConfig(), np.random.default_rng(s))
        assert np.array_equal(one, augment_lineart_many([la], LineAugConfig(), np.random.default_rng(s))[0])
    with pytest.raises(ValueError, match="differ in size"):
        augment_lineart_many([la, la[:10]], LineAugConfig(), np.random.default_rng(0))


def _state(**sets):
    cfg = apply_overrides(recipe("smoke"), [f"{k}={v}" for k, v in sets.items()] + ["loss.lambda_vgg=0"])
    return training.build_train_state(cfg)


def test_train_step_draws_the_augmentation_from_seed_and_step() -> None:
    b = _batch(B=2, size=32)
    plain = training.train_step(_state(), b)["loss"]
    a1 = training.train_step(_state(palette_aug=1.0, lineart_aug=1.0), b)["loss"]
    a2 = training.train_step(_state(palette_aug=1.0, lineart_aug=1.0), b)["loss"]
    assert a1 == a2  # same seed and step: same transforms, same loss
    assert a1 != plain


def test_still_flow_base_follows_a_pan_where_the_line_art_does_not_change() -> None:
    """A colour frame panned by 3 px under a grid of strokes every 16 px: far from the strokes the
    line art is blank in both frames (no local change), yet the content moved with the grid."""
    size = 64
    s_p = torch.ones(1, 1, size, size)
    for x in range(0, size, 16):
        s_p[..., :, x : x + 2] = 0.0
        s_p[..., x : x + 2, :] = 0.0
    s_n = torch.roll(s_p, 3, dims=3)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    c_p = torch.stack([xx / size, yy / size, (xx + yy) / (2 * size)]).float()[None]
    parts = {}
    for still in (0.0, 0.25):
        G = registry.build_generator("lcmftn-ours", "tiny", still_flow_px=still).eval()
        with torch.no_grad():
            parts[still] = G.parts(s_p, c_p, s_n)
    flow_mag = parts[0.25]["flow"].norm(dim=1, keepdim=True)
    ink = torch.maximum(1 - s_p, 1 - s_n) > 0.5
    blank = F.max_pool2d(ink.float(), 7, stride=1, padding=3) == 0  # no ink within the 7x7 window
    moving_blank = (parts[0.0]["base"] - c_p).abs().amax(1, keepdim=True).eq(0) & (flow_mag > 0.5) & blank
    assert moving_blank.float().mean() > 0.1  # the old base copies C_p there ...
    base = parts[0.25]["base"]
    assert torch.allclose(base[moving_blank.expand_as(base)],
                          parts[0.25]["warped_c"][moving_blank.expand_as(base)])  # ... the new one warps
    # identical line art still gives C_p exactly
    G = registry.build_generator("lcmftn-ours", "tiny", still_flow_px=0.25).eval()
    with torch.no_grad():
        assert (G(s_p, c_p, s_p) - c_p).abs().max() <= 1e-6
    with pytest.raises(ValueError, match="still_flow_px"):
        registry.build_generator("lcmftn-ours", "tiny", still_flow_px=-1.0)


def test_generator_overrides_reach_the_trained_model_and_bad_ones_are_named() -> None:
    from lcmftn.train_plan import BadInput, resolve_config

    state = _state(system="lcmftn-ours", generator="correction=paint,still_flow_px=0")
    assert state.bare_generator.cfg.correction == "paint" and state.bare_generator.cfg.still_flow_px == 0
    state = _state(system="lcmftn-ours", generator="correction=resample,resample_dilations=1;2")
    assert state.bare_generator.cfg.resample_dilations == (1, 2)
    with pytest.raises(ValueError, match="unknown generator config field 'nope'"):
        _state(system="lcmftn-ours", generator="nope=1")
    with pytest.raises(BadInput, match="still_flow_px"):
        resolve_config("smoke", None, ["system=lcmftn-ours", "generator=still_flow_px=abc"])
    with pytest.raises(ValueError, match="palette_aug"):
        resolve_config("smoke", None, ["palette_aug=2"])


def test_attention_metrics_for_cmft_systems_only() -> None:
    from lcmftn.evaluation import EvalClip

    g = torch.Generator().manual_seed(0)
    la = _lineart(3, 32, 5)
    clips = [EvalClip("s", 1, (0, 1, 2), torch.rand(3, 3, 32, 32, generator=g), la)]
    m = training.attention_metrics(_state(), clips)  # smoke recipe: lcmftn (paper kernel)
    for k in range(3):
        assert 0 <= m[f"attn/cmft{k}/entropy"] <= 1.0 + 1e-6 and 0 < m[f"attn/cmft{k}/max_weight"] <= 1
        assert 0 <= m[f"attn/shift/cmft{k}/hit_rate"] <= 1 and m[f"attn/shift/cmft{k}/err_argmax_px"] >= 0
    ours = training.attention_metrics(_state(system="lcmftn-ours"), clips)
    assert "attn/cmft0/entropy" in ours and not any(k.startswith("attn/shift/") for k in ours)
    assert training.attention_metrics(_state(system="lcmftn-nocmft"), clips) == {}
    assert training.attention_metrics(_state(system="pix2pix-ref"), clips) == {}
