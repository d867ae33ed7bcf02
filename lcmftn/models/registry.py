"""Names -> systems. Every colorization system of the project is built from here.

Systems (``SYSTEMS``): ``lcmftn`` (paper §3), ``lcmftn-nocmft`` (§4.2 ablation), ``pix2pix-ref``,
``tcvc`` (seed baselines, with PatchGAN discriminators), ``copy-ref`` and ``flow-warp``
(no-training references). Sizes (``SIZES``): ``tiny`` (tests/smoke at 32–64 px), ``small``
(trains on 2 CPU cores at 64–128 px), ``paper`` (the paper's 256² scale; widths are ours because
Figure 4 with the exact widths is not in our copy of the paper).

    G = build_generator("lcmftn", "small")            # ColorizationSystem, G(s_p, c_p, s_n)
    cfg = dataclasses.asdict(generator_config("lcmftn", "small"))
    G2 = build_generator_from_config("lcmftn", cfg)   # e.g. from a checkpoint's meta.json
    D = build_discriminator("tcvc", "small")          # D(cond, image) -> [B,1,h,w] logits
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from torch import nn

from lcmftn.models.base import ColorizationSystem
from lcmftn.models.baselines import (
    CopyRef,
    CopyRefConfig,
    FlowWarp,
    FlowWarpConfig,
    PatchGAN,
    PatchGANConfig,
    Pix2PixConfig,
    Pix2PixRef,
    TCVCConfig,
    TCVCGenerator,
)
from lcmftn.models.lcmftn import LCMFTN, LCMFTNConfig
from lcmftn.models.ours import LCMFTNOurs, OursConfig

SYSTEMS = ("lcmftn", "lcmftn-nocmft", "pix2pix-ref", "tcvc", "copy-ref", "flow-warp")
SIZES = ("tiny", "small", "paper")
TRAINABLE = ("lcmftn", "lcmftn-nocmft", "pix2pix-ref", "tcvc")

# Issue-12 systems (branch cmft): LCMFTN variants sharing the LCMFTN size presets.
# name -> (config class, model class, config fields over the preset).
_LCMFTN_VARIANTS: dict[str, tuple[type, type, dict[str, Any]]] = {
    "lcmftn-cosine": (LCMFTNConfig, LCMFTN, dict(cmft_kernel="cosine", cmft_proj=True,
                                                 cmft_locality="coarse-to-fine")),
    "lcmftn-ours": (OursConfig, LCMFTNOurs, {}),
}
SYSTEMS = (*SYSTEMS, *_LCMFTN_VARIANTS)
TRAINABLE = (*TRAINABLE, *_LCMFTN_VARIANTS)

_LCMFTN_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(enc_channels=(8, 16, 32, 32), sketch_channels=(8, 16, 32, 32, 32, 32),
                 ru_widths=(32, 32, 16), ru_blocks=(1, 1, 1), cardinality=4),
    "small": dict(enc_channels=(16, 32, 64, 128), sketch_channels=(16, 32, 64, 128, 128, 128),
                  ru_widths=(128, 64, 32), ru_blocks=(2, 1, 1), cardinality=8),
    "paper": dict(enc_channels=(64, 128, 256, 512), sketch_channels=(64, 128, 256, 512, 512, 512),
                  ru_widths=(512, 256, 128), ru_blocks=(10, 4, 2), cardinality=32),
}
_PIX2PIX_SIZES = {
    "tiny": dict(base_channels=8, num_downs=5, dropout=0.0),
    "small": dict(base_channels=32, num_downs=6, dropout=0.0),
    "paper": dict(base_channels=64, num_downs=8, dropout=0.5),
}
_TCVC_SIZES = {
    "tiny": dict(base_channels=8, num_res_blocks=2),
    "small": dict(base_channels=16, num_res_blocks=8),
    "paper": dict(base_channels=64, num_res_blocks=8),
}
_PATCHGAN_WIDTH = {"tiny": 8, "small": 32, "paper": 64}
# Condition channels of D (see ``lcmftn.losses.discriminator_condition``) + 3 image channels.
_D_COND_CHANNELS = {"pix2pix-ref": 5, "tcvc": 4}
_MULTIPLE_OF = {"lcmftn": 8, "lcmftn-nocmft": 8, "pix2pix-ref": 1, "tcvc": 4, "copy-ref": 1, "flow-warp": 1}


def _check(system: str, size: str | None = None) -> None:
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}; choose one of {', '.join(SYSTEMS)}")
    if size is not None and size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")


def _config_class(system: str) -> type:
    if system in _LCMFTN_VARIANTS:
        return _LCMFTN_VARIANTS[system][0]
    return {"lcmftn": LCMFTNConfig, "lcmftn-nocmft": LCMFTNConfig, "pix2pix-ref": Pix2PixConfig,
            "tcvc": TCVCConfig, "copy-ref": CopyRefConfig, "flow-warp": FlowWarpConfig}[system]


def generator_config(system: str, size: str = "small") -> Any:
    """The frozen config dataclass of ``system`` at preset ``size``."""
    _check(system, size)
    if system in _LCMFTN_VARIANTS:
        cls, _, fields = _LCMFTN_VARIANTS[system]
        return cls(size=size, **{**_LCMFTN_SIZES[size], **fields})
    if system in ("lcmftn", "lcmftn-nocmft"):
        return LCMFTNConfig(size=size, use_cmft=system == "lcmftn", **_LCMFTN_SIZES[size])
    if system == "pix2pix-ref":
        return Pix2PixConfig(size=size, **_PIX2PIX_SIZES[size])
    if system == "tcvc":
        return TCVCConfig(size=size, **_TCVC_SIZES[size])
    return _config_class(system)(size=size)


def _build(system: str, cfg: Any, load_pretrained: bool = True) -> ColorizationSystem:
    if system in _LCMFTN_VARIANTS:
        model = _LCMFTN_VARIANTS[system][1](cfg, load_pretrained=load_pretrained)
        model.system = system
        return model
    if system in ("lcmftn", "lcmftn-nocmft"):
        if cfg.use_cmft != (system == "lcmftn"):
            raise ValueError(f"{system}: config has use_cmft={cfg.use_cmft}, which is the other system")
        return LCMFTN(cfg, load_pretrained=load_pretrained)
    return {"pix2pix-ref": Pix2PixRef, "tcvc": TCVCGenerator, "copy-ref": CopyRef,
            "flow-warp": FlowWarp}[system](cfg)


def build_generator(system: str, size: str = "small", **overrides: Any) -> ColorizationSystem:
    """Build ``system`` at preset ``size``; ``overrides`` replace config fields (e.g. ``cmft3=True``)."""
    cfg = generator_config(system, size)
    if overrides:
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cfg)}
        if unknown:
            raise ValueError(f"{system}: unknown config fields {sorted(unknown)}")
        cfg = dataclasses.replace(cfg, **overrides)
    return _build(system, cfg)


def build_generator_from_config(system: str, config: dict[str, Any],
                                load_pretrained: bool = True) -> ColorizationSystem:
    """Rebuild ``system`` from ``dataclasses.asdict`` of its config (JSON lists become tuples).

    ``load_pretrained=False`` skips reading frozen pretrained parts (LCMFTN's E_I) from their
    original file: a checkpoint carries those weights itself.
    """
    _check(system)
    cls = _config_class(system)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(config) - fields
    if unknown:
        raise ValueError(f"{system}: unknown config fields {sorted(unknown)} (expected {sorted(fields)})")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in config.items():
        if isinstance(value, list) and typing.get_origin(hints[key]) is tuple:
            value = tuple(value)
        values[key] = value
    return _build(system, cls(**values), load_pretrained=load_pretrained)


def build_discriminator(system: str, size: str = "small") -> nn.Module | None:
    """The PatchGAN of a GAN baseline (spectral norm for TCVC), or ``None``."""
    _check(system, size)
    if system not in _D_COND_CHANNELS:
        return None
    cfg = PatchGANConfig(size=size, in_channels=_D_COND_CHANNELS[system] + 3,
                         base_channels=_PATCHGAN_WIDTH[size], spectral_norm=system == "tcvc")
    return PatchGAN(cfg)


def multiple_of(system: str) -> int:
    """Input H and W must be multiples of this (LCMFTN: 8, its three stride-2 levels)."""
    _check(system)
    return 8 if system in _LCMFTN_VARIANTS else _MULTIPLE_OF[system]


def is_trainable(system: str) -> bool:
    _check(system)
    return system in TRAINABLE


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
