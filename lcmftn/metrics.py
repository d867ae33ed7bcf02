"""Image-quality metrics of the evaluation protocol (DESIGN §6), per sample.

* ``psnr``: on RGB in [0, 1] (data range 1): ``10·log10(1 / MSE)``, MSE over C, H, W of each
  sample. Identical images would give +inf; the MSE is floored at 1e-10, i.e. PSNR is capped at
  100 dB, so averages stay finite.
* ``ssim``: Wang et al. (2004) with an 11×11 Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03,
  data range 1, computed per RGB channel over the *valid* window positions (no padding) and
  averaged over channels and positions — Wang et al.'s reference code and scikit-image's
  convention. NOTE: ``torchmetrics`` (1.9) instead reflect-pads by 5 px and averages the full
  H×W map, which differs by ~0.005 on 48 px images; the unit tests check our value equals its
  SSIM map cropped to the valid positions. We keep our own 20-line version also because
  importing torchmetrics costs seconds and pulls scipy/PIL into every worker. Float64.
* ``flicker``: mean absolute temporal change between consecutive frames. With ``target`` it is
  the mean absolute difference between the prediction's and the ground truth's temporal changes,
  ``mean |(x_{t+1} − x_t) − (y_{t+1} − y_t)|``, so real motion does not count as flicker.

Shapes: ``pred``/``target`` ``[B, C, H, W]`` float in [0, 1]; ``frames`` ``[T, C, H, W]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_WINDOW_PX = 11
SSIM_SIGMA_PX = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
PSNR_MIN_MSE = 1e-10  # caps PSNR at 100 dB for identical images


def _check_pair(pred: Tensor, target: Tensor, name: str) -> None:
    if not (isinstance(pred, Tensor) and isinstance(target, Tensor)):
        raise TypeError(f"{name}: pred and target must be tensors")
    if pred.dim() != 4 or pred.shape != target.shape:
        raise ValueError(f"{name}: pred and target must be [B, C, H, W] of the same shape, "
                         f"got {tuple(pred.shape)} and {tuple(target.shape)}")
    if not (pred.is_floating_point() and target.is_floating_point()):
        raise ValueError(f"{name}: expected float tensors in [0, 1], got {pred.dtype} and {target.dtype}")


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """PSNR in dB per sample, ``[B]`` (float64), data range 1."""
    _check_pair(pred, target, "psnr")
    mse = (pred.double() - target.double()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(PSNR_MIN_MSE))


def gaussian_window(size: int = SSIM_WINDOW_PX, sigma: float = SSIM_SIGMA_PX) -> Tensor:
    """Normalised 2-D Gaussian ``[size, size]`` (float64)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(pred: Tensor, target: Tensor) -> Tensor:
    """SSIM per sample, ``[B]`` (float64): 11×11 Gaussian σ=1.5, per channel, valid positions."""
    _check_pair(pred, target, "ssim")
    B, C, H, W = pred.shape
    if H < SSIM_WINDOW_PX or W < SSIM_WINDOW_PX:
        raise ValueError(f"ssim: images must be at least {SSIM_WINDOW_PX}x{SSIM_WINDOW_PX}, got {H}x{W}")
    x, y = pred.double(), target.double()
    # The Gaussian is separable: an 11x1 then a 1x11 depthwise pass equals the 11x11 window
    # (to ~1e-15) at 2/11 of the multiply-adds; the five blurred maps go through one conv pair.
    g = gaussian_window().sum(1).to(x.device)  # the 1-D kernel [11]
    stacked = torch.cat([x, y, x * x, y * y, x * y], 1)  # [B, 5C, H, W]
    n = stacked.shape[1]
    blurred = F.conv2d(stacked, g.view(1, 1, -1, 1).expand(n, 1, -1, 1), groups=n)
    blurred = F.conv2d(blurred, g.view(1, 1, 1, -1).expand(n, 1, 1, -1), groups=n)  # [B,5C,H-10,W-10]
    mu_x, mu_y, e_xx, e_yy, e_xy = blurred.split(C, 1)
    var_x = e_xx - mu_x**2
    var_y = e_yy - mu_y**2
    cov = e_xy - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # data range 1
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1)


def flicker(frames: Tensor, target: Tensor | None = None) -> float:
    """Temporal flicker of a clip ``[T, C, H, W]`` in [0, 1] (lower is steadier).

    Without ``target``: mean |x_{t+1} − x_t|. With ``target`` (the ground-truth clip):
    mean |(x_{t+1} − x_t) − (y_{t+1} − y_t)|. ``nan`` when T < 2 (no consecutive pair).
    """
    if not isinstance(frames, Tensor) or frames.dim() != 4:
        raise ValueError(f"flicker: frames must be a [T, C, H, W] tensor, got "
                         f"{tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__}")
    if target is not None and target.shape != frames.shape:
        raise ValueError(f"flicker: target {tuple(target.shape)} must match frames {tuple(frames.shape)}")
    if frames.shape[0] < 2:
        return math.nan
    d = frames[1:].double() - frames[:-1].double()
    if target is not None:
        d = d - (target[1:].double() - target[:-1].double())
    return float(d.abs().mean())
