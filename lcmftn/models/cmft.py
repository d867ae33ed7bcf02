"""Correlation Matching Feature Transfer (CMFT), paper §3.1 eq. 1–4, as fused attention.

Shape legend: B = batch, C = matching channels, Cv = value channels, H, W = query spatial size,
Hr, Wr = reference spatial size, N = H*W query positions, M = Hr*Wr reference positions.

CMFT reconstructs an unknown feature map from a reference one:

    chi_i = sum_j w_ij * V_j,   w_ij = exp(a_i . b_j) / sum_j' exp(a_i . b_j')

with a = matching features of the current frame (query), b = matching features of the reference
frame (key) and V = the reference colour features (value). The kernel f(a, b) = exp(aᵀb) of the
paper is softmax attention with scale 1.0 and ONE head: the dot product sums over all channels
(one N×M map), not one map per channel.

Design decisions:
* ``cmft`` runs ``torch.nn.functional.scaled_dot_product_attention`` on ``[B, 1, N, C]`` so the
  N×M matrix is never materialised when a fused (flash / memory-efficient) kernel is available.
  That is what makes the full-resolution CMFT^3 (65536² at 256²) affordable.
* ``scale`` is configurable; 1.0 is the paper's kernel. With raw (unnormalised) features the
  logits aᵀb can be in the hundreds: softmax stays finite (it subtracts the row max) but the
  weights become near one-hot. ``CMFT(normalize=True)`` L2-normalises a and b along channels and
  uses a learnable temperature instead (cosine-similarity attention) — an option, off by default.
* ``cmft_naive`` materialises the matrix explicitly; it is the test oracle and the benchmark's
  baseline, never used by the models.
* Kernels (``CMFT(kernel=...)``, issue 12): ``paper`` = raw exp(aᵀb); ``cosine`` = centred cosine
  similarity (each channel minus its spatial mean, then L2 over channels) divided by a learned
  temperature τ (init 0.01), so the logits span ±1/τ whatever the feature magnitude (the paper
  kernel on freshly initialised features has |q| ≈ 0.17 and attends uniformly). Optional learned
  1×1 query/key projections (identity-initialised: the kernel at init equals the one without),
  and a Gaussian locality bias −|c_i − p_j|²/(2σ²) around a centre c_i (the query's own position,
  or the match the coarser level found). The bias is folded into THREE extra q/k channels
  (c_i·p_j/σ² − |p_j|²/(2σ²); the −|c_i|² term is constant per row and cancels in softmax), so
  every kernel is still one fused SDPA call with O(N) memory, no N×M mask.
* NOTE (measured): on CPU the cosine kernel's logits span ±1/τ = ±100, so exp(logit − max)
  underflows to DENORMAL floats inside SDPA, and x86 denormal arithmetic is slow: a `small`
  LCMFTN step at 64 px, batch 4, costs 0.55 s with the cosine kernel vs 0.19 s with the paper's,
  and 0.16 s after ``torch.set_flush_denormal(True)``. The library does not flip that
  process-wide flag itself; CPU training entry points should (GPUs flush in the kernels).
* Coordinates: position p = (y, x) in image heights, centred: y = (i + ½)/H − ½,
  x = ((j + ½)/W − ½)·W/H, the same at every level. ``CMFT.forward(..., return_match=True)`` also
  returns the expected attended position Σ_j w_ij p_j (two extra value channels, same call).
* Confidence (``cmft_confidence``): the maximum attention weight and the normalised entropy per
  query position, computed in query chunks so memory stays O(chunk × M) instead of O(N × M).
  Per chunk: logits = q kᵀ·scale, lse = logsumexp(logits), max weight = exp(max logit − lse),
  entropy = lse − Σ_j p_j·logit_j. Costs one extra pass of the matching matmul; only
  ``forward_with_confidence`` pays it, never training.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _check_cmft(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
    for name, t in (("query", query), ("key", key), ("value", value)):
        if t.dim() != 4:
            raise ValueError(f"CMFT {name} must be [B, C, H, W], got shape {tuple(t.shape)}")
    if query.shape[:2] != key.shape[:2]:
        raise ValueError(
            f"CMFT query and key must share batch and channels, got {tuple(query.shape)} vs {tuple(key.shape)}"
        )
    if key.shape[0] != value.shape[0] or key.shape[2:] != value.shape[2:]:
        raise ValueError(
            f"CMFT key and value must share batch and spatial size, got {tuple(key.shape)} vs {tuple(value.shape)}"
        )


def _to_tokens(x: torch.Tensor) -> torch.Tensor:
    B, C, H, W = x.shape
    # NOTE: fused SDPA kernels need stride 1 on the last dim; the transpose alone is a view.
    return x.flatten(2).transpose(1, 2).unsqueeze(1).contiguous()  # [B, 1, H*W, C]


def cmft(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    """Fused CMFT. query [B,C,H,W], key [B,C,Hr,Wr], value [B,Cv,Hr,Wr] -> [B,Cv,H,W]."""
    _check_cmft(query, key, value)
    B, _, H, W = query.shape
    Cv = value.shape[1]
    q, k, v = _to_tokens(query), _to_tokens(key), _to_tokens(value)  # [B,1,N,C] [B,1,M,C] [B,1,M,Cv]
    # NOTE: SDPA wants one dtype for q, k and v (autocast may hand us a mix).
    k, v = k.to(q.dtype), v.to(q.dtype)
    # NOTE: the flash kernels (CPU and CUDA) need q, k and v to share the head dim, else SDPA
    # silently falls back to the math path that materialises the N×M matrix (measured: 2.6 GB
    # at 128² positions on CPU). Zero-padding q and k adds 0 to every aᵀb; padded value
    # channels are sliced off. Multiples of 8 keep the CUDA kernels aligned.
    D = -(-max(q.shape[-1], Cv) // 8) * 8
    if q.shape[-1] != D:
        q, k = F.pad(q, (0, D - q.shape[-1])), F.pad(k, (0, D - k.shape[-1]))
    if Cv != D:
        v = F.pad(v, (0, D - Cv))
    out = F.scaled_dot_product_attention(q, k, v, scale=scale)[..., :Cv]  # [B, 1, N, Cv]
    return out.squeeze(1).transpose(1, 2).reshape(B, Cv, H, W)


def cmft_naive(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    """Explicit-matrix CMFT (paper eq. 4 verbatim). Test oracle / benchmark baseline only:
    it allocates the full [B, N, M] correlation matrix."""
    _check_cmft(query, key, value)
    B, _, H, W = query.shape
    q = query.flatten(2).transpose(1, 2)  # [B, N, C]
    k = key.flatten(2)  # [B, C, M]
    v = value.flatten(2).transpose(1, 2)  # [B, M, Cv]
    weights = torch.softmax((q @ k) * scale, dim=-1)  # [B, N, M]  eq. 3 (softmax == e^x / sum e^x)
    out = weights @ v  # [B, N, Cv]  eq. 2
    return out.transpose(1, 2).reshape(B, -1, H, W)


def grid_yx(height: int, width: int, device: torch.device | str = "cpu",
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Centred position of every pixel, ``[1, 2, H, W]`` (y, x) in image heights (see module doc)."""
    y = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height - 0.5
    x = ((torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width - 0.5) * (width / height)
    gy, gx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([gy, gx]).unsqueeze(0).to(dtype)


@torch.no_grad()
def cmft_attention_stats(query: torch.Tensor, key: torch.Tensor, scale: float = 1.0,
                         chunk_positions: int = 1024) -> dict[str, torch.Tensor]:
    """Per-query attention statistics without the N×M matrix (chunks of queries, fp32).

    Returns ``max_weight`` and ``entropy`` (÷ log M: 0 = one-hot, 1 = uniform) ``[B,1,H,W]``,
    and ``expected_yx`` (Σ_j w_ij p_j) / ``argmax_yx`` (p at the largest weight) ``[B,2,H,W]`` in
    the coordinates of ``grid_yx`` at the key's size. Memory O(B × chunk_positions × M).
    """
    if query.dim() != 4 or key.dim() != 4 or query.shape[:2] != key.shape[:2]:
        raise ValueError(f"query/key must be [B,C,H,W] with equal B and C, got {tuple(query.shape)}, {tuple(key.shape)}")
    B, _, H, W = query.shape
    q = query.flatten(2).transpose(1, 2).float()  # [B, N, C]
    k = key.flatten(2).float()  # [B, C, M]
    M = k.shape[-1]
    pos = grid_yx(*key.shape[-2:], device=key.device).flatten(2)[0].T  # [M, 2]
    max_w, ent, exp_yx, arg_yx = [], [], [], []
    for start in range(0, q.shape[1], chunk_positions):
        logits = (q[:, start : start + chunk_positions] @ k) * scale  # [B, n, M]
        lse = torch.logsumexp(logits, dim=-1, keepdim=True)  # [B, n, 1]
        top, idx = logits.max(dim=-1, keepdim=True)
        max_w.append(torch.exp(top - lse))
        p = torch.exp(logits - lse)
        ent.append(lse - (p * logits).sum(dim=-1, keepdim=True))
        exp_yx.append(p @ pos)  # [B, n, 2]
        arg_yx.append(pos[idx[..., 0]])  # [B, n, 2]
    norm = math.log(M) if M > 1 else 1.0

    def as_map(parts: list[torch.Tensor]) -> torch.Tensor:
        t = torch.cat(parts, dim=1)
        return t.transpose(1, 2).reshape(B, t.shape[-1], H, W)

    return {"max_weight": as_map(max_w), "entropy": (as_map(ent).clamp_min(0) / norm).clamp(0, 1),
            "expected_yx": as_map(exp_yx), "argmax_yx": as_map(arg_yx)}


def cmft_confidence(query: torch.Tensor, key: torch.Tensor, scale: float = 1.0,
                    chunk_positions: int = 1024) -> dict[str, torch.Tensor]:
    """``{"max_weight", "entropy"}`` of ``cmft_attention_stats`` (both ``[B,1,H,W]``)."""
    stats = cmft_attention_stats(query, key, scale, chunk_positions)
    return {"max_weight": stats["max_weight"], "entropy": stats["entropy"]}


CMFT_KERNELS = ("paper", "cosine")


class CMFT(nn.Module):
    """CMFT as a module: ``CMFT()(query, key, value)`` (paper eq. 1–4 and the issue-12 kernels).

    scale: logit multiplier of the ``paper`` kernel; 1.0 = the paper's exp(aᵀb). ``None`` =
        1/sqrt(C) (transformer style).
    normalize: legacy cosine option of the ``paper`` kernel (L2 only, no centring, temperature
        multiplier initialised to ``init_temperature``).
    kernel: ``paper`` (raw aᵀb·scale) or ``cosine`` (centred cosine / τ, τ learned, init
        ``init_tau``).
    channels: q/k channels; needed only for ``proj=True``.
    proj: learned 1×1 conv projections of query and key (C -> C, no bias), both initialised to
        the identity so the kernel at init equals the unprojected one.
    proj_init_channels: with ``proj``, initialise to the identity on the LAST n channels only
        (zeros elsewhere; 0 = all channels). LCMFTN's levels ≥ 1 match ca(r^{k−1}, E_s^k(S_n))
        against ca(E_c^k(C_p), E_s^k(S_p)): at init r and E_c are unrelated features, so the
        projection starts by matching the line-art half and learns to use the rest.
    locality_sigma: σ of the Gaussian locality bias in image heights (0 = off, global search).
        ``forward(..., centre=None)`` centres it on the query's own position; a ``centre``
        ``[B,2,H,W]`` (e.g. the coarser level's match, upsampled) centres it there.
    """

    def __init__(self, scale: float | None = 1.0, normalize: bool = False,
                 init_temperature: float = 10.0, *, kernel: str = "paper",
                 init_tau: float = 0.01, channels: int = 0, proj: bool = False,
                 proj_init_channels: int = 0, locality_sigma: float = 0.0):
        super().__init__()
        if kernel not in CMFT_KERNELS:
            raise ValueError(f"CMFT kernel must be one of {CMFT_KERNELS}, got {kernel!r}")
        if proj and channels <= 0:
            raise ValueError("CMFT(proj=True) needs channels > 0 (the q/k channel count)")
        if locality_sigma < 0:
            raise ValueError(f"CMFT locality_sigma must be >= 0, got {locality_sigma}")
        self.scale, self.normalize, self.kernel = scale, normalize, kernel
        self.locality_sigma = float(locality_sigma)
        if normalize:
            self.log_temperature = nn.Parameter(torch.tensor(math.log(init_temperature)))
        if kernel == "cosine":
            self.log_tau = nn.Parameter(torch.tensor(math.log(init_tau)))
        self.q_proj: nn.Conv2d | None = None
        self.k_proj: nn.Conv2d | None = None
        if proj:
            self.q_proj = nn.Conv2d(channels, channels, 1, bias=False)
            self.k_proj = nn.Conv2d(channels, channels, 1, bias=False)
            with torch.no_grad():
                eye = torch.eye(channels)
                if 0 < proj_init_channels < channels:
                    eye[: channels - proj_init_channels] = 0
                eye = eye.view(channels, channels, 1, 1)
                self.q_proj.weight.copy_(eye)
                self.k_proj.weight.copy_(eye)

    def logits_parts(self, query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(q, k, scale) with logits = scale·qᵀk for the kernel, before the locality bias."""
        if self.q_proj is not None and self.k_proj is not None:
            query, key = self.q_proj(query), self.k_proj(key)
        if self.kernel == "cosine":
            query = F.normalize(query - query.mean(dim=(2, 3), keepdim=True), dim=1)
            key = F.normalize(key - key.mean(dim=(2, 3), keepdim=True), dim=1)
            # Fold 1/τ into the query so the SDPA scale stays a Python float.
            return query * (-self.log_tau).exp().to(query.dtype), key, 1.0
        if self.normalize:
            query, key = F.normalize(query, dim=1), F.normalize(key, dim=1)
            return query * self.log_temperature.exp().to(query.dtype), key, 1.0
        scale = self.scale if self.scale is not None else 1.0 / math.sqrt(query.shape[1])
        return query, key, scale

    def prepare(self, query: torch.Tensor, key: torch.Tensor,
                centre: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(q, k, scale) with scale·qᵀk = the kernel's logits + the locality bias (3 more channels)."""
        q, k, scale = self.logits_parts(query, key)
        if self.locality_sigma <= 0:
            return q, k, scale
        B = q.shape[0]
        inv = 1.0 / (self.locality_sigma**2)
        if centre is None:
            centre = grid_yx(*q.shape[-2:], device=q.device).expand(B, -1, -1, -1)
        elif centre.shape != (B, 2, *q.shape[-2:]):
            raise ValueError(f"CMFT centre must be [B, 2, H, W] = {(B, 2, *q.shape[-2:])}, got {tuple(centre.shape)}")
        pos = grid_yx(*k.shape[-2:], device=k.device).expand(B, -1, -1, -1)
        ones = torch.ones_like(centre[:, :1])
        q_extra = torch.cat([centre.float() * inv, ones], 1) / scale
        k_extra = torch.cat([pos, -0.5 * inv * (pos * pos).sum(1, keepdim=True)], 1)
        return torch.cat([q, q_extra.to(q.dtype)], 1), torch.cat([k, k_extra.to(k.dtype)], 1), scale

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                centre: torch.Tensor | None = None, return_match: bool = False):
        """[B,Cv,H,W]; with ``return_match`` also the expected attended position [B,2,H,W]."""
        q, k, scale = self.prepare(query, key, centre)
        if not return_match:
            return cmft(q, k, value, scale=scale)
        pos = grid_yx(*key.shape[-2:], device=key.device, dtype=value.dtype)
        out = cmft(q, k, torch.cat([value, pos.expand(value.shape[0], -1, -1, -1)], 1), scale=scale)
        return out[:, :-2], out[:, -2:]

    def confidence(self, query: torch.Tensor, key: torch.Tensor,
                   centre: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        q, k, scale = self.prepare(query, key, centre)
        return cmft_confidence(q, k, scale=scale)

    def attention_stats(self, query: torch.Tensor, key: torch.Tensor,
                        centre: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``cmft_attention_stats`` of this kernel (locality bias included)."""
        q, k, scale = self.prepare(query, key, centre)
        return cmft_attention_stats(q, k, scale=scale)


def cmft_kernel_naive(module: CMFT, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      centre: torch.Tensor | None = None) -> torch.Tensor:
    """Test oracle of ``CMFT.forward``: the kernel written out as an explicit [B,N,M] matrix
    from its definition (projection, centred cosine / τ, Gaussian bias −|c_i − p_j|²/(2σ²)),
    never through the folded extra channels. fp32 reference for the fused path."""
    q, k, scale = module.logits_parts(query.float(), key.float())
    B, _, H, W = query.shape
    logits = (q.flatten(2).transpose(1, 2) @ k.flatten(2)) * scale  # [B, N, M]
    if module.locality_sigma > 0:
        c = (grid_yx(H, W).expand(B, -1, -1, -1) if centre is None else centre.float())
        c = c.flatten(2).transpose(1, 2)  # [B, N, 2]
        p = grid_yx(*key.shape[-2:]).flatten(2)[0].T  # [M, 2]
        d2 = ((c.unsqueeze(2) - p.view(1, 1, -1, 2)) ** 2).sum(-1)  # [B, N, M]
        logits = logits - d2 / (2 * module.locality_sigma**2)
    w = torch.softmax(logits, dim=-1)
    out = w @ value.float().flatten(2).transpose(1, 2)
    return out.transpose(1, 2).reshape(B, -1, H, W)
