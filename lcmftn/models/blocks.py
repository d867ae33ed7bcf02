"""Building blocks: conv layers, the ResNeXt block (Xie et al.) and the RU unit (paper §3.2).

Shape legend: B = batch, C = channels, H, W = spatial.

* ``conv_act``: Conv2d + LeakyReLU(0.2), no normalisation (the paper's Figure 4 is not available;
  LCMFTN builds on Ci et al.'s anime colorization generator, which uses LeakyReLU and no
  batch-norm, so we do the same).
* ``ResNeXtBlock``: 1×1 reduce → grouped 3×3 (cardinality groups) → 1×1 expand, residual add.
* ``RU``: a stack of ResNeXt blocks then a sub-pixel convolution (Shi et al.): 3×3 conv to
  ``4·C_out`` channels + PixelShuffle(2) doubles the resolution.
"""

from __future__ import annotations

from torch import Tensor, nn


def conv_act(
    c_in: int, c_out: int, kernel: int = 3, stride: int = 1, dilation: int = 1, act: bool = True
) -> nn.Sequential:
    """Conv2d ('same'-style padding for odd kernels) + optional LeakyReLU(0.2)."""
    pad = dilation * (kernel - 1) // 2
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, pad, dilation=dilation)]
    if act:
        layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


class ResNeXtBlock(nn.Module):
    """Bottleneck ResNeXt block: x + expand(grouped3x3(reduce(x))). [B,C,H,W] -> [B,C,H,W]."""

    def __init__(self, channels: int, bottleneck: int, cardinality: int, dilation: int = 1):
        super().__init__()
        if bottleneck % cardinality:
            raise ValueError(f"bottleneck width {bottleneck} must be divisible by cardinality {cardinality}")
        self.body = nn.Sequential(
            nn.Conv2d(channels, bottleneck, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(bottleneck, bottleneck, 3, padding=dilation, dilation=dilation, groups=cardinality),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(bottleneck, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class RU(nn.Module):
    """ResNeXt blocks + sub-pixel upsampling. [B,C_in,H,W] -> [B,C_out,2H,2W].

    A 3×3 conv first maps the concatenated inputs (C_in) to the block width.
    """

    def __init__(self, c_in: int, width: int, c_out: int, num_blocks: int, cardinality: int):
        super().__init__()
        bottleneck = max(cardinality, width // 2 // cardinality * cardinality)
        self.inp = conv_act(c_in, width)
        self.blocks = nn.Sequential(*(ResNeXtBlock(width, bottleneck, cardinality) for _ in range(num_blocks)))
        self.up = nn.Sequential(
            nn.Conv2d(width, 4 * c_out, 3, padding=1),
            nn.PixelShuffle(2),  # [B, 4*C_out, H, W] -> [B, C_out, 2H, 2W]
            nn.LeakyReLU(0.2, inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.blocks(self.inp(x)))
