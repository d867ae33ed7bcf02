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


@torch.no_grad()
def cmft_confidence(
    query: torch.Tensor, key: torch.Tensor, scale: float = 1.0, chunk_positions: int = 1024
) -> dict[str, torch.Tensor]:
    """Per-query attention statistics without the N×M matrix.

    Returns ``{"max_weight": [B,1,H,W], "entropy": [B,1,H,W]}``: the largest attention weight
    (1 = the query matched one reference position exactly) and the entropy divided by log(M)
    (0 = one-hot, 1 = uniform). Memory is O(B × chunk_positions × M), computed in fp32.
    """
    if query.dim() != 4 or key.dim() != 4 or query.shape[:2] != key.shape[:2]:
        raise ValueError(f"query/key must be [B,C,H,W] with equal B and C, got {tuple(query.shape)}, {tuple(key.shape)}")
    B, _, H, W = query.shape
    q = query.flatten(2).transpose(1, 2).float()  # [B, N, C]
    k = key.flatten(2).float()  # [B, C, M]
    M = k.shape[-1]
    max_w, ent = [], []
    for start in range(0, q.shape[1], chunk_positions):
        logits = (q[:, start : start + chunk_positions] @ k) * scale  # [B, n, M]
        lse = torch.logsumexp(logits, dim=-1, keepdim=True)  # [B, n, 1]
        max_w.append(torch.exp(logits.amax(dim=-1, keepdim=True) - lse))
        p = torch.exp(logits - lse)
        ent.append(lse - (p * logits).sum(dim=-1, keepdim=True))
    norm = math.log(M) if M > 1 else 1.0
    max_weight = torch.cat(max_w, dim=1).transpose(1, 2).reshape(B, 1, H, W)
    entropy = (torch.cat(ent, dim=1).clamp_min(0) / norm).transpose(1, 2).reshape(B, 1, H, W)
    return {"max_weight": max_weight, "entropy": entropy.clamp(0, 1)}


class CMFT(nn.Module):
    """CMFT as a module: ``CMFT()(query, key, value)``.

    scale: logit multiplier; 1.0 = the paper's exp(aᵀb). ``None`` = 1/sqrt(C) (transformer style).
    normalize: L2-normalise query and key over channels and multiply by a learnable temperature
        (initialised to ``init_temperature``); a stabler option than raw dot products, off by
        default to follow the paper.
    """

    def __init__(self, scale: float | None = 1.0, normalize: bool = False, init_temperature: float = 10.0):
        super().__init__()
        self.scale = scale
        self.normalize = normalize
        if normalize:
            self.log_temperature = nn.Parameter(torch.tensor(math.log(init_temperature)))

    def _prepare(self, query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        if self.normalize:
            query = F.normalize(query, dim=1)
            key = F.normalize(key, dim=1)
            # Fold the temperature into the query so the SDPA scale stays a Python float.
            query = query * self.log_temperature.exp().to(query.dtype)
            return query, key, 1.0
        scale = self.scale if self.scale is not None else 1.0 / math.sqrt(query.shape[1])
        return query, key, scale

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        q, k, scale = self._prepare(query, key)
        return cmft(q, k, value, scale=scale)

    def confidence(self, query: torch.Tensor, key: torch.Tensor) -> dict[str, torch.Tensor]:
        q, k, scale = self._prepare(query, key)
        return cmft_confidence(q, k, scale=scale)
