"""``lcmftn-ours``: exact reference where the line art is unchanged, warp + gated correction,
gradients, checkpoints, registry and training-loss plumbing."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from lcmftn import checkpoint as ckpt_io
from lcmftn import losses
from lcmftn.models import registry
from lcmftn.models.baselines import FlowWarp
from lcmftn.models.ours import change_map


def _lineart(B: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lines = (F.avg_pool2d(torch.rand(B, 1, size, size, generator=g), 5, 1, 2) > 0.56).float()
    return 1.0 - lines  # black lines on white


@pytest.mark.parametrize("size", [32, 64])
def test_identical_line_art_gives_the_reference_back_exactly(size: int) -> None:
    torch.manual_seed(0)
    G = registry.build_generator("lcmftn-ours", "tiny").eval()
    with torch.no_grad():  # a "trained" gate that would correct everywhere it is allowed to
        G.net.out[-1].bias.fill_(3.0)
    s = _lineart(3, size, seed=1)
    c_p = torch.rand(3, 3, size, size)
    with torch.no_grad():
        out = G(s, c_p, s)
    assert (out - c_p).abs().max() <= 1e-6


def test_locally_unchanged_region_is_copied_and_changed_region_is_not() -> None:
    torch.manual_seed(0)
    G = registry.build_generator("lcmftn-ours", "tiny").eval()
    with torch.no_grad():
        G.net.out[-1].bias.fill_(3.0)
    s_p = _lineart(2, 64, seed=2)
    s_n = s_p.clone()
    s_n[..., :16, :16] = torch.roll(s_p[..., :16, :16], 3, dims=3)  # redraw one corner only
    c_p = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        parts = G.parts(s_p, c_p, s_n)
    unchanged = change_map(s_n, s_p, G.cfg.change_radius_px, G.cfg.change_scale) == 0
    assert unchanged.float().mean() > 0.5
    diff = (parts["out"] - c_p).abs().amax(1, keepdim=True)
    assert diff[unchanged].max() <= 1e-6
    assert diff[~unchanged].max() > 0.05  # where the drawing changed the model does act
    assert 0 <= parts["out"].min() and parts["out"].max() <= 1


def test_at_init_close_to_flow_warp_and_better_than_copy_on_a_shift() -> None:
    torch.manual_seed(0)
    G = registry.build_generator("lcmftn-ours", "tiny").eval()
    g = torch.Generator().manual_seed(3)
    c_p = F.avg_pool2d(torch.rand(2, 3, 64, 64, generator=g), 9, 1, 4)
    s_p = _lineart(2, 64, seed=4)
    s_n, target = (torch.roll(t, (2, -3), dims=(2, 3)) for t in (s_p, c_p))
    with torch.no_grad():
        out, warp = G(s_p, c_p, s_n), FlowWarp()(s_p, c_p, s_n)
    err = lambda x: float((x - target).abs().mean())  # noqa: E731
    assert err(out) < err(c_p)
    assert (out - warp).abs().mean() < 0.5 * (c_p - target).abs().mean()


def test_gradients_reach_the_trunk_and_the_gate() -> None:
    torch.manual_seed(0)
    G = registry.build_generator("lcmftn-ours", "tiny")
    s_p = _lineart(2, 32, seed=5)
    s_n = torch.roll(s_p, (2, 1), dims=(2, 3))
    c_p = torch.rand(2, 3, 32, 32)
    out = G(s_p, c_p, s_n)
    F.l1_loss(out, torch.rand_like(out)).backward()
    for name in ("e_s", "e_h", "e_c", "cmfts"):
        grads = [p.grad for p in getattr(G.net, name).parameters() if p.requires_grad]
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), name
    assert G.net.out[-1].bias.grad[3] != 0  # the gate learns


def test_registry_checkpoint_and_loss(tmp_path) -> None:
    for system in ("lcmftn-ours", "lcmftn-cosine"):
        torch.manual_seed(0)
        G = registry.build_generator(system, "tiny").eval()
        assert G.system == system and registry.is_trainable(system) and registry.multiple_of(system) == 8
        ckpt_io.save_checkpoint(tmp_path / system, G, system, dataclasses.asdict(G.config))
        G2, meta = ckpt_io.load_checkpoint(tmp_path / system)
        assert meta["system"] == system and type(G2.config) is type(G.config)
        s = _lineart(1, 32, seed=6)
        c = torch.rand(1, 3, 32, 32)
        sn = torch.roll(s, (1, 2), dims=(2, 3))
        with torch.no_grad():
            torch.testing.assert_close(G2.eval()(s, c, sn), G(s, c, sn))
        assert losses.build_generator_loss(system, losses.LossConfig(lambda_vgg=0.0)).mode == "ours"
    cfg = registry.generator_config("lcmftn-ours", "small")
    assert cfg.cmft_kernel == "cosine" and cfg.local_path and cfg.extra_out_channels == 1
    with pytest.raises(ValueError, match="flow_method"):
        registry.build_generator("lcmftn-ours", "tiny", flow_method="lk")
