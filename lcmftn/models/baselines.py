"""Seed baselines (LCMFTN paper §4.2, DESIGN §3): Pix2Pix-ref, TCVC, their PatchGANs, and the
two no-training references copy-ref and flow-warp.

Shape legend: B = batch, H, W = spatial; ``s_p``/``s_n`` ``[B,1,H,W]``, ``c_p`` ``[B,3,H,W]``,
all float in [0, 1]; every system returns ``[B,3,H,W]`` in [0, 1].

* ``Pix2PixRef`` (Isola et al., "U-Net 256"): the reference is concatenated to the input
  (``cat(S_n, S_p, C_p)``, 5 channels), as the LCMFTN paper adapts Pix2Pix. ``num_downs``
  stride-2 4×4 convs down to the bottleneck, mirrored transposed convs up with skips.
  Deviations: InstanceNorm (affine) instead of BatchNorm (batches of 1–4; eval == train
  behaviour), sigmoid output instead of tanh (our images are in [0, 1]); inputs whose side is
  not a multiple of ``2**num_downs`` are replicate-padded inside and the output is cropped, so
  ``multiple_of`` is 1.
* ``TCVCGenerator`` (Thasarathan et al.): input ``cat(S_n, C_p)`` (current line art + previous
  colour frame; S_p is not used), 7×7 conv, 2 stride-2 down convs, ``num_res_blocks`` residual
  blocks, 2 transposed up convs, 7×7 conv; InstanceNorm + ReLU. Sigmoid output.
* ``PatchGAN``: the 70×70 PatchGAN of pix2pix (3 stride-2 4×4 convs, one stride-1, 1-channel
  logit map). ``D(cond, image)`` concatenates the condition and the (real or fake) image.
  TCVC's uses spectral norm on every conv and no other normalisation.
* ``CopyRef``: returns C_p. ``FlowWarp``: dense optical flow (OpenCV Farneback or DIS) from S_n to
  S_p (both lightly blurred because line art is sparse), then C_p is sampled at x + flow(x).
  Runs per sample on CPU NumPy; not differentiable, ``trainable = False``.
* ``DeepAnalogy`` (Liao et al. 2017, as the LCMFTN paper §4.3 adapts it: the reference's
  line art is known, so only the match S_n -> S_p is searched): a coarse-to-fine nearest-
  neighbour field (exhaustive search in a window around the upsampled coarser field, a
  per-level PatchMatch without the random search) on *features of the line art*, then C_p is
  read at the matched positions. NOTE: no pretrained VGG-19 can be downloaded here, so the
  features are not a deep network's: they are the ink map ``1 - S`` blurred at several scales
  (``feature_sigmas_px``), i.e. raw line-art pixels with growing context. Offsets are
  integers and the output is C_p copied pixel for pixel (nearest), so an identical pair gives
  C_p exactly (a small ``offset_penalty`` breaks ties towards no motion on blank paper).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lcmftn.models.base import ColorizationSystem, check_inputs

# ----------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class Pix2PixConfig:
    """U-Net generator of Pix2Pix-ref.

    size: preset name (informational). base_channels: width of the first conv (ngf).
    num_downs: stride-2 levels (8 = pix2pix's unet_256: 256 -> 1). dropout: in the 3 innermost
    up convs (pix2pix uses 0.5).
    """

    size: str = "small"
    base_channels: int = 32
    num_downs: int = 6
    dropout: float = 0.0


@dataclass(frozen=True)
class TCVCConfig:
    """TCVC generator: base_channels (first conv width; x2, x4 after the downs), residual blocks."""

    size: str = "small"
    base_channels: int = 16
    num_res_blocks: int = 8


@dataclass(frozen=True)
class PatchGANConfig:
    """70×70 PatchGAN: ``n_layers`` stride-2 convs (3 = 70×70 receptive field)."""

    size: str = "small"
    in_channels: int = 8
    base_channels: int = 32
    n_layers: int = 3
    spectral_norm: bool = False


@dataclass(frozen=True)
class CopyRefConfig:
    size: str = "small"


@dataclass(frozen=True)
class FlowWarpConfig:
    """Flow-warp reference. method: "farneback" | "dis". blur_sigma_px: Gaussian blur of the
    line art before flow (0 = off); sparse lines give the flow little to hold on to."""

    size: str = "small"
    method: str = "farneback"
    blur_sigma_px: float = 1.5


@dataclass(frozen=True)
class DeepAnalogyConfig:
    """DeepAnalogy-style patch matching (see the module docstring).

    levels: pyramid levels (each halves the size). radius_px: search radius at each level in
    that level's pixels (the coarsest level's radius reaches ``radius_px * 2**(levels-1)`` px at
    full size). patch_px: side of the square patch whose feature SSD is compared.
    feature_sigmas_px: Gaussian blurs of the ink map stacked as feature channels (0 = raw).
    offset_penalty: cost per squared pixel of offset (ties on blank paper -> no motion).
    """

    size: str = "small"
    levels: int = 3
    radius_px: int = 4
    patch_px: int = 5
    feature_sigmas_px: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0)
    offset_penalty: float = 1e-4


# ----------------------------------------------------------------------------- Pix2Pix-ref


class UNetBlock(nn.Module):
    """One U-Net level: down -> (inner) -> up, output concatenated with the input (skip)."""

    def __init__(self, outer: int, inner: int, sub: nn.Module | None, outermost: bool = False,
                 in_channels: int | None = None, dropout: float = 0.0):
        super().__init__()
        c_in = in_channels if in_channels is not None else outer
        innermost = sub is None
        down: list[nn.Module] = [] if outermost else [nn.LeakyReLU(0.2, inplace=False)]
        down.append(nn.Conv2d(c_in, inner, 4, 2, 1))
        if not (outermost or innermost):
            down.append(nn.InstanceNorm2d(inner, affine=True))
        up_in = inner if innermost else 2 * inner
        up: list[nn.Module] = [nn.ReLU(inplace=False), nn.ConvTranspose2d(up_in, outer, 4, 2, 1)]
        if not outermost:
            up.append(nn.InstanceNorm2d(outer, affine=True))
            if dropout > 0:
                up.append(nn.Dropout(dropout))
        self.outermost = outermost
        self.down, self.sub, self.up = nn.Sequential(*down), sub, nn.Sequential(*up)

    def forward(self, x: Tensor) -> Tensor:
        y = self.down(x)
        if self.sub is not None:
            y = self.sub(y)
        y = self.up(y)
        return y if self.outermost else torch.cat([x, y], 1)


class Pix2PixRef(ColorizationSystem):
    """Pix2Pix U-Net with the reference concatenated to the input: G(cat(S_n, S_p, C_p))."""

    system = "pix2pix-ref"
    trainable = True
    IN_CHANNELS = 5

    def __init__(self, cfg: Pix2PixConfig):
        super().__init__()
        if cfg.num_downs < 2:
            raise ValueError(f"Pix2Pix num_downs must be >= 2, got {cfg.num_downs}")
        self.config = cfg
        ngf = cfg.base_channels
        widths = [min(ngf * 2**i, ngf * 8) for i in range(cfg.num_downs)]  # 64,128,256,512,512...
        block: UNetBlock | None = None
        for i in range(cfg.num_downs - 1, 0, -1):  # innermost first
            # pix2pix: dropout in the 3 up convs just outside the innermost block.
            near_inner = cfg.num_downs - 4 <= i <= cfg.num_downs - 2
            block = UNetBlock(widths[i - 1], widths[i], block,
                              dropout=cfg.dropout if near_inner else 0.0)
        self.net = UNetBlock(3, widths[0], block, outermost=True, in_channels=self.IN_CHANNELS)
        self.factor = 2**cfg.num_downs

    def forward(self, s_p: Tensor, c_p: Tensor, s_n: Tensor) -> Tensor:
        check_inputs(s_p, c_p, s_n)
        x = torch.cat([s_n, s_p, c_p], 1)  # [B, 5, H, W]
        H, W = x.shape[-2:]
        ph, pw = (-H) % self.factor, (-W) % self.factor
        if ph or pw:  # NOTE: the U-Net needs multiples of 2**num_downs; pad and crop back.
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return torch.sigmoid(self.net(x))[..., :H, :W]


# ----------------------------------------------------------------------------- TCVC


class ResidualBlock(nn.Module):
    """conv3-IN-ReLU-conv3-IN + identity (Johnson et al. / TCVC)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _conv_in_relu(c_in: int, c_out: int, kernel: int, stride: int = 1, transpose: bool = False) -> list[nn.Module]:
    if transpose:
        conv: nn.Module = nn.ConvTranspose2d(c_in, c_out, kernel, stride, padding=1, output_padding=1)
    else:
        conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2)
    return [conv, nn.InstanceNorm2d(c_out, affine=True), nn.ReLU(inplace=True)]


class TCVCGenerator(ColorizationSystem):
    """TCVC generator: G(cat(S_n, C_p)); 2 downs, residual blocks, 2 ups, instance norm."""

    system = "tcvc"
    trainable = True

    def __init__(self, cfg: TCVCConfig):
        super().__init__()
        self.config = cfg
        c = cfg.base_channels
        self.net = nn.Sequential(
            *_conv_in_relu(4, c, 7),
            *_conv_in_relu(c, 2 * c, 3, 2),
            *_conv_in_relu(2 * c, 4 * c, 3, 2),
            *(ResidualBlock(4 * c) for _ in range(cfg.num_res_blocks)),
            *_conv_in_relu(4 * c, 2 * c, 3, 2, transpose=True),
            *_conv_in_relu(2 * c, c, 3, 2, transpose=True),
            nn.Conv2d(c, 3, 7, padding=3),
        )

    def forward(self, s_p: Tensor, c_p: Tensor, s_n: Tensor) -> Tensor:
        check_inputs(s_p, c_p, s_n, multiple_of=4)
        return torch.sigmoid(self.net(torch.cat([s_n, c_p], 1)))  # [B, 4, H, W] -> [B, 3, H, W]


# ----------------------------------------------------------------------------- PatchGAN


class PatchGAN(nn.Module):
    """70×70 PatchGAN. ``D(cond [B,Cc,H,W], image [B,3,H,W]) -> logits [B,1,h,w]``."""

    def __init__(self, cfg: PatchGANConfig):
        super().__init__()
        self.config = cfg
        sn = nn.utils.parametrizations.spectral_norm if cfg.spectral_norm else (lambda m: m)
        ndf = cfg.base_channels
        layers: list[nn.Module] = [sn(nn.Conv2d(cfg.in_channels, ndf, 4, 2, 1)), nn.LeakyReLU(0.2, True)]
        c = ndf
        for i in range(1, cfg.n_layers + 1):
            c_out = ndf * min(2**i, 8)
            stride = 2 if i < cfg.n_layers else 1
            layers.append(sn(nn.Conv2d(c, c_out, 4, stride, 1)))
            if not cfg.spectral_norm:
                layers.append(nn.InstanceNorm2d(c_out, affine=True))
            layers.append(nn.LeakyReLU(0.2, True))
            c = c_out
        layers.append(sn(nn.Conv2d(c, 1, 4, 1, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, cond: Tensor, image: Tensor) -> Tensor:
        x = torch.cat([cond, image.to(cond.dtype)], 1)
        if x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"PatchGAN expects {self.config.in_channels} input channels (condition + image), "
                f"got {cond.shape[1]} + {image.shape[1]}"
            )
        return self.net(x)


# ----------------------------------------------------------------------------- no-training refs


class CopyRef(ColorizationSystem):
    """C_e = C_p: the lower bound every learned system must beat."""

    system = "copy-ref"
    trainable = False

    def __init__(self, cfg: CopyRefConfig | None = None):
        super().__init__()
        self.config = cfg or CopyRefConfig()

    def forward(self, s_p: Tensor, c_p: Tensor, s_n: Tensor) -> Tensor:
        check_inputs(s_p, c_p, s_n)
        return c_p.clone()


def _to_u8(lineart: np.ndarray, blur_sigma_px: float) -> np.ndarray:
    img = np.clip(lineart * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if blur_sigma_px > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur_sigma_px)
    return img


def dense_flow(src: np.ndarray, dst: np.ndarray, method: str = "farneback") -> np.ndarray:
    """Flow ``f`` [H,W,2] (x, y) with ``src(p) ≈ dst(p + f(p))`` for uint8 [H,W] images."""
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(src, dst, None, pyr_scale=0.5, levels=4, winsize=15,
                                            iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return dis.calc(src, dst, None)
    raise ValueError(f"flow-warp method must be 'farneback' or 'dis', got {method!r}")


def warp_with_flow(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample ``image`` [H,W,C] float32 at p + flow(p) (bilinear, border replicate)."""
    H, W = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    return cv2.remap(image, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


class FlowWarp(ColorizationSystem):
    """Warp C_p along the dense optical flow between the line arts S_n -> S_p (CPU, per sample)."""

    system = "flow-warp"
    trainable = False

    def __init__(self, cfg: FlowWarpConfig | None = None):
        super().__init__()
        self.config = cfg or FlowWarpConfig()
        if self.config.method not in ("farneback", "dis"):
            raise ValueError(f"flow-warp method must be 'farneback' or 'dis', got {self.config.method!r}")

    @torch.no_grad()
    def forward(self, s_p: Tensor, c_p: Tensor, s_n: Tensor) -> Tensor:
        check_inputs(s_p, c_p, s_n)
        sp = s_p[:, 0].float().cpu().numpy()
        sn = s_n[:, 0].float().cpu().numpy()
        cp = c_p.float().permute(0, 2, 3, 1).cpu().numpy()  # [B, H, W, 3]
        out = np.empty_like(cp)
        for b in range(cp.shape[0]):
            flow = dense_flow(_to_u8(sn[b], self.config.blur_sigma_px),
                              _to_u8(sp[b], self.config.blur_sigma_px), self.config.method)
            out[b] = warp_with_flow(np.ascontiguousarray(cp[b]), flow)
        return torch.from_numpy(out).permute(0, 3, 1, 2).to(device=c_p.device, dtype=c_p.dtype)


# ----------------------------------------------------------------------------- DeepAnalogy


def _blur(x: Tensor, sigma: float) -> Tensor:
    if sigma <= 0:
        return x
    r = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1))


def _sample(img: Tensor, field: Tensor) -> Tensor:
    """``img`` [B,C,H,W] read at integer positions x + field(x) (field [B,2,H,W] as (dy, dx)),
    clamped to the border: a pure gather, so identity offsets return ``img`` exactly."""
    B, C, H, W = img.shape
    ys = torch.arange(H, device=img.device).view(1, H, 1) + field[:, 0]
    xs = torch.arange(W, device=img.device).view(1, 1, W) + field[:, 1]
    idx = (ys.clamp(0, H - 1) * W + xs.clamp(0, W - 1)).view(B, 1, H * W).expand(B, C, H * W)
    return img.flatten(2).gather(2, idx).view(B, C, H, W)


class DeepAnalogy(ColorizationSystem):
    """Coarse-to-fine NN-field matching S_n -> S_p on line-art features; C_p read at the match."""

    system = "deep-analogy"
    trainable = False

    def __init__(self, cfg: DeepAnalogyConfig | None = None):
        super().__init__()
        self.config = cfg or DeepAnalogyConfig()
        c = self.config
        if c.levels < 1 or c.radius_px < 0 or c.patch_px < 1 or c.patch_px % 2 == 0:
            raise ValueError(f"deep-analogy: need levels >= 1, radius_px >= 0, odd patch_px >= 1, got {c}")

    def features(self, s: Tensor) -> Tensor:
        ink = 1.0 - s.float()
        return torch.cat([_blur(ink, sig) for sig in self.config.feature_sigmas_px], 1)

    def match(self, s_p: Tensor, s_n: Tensor) -> Tensor:
        """The NN field ``[B, 2, H, W]`` (integer (dy, dx)): S_n(x) matches S_p(x + field(x))."""
        c = self.config
        f_p, f_n = self.features(s_p), self.features(s_n)
        B, _, H, W = f_n.shape
        pyr = [(f_p, f_n)]
        for _ in range(c.levels - 1):
            a, b = pyr[-1]
            if min(a.shape[-2:]) < 2 * c.patch_px:
                break
            pyr.append((F.avg_pool2d(a, 2, ceil_mode=True), F.avg_pool2d(b, 2, ceil_mode=True)))
        field = torch.zeros(B, 2, *pyr[-1][1].shape[-2:], dtype=torch.long, device=s_n.device)
        for level, (a, b) in enumerate(reversed(pyr)):
            if level:  # upsample the coarser field: positions and offsets double
                field = (2 * field).repeat_interleave(2, 2).repeat_interleave(2, 3)[..., :b.shape[2], :b.shape[3]]
            field = self._refine(a, b, field, 2 ** (len(pyr) - 1 - level))
        return field

    def _refine(self, f_p: Tensor, f_n: Tensor, field: Tensor, scale: int) -> Tensor:
        c = self.config
        r, pad = c.radius_px, c.patch_px // 2
        best_cost = torch.full(f_n[:, :1].shape, float("inf"), dtype=f_n.dtype, device=f_n.device)
        best = field.clone()
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                cand = field + torch.tensor([dy, dx], device=field.device).view(1, 2, 1, 1)
                diff = (f_n - _sample(f_p, cand)).pow(2).sum(1, keepdim=True)
                cost = F.avg_pool2d(F.pad(diff, (pad,) * 4, mode="replicate"), c.patch_px, stride=1)
                cost = cost + c.offset_penalty * (scale**2) * cand.pow(2).sum(1, keepdim=True).to(cost.dtype)
                better = cost < best_cost
                best_cost = torch.where(better, cost, best_cost)
                best = torch.where(better, cand, best)
        return best

    @torch.no_grad()
    def forward(self, s_p: Tensor, c_p: Tensor, s_n: Tensor) -> Tensor:
        check_inputs(s_p, c_p, s_n)
        return _sample(c_p, self.match(s_p, s_n))
