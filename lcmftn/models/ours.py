"""``lcmftn-ours``: "never worse than a warp" — flow-warped reference + a gated learned correction
(issue 12; builds on LCMFTN §3.2 and the ``flow-warp`` reference).

Shape legend: B = batch, H, W = input size (multiple of 8).

    flow        = dense optical flow S_n -> S_p (OpenCV Farneback/DIS on the blurred line arts,
                  ``lcmftn.models.baselines.dense_flow``; CPU NumPy, no gradient, deterministic)
    W_c, W_s    = C_p, S_p sampled at x + flow(x)          (the flow-warp baseline's output)
    z           = LCMFTN_trunk(W_s, W_c, S_n)              [B, 4, H, W] logits
                  (CMFT kernel as configured, ``local_path=True``: the warped E_c^k(W_c) also
                  feeds every RU^k, so the model contains the no-CMFT ablation's path)
    m_raw       = change(S_n, S_p)      m_warp = change(S_n, W_s)
    base        = C_p + m_raw · (W_c − C_p)                unaligned where the drawing did not
                                                           change, warped where it did
                  (``still_flow_px`` > 0: max(m_raw, motion_map(flow)) in blank regions)
    T           = sigmoid(z[:, :3])                        the network's colour ("paint"), or
                  Σ_k softmax(z[:, 4:])_k · W_c(x + o_k)     the reference's ("resample")
    gate        = sigmoid(z[:, 3]) · min(m_raw, m_warp)    in [0, 1]
    C_e         = base + gate · (T − base)                 convex blend, stays in [0, 1]

``change(a, b) = clamp(maxpool_{2r+1}(|a − b|) / change_scale, 0, 1)`` is exactly 0 wherever the
two line arts agree in the whole (2r+1)² window. Where S_n = S_p locally, m_raw = 0 and the
output IS C_p, bit for bit (identical line arts: C_e = C_p exactly; Farneback alone would not give
that: on identical images its flow is ~0.05 px, not 0). Where the warp explains the new drawing
(m_warp = 0) the output is the warped reference. Elsewhere the network decides how much to
correct; with the gate bias at ``gate_bias_init`` (−2: σ ≈ 0.12) the initial model is close to
flow-warp, never a uniform average of the reference.
Cost: one Farneback call per sample per forward on the CPU (~1 ms at 64², ~5 ms at 256²);
on a GPU the line arts make a round trip to the host.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lcmftn.models.base import ColorizationSystem, check_inputs
from lcmftn.models.baselines import _to_u8, dense_flow, warp_with_flow
from lcmftn.models.lcmftn import LCMFTN, LCMFTNConfig


@dataclass(frozen=True)
class OursConfig(LCMFTNConfig):
    """LCMFTN trunk fields (see ``LCMFTNConfig``) plus the warp and the gate.

    flow_method: "farneback" | "dis" (``dense_flow``).
    flow_blur_sigma_px: Gaussian blur of the line arts before the flow (0 = off).
    change_radius_px: half-size of the max-pool window of the change map, in pixels.
    change_scale: line-art difference (in [0, 1] units) at which the change map saturates at 1.
    gate_bias_init: initial bias of the gate logit.
    still_flow_px: > 0: where neither line art has ink within ``change_radius_px`` (a blank
        region: the drawing says nothing about motion there), the base takes the warp when the
        flow moves the pixel's window by more than this (ramp to 1 at twice it) — a camera pan
        over a background without lines; unchanged strokes still give C_p exactly. 0 = the
        line-art change alone decides.
    correction: what the gate blends in — "paint": T = sigmoid(z[:, :3]), any colour the network
        paints; "resample": T = a softmax-weighted average of the warped reference W_c over
        (2r+1)² neighbours at each dilation in ``resample_dilations`` (r = ``resample_radius_px``;
        (1, 3) with r = 3 reaches ±9 px), so the correction moves the reference's colours and
        never invents one (palette-agnostic); the K logits come after the gate channel.
    """

    cmft_kernel: str = "cosine"
    local_path: bool = True
    extra_out_channels: int = 1
    flow_method: str = "farneback"
    flow_blur_sigma_px: float = 1.5
    change_radius_px: int = 3
    change_scale: float = 0.1
    gate_bias_init: float = -2.0
    still_flow_px: float = 0.0
    correction: str = "paint"
    resample_radius_px: int = 3
    resample_dilations: tuple[int, ...] = (1, 3)


@torch.no_grad()
def warp_reference(s_p: Tensor, c_p: Tensor, s_n: Tensor, method: str = "farneback",
                   blur_sigma_px: float = 1.5) -> tuple[Tensor, Tensor, Tensor]:
    """(W_c [B,3,H,W], W_s [B,1,H,W], flow [B,2,H,W] (x, y) px): C_p and S_p warped onto S_n."""
    sp = s_p[:, 0].float().cpu().numpy()
    sn = s_n[:, 0].float().cpu().numpy()
    ref = torch.cat([c_p, s_p], 1).float().permute(0, 2, 3, 1).cpu().numpy()  # [B, H, W, 4]
    out = np.empty_like(ref)
    flows = np.empty((*ref.shape[:3], 2), np.float32)
    for b in range(ref.shape[0]):
        flows[b] = dense_flow(_to_u8(sn[b], blur_sigma_px), _to_u8(sp[b], blur_sigma_px), method)
        out[b] = warp_with_flow(np.ascontiguousarray(ref[b]), flows[b])
    warped = torch.from_numpy(out).permute(0, 3, 1, 2).to(device=c_p.device, dtype=c_p.dtype)
    flow = torch.from_numpy(flows).permute(0, 3, 1, 2).to(device=c_p.device)
    return warped[:, :3].contiguous(), warped[:, 3:].contiguous(), flow


def change_map(s_n: Tensor, w_s: Tensor, radius_px: int, scale: float) -> Tensor:
    """[B,1,H,W] in [0, 1]; exactly 0 where |S_n − W_s| is 0 in the whole (2r+1)² window."""
    diff = (s_n - w_s).abs()
    if radius_px > 0:
        diff = F.max_pool2d(diff, 2 * radius_px + 1, stride=1, padding=radius_px)
    return (diff / scale).clamp(0, 1)


def motion_map(flow: Tensor, still_px: float, radius_px: int) -> Tensor:
    """[B,1,H,W] in [0, 1]: 0 where the flow magnitude stays ≤ ``still_px`` in the whole
    (2r+1)² window, 1 where it reaches 2·``still_px`` somewhere in it (linear in between)."""
    mag = torch.linalg.vector_norm(flow.float(), dim=1, keepdim=True)
    m = ((mag - still_px) / still_px).clamp(0, 1)
    if radius_px > 0:
        m = F.max_pool2d(m, 2 * radius_px + 1, stride=1, padding=radius_px)
    return m


CORRECTIONS = ("paint", "resample")
MAX_RESAMPLE_OFFSETS = 512


def resample_offsets(radius_px: int, dilations: tuple[int, ...]) -> int:
    """Number K of resampling candidates: (2r+1)² per dilation."""
    return (2 * radius_px + 1) ** 2 * len(dilations)


def resample_candidates(image: Tensor, radius_px: int, dilations: tuple[int, ...]) -> Tensor:
    """[B,C,K,H,W]: ``image`` read at every offset (dy, dx) ∈ d·[−r, r]² for each dilation d
    (border replicated), in ``F.unfold`` order; candidate ``(2r+1)²·i + (2r+1)·r + r`` is the pixel
    itself for dilation ``dilations[i]``."""
    B, C, H, W = image.shape
    k = 2 * radius_px + 1
    out = []
    for d in dilations:
        pad = radius_px * d
        x = F.pad(image, (pad, pad, pad, pad), mode="replicate")
        out.append(F.unfold(x, k, dilation=d).view(B, C, k * k, H, W))
    return torch.cat(out, 2)


class LCMFTNOurs(ColorizationSystem):
    """Warp + gated correction; ``forward(s_p, c_p, s_n) -> c_e``. See the module docstring."""

    system = "lcmftn-ours"
    trainable = True

    def __init__(self, cfg: OursConfig, load_pretrained: bool = True):
        super().__init__()
        if cfg.extra_out_channels != 1 or not cfg.use_cmft:
            raise ValueError("lcmftn-ours needs use_cmft=True and extra_out_channels=1 (the gate)")
        if cfg.correction not in CORRECTIONS:
            raise ValueError(f"lcmftn-ours correction must be one of {CORRECTIONS}, got {cfg.correction!r}")
        if cfg.resample_radius_px < 0 or not cfg.resample_dilations or min(cfg.resample_dilations) < 1:
            raise ValueError("lcmftn-ours needs resample_radius_px >= 0 and dilations >= 1")
        if resample_offsets(cfg.resample_radius_px, cfg.resample_dilations) > MAX_RESAMPLE_OFFSETS:
            raise ValueError(f"lcmftn-ours: {resample_offsets(cfg.resample_radius_px, cfg.resample_dilations)} "
                             f"resampling candidates (radius {cfg.resample_radius_px}, dilations "
                             f"{cfg.resample_dilations}) exceed {MAX_RESAMPLE_OFFSETS}: each one is an "
                             "output channel and a copy of the reference")
        if cfg.flow_method not in ("farneback", "dis"):
            raise ValueError(f"lcmftn-ours flow_method must be 'farneback' or 'dis', got {cfg.flow_method!r}")
        if cfg.still_flow_px < 0:
            raise ValueError(f"lcmftn-ours still_flow_px must be >= 0, got {cfg.still_flow_px}")
        if cfg.change_scale <= 0 or cfg.change_radius_px < 0:
            raise ValueError("lcmftn-ours needs change_scale > 0 and change_radius_px >= 0")
        self.cfg = cfg
        # "resample" adds K candidate logits after the gate channel (the config keeps
        # extra_out_channels = 1: the gate; K follows from the resampling fields)
        k = resample_offsets(cfg.resample_radius_px, cfg.resample_dilations) if cfg.correction == "resample" else 0
        net_cfg = dataclasses.replace(cfg, extra_out_channels=1 + k) if k else cfg
        self.net = LCMFTN(net_cfg, load_pretrained=load_pretrained)
        self.net.system = self.system
        with torch.no_grad():
            self.net.out[-1].bias[3].fill_(cfg.gate_bias_init)
            if k:  # at init T is close to W_c itself: the centre candidate of dilation 1 has
                # weight e²/(1 + e²) ≈ 0.88 against the K − 1 others together
                r = cfg.resample_radius_px
                self.net.out[-1].bias[4 + (2 * r + 1) * r + r].fill_(math.log(max(k - 1, 1)) + 2.0)

    @property
    def config(self) -> OursConfig:
        return self.cfg

    def parts(self, s_p: Tensor, c_p: Tensor, s_n: Tensor) -> dict[str, Tensor]:
        """Every intermediate: ``warped_c``, ``warped_s``, ``flow``, ``base``, ``target``,
        ``gate_logit`` (z[:, 3:4]), ``change`` (min(m_raw, m_warp)), ``gate``, ``out``."""
        check_inputs(s_p, c_p, s_n, multiple_of=8)
        cfg = self.cfg
        w_c, w_s, flow = warp_reference(s_p, c_p, s_n, cfg.flow_method, cfg.flow_blur_sigma_px)
        z = self.net.logits(w_s, w_c, s_n)
        if cfg.correction == "resample":
            weights = torch.softmax(z[:, 4:].float(), dim=1).to(w_c.dtype)  # [B,K,H,W]
            cands = resample_candidates(w_c, cfg.resample_radius_px, tuple(cfg.resample_dilations))
            target = (cands * weights.unsqueeze(1)).sum(2)
        else:
            target = torch.sigmoid(z[:, :3])
        m_raw = change_map(s_n, s_p, cfg.change_radius_px, cfg.change_scale)
        m_warp = change_map(s_n, w_s, cfg.change_radius_px, cfg.change_scale)
        m_base = m_raw
        if cfg.still_flow_px > 0:  # only where neither drawing has ink nearby (no evidence either way)
            ink = torch.maximum(1 - s_p, 1 - s_n) > 0.5
            r = cfg.change_radius_px
            near_ink = F.max_pool2d(ink.float(), 2 * r + 1, stride=1, padding=r) if r > 0 else ink.float()
            moved = motion_map(flow, cfg.still_flow_px, r).to(m_raw) * (1 - near_ink.to(m_raw))
            # identical drawings: nothing moved, whatever Farneback's residual flow (~0.1 px) says
            moved = moved * (m_raw.flatten(1).amax(1) > 0).to(m_raw).view(-1, 1, 1, 1)
            m_base = torch.maximum(m_raw, moved)
        base = c_p + m_base.to(c_p.dtype) * (w_c - c_p)
        change = torch.minimum(m_raw, m_warp)
        gate = torch.sigmoid(z[:, 3:4]) * change
        out = base + gate.to(base.dtype) * (target.to(base.dtype) - base)
        return {"warped_c": w_c, "warped_s": w_s, "flow": flow, "base": base, "target": target,
                "gate_logit": z[:, 3:4], "change": change, "gate": gate, "out": out}

    def forward(self, s_p: Tensor, c_p: Tensor, s_n: Tensor, return_parts: bool = False
                ) -> Tensor | dict[str, Tensor]:
        """``C_e``; with ``return_parts=True`` the dict of :meth:`parts` (training calls it this
        way through a DDP wrapper, so the gradients of the auxiliary terms are synchronised)."""
        parts = self.parts(s_p, c_p, s_n)
        return parts if return_parts else parts["out"]

    # ------------------------------------------------------------------ training hook (issue 12)
    def uses_auxiliary_losses(self, loss_cfg: Any) -> bool:
        """True when ``loss_cfg.gate_loss`` asks for a gate term (default "off": no hook runs)."""
        return getattr(loss_cfg, "gate_loss", "off") != "off"

    def auxiliary_losses(self, parts: dict[str, Tensor], truth: Tensor, loss_cfg: Any
                         ) -> dict[str, tuple[float, Tensor]]:
        """``{name: (weight, value)}`` added to the generator loss (``lcmftn.training.train_step``):
        the gate term ``loss_cfg.gate_loss`` with weight ``lambda_gate`` (:func:`gate_loss_term`)
        and, for logging only (weight 0), the mean gate."""
        mode = loss_cfg.gate_loss
        term = gate_loss_term(mode, parts["gate"], parts["gate_logit"], parts["change"], parts["base"],
                              truth, loss_cfg.gate_tau, parts["target"])
        return {f"gate_{mode}": (loss_cfg.lambda_gate, term),
                "gate_mean": (0.0, parts["gate"].detach().float().mean())}


GATE_LOSSES = ("off", "penalty", "bce", "better")


def warp_right(base: Tensor, truth: Tensor, tau: float) -> Tensor:
    """[B,1,H,W] float, 1 where the base (warp) is within ``tau`` of the truth in every channel."""
    return ((base.detach().float() - truth.float()).abs().amax(1, keepdim=True) < tau).float()


def correction_better(base: Tensor, target: Tensor, truth: Tensor, margin: float) -> Tensor:
    """[B,1,H,W] float, 1 where the correction T is closer to the truth than the base by more than
    ``margin`` (mean absolute error over RGB); both detached."""
    err_base = (base.detach().float() - truth.float()).abs().mean(1, keepdim=True)
    err_t = (target.detach().float() - truth.float()).abs().mean(1, keepdim=True)
    return (err_t + margin < err_base).float()


def gate_loss_term(mode: str, gate: Tensor, gate_logit: Tensor, change: Tensor, base: Tensor,
                   truth: Tensor, tau: float, target: Tensor | None = None) -> Tensor:
    """The issue-12 gate term (a scalar, fp32), "never worse than a warp":

    * ``penalty``: mean(gate · 1[|base − truth| < τ]) — opening the gate where the warp was
      already right (every channel within τ) costs; where the warp is wrong it costs nothing.
    * ``bce``: BCE(gate_logit, 1[|base − truth| ≥ τ]) averaged over the changed region
      (min(m_raw, m_warp) > 0; 0 when there is none) — the gate's sigmoid is trained as a
      detector of the warp's own error, whatever T's colour.
    * ``better``: BCE(gate_logit, 1[|T − truth| + τ/4 < |base − truth|]) over the changed region
      (mean error over RGB, T and base detached) — the gate is trained to open exactly where the
      correction it would let in beats the base, whatever the warp's own error.
    """
    if mode == "penalty":
        return (gate.float() * warp_right(base, truth, tau)).mean()
    if mode in ("bce", "better"):
        changed = change.detach() > 0
        if not bool(changed.any()):
            return gate_logit.float().sum() * 0.0
        if mode == "bce":
            want = 1.0 - warp_right(base, truth, tau)
        else:
            if target is None:
                raise ValueError("gate_loss 'better' needs the correction T (parts['target'])")
            want = correction_better(base, target, truth, tau / 4)
        return F.binary_cross_entropy_with_logits(gate_logit.float()[changed], want[changed])
    raise ValueError(f"loss.gate_loss must be one of {GATE_LOSSES}, got {mode!r}")
