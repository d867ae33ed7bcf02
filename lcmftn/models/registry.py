"""Names -> systems. Every colorization system of the project is built from here.

One :class:`SystemSpec` record per system (``REGISTRY``) holds every per-system fact (config,
builder, sizes, trainable, loss family, GAN discriminator condition / spectral norm / lr ratio,
``multiple_of``); everything else reads them from here. Systems (``SYSTEMS``): ``lcmftn`` (paper §3), ``lcmftn-nocmft`` (§4.2 ablation), ``pix2pix-ref``,
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from lcmftn import limits
from lcmftn.models.base import ColorizationSystem
from lcmftn.models.baselines import (
    CopyRef,
    CopyRefConfig,
    DeepAnalogy,
    DeepAnalogyConfig,
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

SIZES = ("tiny", "small", "paper")

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
_CHANNELS = {"s_p": 1, "s_n": 1, "c_p": 3}  # line art: 1 channel, colour: 3


@dataclass(frozen=True)
class SystemSpec:
    """Every per-system fact of the project, in one record (add a system = add one record).

    name: the system's id (checkpoints' ``meta.json``, ``--model``, recipes' ``system``).
    config_class / generator_class: its frozen config dataclass and its ``ColorizationSystem``.
    sizes: config fields per preset size (``SIZES``); a preset missing here uses the defaults.
    fixed: config fields that define the system (``lcmftn-nocmft``: ``use_cmft=False``); a
        config contradicting them is rejected.
    defaults: config fields over the size preset that make the system's default (overridable:
        ``lcmftn-cosine`` is LCMFTN with the cosine kernel; its locality may be changed).
    pretrained_parts: the generator takes ``load_pretrained`` (LCMFTN's frozen E_I).
    multiple_of: model-resolution H and W must be multiples of this (LCMFTN: 8, three
        stride-2 levels; TCVC: 4).
    trainable: has parameters to train (``copy-ref`` / ``flow-warp`` are references).
    loss: the generator loss family (``lcmftn.losses``): "ours" (paper eq. 9), "pix2pix" (GAN + L1),
        "content_style" (TCVC: GAN + content + style + L1); None = not trainable.
    d_condition: what the PatchGAN sees besides the image, in order (``lcmftn.losses.
        discriminator_condition``); None = no discriminator (not a GAN).
    d_spectral_norm: spectral norm in D (TCVC).
    d_lr_ratio: default D learning rate / G learning rate (``optim.d_lr_ratio`` < 0).
    blank_reference: training replaces C_p by a blank image with ``tcvc_blank_prob`` (TCVC).
    """

    name: str
    config_class: type
    generator_class: type
    sizes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    pretrained_parts: bool = False
    multiple_of: int = 1
    trainable: bool = False
    loss: str | None = None
    d_condition: tuple[str, ...] | None = None
    d_spectral_norm: bool = False
    d_lr_ratio: float = 1.0
    blank_reference: bool = False

    @property
    def gan(self) -> bool:
        return self.d_condition is not None

    @property
    def d_condition_channels(self) -> int:
        return sum(_CHANNELS[k] for k in self.d_condition or ())


_SPECS = (
    SystemSpec("lcmftn", LCMFTNConfig, LCMFTN, _LCMFTN_SIZES, {"use_cmft": True}, pretrained_parts=True,
               multiple_of=8, trainable=True, loss="ours"),  # paper §3
    SystemSpec("lcmftn-nocmft", LCMFTNConfig, LCMFTN, _LCMFTN_SIZES, {"use_cmft": False},
               pretrained_parts=True, multiple_of=8, trainable=True, loss="ours"),  # §4.2 ablation
    SystemSpec("pix2pix-ref", Pix2PixConfig, Pix2PixRef, _PIX2PIX_SIZES, trainable=True,
               loss="pix2pix", d_condition=("s_n", "s_p", "c_p"), d_lr_ratio=1.0),
    SystemSpec("tcvc", TCVCConfig, TCVCGenerator, _TCVC_SIZES, multiple_of=4, trainable=True, loss="content_style",
               d_condition=("s_n", "c_p"), d_spectral_norm=True, d_lr_ratio=0.1, blank_reference=True),
    # issue 12: the paper's LCMFTN with a matching kernel (centred cosine, learned tau, q/k
    # projections, coarse-to-fine locality), and the warp-first system (flow-warped reference +
    # gated LCMFTN correction; exact where the line art is unchanged).
    SystemSpec("lcmftn-cosine", LCMFTNConfig, LCMFTN, _LCMFTN_SIZES,
               {"use_cmft": True},
               {"cmft_kernel": "cosine", "cmft_proj": True, "cmft_locality": "coarse-to-fine"}, pretrained_parts=True, multiple_of=8, trainable=True, loss="ours"),
    # defaults (session 6, film-level benchmark): the correction resamples the warped reference
    # and the base follows the flow in blank regions; OursConfig's own defaults stay the earlier
    # model's (paint, still_flow_px=0), so checkpoints written before keep building as they were.
    SystemSpec("lcmftn-ours", OursConfig, LCMFTNOurs, _LCMFTN_SIZES, {},
               {"correction": "resample", "still_flow_px": 0.25}, pretrained_parts=True, multiple_of=8,
               trainable=True, loss="ours"),
    SystemSpec("copy-ref", CopyRefConfig, CopyRef),
    SystemSpec("flow-warp", FlowWarpConfig, FlowWarp),
    # paper §4.3's DeepAnalogy baseline, no training; line-art features (no VGG offline)
    SystemSpec("deep-analogy", DeepAnalogyConfig, DeepAnalogy),
)  # fmt: skip
REGISTRY: dict[str, SystemSpec] = {s.name: s for s in _SPECS}
SYSTEMS = tuple(REGISTRY)
TRAINABLE = tuple(s.name for s in _SPECS if s.trainable)
GAN_SYSTEMS = tuple(s.name for s in _SPECS if s.gan)


def _check(system: str, size: str | None = None) -> None:
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}; choose one of {', '.join(SYSTEMS)}")
    if size is not None and size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")


def spec(system: str) -> SystemSpec:
    """The registry record of ``system`` (``ValueError`` naming the known ones)."""
    _check(system)
    return REGISTRY[system]


def generator_config(system: str, size: str = "small") -> Any:
    """The frozen config dataclass of ``system`` at preset ``size``."""
    _check(system, size)
    sp = REGISTRY[system]
    return sp.config_class(size=size, **sp.fixed, **{**sp.sizes.get(size, {}), **sp.defaults})


def parse_generator_overrides(system: str, text: str) -> dict[str, Any]:
    """``"field=value,field=value"`` -> typed config overrides for ``system`` (int, float, bool,
    str, tuples as ``1;3``; parsed as ``--set`` values are); unknown fields and bad values raise
    ``ValueError`` naming them."""
    from lcmftn.recipes import _parse_value  # (recipes imports this module)

    _check(system)
    if not text.strip():
        return {}
    cls = REGISTRY[system].config_class
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for item in text.split(","):
        if "=" not in item:
            raise ValueError(f"generator override {item!r} must look like field=value")
        key, value = (x.strip() for x in item.split("=", 1))
        if key not in hints:
            raise ValueError(f"{system}: unknown generator config field {key!r} "
                             f"(fields: {', '.join(sorted(hints))})")
        try:  # the --set parser's typing (tuples use ";" here: "," separates the fields)
            out[key] = _parse_value(value.replace(";", ","), hints[key], key)
        except ValueError as exc:
            raise ValueError(f"{system}: bad value for generator field {key!r}: {value!r} ({exc})") from exc
    return out


def _build(system: str, cfg: Any, load_pretrained: bool = True) -> ColorizationSystem:
    sp = REGISTRY[system]
    for key, value in sp.fixed.items():
        if getattr(cfg, key) != value:
            raise ValueError(f"{system}: config has {key}={getattr(cfg, key)}, which is the other system")
    model = (sp.generator_class(cfg, load_pretrained=load_pretrained) if sp.pretrained_parts
             else sp.generator_class(cfg))
    model.system = system  # variants share a class (lcmftn-cosine is an LCMFTN)
    return model


def build_generator(system: str, size: str = "small", source: str = "overrides",
                    **overrides: Any) -> ColorizationSystem:
    """Build ``system`` at preset ``size``; ``overrides`` replace config fields (e.g. ``cmft3=True``).

    The config is checked against :mod:`lcmftn.limits` before anything is allocated; errors
    name ``source`` (where the overrides came from)."""
    cfg = generator_config(system, size)
    if overrides:
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cfg)}
        if unknown:
            raise ValueError(f"{system}: unknown config fields {sorted(unknown)}")
        cfg = dataclasses.replace(cfg, **overrides)
        limits.check_generator_config(system, cfg, source)
    return _build(system, cfg)


def build_generator_from_config(system: str, config: dict[str, Any], load_pretrained: bool = True,
                                source: str = "config") -> ColorizationSystem:
    """Rebuild ``system`` from ``dataclasses.asdict`` of its config (JSON lists become tuples).

    ``load_pretrained=False`` skips reading frozen pretrained parts (LCMFTN's E_I) from their
    original file: a checkpoint carries those weights itself. The config is checked against
    :mod:`lcmftn.limits` first (``source``, e.g. the meta.json path, is named in errors).
    """
    return _build(system, config_from_dict(system, config, source), load_pretrained=load_pretrained)


def config_from_dict(system: str, config: dict[str, Any], source: str = "config") -> Any:
    """The config dataclass of ``system`` from a JSON dict, validated and within the limits."""
    _check(system)
    cls = REGISTRY[system].config_class
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
    try:
        cfg = cls(**values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: invalid {system} config ({exc})") from exc
    limits.check_generator_config(system, cfg, source)
    return cfg


def build_discriminator(system: str, size: str = "small") -> nn.Module | None:
    """The PatchGAN of a GAN baseline (spectral norm for TCVC), or ``None``."""
    _check(system, size)
    sp = REGISTRY[system]
    if not sp.gan:
        return None
    cfg = PatchGANConfig(size=size, in_channels=sp.d_condition_channels + 3,
                         base_channels=_PATCHGAN_WIDTH[size], spectral_norm=sp.d_spectral_norm)
    return PatchGAN(cfg)


def multiple_of(system: str) -> int:
    """Input H and W must be multiples of this (LCMFTN: 8, its three stride-2 levels)."""
    return spec(system).multiple_of


def is_trainable(system: str) -> bool:
    return spec(system).trainable


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
