"""LCMFTN generator ``C_e = G(S_p, C_p, S_n)`` (paper §3.2, eq. 5–8) and its no-CMFT ablation.

Shape legend: B = batch, H, W = input size (multiple of 8), level k = paper superscript:
level 0 = H/8 (coarsest), 1 = H/4, 2 = H/2, 3 = H (full resolution).
``enc_channels = (c3, c2, c1, c0)`` are the widths at full, 1/2, 1/4, 1/8 resolution.

Encoders (4 conv layers each for E_h / E_c: one stride-1 then three stride-2, 256→32 at 256²):
  E_h(S_n)  -> E_h^3..E_h^0   (U-Net backbone encoder)
  E_c(C_p)  -> E_c^3..E_c^0   (same structure, colour input)
  E_s(S)    -> E_s^3..E_s^0   (6 conv layers: s1, s2, s2, s2, then dilation 2 and 4 at 1/8 res;
                               shared by S_p and S_n)
  E_I(S)    -> [B, 512, H/8, W/8]  optional, frozen (Illustration2Vec's first 6 conv layers,
                               ``SketchFeatureNet``), only when weights are given.
Decoder (eq. 6–8):
  est^0 = CMFT(ca(E_s^0(S_n), E_I(S_n)), ca(E_s^0(S_p), E_I(S_p)), E_c^0(C_p))          eq. 6
  r^0   = RU^0(ca(est^0, E_h^0))                                    -> H/4, c1 channels
  est^k = CMFT(ca(r^{k-1}, E_s^k(S_n)), ca(E_c^k(C_p), E_s^k(S_p)), E_c^k(C_p)), k=1,2   eq. 7–8
  r^k   = RU^k(ca(r^{k-1}, est^k, E_h^k))                           -> 2× resolution
  est^3 = same at full resolution when ``cmft3`` (the paper drops it; fused attention keeps it
          affordable)
  C_e   = sigmoid(conv(conv(ca(r^2, E_h^3[, est^3]))))              -> [B, 3, H, W] in [0, 1]

Deviations / readings of the paper (Figure 4 with the exact widths is not in our copy):
* Widths per named size are ours (``SIZES`` in ``registry``); LeakyReLU(0.2), no normalisation.
* U-Net skips: RU^k (k ≥ 1) and the output convs also take E_h^k — "E_h and D compose a U-Net".
* ``lcmftn-nocmft`` (§4.2, "directly concatenate"): est^k is replaced by the *unaligned*
  E_c^k(C_p), so the ablation still sees the reference but without correlation matching; E_s and
  E_I are not built.
* Confidence: at the finest CMFT used, the same attention weights are applied to C_p's RGB
  (area-downsampled) and its square (one extra fused SDPA, no N×N matrix); the weighted colour
  standard deviation σ (summed over RGB) says whether the matched reference positions agree on
  a colour. conf = 1 − min(1, σ / 0.25), bilinearly upsampled to H×W. Attention entropy / max
  weight (``cmft_confidence``) is not used for this because flat cel regions make attention
  spread over many identical positions (high entropy) while the colour is certain.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lcmftn.models.base import ColorizationSystem, check_inputs
from lcmftn.models.blocks import RU, conv_act
from lcmftn.models.cmft import CMFT

CMFT_LOCALITY = ("none", "identity", "coarse-to-fine")

log = logging.getLogger(__name__)

# Illustration2Vec's pixel mean (Caffe model, BGR order, 0–255 scale).
I2V_MEAN_BGR = (164.76139251, 167.47864617, 181.13838569)
CONFIDENCE_STD_SCALE = 0.25


@dataclass(frozen=True)
class LCMFTNConfig:
    """LCMFTN generator configuration (see module docstring for the wiring).

    size: name of the preset this was made from ("tiny", "small", "paper"); informational.
    enc_channels: E_h/E_c widths at full, 1/2, 1/4, 1/8 resolution.
    sketch_channels: widths of E_s's 6 conv layers (strides 1,2,2,2,1,1).
    sketch_dilations: dilation of E_s's 6 conv layers.
    ru_widths: ResNeXt block width inside RU^0, RU^1, RU^2.
    ru_blocks: number of ResNeXt blocks in RU^0, RU^1, RU^2.
    cardinality: groups of the ResNeXt 3×3 conv.
    use_cmft: False = the ``lcmftn-nocmft`` ablation.
    cmft3: also run CMFT^3 at full resolution (the paper drops it).
    cmft_scale: logit scale of CMFT (1.0 = paper's exp(aᵀb)).
    cmft_normalize: legacy cosine CMFT (L2 only, temperature init 10) of the ``paper`` kernel.
    cmft_kernel: "paper" = raw exp(aᵀb·cmft_scale) (system ``lcmftn``); "cosine" = centred
        cosine similarity / learned τ (init ``cmft_tau_init``) — see ``lcmftn.models.cmft``.
    cmft_tau_init: initial temperature of the cosine kernel (logits = cos/τ).
    cmft_proj: learned 1×1 query/key projections per level, identity-initialised on the line-art
        channels E_s^k only at levels ≥ 1 (the r^{k−1} / E_c^k half starts at zero weight).
    cmft_locality: "none" (global search at every level); "identity" (Gaussian bias around the
        query's own position at levels ≥ 1); "coarse-to-fine" (levels ≥ 1 search around the
        expected match CMFT^{k−1} found, upsampled). Level 0 always searches globally.
    cmft_locality_sigma: σ of that bias in image heights (the same at every level).
    local_path: also feed the UNALIGNED E_c^k(C_p) next to est^k into RU^k / the output convs,
        so the full model contains the ``lcmftn-nocmft`` ablation's path.
    extra_out_channels: output channels after the 3 colour ones (returned by ``logits`` only;
        ``lcmftn-ours`` uses 1 for its gate). 0 for the paper's systems.
    e_i_weights: path of a safetensors file with ``SketchFeatureNet`` weights (E_I); None = off.
    e_i_channels: channels of E_I's output (512 for Illustration2Vec conv4_2).
    """

    size: str = "small"
    enc_channels: tuple[int, int, int, int] = (16, 32, 64, 128)
    sketch_channels: tuple[int, int, int, int, int, int] = (16, 32, 64, 128, 128, 128)
    sketch_dilations: tuple[int, int, int, int, int, int] = (1, 1, 1, 1, 2, 4)
    ru_widths: tuple[int, int, int] = (256, 128, 64)
    ru_blocks: tuple[int, int, int] = (2, 1, 1)
    cardinality: int = 8
    use_cmft: bool = True
    cmft3: bool = False
    cmft_scale: float = 1.0
    cmft_normalize: bool = False
    cmft_kernel: str = "paper"
    cmft_tau_init: float = 0.01
    cmft_proj: bool = False
    cmft_locality: str = "none"
    cmft_locality_sigma: float = 0.15
    local_path: bool = False
    extra_out_channels: int = 0
    e_i_weights: str | None = None
    e_i_channels: int = 512


class Encoder4(nn.Module):
    """E_h / E_c: [B,c_in,H,W] -> [full, H/2, H/4, H/8] feature maps (levels 3, 2, 1, 0)."""

    def __init__(self, c_in: int, widths: tuple[int, int, int, int]):
        super().__init__()
        chans = (c_in, *widths)
        self.layers = nn.ModuleList(
            conv_act(chans[i], chans[i + 1], 3, stride=1 if i == 0 else 2) for i in range(4)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats  # index 0 = level 3 (full res) ... index 3 = level 0 (1/8)


class SketchEncoder(nn.Module):
    """E_s: 6 conv layers (strides 1,2,2,2,1,1; dilated at the end). Returns levels 3, 2, 1, 0."""

    def __init__(self, widths: tuple[int, ...], dilations: tuple[int, ...]):
        super().__init__()
        if len(widths) != 6 or len(dilations) != 6:
            raise ValueError("E_s needs exactly 6 widths and 6 dilations")
        strides = (1, 2, 2, 2, 1, 1)
        chans = (1, *widths)
        self.layers = nn.ModuleList(
            conv_act(chans[i], chans[i + 1], 3, stride=strides[i], dilation=dilations[i]) for i in range(6)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return [feats[0], feats[1], feats[2], feats[5]]  # full, 1/2, 1/4, 1/8


class SketchFeatureNet(nn.Module):
    """E_I: the first 6 conv layers of Illustration2Vec (VGG-style), output [B, 512, H/8, W/8].

    Weights file layout (safetensors): ``conv1_1.weight``, ``conv1_1.bias``, ``conv2_1.*``,
    ``conv3_1.*``, ``conv3_2.*``, ``conv4_1.*``, ``conv4_2.*`` (Caffe order: BGR input, 0–255,
    mean-subtracted). Line art is replicated to 3 channels.
    """

    LAYERS = (("conv1_1", 3, 64), ("conv2_1", 64, 128), ("conv3_1", 128, 256),
              ("conv3_2", 256, 256), ("conv4_1", 256, 512), ("conv4_2", 512, 512))
    POOL_AFTER = ("conv1_1", "conv2_1", "conv3_2")

    def __init__(self):
        super().__init__()
        for name, c_in, c_out in self.LAYERS:
            self.add_module(name, nn.Conv2d(c_in, c_out, 3, padding=1))
        self.register_buffer("mean", torch.tensor(I2V_MEAN_BGR).view(1, 3, 1, 1), persistent=False)

    def forward(self, sketch: Tensor) -> Tensor:
        x = sketch.expand(-1, 3, -1, -1) * 255.0 - self.mean
        for name, _, _ in self.LAYERS:
            x = F.relu(getattr(self, name)(x))
            if name in self.POOL_AFTER:
                x = F.max_pool2d(x, 2)
        return x


def load_sketch_net(path: str) -> SketchFeatureNet:
    """A frozen ``SketchFeatureNet`` from a safetensors file (clear error on a bad file)."""
    from safetensors.torch import load_file

    net = SketchFeatureNet()
    try:
        state = load_file(path)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(f"E_I weights {path!r}: cannot read as safetensors ({exc})") from exc
    missing = set(net.state_dict()) - set(state)
    if missing:
        raise ValueError(f"E_I weights {path!r}: missing tensors {sorted(missing)}")
    bad = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
           for k, v in net.state_dict().items() if state[k].shape != v.shape]
    if bad:
        raise ValueError(f"E_I weights {path!r}: wrong tensor shapes: {', '.join(bad[:3])}")
    net.load_state_dict({k: state[k] for k in net.state_dict()})
    net.requires_grad_(False).eval()
    return net


class LCMFTN(ColorizationSystem):
    """The generator. ``forward(s_p, c_p, s_n) -> c_e``; see the module docstring."""

    trainable = True

    def __init__(self, cfg: LCMFTNConfig, load_pretrained: bool = True):
        super().__init__()
        self.cfg = cfg
        self.system = "lcmftn" if cfg.use_cmft else "lcmftn-nocmft"
        c3, c2, c1, c0 = cfg.enc_channels
        self.e_h = Encoder4(1, cfg.enc_channels)
        self.e_c = Encoder4(3, cfg.enc_channels)
        self.e_i: SketchFeatureNet | None = None
        if cfg.cmft_locality not in CMFT_LOCALITY:
            raise ValueError(f"cmft_locality must be one of {CMFT_LOCALITY}, got {cfg.cmft_locality!r}")
        if cfg.use_cmft:
            self.e_s = SketchEncoder(cfg.sketch_channels, cfg.sketch_dilations)
            n_cmft = 4 if cfg.cmft3 else 3
            e_i = cfg.e_i_channels if cfg.e_i_weights else 0
            # q/k channels per level: ca(E_s^0[, E_I]) at 0; ca(r^{k-1}, E_s^k) at k >= 1.
            qk = (cfg.sketch_channels[5] + e_i, c1 + cfg.sketch_channels[2],
                  c2 + cfg.sketch_channels[1], c3 + cfg.sketch_channels[0])
            self.cmfts = nn.ModuleList(
                CMFT(scale=cfg.cmft_scale, normalize=cfg.cmft_normalize, kernel=cfg.cmft_kernel,
                     init_tau=cfg.cmft_tau_init, channels=qk[k], proj=cfg.cmft_proj,
                     proj_init_channels=0 if k == 0 else cfg.sketch_channels[3 - k],
                     locality_sigma=cfg.cmft_locality_sigma
                     if k > 0 and cfg.cmft_locality != "none" else 0.0)
                for k in range(n_cmft)
            )
            if cfg.e_i_weights:
                self.e_i = load_sketch_net(cfg.e_i_weights) if load_pretrained else SketchFeatureNet().requires_grad_(False)
                log.info("E_I on: sketch features from %s (frozen)", cfg.e_i_weights)
            else:
                log.info("E_I off: no e_i_weights given (CMFT^0 matches E_s^0 features only)")
        # RU^k input: ca(r^{k-1}, est^k, [E_c^k,] E_h^k) (RU^0: ca(est^0, [E_c^0,] E_h^0)).
        lp = int(cfg.local_path and cfg.use_cmft)
        self.ru0 = RU((2 + lp) * c0, cfg.ru_widths[0], c1, cfg.ru_blocks[0], cfg.cardinality)
        self.ru1 = RU((3 + lp) * c1, cfg.ru_widths[1], c2, cfg.ru_blocks[1], cfg.cardinality)
        self.ru2 = RU((3 + lp) * c2, cfg.ru_widths[2], c3, cfg.ru_blocks[2], cfg.cardinality)
        out_in = (2 + int(cfg.cmft3 and cfg.use_cmft) + lp) * c3
        self.out = nn.Sequential(conv_act(out_in, c3), nn.Conv2d(c3, 3 + cfg.extra_out_channels, 3, padding=1))

    @property
    def config(self) -> LCMFTNConfig:
        """The config dataclass (what checkpoints store; same as ``cfg``)."""
        return self.cfg

    def train(self, mode: bool = True) -> LCMFTN:
        super().train(mode)
        if self.e_i is not None:
            self.e_i.eval()  # E_I stays frozen
        return self

    def forward(self, s_p: Tensor, c_p: Tensor, s_n: Tensor) -> Tensor:
        return torch.sigmoid(self._run(s_p, c_p, s_n, want_confidence=False)[0][:, :3])

    def forward_with_confidence(self, s_p: Tensor, c_p: Tensor, s_n: Tensor) -> tuple[Tensor, Tensor | None]:
        z, conf = self._run(s_p, c_p, s_n, want_confidence=self.cfg.use_cmft)
        return torch.sigmoid(z[:, :3]), conf

    def logits(self, s_p: Tensor, c_p: Tensor, s_n: Tensor) -> Tensor:
        """Pre-sigmoid output ``[B, 3 + extra_out_channels, H, W]`` (colour logits first)."""
        return self._run(s_p, c_p, s_n, want_confidence=False)[0]

    def attention_inputs(self, s_p: Tensor, c_p: Tensor, s_n: Tensor) -> list[tuple[int, CMFT, Tensor, Tensor, Tensor | None]]:
        """``(level, module, query, key, centre)`` of every CMFT in one forward (diagnostics)."""
        record: list = []
        self._run(s_p, c_p, s_n, want_confidence=False, record=record)
        return record

    def _run(self, s_p: Tensor, c_p: Tensor, s_n: Tensor, want_confidence: bool,
             record: list | None = None) -> tuple[Tensor, Tensor | None]:
        check_inputs(s_p, c_p, s_n, multiple_of=8)
        B, _, H, W = s_n.shape
        h = self.e_h(s_n)  # [full, 1/2, 1/4, 1/8]
        c = self.e_c(c_p)
        if not self.cfg.use_cmft:
            r = self.ru0(torch.cat([c[3], h[3]], 1))
            r = self.ru1(torch.cat([r, c[2], h[2]], 1))
            r = self.ru2(torch.cat([r, c[1], h[1]], 1))
            return self.out(torch.cat([r, h[0]], 1)), None

        lp = self.cfg.local_path
        # E_s is shared: run S_n and S_p as one batch of 2B.
        sk = self.e_s(torch.cat([s_n, s_p], 0))
        sn = [f[:B] for f in sk]
        sp = [f[B:] for f in sk]
        q0, k0 = sn[3], sp[3]
        if self.e_i is not None:
            with torch.no_grad():
                ei = self.e_i(torch.cat([s_n, s_p], 0)).to(q0.dtype)
            q0, k0 = torch.cat([q0, ei[:B]], 1), torch.cat([k0, ei[B:]], 1)
        est, match = self._cmft(0, q0, k0, c[3], None, record)  # eq. 6, [B, c0, H/8, W/8]
        r = self.ru0(torch.cat([est, c[3], h[3]] if lp else [est, h[3]], 1))  # [B, c1, H/4, W/4]
        last = (q0, k0, 0, None)
        levels = [(1, self.ru1), (2, self.ru2)] + ([(3, None)] if self.cfg.cmft3 else [])
        for k, ru in levels:
            i = 3 - k  # list index of level k
            q = torch.cat([r, sn[i]], 1)
            kk = torch.cat([c[i], sp[i]], 1)
            centre = self._centre(match, q.shape[-2:])
            est, match = self._cmft(k, q, kk, c[i], centre, record)  # eq. 7–8
            last = (q, kk, k, centre)
            if ru is not None:
                r = ru(torch.cat([r, est, c[i], h[i]] if lp else [r, est, h[i]], 1))
        feats = [r, h[0]] + ([est] if self.cfg.cmft3 else []) + ([c[0]] if lp else [])
        out = self.out(torch.cat(feats, 1))
        conf = self._confidence(*last, c_p, (H, W)) if want_confidence else None
        return out, conf

    def _cmft(self, k: int, q: Tensor, kk: Tensor, v: Tensor, centre: Tensor | None,
              record: list | None) -> tuple[Tensor, Tensor | None]:
        if record is not None:
            record.append((k, self.cmfts[k], q, kk, centre))
        if self.cfg.cmft_locality == "coarse-to-fine":
            return self.cmfts[k](q, kk, v, centre=centre, return_match=True)
        return self.cmfts[k](q, kk, v, centre=centre), None

    def _centre(self, match: Tensor | None, size: tuple[int, int]) -> Tensor | None:
        """Level k's search centre: the coarser match upsampled (coarse-to-fine), else None
        (= the query's own position when the level has a locality bias)."""
        if match is None:
            return None
        # NOTE: detached — the search centre is a prior, its gradient would fight the matching.
        return F.interpolate(match.detach().float(), size=tuple(size), mode="bilinear",
                             align_corners=False)

    @torch.no_grad()
    def _confidence(self, q: Tensor, k: Tensor, level: int, centre: Tensor | None, c_p: Tensor,
                    size: tuple[int, int]) -> Tensor:
        rgb = F.interpolate(c_p.float(), size=k.shape[-2:], mode="area")
        # NOTE: variance is shift-invariant; centring per image avoids E[x²] − E[x]² cancellation.
        rgb = (rgb - rgb.mean(dim=(2, 3), keepdim=True)).to(q.dtype)
        stats = self.cmfts[level](q, k, torch.cat([rgb, rgb * rgb], 1), centre=centre).float()  # [B, 6, h, w]
        mean, mean_sq = stats[:, :3], stats[:, 3:]
        std = (mean_sq - mean * mean).clamp_min(0).sum(1, keepdim=True).sqrt()  # [B,1,h,w]
        conf = 1.0 - (std / CONFIDENCE_STD_SCALE).clamp(0, 1)
        return F.interpolate(conf, size=size, mode="bilinear", align_corners=False).clamp(0, 1)
