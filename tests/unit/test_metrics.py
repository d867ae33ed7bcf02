"""PSNR / SSIM (DESIGN §6) and flicker: known values and agreement with torchmetrics."""

from __future__ import annotations

import math

import pytest
import torch

from lcmftn.metrics import flicker, gaussian_window, psnr, ssim


def _structured(B: int, S: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(B, 3, S // 8, S // 8, generator=g)
    img = torch.nn.functional.interpolate(base, size=(S, S), mode="bilinear", align_corners=False)
    return (img + 0.05 * torch.randn(B, 3, S, S, generator=g)).clamp(0, 1)


def test_psnr_known_values() -> None:
    target = torch.zeros(2, 3, 16, 16)
    pred = torch.stack([torch.full((3, 16, 16), 0.1), torch.full((3, 16, 16), 0.01)])
    torch.testing.assert_close(psnr(pred, target), torch.tensor([20.0, 40.0], dtype=torch.float64))
    assert psnr(target, target).tolist() == [100.0, 100.0]  # identical: capped at 100 dB


def test_ssim_identical_and_constant_images() -> None:
    x = _structured(2, 32, 0)
    torch.testing.assert_close(ssim(x, x), torch.ones(2, dtype=torch.float64))
    # Constant images: only the luminance term differs from 1.
    a, b = torch.full((1, 3, 16, 16), 0.5), torch.full((1, 3, 16, 16), 0.6)
    c1 = 0.01**2
    expected = (2 * 0.5 * 0.6 + c1) / (0.25 + 0.36 + c1)
    assert float(ssim(a, b)) == pytest.approx(expected, abs=1e-7)  # inputs are float32


def test_ssim_window() -> None:
    w = gaussian_window()
    assert w.shape == (11, 11) and float(w.sum()) == pytest.approx(1.0)
    assert float(w[5, 5] / w[5, 6]) == pytest.approx(math.exp(1 / (2 * 1.5**2)))


def test_matches_torchmetrics() -> None:
    tm = pytest.importorskip("torchmetrics.functional.image")
    pred, target = _structured(3, 48, 1), _structured(3, 48, 2)
    pred[1] = target[1] * 0.9 + 0.05  # one close pair, two unrelated ones
    pred, target = pred.double(), target.double()
    # torchmetrics reflect-pads by 5 px and averages the full H×W map; Wang et al. (and ours)
    # average the valid positions only: crop its map to those and compare.
    _, full = tm.structural_similarity_index_measure(pred, target, data_range=1.0, reduction="none",
                                                     return_full_image=True)
    ref_ssim = full[..., 5:-5, 5:-5].flatten(1).mean(1)
    torch.testing.assert_close(ssim(pred, target), ref_ssim, atol=1e-7, rtol=1e-7)
    # The border convention matters by a few thousandths on such images (why it is fixed here).
    padded = tm.structural_similarity_index_measure(pred, target, data_range=1.0, reduction="none")
    assert (ssim(pred, target) - padded).abs().max() < 0.02
    ref_psnr = tm.peak_signal_noise_ratio(pred, target, data_range=1.0, reduction="none", dim=(1, 2, 3))
    torch.testing.assert_close(psnr(pred, target), ref_psnr.double(), atol=1e-4, rtol=1e-5)
    assert float(ssim(pred, target)[1]) > float(ssim(pred, target)[0])


def test_metric_errors() -> None:
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 8))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="float"):
        psnr(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.zeros(1, 3, 4, 4, dtype=torch.uint8))


def test_flicker() -> None:
    still = torch.rand(1, 3, 8, 8).repeat(5, 1, 1, 1)
    assert flicker(still) == 0.0
    blink = torch.full((5, 3, 8, 8), 0.5, dtype=torch.float64)
    blink[1::2] = 0.3  # 0.5, 0.3, 0.5, 0.3, 0.5
    still = still.double()
    assert flicker(blink) == pytest.approx(0.2)
    # With a ground truth that moves the same way, real change is not flicker.
    assert flicker(blink, target=blink) == 0.0
    assert flicker(torch.full_like(blink, 0.4), target=blink) == pytest.approx(0.2)
    assert math.isnan(flicker(still[:1]))
    with pytest.raises(ValueError, match="T, C, H, W"):
        flicker(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="must match"):
        flicker(still, target=still[:2])
