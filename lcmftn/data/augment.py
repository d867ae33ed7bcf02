"""Training-time augmentations of a pair batch (pure PyTorch/NumPy; issues 11 and 12).

Two augmentations, each applied per sample with its probability, seeded by ``seed`` (training
passes ``(run seed, optimiser step, rank)``, so a resumed run draws the same ones):

* **Palette** (``palette_prob``): the same random colour transform on C_p and C_n — a
  permutation of the RGB channels, then each channel kept or inverted (c -> 1 − c): 48
  transforms, exact on [0, 1] and invertible. A model that memorised the training films'
  palettes (skin is peach, the sky is blue) is wrong after it; only colour read from the
  reference stays right. This is what a film-level split asks of the model: the test films'
  casts and palettes were never seen.
* **Line art** (``lineart_prob``): :func:`lcmftn.data.lineart.augment_lineart_many` (stroke thickness,
  gaps, jitter, blur, paper noise, binarisation; :class:`~lcmftn.data.lineart.LineAugConfig`) with
  the **same random state for S_p and S_n**: one pen for both drawings, so where the two drawings
  are identical they stay identical (a held drawing remains a hold; ``lcmftn-ours``' exact copy
  of unchanged regions still sees "no change" there).

Shapes: batch ``{"s_p": [B,1,H,W], "c_p": [B,3,H,W], "s_n": [B,1,H,W], "c_n": [B,3,H,W]}``
float in [0, 1] (1 = paper); other keys pass through.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from lcmftn.data.lineart import LineAugConfig, augment_lineart_many

__all__ = ["PALETTE_TRANSFORMS", "augment_pair_batch", "palette_transform"]

# (channel order, invert mask) pairs; index 0 is the identity.
PALETTE_TRANSFORMS: tuple[tuple[tuple[int, ...], tuple[bool, ...]], ...] = tuple(
    (perm, inv) for perm in itertools.permutations(range(3))
    for inv in itertools.product((False, True), repeat=3))


def palette_transform(color: torch.Tensor, k: int) -> torch.Tensor:
    """Colour transform ``k`` of :data:`PALETTE_TRANSFORMS` on ``[..., 3, H, W]`` in [0, 1]."""
    perm, inv = PALETTE_TRANSFORMS[k]
    out = color[..., list(perm), :, :]
    if any(inv):
        mask = torch.tensor(inv, dtype=torch.bool, device=color.device).view(3, 1, 1)
        out = torch.where(mask, 1.0 - out, out)
    return out


def augment_pair_batch(batch: Mapping[str, torch.Tensor], palette_prob: float, lineart_prob: float,
                       seed: int | Sequence[int], line_cfg: LineAugConfig | None = None
                       ) -> dict[str, torch.Tensor]:
    """A new batch dict with the palette / line-art augmentations applied (module docstring);
    the input tensors are not modified. Sample ``i`` draws from ``default_rng([*seed, i])``."""
    if not (0.0 <= palette_prob <= 1.0 and 0.0 <= lineart_prob <= 1.0):
        raise ValueError(f"augmentation probabilities must be in [0, 1], got palette={palette_prob}, "
                         f"lineart={lineart_prob}")
    out = dict(batch)
    if palette_prob == 0 and lineart_prob == 0:
        return out
    seeds = [seed] if isinstance(seed, int) else list(seed)
    line_cfg = line_cfg or LineAugConfig()
    n = batch["c_p"].shape[0]
    c_p, c_n = batch["c_p"].clone(), batch["c_n"].clone()
    s_p, s_n = batch["s_p"].clone(), batch["s_n"].clone()
    for i in range(n):
        rng = np.random.default_rng([*seeds, i])
        # both draws happen whatever the probabilities, so one knob does not reseed the other
        pal, k = rng.random(), int(rng.integers(1, len(PALETTE_TRANSFORMS)))
        line, line_seed = rng.random(), int(rng.integers(0, 2**31 - 1))
        if pal < palette_prob:
            c_p[i] = palette_transform(c_p[i], k)
            c_n[i] = palette_transform(c_n[i], k)
        if line < lineart_prob:  # the same pen (one random state) for both drawings
            u8 = [(t[i, 0].detach().float().cpu().numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
                  for t in (s_p, s_n)]
            for t, aug in zip((s_p, s_n), augment_lineart_many(u8, line_cfg, np.random.default_rng(line_seed)), strict=True):
                t[i, 0] = torch.from_numpy(aug.astype(np.float32) / 255.0).to(t.dtype)
    out.update(c_p=c_p, c_n=c_n, s_p=s_p, s_n=s_n)
    return out
