"""Attention diagnostics of LCMFTN's CMFT levels (issue 12; paper §3.1–3.2, eq. 6–8).

Shape legend: B = batch, H, W = input size; level k runs at H/2^(3−k).

``attention_diagnostics(model, s_p, c_p, s_n, shift_px=(dy, dx))`` returns a plain
``dict[str, float]`` (ready for ``mlflow.log_metrics``), per CMFT level k present:

* ``cmft{k}/entropy``: mean attention entropy ÷ log M (0 = one-hot, 1 = uniform average of the
  reference); ``cmft{k}/max_weight``: mean largest weight.
* with a known displacement — S_n is S_p moved by (dy, dx) full-resolution pixels with
  wrap-around (``torch.roll``), so query p's true match is p − (dy, dx) on the torus —
  ``cmft{k}/err_expected_px`` and ``cmft{k}/err_argmax_px``: mean distance, in FULL-resolution
  pixels, from the true position to the expected attended position Σ_j w_ij p_j and to the
  argmax; ``cmft{k}/hit_rate``: fraction of queries whose argmax is within one level-k pixel of
  the truth. For ``lcmftn-ours`` the attention looks at the WARPED reference, whose true offset
  is unknown, so only entropy / max weight are reported.

``encoder_gradients(model, s_p, c_p, s_n, target)``: L1 loss backward, gradient L2 norms of E_s,
E_h, E_c and their ratio ``grad/e_s_over_e_h`` (how much of the learning signal reaches the
matching features). No N×M matrix is built (``cmft_attention_stats`` works in query chunks).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lcmftn.models.cmft import grid_yx
from lcmftn.models.lcmftn import LCMFTN
from lcmftn.models.ours import LCMFTNOurs, warp_reference


def _attention_net(model, s_p: Tensor, c_p: Tensor, s_n: Tensor) -> tuple[LCMFTN, tuple, bool]:
    """(LCMFTN trunk, its inputs, whether the true offset is known in its reference frame)."""
    if isinstance(model, LCMFTNOurs):
        cfg = model.cfg
        w_c, w_s, _ = warp_reference(s_p, c_p, s_n, cfg.flow_method, cfg.flow_blur_sigma_px)
        return model.net, (w_s, w_c, s_n), False
    if isinstance(model, LCMFTN):
        if not model.cfg.use_cmft:
            raise ValueError(f"{model.system}: no CMFT, nothing to diagnose")
        return model, (s_p, c_p, s_n), True
    raise ValueError(f"attention diagnostics need an LCMFTN-family model, got {type(model).__name__}")


def _torus_error(pred: Tensor, truth: Tensor, width_over_height: float) -> Tensor:
    """Distance in image heights between [B,2,h,w] positions on the wrap-around image."""
    period = torch.tensor([1.0, width_over_height], device=pred.device).view(1, 2, 1, 1)
    d = torch.remainder(pred - truth + period / 2, period) - period / 2
    return d.norm(dim=1)  # [B, h, w]


@torch.no_grad()
def attention_diagnostics(model, s_p: Tensor, c_p: Tensor, s_n: Tensor,
                          shift_px: tuple[float, float] | None = None) -> dict[str, float]:
    """Per-level attention statistics (see module docstring); ``shift_px`` = (dy, dx) of S_n
    relative to S_p in full-resolution pixels, or None when unknown."""
    net, inputs, known = _attention_net(model, s_p, c_p, s_n)
    H, W = s_n.shape[-2:]
    out: dict[str, float] = {}
    for level, module, q, k, centre in net.attention_inputs(*inputs):
        st = module.attention_stats(q, k, centre)
        tag = f"cmft{level}"
        out[f"{tag}/entropy"] = float(st["entropy"].mean())
        out[f"{tag}/max_weight"] = float(st["max_weight"].mean())
        out[f"{tag}/positions"] = float(q.shape[-2] * q.shape[-1])
        if shift_px is None or not known:
            continue
        shift = torch.tensor([shift_px[0], shift_px[1]], device=q.device).view(1, 2, 1, 1) / H
        truth = grid_yx(*q.shape[-2:], device=q.device) - shift
        e_exp = _torus_error(st["expected_yx"], truth, W / H) * H
        e_arg = _torus_error(st["argmax_yx"], truth, W / H) * H
        level_px = H / q.shape[-2]
        out[f"{tag}/err_expected_px"] = float(e_exp.mean())
        out[f"{tag}/err_argmax_px"] = float(e_arg.mean())
        out[f"{tag}/hit_rate"] = float((e_arg <= level_px + 1e-6).float().mean())
    return out


def _grad_norm(module: torch.nn.Module | None) -> float:
    if module is None:
        return float("nan")
    sq = [p.grad.float().pow(2).sum() for p in module.parameters() if p.grad is not None]
    return math.sqrt(float(sum(sq))) if sq else 0.0


def encoder_gradients(model, s_p: Tensor, c_p: Tensor, s_n: Tensor, target: Tensor) -> dict[str, float]:
    """Gradient L2 norms of E_s / E_h / E_c after one L1 backward (grads are zeroed first and
    after). ``grad/e_s_over_e_h`` = ‖∇E_s‖ / ‖∇E_h‖."""
    net = model.net if isinstance(model, LCMFTNOurs) else model
    if not isinstance(net, LCMFTN):
        raise ValueError(f"encoder gradients need an LCMFTN-family model, got {type(model).__name__}")
    model.zero_grad(set_to_none=True)
    F.l1_loss(model(s_p, c_p, s_n), target).backward()
    e_s = getattr(net, "e_s", None)
    g = {"grad/e_s": _grad_norm(e_s), "grad/e_h": _grad_norm(net.e_h), "grad/e_c": _grad_norm(net.e_c)}
    g["grad/e_s_over_e_h"] = g["grad/e_s"] / g["grad/e_h"] if g["grad/e_h"] > 0 else float("nan")
    model.zero_grad(set_to_none=True)
    return g
