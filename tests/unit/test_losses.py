"""Losses: VGG-19 sources (file layouts, clear errors), loss values, GAN helpers."""

from __future__ import annotations

import logging
import math
import sys

import pytest
import torch
import torch.nn.functional as F

from lcmftn import losses
from lcmftn.losses import LossConfig, VGG19Features, build_generator_loss, build_vgg


def _full_torchvision_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with torchvision vgg19's exact keys and shapes (features + classifier)."""
    g = torch.Generator().manual_seed(seed)
    state, c_in, idx = {}, 3, 0
    for v in losses.VGG19_CFG:
        if v == "M":
            idx += 1
            continue
        state[f"features.{idx}.weight"] = torch.randn(v, c_in, 3, 3, generator=g) * 0.05
        state[f"features.{idx}.bias"] = torch.randn(v, generator=g) * 0.01
        c_in, idx = v, idx + 2
    for i, out in {0: 4096, 3: 4096, 6: 1000}.items():
        state[f"classifier.{i}.weight"] = torch.zeros(out, 1)  # shapes irrelevant: ignored keys
        state[f"classifier.{i}.bias"] = torch.zeros(out)
    return state


def test_taps_are_relu_1_1_to_5_1() -> None:
    # torchvision vgg19().features indices of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
    assert VGG19Features().taps == [1, 6, 11, 20, 29]
    assert len(VGG19Features().features) == 30
    assert "features.28.weight" in VGG19Features().state_dict()  # conv5_1
    feats = VGG19Features()(torch.rand(1, 3, 32, 32))
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512]
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 2]


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_loads_torchvision_layout_file(tmp_path, suffix: str) -> None:
    state = _full_torchvision_state()
    path = tmp_path / f"vgg19{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    vgg = build_vgg(str(path))
    torch.testing.assert_close(vgg.features[28].weight, state["features.28.weight"])
    torch.testing.assert_close(vgg.features[0].bias, state["features.0.bias"])
    assert not any(p.requires_grad for p in vgg.parameters())
    assert losses.vgg_source(LossConfig(vgg_weights=str(path))) == f"state dict file {path}"


def test_bad_vgg_files_name_the_file(tmp_path) -> None:
    with pytest.raises(ValueError, match="does not exist.*torchvision"):
        build_vgg(str(tmp_path / "missing.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a pickle")
    with pytest.raises(ValueError, match="garbage.pth.*cannot read"):
        build_vgg(str(garbage))
    partial = tmp_path / "partial.pth"
    state = _full_torchvision_state()
    del state["features.28.weight"]
    torch.save(state, partial)
    with pytest.raises(ValueError, match="partial.pth.*missing tensors.*features.28.weight"):
        build_vgg(str(partial))
    wrong = tmp_path / "wrong.pth"
    state = _full_torchvision_state()
    state["features.0.weight"] = torch.zeros(64, 1, 3, 3)
    torch.save(state, wrong)
    with pytest.raises(ValueError, match="features.0.weight has shape"):
        build_vgg(str(wrong))


def test_none_with_positive_weight_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="vgg_weights='none'.*torchvision.*random"):
        build_generator_loss("lcmftn", LossConfig(vgg_weights="none"))
    with pytest.raises(ValueError, match="lambda_content, loss.lambda_style.*vgg_weights='none'"):
        build_generator_loss("tcvc", LossConfig(vgg_weights="none"))
    assert build_generator_loss("tcvc", LossConfig(vgg_weights="none", lambda_content=0,
                                                   lambda_style=0)).vgg is None
    # No VGG needed: fine.
    loss = build_generator_loss("lcmftn", LossConfig(lambda_vgg=0.0, vgg_weights="none"))
    assert loss.vgg is None and losses.vgg_source(loss.cfg) == "none (no VGG loss term)"
    assert build_generator_loss("pix2pix-ref", LossConfig(vgg_weights="none")).vgg is None


def test_torchvision_missing_names_the_options(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision -> ImportError
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(ValueError, match="needs torchvision.*local path or s3:// URI.*random.*none"):
        build_vgg("torchvision")


def test_random_is_deterministic_and_logged(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="lcmftn.losses"):
        a, b = build_vgg("random"), build_vgg("random")
    assert "RANDOM" in caplog.text
    torch.testing.assert_close(a.features[0].weight, b.features[0].weight)
    assert a.features[0].weight.std() > 0
    assert "NOT pretrained" in losses.vgg_source(LossConfig(vgg_weights="random"))


def test_lcmftn_loss_values() -> None:
    pred, target = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    l1_only = build_generator_loss("lcmftn", LossConfig(lambda_vgg=0.0, vgg_weights="none"))
    total, parts = l1_only(pred, target)
    torch.testing.assert_close(total, 10.0 * F.l1_loss(pred, target))
    assert set(parts) == {"l1"}
    full = build_generator_loss("lcmftn", LossConfig(vgg_weights="random"))
    total, parts = full(pred, target)
    vgg = full.vgg
    expected_vgg = sum(F.mse_loss(a, b) for a, b in zip(vgg(pred), vgg(target), strict=True))
    assert parts["vgg"] == pytest.approx(float(expected_vgg), rel=1e-5)
    assert float(total) == pytest.approx(10 * parts["l1"] + 2e-2 * parts["vgg"], rel=1e-5)
    zero, _ = full(target, target)
    assert float(zero) == 0.0
    p = pred.clone().requires_grad_()
    full(p, target)[0].backward()
    assert p.grad.abs().sum() > 0 and all(q.grad is None for q in vgg.parameters())
    with pytest.raises(ValueError, match="differ"):
        full(pred[:, :, :16], target)


def test_gan_losses_and_conditions() -> None:
    zeros = torch.zeros(2, 1, 6, 6)
    assert float(losses.discriminator_loss(zeros, zeros)) == pytest.approx(math.log(2))
    assert float(losses.discriminator_loss(torch.full_like(zeros, 20), torch.full_like(zeros, -20))) < 1e-6
    s_p, c_p, s_n = torch.rand(1, 1, 8, 8), torch.rand(1, 3, 8, 8), torch.rand(1, 1, 8, 8)
    assert losses.discriminator_condition("pix2pix-ref", s_p, c_p, s_n).shape[1] == 5
    cond = losses.discriminator_condition("tcvc", s_p, c_p, s_n)
    torch.testing.assert_close(cond, torch.cat([s_n, c_p], 1))
    with pytest.raises(ValueError, match="no discriminator"):
        losses.discriminator_condition("lcmftn", s_p, c_p, s_n)

    pred, target = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    p2p = build_generator_loss("pix2pix-ref", LossConfig(vgg_weights="none"))
    total, parts = p2p(pred, target, fake_logits=zeros)
    assert set(parts) == {"l1", "adv"} and parts["adv"] == pytest.approx(math.log(2))
    assert float(total) == pytest.approx(100 * parts["l1"] + math.log(2), rel=1e-5)
    _, parts = p2p(pred, target)  # no D output (validation): no adversarial term
    assert set(parts) == {"l1"}
    tcvc = build_generator_loss("tcvc", LossConfig(vgg_weights="random"))
    total, parts = tcvc(pred, target, fake_logits=zeros)
    assert set(parts) == {"l1", "content", "style", "adv"}
    assert float(total) == pytest.approx(10 * parts["l1"] + parts["content"] + 1000 * parts["style"]
                                         + parts["adv"], rel=1e-5)
    ours = build_generator_loss("tcvc", LossConfig(vgg_weights="random", baseline_loss="ours"))
    assert set(ours(pred, target, fake_logits=zeros)[1]) == {"l1", "vgg", "adv"}
    with pytest.raises(ValueError, match="baseline_loss"):
        build_generator_loss("tcvc", LossConfig(baseline_loss="mine"))
    with pytest.raises(ValueError, match="not trainable"):
        build_generator_loss("copy-ref", LossConfig(vgg_weights="none"))


def test_gram_matrix() -> None:
    x = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # [1, 2, 1, 2]
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4
    torch.testing.assert_close(losses.gram_matrix(x), expected)


def test_loss_config_parses_from_recipe_overrides() -> None:
    from lcmftn.recipes import apply_overrides, recipe

    cfg = apply_overrides(recipe("smoke"), ["loss.vgg_weights=/tmp/v.pth", "loss.lambda_style=5"])
    assert cfg.loss.vgg_weights == "/tmp/v.pth" and cfg.loss.lambda_style == 5.0
