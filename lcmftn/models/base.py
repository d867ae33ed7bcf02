"""The interface every colorization system implements: ``G(s_p, c_p, s_n) -> c_e``.

Shapes: B = batch, H, W = spatial. ``s_p``/``s_n``: line art ``[B, 1, H, W]`` in [0, 1]
(black lines on white); ``c_p``: colour ``[B, 3, H, W]`` in [0, 1]; output ``[B, 3, H, W]`` in [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn


class ColorizationSystem(nn.Module):
    """Base class of generators and no-training references.

    Subclasses set ``system`` (the registry name) and ``trainable``, and implement ``forward``.
    ``forward_with_confidence`` also returns a per-pixel confidence ``[B, 1, H, W]`` in [0, 1]
    (1 = sure) where the system has one (CMFT attention), else ``None``.
    """

    system: str = "?"
    trainable: bool = True

    def forward(self, s_p: torch.Tensor, c_p: torch.Tensor, s_n: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_with_confidence(
        self, s_p: torch.Tensor, c_p: torch.Tensor, s_n: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self(s_p, c_p, s_n), None

    # Training hook (``lcmftn.training.train_step``): a system whose loss needs its intermediates
    # returns True here for the loss config, accepts ``forward(..., return_parts=True)`` (a dict
    # with the prediction under "out") and turns those parts into extra weighted loss terms.
    def uses_auxiliary_losses(self, loss_cfg: object) -> bool:
        return False

    def auxiliary_losses(self, parts: dict[str, torch.Tensor], truth: torch.Tensor, loss_cfg: object
                         ) -> dict[str, tuple[float, torch.Tensor]]:
        """``{name: (weight, value)}``; weight 0 = logged only."""
        return {}


def check_inputs(s_p: torch.Tensor, c_p: torch.Tensor, s_n: torch.Tensor, multiple_of: int = 1) -> None:
    """Raise a ``ValueError`` naming the argument and the problem for bad shapes or dtypes."""
    for name, t, channels in (("s_p", s_p, 1), ("c_p", c_p, 3), ("s_n", s_n, 1)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4 or t.shape[1] != channels:
            raise ValueError(f"{name} must have shape [B, {channels}, H, W], got {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor in [0, 1], got dtype {t.dtype}")
    if not (s_p.shape[0] == c_p.shape[0] == s_n.shape[0]):
        raise ValueError(f"batch sizes differ: s_p {s_p.shape[0]}, c_p {c_p.shape[0]}, s_n {s_n.shape[0]}")
    sizes = {tuple(t.shape[-2:]) for t in (s_p, c_p, s_n)}
    if len(sizes) != 1:
        raise ValueError(f"spatial sizes differ: s_p {tuple(s_p.shape[-2:])}, c_p {tuple(c_p.shape[-2:])}, s_n {tuple(s_n.shape[-2:])}")
    h, w = s_n.shape[-2:]
    if h % multiple_of or w % multiple_of:
        raise ValueError(f"H and W must be multiples of {multiple_of}, got {h}x{w}")
