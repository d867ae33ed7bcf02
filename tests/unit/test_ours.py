"""``lcmftn-ours``: exact reference where the line art is unchanged, warp + gated correction,
gradients, checkpoints, registry and training-loss plumbing."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from lcmftn import checkpoint as ckpt_io
from lcmftn import losses, training
from lcmftn.models import registry
from lcmftn.models.baselines import FlowWarp
from lcmftn.models.ours import change_map, gate_loss_term, warp_right
from lcmftn.recipes import apply_overrides, recipe


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


@pytest.mark.parametrize("still_flow_px", [0.0, 0.25])
def test_locally_unchanged_region_is_copied_and_changed_region_is_not(still_flow_px: float) -> None:
    """With ``still_flow_px`` = 0 every locally unchanged pixel is C_p; with the default flow-aware
    base, every locally unchanged pixel that has ink of either drawing within the window is."""
    torch.manual_seed(0)
    G = registry.build_generator("lcmftn-ours", "tiny", still_flow_px=still_flow_px).eval()
    with torch.no_grad():
        G.net.out[-1].bias.fill_(3.0)
    s_p = _lineart(2, 64, seed=2)
    s_n = s_p.clone()
    s_n[..., :16, :16] = torch.roll(s_p[..., :16, :16], 3, dims=3)  # redraw one corner only
    c_p = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        parts = G.parts(s_p, c_p, s_n)
    r = G.cfg.change_radius_px
    unchanged = change_map(s_n, s_p, r, G.cfg.change_scale) == 0
    if still_flow_px > 0:
        ink = torch.maximum(1 - s_p, 1 - s_n) > 0.5
        unchanged &= F.max_pool2d(ink.float(), 2 * r + 1, stride=1, padding=r) > 0
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


# ----------------------------------------------------------------------------- gate term (issue 12)


def _shift_batch(B: int, size: int, seed: int) -> dict[str, torch.Tensor]:
    """Pairs whose truth is the reference rolled by a few px (the warp is mostly right)."""
    g = torch.Generator().manual_seed(seed)
    c_p = F.avg_pool2d(torch.rand(B, 3, size, size, generator=g), 9, 1, 4)
    s_p = _lineart(B, size, seed=seed + 1)
    s_n, c_n = (torch.roll(t, (2, -3), dims=(2, 3)) for t in (s_p, c_p))
    return {"s_p": s_p, "c_p": c_p, "s_n": s_n, "c_n": c_n}


@pytest.mark.parametrize("mode", ["penalty", "bce"])
def test_gate_term_is_zero_with_a_closed_gate_and_positive_when_it_opens_where_the_warp_is_right(mode) -> None:
    torch.manual_seed(0)
    G = registry.build_generator("lcmftn-ours", "tiny").eval()
    b = _shift_batch(2, 32, seed=7)
    cfg = losses.LossConfig(lambda_vgg=0.0, vgg_weights="none", gate_loss=mode)
    values = {}
    for bias in (-40.0, 3.0):  # closed gate / a gate open wherever it is allowed to be
        with torch.no_grad():
            G.net.out[-1].bias[3] = bias
            G.net.out[-1].weight[3].zero_()
            parts = G(b["s_p"], b["c_p"], b["s_n"], return_parts=True)
        assert float(parts["change"].max()) > 0.5  # the drawing did change somewhere
        truth = parts["base"]  # the warp IS the truth: every pixel is "warp right"
        terms = G.auxiliary_losses(parts, truth, cfg)
        weight, value = terms[f"gate_{mode}"]
        assert weight == cfg.lambda_gate
        values[bias] = float(value)
    assert values[-40.0] < 1e-12
    assert values[3.0] > (0.05 if mode == "penalty" else 1.0)


def test_gate_term_ignores_pixels_where_the_warp_is_wrong() -> None:
    gate = torch.full((1, 1, 4, 4), 0.9)
    base, change = torch.zeros(1, 3, 4, 4), torch.ones(1, 1, 4, 4)
    logit = torch.full((1, 1, 4, 4), 3.0)
    wrong_truth = torch.ones(1, 3, 4, 4)  # the warp is wrong everywhere
    assert float(gate_loss_term("penalty", gate, logit, change, base, wrong_truth, 0.1)) == 0.0
    # BCE wants the gate open there: an open gate costs little, a closed one a lot
    open_cost = float(gate_loss_term("bce", gate, logit, change, base, wrong_truth, 0.1))
    closed_cost = float(gate_loss_term("bce", gate, -logit, change, base, wrong_truth, 0.1))
    assert open_cost < 0.1 < 3.0 < closed_cost
    # BCE only counts the changed region: nothing changed -> 0
    assert float(gate_loss_term("bce", gate, logit, torch.zeros_like(change), base, base, 0.1)) == 0.0
    with pytest.raises(ValueError, match="gate_loss"):
        gate_loss_term("nope", gate, logit, change, base, base, 0.1)


def test_gate_term_better_opens_exactly_where_the_correction_beats_the_base() -> None:
    base, change = torch.zeros(1, 3, 2, 4), torch.ones(1, 1, 2, 4)
    truth = torch.zeros(1, 3, 2, 4)
    truth[..., :2] = 1.0  # left half: the base is wrong; right half: the base is right
    target = torch.zeros(1, 3, 2, 4)
    target[..., 0] = 1.0  # T right at column 0 (base wrong there), T wrong at column 3 (base right)
    target[..., 3] = 1.0
    want = torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(1, 1, 2, 4)  # only column 0: T beats the base
    gate = torch.full((1, 1, 2, 4), 0.5)

    def cost(logit):
        return float(gate_loss_term("better", gate, logit, change, base, truth, 0.1, target))

    right = torch.where(want > 0, 6.0, -6.0)
    assert cost(right) < 0.01 < 1.0 < cost(-right)
    # "bce" would also open column 1 (base wrong, T as wrong): "better" keeps it closed
    wrong_at_1 = right.clone()
    wrong_at_1[..., 1] = 6.0
    assert cost(wrong_at_1) > 1.0
    assert float(gate_loss_term("bce", gate, wrong_at_1, change, base, truth, 0.1)) < cost(wrong_at_1)
    with pytest.raises(ValueError, match="needs the correction"):
        gate_loss_term("better", gate, right, change, base, truth, 0.1)


def _ours_cfg(*extra: str):
    return apply_overrides(recipe("smoke"), ["system=lcmftn-ours", "loss.lambda_vgg=0", "loss.vgg_weights=none",
                                             "optim.lr=5e-3", *extra])


def test_knob_off_gives_exactly_todays_loss_and_never_calls_the_hook(monkeypatch) -> None:
    b = _shift_batch(2, 32, seed=8)
    cfg = _ours_cfg()
    assert cfg.loss.gate_loss == "off"  # the default: every existing figure stays valid
    state = training.build_train_state(cfg, "cpu")
    G = state.bare_generator
    monkeypatch.setattr(type(G), "auxiliary_losses", lambda *a: (_ for _ in ()).throw(AssertionError("called")))
    with torch.no_grad():
        G.train()
        expected, _ = state.g_loss(G(b["s_p"], b["c_p"], b["s_n"]).float(), b["c_n"])
    out = training.train_step(state, b)
    assert out["loss"] == float(expected)  # bit for bit: same forward, same loss
    assert set(out) == {"loss", "loss_l1"}
    monkeypatch.undo()
    # with the knob on, the same step adds lambda_gate * term (and logs it)
    on = training.build_train_state(_ours_cfg("loss.gate_loss=penalty"), "cpu")
    with torch.no_grad():
        parts = on.bare_generator(b["s_p"], b["c_p"], b["s_n"], return_parts=True)
        l1, _ = on.g_loss(parts["out"].float(), b["c_n"])
        term = gate_loss_term("penalty", parts["gate"], parts["gate_logit"], parts["change"], parts["base"],
                              b["c_n"], on.cfg.loss.gate_tau)
    out_on = training.train_step(on, b)
    assert float(term) > 0
    assert out_on["loss"] == pytest.approx(float(l1) + on.cfg.loss.lambda_gate * float(term), rel=1e-5)
    assert out_on["loss_gate_penalty"] == pytest.approx(float(term), rel=1e-5) and "loss_gate_mean" in out_on


def test_gate_loss_config_is_checked() -> None:
    with pytest.raises(ValueError, match="gate_loss"):
        _ours_cfg("loss.gate_loss=sometimes")
    with pytest.raises(ValueError, match="gate_tau"):
        _ours_cfg("loss.gate_loss=penalty", "loss.gate_tau=0")
    cfg = apply_overrides(recipe("smoke"), ["loss.gate_loss=penalty"])  # system lcmftn: no gate
    with pytest.raises(ValueError, match="lcmftn-ours"):
        training.build_train_state(cfg, "cpu")


def _gate_where_warp_right(G, b, tau: float) -> float:
    with torch.no_grad():
        p = G.eval()(b["s_p"], b["c_p"], b["s_n"], return_parts=True)
    right = (warp_right(p["base"], b["c_n"], tau) > 0) & (p["change"] > 0)
    assert right.float().mean() > 0.05
    return float(p["gate"][right].mean())


@pytest.mark.parametrize("mode", ["penalty", "bce"])
def test_a_few_steps_with_the_term_close_the_gate_where_the_warp_is_right(mode) -> None:
    b = _shift_batch(4, 32, seed=9)
    gates = {}
    for gate_loss in ("off", mode):
        # measured: start 0.30; after 8 steps off 0.13, penalty 1e-4, bce 1e-3 (at lr 1e-3:
        # 0.26 / 0.22 / 0.22, L1 alone closes it too where T is still worse than the warp)
        state = training.build_train_state(_ours_cfg(f"loss.gate_loss={gate_loss}", "optim.lr=2e-3"), "cpu")
        with torch.no_grad():
            state.bare_generator.net.out[-1].bias[3] = 1.0  # start with the gate fairly open
        start = _gate_where_warp_right(state.bare_generator, b, state.cfg.loss.gate_tau)
        for _ in range(8):
            training.train_step(state, b)
        gates[gate_loss] = _gate_where_warp_right(state.bare_generator, b, state.cfg.loss.gate_tau)
    assert gates[mode] < 0.5 * start
    assert gates[mode] < 0.5 * gates["off"]  # the term, not the L1 alone, closed it


def test_resample_correction_moves_reference_colours_and_never_invents_one() -> None:
    from lcmftn.models.ours import resample_candidates, resample_offsets

    img = torch.arange(49.0).view(1, 1, 7, 7)
    cands = resample_candidates(img, 1, (1, 2))
    assert cands.shape == (1, 1, resample_offsets(1, (1, 2)), 7, 7) == (1, 1, 18, 7, 7)
    assert torch.equal(cands[0, 0, 4], img[0, 0]) and torch.equal(cands[0, 0, 9 + 4], img[0, 0])  # centres
    assert cands[0, 0, 0, 3, 3] == img[0, 0, 2, 2] and cands[0, 0, 9, 3, 3] == img[0, 0, 1, 1]
    assert cands[0, 0, 0, 0, 0] == img[0, 0, 0, 0]  # border replicated

    torch.manual_seed(0)
    G = registry.build_generator("lcmftn-ours", "tiny", correction="resample").eval()
    assert G.cfg.extra_out_channels == 1 and G.net.out[-1].out_channels == 4 + 98
    s_p = _lineart(2, 32, seed=3)
    s_n = torch.roll(s_p, 2, dims=3)
    flat = torch.tensor([0.9, 0.2, 0.4]).view(1, 3, 1, 1).expand(2, 3, 32, 32).contiguous()
    with torch.no_grad():
        G.net.out[-1].bias[3].fill_(5.0)  # an open gate
        parts = G.parts(s_p, flat, s_n)
    assert torch.allclose(parts["target"], flat, atol=1e-6)  # one colour in: no other colour out
    c_p = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        parts = G.parts(s_p, c_p, s_n)
    w = parts["warped_c"]
    assert (parts["target"] >= w.amin((2, 3), keepdim=True) - 1e-6).all()
    assert (parts["target"] <= w.amax((2, 3), keepdim=True) + 1e-6).all()
    assert (parts["target"] - w).abs().mean() < 0.05  # at init T is close to the warp itself
    # gradients reach the resampling logits; checkpoint config round trip
    G.train()
    G(s_p, c_p, s_n).mean().backward()
    assert G.net.out[-1].weight.grad[4:].abs().sum() > 0
    cfg = registry.config_from_dict("lcmftn-ours", dataclasses.asdict(G.cfg))
    assert cfg == G.cfg
    with pytest.raises(ValueError, match="correction"):
        registry.build_generator("lcmftn-ours", "tiny", correction="nope")
    with pytest.raises(ValueError, match="exceed 512"):
        registry.build_generator("lcmftn-ours", "tiny", resample_radius_px=20)
