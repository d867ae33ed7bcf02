"""Issue-12 CMFT kernels: every kernel == its explicit-matrix oracle on the fused SDPA path, the
attention peak lands on a known displacement at every level's resolution, diagnostics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from lcmftn.models import registry
from lcmftn.models.cmft import CMFT, cmft_attention_stats, cmft_kernel_naive, grid_yx
from lcmftn.models.diagnostics import attention_diagnostics, encoder_gradients

KERNELS = {
    "paper": dict(),
    "paper+locality": dict(locality_sigma=0.1),
    "cosine": dict(kernel="cosine"),
    "cosine+proj": dict(kernel="cosine", proj=True, channels=24, proj_init_channels=16),
    "cosine+locality": dict(kernel="cosine", locality_sigma=0.1),
    "cosine+proj+locality": dict(kernel="cosine", proj=True, channels=24, locality_sigma=0.2),
}


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, 24, 12, 10, generator=g)
    k = torch.randn(2, 24, 9, 11, generator=g)  # reference size differs from the query's
    v = torch.rand(2, 5, 9, 11, generator=g)
    centre = torch.randn(2, 2, 12, 10, generator=g) * 0.2
    return q, k, v, centre


def _module(name: str) -> CMFT:
    torch.manual_seed(1)
    m = CMFT(**KERNELS[name])
    if m.q_proj is not None:  # a trained-looking projection, not the identity init
        with torch.no_grad():
            m.q_proj.weight.add_(torch.randn_like(m.q_proj.weight) * 0.2)
            m.k_proj.weight.add_(torch.randn_like(m.k_proj.weight) * 0.2)
    return m


@pytest.mark.parametrize("name", list(KERNELS))
@pytest.mark.parametrize("with_centre", [False, True])
def test_kernel_matches_naive_oracle_fp32_on_fused_path(name: str, with_centre: bool) -> None:
    m = _module(name)
    q, k, v, centre = _inputs()
    centre = centre if with_centre and m.locality_sigma > 0 else None
    ref = cmft_kernel_naive(m, q, k, v, centre)
    # Forcing the flash backend raises if SDPA would fall back to the N×M math path.
    with torch.no_grad(), sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        out, match = m(q, k, v, centre=centre, return_match=True)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-5)
    pos = grid_yx(9, 11).expand(2, -1, -1, -1)
    torch.testing.assert_close(match, cmft_kernel_naive(m, q, k, pos, centre), atol=2e-5, rtol=1e-5)
    # Not trivially equal: the uniform average of the reference is far off.
    assert (v.mean(dim=(2, 3), keepdim=True) - ref).abs().max() > 0.05


@pytest.mark.parametrize("name", list(KERNELS))
def test_kernel_matches_naive_oracle_bf16_loose(name: str) -> None:
    m = _module(name)
    q, k, v, centre = _inputs(seed=3)
    centre = centre if m.locality_sigma > 0 else None
    ref = cmft_kernel_naive(m, q, k, v, centre)  # fp32 oracle
    mb = _module(name).to(torch.bfloat16)
    with torch.no_grad():
        out = mb(q.bfloat16(), k.bfloat16(), v.bfloat16(),
                 centre=None if centre is None else centre.bfloat16())
    assert out.dtype == torch.bfloat16
    err = (out.float() - ref).abs()
    # cos/τ with τ = 0.01 puts logits at ±100, where bf16's 8-bit mantissa costs ~0.4 per logit.
    assert err.max() < 0.1 and err.mean() < 0.01, f"bf16 {name}: max {err.max():.3f} mean {err.mean():.4f}"


def test_locality_bias_is_exactly_a_gaussian_around_the_centre() -> None:
    """With q = k = 0 only the bias is left: the weights must be softmax(−|c − p|²/2σ²)."""
    m = CMFT(locality_sigma=0.15)
    centre = torch.tensor([0.1, -0.2]).view(1, 2, 1, 1).expand(1, 2, 3, 3).contiguous()
    pos = grid_yx(6, 6)
    stats = m.attention_stats(torch.zeros(1, 4, 3, 3), torch.zeros(1, 4, 6, 6), centre)
    w = torch.softmax(-((pos - centre[:, :, :1, :1]) ** 2).sum(1).flatten() / (2 * 0.15**2), 0)
    torch.testing.assert_close(stats["max_weight"], torch.full((1, 1, 3, 3), float(w.max())))
    torch.testing.assert_close(stats["expected_yx"][0, :, 0, 0], pos.flatten(2)[0] @ w, atol=1e-6, rtol=0)


def _circular_features(image: torch.Tensor, level_px: int, seed: int = 0) -> torch.Tensor:
    """Fixed random conv features with circular padding (exactly roll-equivariant), pooled to
    1/level_px: a stand-in for trained E_s features at one level."""
    g = torch.Generator().manual_seed(seed)
    w1, w2 = torch.randn(32, 1, 5, 5, generator=g), torch.randn(32, 32, 3, 3, generator=g) / 10
    x = F.relu(F.conv2d(F.pad(image, (2,) * 4, mode="circular"), w1))
    x = F.relu(F.conv2d(F.pad(x, (1,) * 4, mode="circular"), w2))
    return F.avg_pool2d(x, level_px) if level_px > 1 else x


@pytest.mark.parametrize("level_px", [8, 4, 2])  # CMFT^0, ^1, ^2 resolutions of a 64 px frame
@pytest.mark.parametrize("name", ["cosine", "cosine+proj", "cosine+locality"])
def test_peak_lands_on_known_displacement(level_px: int, name: str) -> None:
    g = torch.Generator().manual_seed(7)
    image = F.avg_pool2d(torch.rand(1, 1, 64, 64, generator=g), 3, 1, 1)  # textured "drawing"
    shift = (2 * level_px, -3 * level_px)  # whole level pixels, so the pooled grid rolls too
    ref = _circular_features(image, level_px)
    cur = _circular_features(torch.roll(image, shift, dims=(2, 3)), level_px)
    kw = dict(KERNELS[name])
    if "proj" in name:  # identity init on all channels: the kernel at init == plain cosine
        kw.update(channels=32, proj_init_channels=0)
    m = CMFT(**kw)
    h = ref.shape[-2]
    truth = torch.remainder(grid_yx(h, h) - torch.tensor(shift).view(1, 2, 1, 1) / 64 + 0.5, 1.0) - 0.5
    centre = truth if m.locality_sigma > 0 else None  # coarse-to-fine: the coarser level's match
    stats = m.attention_stats(cur, ref, centre)
    err = (stats["argmax_yx"] - truth).abs()
    err = torch.minimum(err, 1 - err).amax(1) * h  # torus distance in level pixels
    assert (err < 0.5).float().mean() == 1.0, f"{name} @1/{level_px}: {(err < 0.5).float().mean()}"
    assert stats["max_weight"].mean() > 0.5


def test_paper_kernel_is_uniform_on_small_features_cosine_is_not() -> None:
    """The issue-12 symptom: |q| ≈ 0.17 makes exp(aᵀb) attend uniformly; cosine/τ does not."""
    image = F.avg_pool2d(torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(8)), 3, 1, 1)
    f = _circular_features(image, 4)
    f = f / f.norm(dim=1, keepdim=True).mean() * 0.17
    paper = CMFT().attention_stats(f, f)
    cosine = CMFT(kernel="cosine").attention_stats(f, f)
    assert paper["entropy"].mean() > 0.95
    assert cosine["entropy"].mean() < 0.3 and cosine["max_weight"].mean() > 0.5


def test_cmft_kernel_config_defaults_and_errors() -> None:
    G = registry.build_generator("lcmftn", "tiny")
    assert G.cfg.cmft_kernel == "paper" and not G.cfg.cmft_proj and G.cfg.cmft_locality == "none"
    assert all(m.kernel == "paper" and m.q_proj is None and m.locality_sigma == 0 for m in G.cmfts)
    C = registry.build_generator("lcmftn-cosine", "tiny", cmft3=True)
    assert [m.locality_sigma > 0 for m in C.cmfts] == [False, True, True, True]
    assert all(m.kernel == "cosine" and m.q_proj is not None for m in C.cmfts)
    with pytest.raises(ValueError, match="kernel"):
        CMFT(kernel="dot")
    with pytest.raises(ValueError, match="cmft_locality"):
        registry.build_generator("lcmftn", "tiny", cmft_locality="near")
    with pytest.raises(ValueError, match="centre"):
        CMFT(locality_sigma=0.1)(torch.rand(1, 4, 3, 3), torch.rand(1, 4, 3, 3), torch.rand(1, 2, 3, 3),
                                 centre=torch.zeros(1, 2, 2, 2))


@pytest.mark.parametrize("overrides", [dict(), dict(cmft3=True), dict(cmft_locality="identity"),
                                        dict(local_path=True, cmft_proj=False)])
def test_cosine_lcmftn_shapes_and_gradients_reach_e_s(overrides: dict) -> None:
    torch.manual_seed(0)
    G = registry.build_generator("lcmftn-cosine", "tiny", **overrides)
    s_p, c_p = torch.rand(2, 1, 32, 32), torch.rand(2, 3, 32, 32)
    s_n = torch.roll(s_p, (3, -2), dims=(2, 3))
    out, conf = G.forward_with_confidence(s_p, c_p, s_n)
    assert out.shape == (2, 3, 32, 32) and conf.shape == (2, 1, 32, 32)
    g = encoder_gradients(G, s_p, c_p, s_n, torch.rand(2, 3, 32, 32))
    assert g["grad/e_s"] > 0 and g["grad/e_h"] > 0 and g["grad/e_s_over_e_h"] > 0
    assert all(p.grad is None for p in G.parameters())  # zeroed afterwards


class _EquivariantSketch(torch.nn.Module):
    """Fixed roll-equivariant stand-in for E_s (circular-padded random convs, area-pooled to
    full, 1/2, 1/4, 1/8): what a trained matcher should provide, so the diagnostics' truth and
    distances can be checked against a model whose correct answer is known."""

    def __init__(self, widths: tuple[int, ...]):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w1 = torch.randn(32, 1, 5, 5, generator=g)
        self.heads = [torch.randn(c, 32, 1, 1, generator=g) for c in (widths[0], widths[1], widths[2], widths[5])]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f = F.relu(F.conv2d(F.pad(x, (2,) * 4, mode="circular"), self.w1))
        return [F.conv2d(F.avg_pool2d(f, 2**i) if i else f, w) for i, w in enumerate(self.heads)]


def test_attention_diagnostics_on_a_model() -> None:
    torch.manual_seed(0)
    G = registry.build_generator("lcmftn-cosine", "tiny").eval()
    G.e_s = _EquivariantSketch(G.cfg.sketch_channels)
    g = torch.Generator().manual_seed(9)
    s_p = F.avg_pool2d(torch.rand(2, 1, 64, 64, generator=g), 3, 1, 1)
    c_p = torch.rand(2, 3, 64, 64, generator=g)
    s_n = torch.roll(s_p, (16, -8), (2, 3))  # whole CMFT^0 cells
    d = attention_diagnostics(G, s_p, c_p, s_n, shift_px=(16, -8))
    assert set(d) >= {f"cmft{k}/{m}" for k in range(3) for m in
                      ("entropy", "max_weight", "err_expected_px", "err_argmax_px", "hit_rate")}
    assert all(isinstance(v, float) for v in d.values())
    for k in range(3):  # coarse-to-fine: every level's peak on the true match
        assert d[f"cmft{k}/hit_rate"] > 0.9, (k, d)
    wrong = attention_diagnostics(G, s_p, c_p, s_n, shift_px=(0, 0))
    assert all(wrong[f"cmft{k}/hit_rate"] < 0.2 for k in range(3)), wrong
    paper = attention_diagnostics(registry.build_generator("lcmftn", "tiny"), s_p, c_p, s_p)
    assert paper["cmft0/entropy"] > 0.9 and "cmft0/err_argmax_px" not in paper
    with pytest.raises(ValueError, match="no CMFT"):
        attention_diagnostics(registry.build_generator("lcmftn-nocmft", "tiny"), s_p, c_p, s_p)


def test_cosine_at_init_attends_its_own_position() -> None:
    """Measured property (README): with the real, freshly initialised E_s (zero padding,
    dilations 2 and 4 at 1/8 resolution), cosine CMFT^0 is sharp but POSITIONAL — it picks each
    query's own cell whatever the content, i.e. it starts as copy-the-reference, not as a
    matcher. If this changes (E_s padding, init), update the README reading."""
    torch.manual_seed(0)
    G = registry.build_generator("lcmftn-cosine", "tiny").eval()
    g = torch.Generator().manual_seed(9)
    s_p = F.avg_pool2d(torch.rand(2, 1, 64, 64, generator=g), 3, 1, 1)
    c_p = torch.rand(2, 3, 64, 64, generator=g)
    s_n = torch.roll(s_p, (16, -8), (2, 3))
    own = attention_diagnostics(G, s_p, c_p, s_n, shift_px=(0, 0))
    true = attention_diagnostics(G, s_p, c_p, s_n, shift_px=(16, -8))
    assert own["cmft0/hit_rate"] > 0.9 and true["cmft0/hit_rate"] < 0.1


def test_attention_benchmark_runs_and_writes_json(tmp_path, capsys) -> None:
    import json

    from workflows.benchmark import attention

    out = tmp_path / "att.json"
    rc = attention.main(["--model-size", "tiny", "--size", "32", "--frames", "2",
                         "--shifts", "0,0", "4,-4", "--json", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    rows = result["systems"]["lcmftn-cosine (init)"]
    assert set(rows) == {"0,0", "4,-4"} and "cmft2/hit_rate" in rows["4,-4"]
    assert rows["0,0"]["cmft0/hit_rate"] == 1.0
    assert result["systems"]["lcmftn-ours (init)"]["0,0"]["psnr"] == 100.0  # exact copy
    assert "| lcmftn (init) | 4,-4 | cmft0 |" in capsys.readouterr().out
    assert attention.main(["--shifts", "4"]) == 2


def test_attention_stats_positions_match_explicit_softmax() -> None:
    g = torch.Generator().manual_seed(11)
    q, k = torch.randn(2, 6, 5, 4, generator=g), torch.randn(2, 6, 3, 7, generator=g)
    st = cmft_attention_stats(q, k, scale=1.3, chunk_positions=7)  # chunks do not divide N = 20
    w = torch.softmax(q.flatten(2).transpose(1, 2) @ k.flatten(2) * 1.3, -1)  # [B, N, M]
    pos = grid_yx(3, 7).flatten(2)[0].T  # [M, 2]
    torch.testing.assert_close(st["expected_yx"], (w @ pos).transpose(1, 2).reshape(2, 2, 5, 4))
    torch.testing.assert_close(st["argmax_yx"], pos[w.argmax(-1)].transpose(1, 2).reshape(2, 2, 5, 4))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("name", list(KERNELS))
def test_cuda_kernels_run_fused_and_match_oracle(name: str, dtype: torch.dtype) -> None:
    m = _module(name)
    q, k, v, centre = _inputs(seed=5)
    centre = centre if m.locality_sigma > 0 else None
    ref = cmft_kernel_naive(m, q, k, v, centre)
    mc = _module(name).cuda().to(dtype)
    with torch.no_grad(), sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
        out = mc(*(t.cuda().to(dtype) for t in (q, k, v)),
                 centre=None if centre is None else centre.cuda().to(dtype))
    err = (out.float().cpu() - ref).abs()
    if dtype == torch.bfloat16:
        assert err.max() < 0.1 and err.mean() < 0.01
    else:
        assert err.max() < 1e-3  # TF32-free fp32 fused kernels
