"""CMFT (paper eq. 1–4): fused SDPA == naive oracle, exact copy on identical line art, shifts,
confidence statistics, and clear errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lcmftn.models import registry
from lcmftn.models.cmft import CMFT, cmft, cmft_confidence, cmft_naive


def _distinct_features(B: int, C: int, H: int, W: int, norm: float = 30.0, seed: int = 0) -> torch.Tensor:
    """Unit-norm random features per position, times ``norm``: a·a = norm² dominates a·b."""
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(B, C, H, W, generator=g)
    return F.normalize(f, dim=1) * norm


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_fused_matches_naive_fp32(scale: float) -> None:
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 16, 8, 6, generator=g)
    k = torch.randn(2, 16, 5, 7, generator=g)  # reference size differs from query size
    v = torch.randn(2, 5, 5, 7, generator=g)
    fused, naive = cmft(q, k, v, scale=scale), cmft_naive(q, k, v, scale=scale)
    assert fused.shape == (2, 5, 8, 6)
    torch.testing.assert_close(fused, naive, atol=1e-5, rtol=1e-5)


def test_fused_matches_naive_bf16_loose() -> None:
    g = torch.Generator().manual_seed(2)
    q = torch.randn(2, 32, 16, 16, generator=g) * 0.5
    k = torch.randn(2, 32, 16, 16, generator=g) * 0.5
    v = torch.rand(2, 8, 16, 16, generator=g)
    ref = cmft_naive(q, k, v)
    out = cmft(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert out.dtype == torch.bfloat16
    err = (out.float() - ref).abs().max().item()
    assert err < 2e-2, f"bf16 fused CMFT deviates by {err}"
    # Not trivially equal: a wrong kernel (e.g. uniform weights) would be far off.
    assert (v.mean(dim=(2, 3), keepdim=True) - ref).abs().max() > 0.05


def test_copies_reference_exactly_when_sketches_identical() -> None:
    feats = _distinct_features(2, 32, 12, 12)
    c_p = torch.rand(2, 3, 12, 12)
    out = cmft(feats, feats, c_p)
    torch.testing.assert_close(out, c_p, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shift", [(2, 3), (-4, 1)])
def test_follows_known_shift(shift: tuple[int, int]) -> None:
    ref_feats = _distinct_features(1, 32, 16, 16, seed=3)
    c_p = torch.rand(1, 3, 16, 16)
    # Current frame = reference moved by `shift` (torch.roll: content at p goes to p + shift).
    cur_feats = torch.roll(ref_feats, shifts=shift, dims=(2, 3))
    out = cmft(cur_feats, ref_feats, c_p)
    torch.testing.assert_close(out, torch.roll(c_p, shifts=shift, dims=(2, 3)), atol=1e-5, rtol=0)
    # ... which copying the reference in place does not do.
    assert (out - c_p).abs().max() > 0.1


def test_normalized_cmft_module_follows_shift() -> None:
    ref_feats = _distinct_features(1, 32, 8, 8, norm=1.0, seed=4)
    c_p = torch.rand(1, 3, 8, 8)
    cur = torch.roll(ref_feats, shifts=(1, 2), dims=(2, 3))
    module = CMFT(normalize=True, init_temperature=50.0)
    out = module(cur * 7.0, ref_feats * 0.2, c_p)  # cosine similarity ignores the magnitudes
    torch.testing.assert_close(out, torch.roll(c_p, shifts=(1, 2), dims=(2, 3)), atol=1e-4, rtol=0)


def test_confidence_statistics_match_explicit_softmax() -> None:
    g = torch.Generator().manual_seed(5)
    q = torch.randn(2, 8, 6, 5, generator=g)
    k = torch.randn(2, 8, 4, 7, generator=g)
    conf = cmft_confidence(q, k, scale=0.7, chunk_positions=7)  # chunks do not divide N = 30
    w = torch.softmax(q.flatten(2).transpose(1, 2) @ k.flatten(2) * 0.7, dim=-1)  # [B, N, M]
    max_w = w.amax(-1).reshape(2, 1, 6, 5)
    ent = -(w * w.clamp_min(1e-30).log()).sum(-1).reshape(2, 1, 6, 5) / math.log(28)
    torch.testing.assert_close(conf["max_weight"], max_w, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(conf["entropy"], ent, atol=1e-5, rtol=1e-5)


def test_confidence_extremes() -> None:
    feats = _distinct_features(1, 16, 6, 6)
    sharp = cmft_confidence(feats, feats)
    assert sharp["max_weight"].min() > 0.999 and sharp["entropy"].max() < 1e-3
    flat = cmft_confidence(torch.zeros(1, 16, 6, 6), feats)  # all logits 0 -> uniform
    torch.testing.assert_close(flat["max_weight"], torch.full((1, 1, 6, 6), 1 / 36))
    torch.testing.assert_close(flat["entropy"], torch.ones(1, 1, 6, 6))


def test_lcmftn_confidence_map() -> None:
    torch.manual_seed(0)
    G = registry.build_generator("lcmftn", "tiny").eval()
    s = torch.rand(2, 1, 32, 32)
    flat = torch.ones(2, 3, 32, 32) * torch.tensor([0.2, 0.6, 0.9]).view(1, 3, 1, 1)
    with torch.no_grad():
        out, conf = G.forward_with_confidence(s, flat, s)
        torch.testing.assert_close(out, G(s, flat, s))
    assert conf is not None and conf.shape == (2, 1, 32, 32)
    # One flat colour: every matched position agrees -> full confidence.
    torch.testing.assert_close(conf, torch.ones_like(conf), atol=1e-3, rtol=0)
    noisy = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        _, conf_noisy = G.forward_with_confidence(s, noisy, s)
    assert 0 <= conf_noisy.min() and conf_noisy.max() <= 1 and conf_noisy.mean() < 0.9
    _, none = registry.build_generator("lcmftn-nocmft", "tiny").forward_with_confidence(s, flat, s)
    assert none is None


def test_bad_shapes_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="query"):
        cmft(torch.rand(1, 4, 8), torch.rand(1, 4, 2, 2), torch.rand(1, 3, 2, 2))
    with pytest.raises(ValueError, match="query and key"):
        cmft(torch.rand(1, 4, 2, 2), torch.rand(1, 5, 2, 2), torch.rand(1, 3, 2, 2))
    with pytest.raises(ValueError, match="key and value"):
        cmft_naive(torch.rand(1, 4, 2, 2), torch.rand(1, 4, 2, 2), torch.rand(1, 3, 3, 2))


def test_fused_kernel_is_eligible_for_unequal_channel_counts() -> None:
    """Regression: q/k with C != Cv (and C not a multiple of 8) used to fall back to the
    math path that materialises the N×M matrix. Forcing the flash backend must work."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v = torch.randn(1, 13, 8, 8), torch.randn(1, 13, 8, 8), torch.randn(1, 5, 8, 8)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        out = cmft(q, k, v)
    torch.testing.assert_close(out, cmft_naive(q, k, v), atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_cuda_fused_kernels_are_used(dtype: torch.dtype) -> None:
    """On CUDA, CMFT must run on a fused kernel (flash / memory-efficient), never the math path."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    g = torch.Generator().manual_seed(6)
    q, k = (torch.randn(2, 48, 32, 32, generator=g) * 0.3 for _ in range(2))
    v = torch.rand(2, 24, 32, 32, generator=g)
    ref = cmft_naive(q, k, v)
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
        out = cmft(*(t.cuda().to(dtype) for t in (q, k, v)))
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-4
    assert (out.float().cpu() - ref).abs().max() < tol


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_paper_lcmftn_with_cmft3_bf16() -> None:
    G = registry.build_generator("lcmftn", "paper", cmft3=True).cuda().eval()
    s = torch.rand(1, 1, 256, 256, device="cuda")
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        out, conf = G.forward_with_confidence(s, torch.rand(1, 3, 256, 256, device="cuda"), s)
    assert out.shape == (1, 3, 256, 256) and conf.shape == (1, 1, 256, 256)
    assert torch.isfinite(out.float()).all()
