"""Training configuration and named recipes (``smoke``, ``cpu-small``, ``paper-256``).

A recipe is a function returning a frozen :class:`TrainConfig`; variants are made with
``dataclasses.replace`` or, from the command line, with :func:`apply_overrides`
(``--set optim.lr=2e-4 --set window.width_frames=20``). Values are parsed by the field's
declared type and a bad key or value raises a ``ValueError`` that names both.

At the Ray boundary the config travels as ``dataclasses.asdict(cfg)`` and is rebuilt with
:func:`config_from_dict` first thing on the worker. :func:`flatten_config` gives the dotted
``{"optim.lr": 1e-4, ...}`` form logged as MLflow params.

Paper settings (LCMFTN §4.1): 256x256 crops, batch 2, Adam lr 1e-4 betas (0.5, 0.9),
λ1 = 10, λ2 = 2e-2, 40 epochs, window width 40 / stride 5. TCVC: D lr = G lr / 10, previous
frame blanked with p = 0.5.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, replace
from typing import Any

from lcmftn import limits
from lcmftn.data.pairs import WindowConfig
from lcmftn.losses import LossConfig
from lcmftn.models.registry import TRAINABLE

SYSTEMS_TRAINABLE = TRAINABLE  # the registry's (SystemSpec.trainable)


@dataclass(frozen=True)
class OptimConfig:
    """Adam for the generator (and discriminator, for the GAN systems)."""

    lr: float = 1e-4
    """Generator learning rate (per step, not scaled by the number of workers)."""
    beta1: float = 0.5
    beta2: float = 0.9
    d_lr_ratio: float = -1.0
    """Discriminator lr = ``lr * d_lr_ratio``; negative = the system's default
    (TCVC 0.1 as in its paper, pix2pix 1.0)."""
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0
    """Clip the generator's gradient norm to this value; 0 = off."""


@dataclass(frozen=True)
class ValConfig:
    """Validation on held-out shots with the paper protocol (DESIGN §6)."""

    val_fraction: float = 0.2
    """Fraction of shots (not frames) held out for validation; at least one shot when > 0."""
    every_epochs: int = 1
    """Validate after every N epochs (and always after the last one)."""
    strides_frames: tuple[int, ...] = (1, 5, 10)
    """Strides S of the 5-frame evaluation sequences t0, t0+S, ..., t0+4S."""
    max_sequences_per_stride: int = 16
    """Cap on sequences per stride (one per shot and stride; 0 = no cap)."""
    num_samples_in_grid: int = 4
    """Rows in the logged sample grid (S_p | C_p | S_n | prediction | ground truth)."""
    seed: int = 1234


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (data URI and cluster size live on the CLI)."""

    recipe: str = "custom"
    """Name of the recipe this config came from (informational)."""
    system: str = "lcmftn"
    """Which system to train: one of ``SYSTEMS_TRAINABLE``."""
    model_size: str = "small"
    """Generator size preset in ``lcmftn.models.registry.SIZES`` (tiny / small / paper)."""
    image_size_px: int = 128
    """Side of the square training crop and of the validation centre crop, in pixels."""
    batch_size_per_worker: int = 2
    """Pairs per optimiser step on each worker (global batch = this x workers)."""
    epochs: int = 1
    """Passes over the training pairs (or of ``steps_per_epoch`` steps when that is > 0)."""
    steps_per_epoch: int = 0
    """Optimiser steps per epoch on each worker; 0 = one full pass over the sampled pairs."""
    window: WindowConfig = field(default_factory=WindowConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    val: ValConfig = field(default_factory=ValConfig)
    generator: str = ""
    """Fields of the system's generator config over its registry default, ``field=value`` pairs
    separated by commas (e.g. ``correction=paint,still_flow_px=0`` for ``lcmftn-ours``); typed
    and checked by ``lcmftn.models.registry.parse_generator_overrides``. "" = the default."""
    e_i_weights: str = ""
    """LCMFTN only: safetensors weights of the frozen sketch network E_I; "" = E_I off."""
    augment: bool = True
    """Random crop and horizontal flip of the pair (same transform for all four images)."""
    palette_aug: float = 0.0
    """Per-pair probability of one random colour transform (RGB permutation + channel inversions)
    applied to C_p and C_n alike (``lcmftn.data.augment``): palettes cannot be memorised."""
    lineart_aug: float = 0.0
    """Per-pair probability of the line-art augmentations (``LineAugConfig`` defaults: thickness,
    gaps, jitter, blur, noise, binarisation), the same pen for S_p and S_n."""
    tcvc_blank_prob: float = 0.5
    """TCVC only: probability that the previous colour frame is replaced by a blank image."""
    mixed_precision: str = "auto"
    """``auto`` = bf16 autocast on CUDA, fp32 on CPU; ``bf16``; ``off``."""
    log_every_steps: int = 10
    """Per-step loss logging period (rank 0 to MLflow)."""
    keep_checkpoints: int = 2
    """Ray Train keeps this many latest checkpoints in the run's storage path."""
    seed: int = 0


# ----------------------------------------------------------------------------- recipes


def _smoke() -> TrainConfig:
    # Seconds on CPU: tiny generator, 32 px, a handful of steps. VGG is random (explicitly
    # offline; recorded in the run) so the whole loss path is exercised without downloads.
    return TrainConfig(
        recipe="smoke",
        model_size="tiny",
        image_size_px=32,
        batch_size_per_worker=2,
        epochs=2,
        steps_per_epoch=3,
        window=WindowConfig(width_frames=8, stride_frames=2),
        loss=LossConfig(lambda_l1=10.0, lambda_vgg=2e-2, vgg_weights="random"),
        val=ValConfig(val_fraction=0.34, strides_frames=(1, 2), max_sequences_per_stride=2,
                      num_samples_in_grid=2),
        log_every_steps=1,
    )


def _cpu_small() -> TrainConfig:
    # About 15 minutes on 2 CPU cores (2 Ray workers, ~16 samples/s in total: 24 x 50 steps x
    # batch 4 x 2 workers = 9600 samples). Measured: see the README training section.
    # NOTE: lambda_vgg = 0 because no pretrained VGG-19 is available offline and a random VGG
    # roughly doubles the step time on CPU; give
    # `--set loss.vgg_weights=/path/vgg19.pth --set loss.lambda_vgg=0.02` where weights exist.
    return TrainConfig(
        recipe="cpu-small",
        model_size="small",
        image_size_px=64,
        batch_size_per_worker=4,
        epochs=24,
        steps_per_epoch=50,
        window=WindowConfig(width_frames=12, stride_frames=3),
        # No VGG offline: TCVC's VGG content/style terms are off too (its L1 + GAN remain).
        loss=LossConfig(lambda_l1=10.0, lambda_vgg=0.0, vgg_weights="none",
                        lambda_content=0.0, lambda_style=0.0),
        optim=OptimConfig(lr=5e-4),
        val=ValConfig(val_fraction=0.2, every_epochs=2, strides_frames=(1, 5, 10),
                      max_sequences_per_stride=16),
        log_every_steps=10,
    )


def _cpu_quality() -> TrainConfig:
    # The winner of the issue-12 CPU comparison (lcmftn-ours, README "CMFT kernels ...") trained
    # for the evaluated intervals on 2 CPU cores in <= 45 min: 24 x 100 steps x batch 4 at the
    # measured ~1.06 s/step (64 px, 1 process, 2 shared cores) ~ 42 min. The window spans 20
    # frame intervals (width 21): the protocol evaluates intervals 1..40 (strides 1/5/10 x
    # positions 1-4), the paper trains with width 40; 21 keeps enough pairs in 48-frame shots
    # (28 windows per shot at stride 1) and covers the stride-10 step (>= 10).
    # No VGG offline (as cpu-small): L1 only; TCVC's content/style off.
    # Same as cpu-small but for the system, the window, the steps and the validation period.
    base = _cpu_small()
    return replace(base, recipe="cpu-quality", system="lcmftn-ours", steps_per_epoch=100,
                   window=WindowConfig(width_frames=21, stride_frames=1),
                   val=replace(base.val, every_epochs=4), log_every_steps=20)


def _paper_256() -> TrainConfig:
    return TrainConfig(
        recipe="paper-256",
        model_size="paper",
        image_size_px=256,
        batch_size_per_worker=2,
        epochs=40,
        steps_per_epoch=0,
        window=WindowConfig(width_frames=40, stride_frames=5),
        loss=LossConfig(lambda_l1=10.0, lambda_vgg=2e-2, vgg_weights="torchvision"),
        optim=OptimConfig(lr=1e-4, beta1=0.5, beta2=0.9),
        val=ValConfig(val_fraction=0.1, every_epochs=1, max_sequences_per_stride=64),
        log_every_steps=50,
        keep_checkpoints=3,
    )


RECIPES: dict[str, typing.Callable[[], TrainConfig]] = {
    "smoke": _smoke,
    "cpu-small": _cpu_small,
    "cpu-quality": _cpu_quality,
    "paper-256": _paper_256,
}


def recipe(name: str) -> TrainConfig:
    """The named recipe's config; ``ValueError`` listing the known names otherwise."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}")
    return RECIPES[name]()


# ----------------------------------------------------------------------------- overrides


def _parse_value(text: str, tp: Any, key: str) -> Any:
    """Parse ``text`` as type ``tp`` (bool/int/float/str, tuples, unions with None)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and text.lower() in ("none", "null"):
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _parse_value(text, arg, key)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError("; ".join(errors))
    if origin is tuple:
        args = typing.get_args(tp)
        parts = [p.strip() for p in text.split(",") if p.strip()]
        elem = args[0] if args else str
        return tuple(_parse_value(p, elem, key) for p in parts)
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if text not in allowed:
            raise ValueError(f"{key}: {text!r} is not one of {allowed}")
        return text
    if tp is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{key}: expected a bool (true/false), got {text!r}")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{key}: expected an int, got {text!r}") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{key}: expected a float, got {text!r}") from None
    if tp is str or tp is Any:
        return text
    raise ValueError(f"{key}: fields of type {tp} cannot be set from the command line")


def _set_path(cfg: Any, path: list[str], text: str, full_key: str) -> Any:
    if not dataclasses.is_dataclass(cfg):
        raise ValueError(f"{full_key}: {'.'.join(path)} is not a config section")
    names = {f.name for f in dataclasses.fields(cfg)}
    head = path[0]
    if head not in names:
        raise ValueError(
            f"unknown config key {full_key!r} ({type(cfg).__name__} has: {', '.join(sorted(names))})"
        )
    hints = typing.get_type_hints(type(cfg))
    current = getattr(cfg, head)
    if len(path) == 1:
        if dataclasses.is_dataclass(current):
            raise ValueError(f"{full_key} is a section; set one of its fields ({full_key}.<field>)")
        value = _parse_value(text, hints[head], full_key)
    else:
        value = _set_path(current, path[1:], text, full_key)
    return dataclasses.replace(cfg, **{head: value})


def apply_overrides(cfg: TrainConfig, overrides: typing.Iterable[str]) -> TrainConfig:
    """Return ``cfg`` with each ``"dotted.key=value"`` applied (type-checked, left to right).

    >>> apply_overrides(recipe("smoke"), ["optim.lr=3e-4", "window.width_frames=20"]).optim.lr
    0.0003
    """
    set_keys: set[str] = set()
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value (e.g. optim.lr=2e-4)")
        key, text = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ValueError(f"override {item!r} has an empty key")
        cfg = _set_path(cfg, key.split("."), text.strip(), key)
        set_keys.add(key)
    validate_config(cfg, set_keys)
    return cfg


def validate_config(cfg: TrainConfig, set_keys: typing.Collection[str] = ()) -> None:
    """Cheap sanity checks with messages naming the field; sizes within :mod:`lcmftn.limits`
    (the error names ``--set KEY`` when ``KEY`` in ``set_keys`` came from the command line)."""
    for key in ("image_size_px", "batch_size_per_worker"):
        limit = "max_image_side_px" if key == "image_size_px" else "max_batch"
        limits.check_upper(key, getattr(cfg, key), limit, f"--set {key}" if key in set_keys else "the recipe")
    if cfg.system not in SYSTEMS_TRAINABLE:
        raise ValueError(f"system: unknown or non-trainable system {cfg.system!r}; "
                         f"trainable systems: {', '.join(SYSTEMS_TRAINABLE)}")
    checks = [
        (cfg.image_size_px >= 16, "image_size_px must be >= 16"),
        (cfg.batch_size_per_worker >= 1, "batch_size_per_worker must be >= 1"),
        (cfg.epochs >= 1, "epochs must be >= 1"),
        (cfg.steps_per_epoch >= 0, "steps_per_epoch must be >= 0"),
        (cfg.optim.lr > 0, "optim.lr must be > 0"),
        (0.0 <= cfg.val.val_fraction < 1.0, "val.val_fraction must be in [0, 1)"),
        (cfg.val.every_epochs >= 1, "val.every_epochs must be >= 1"),
        (all(s >= 1 for s in cfg.val.strides_frames), "val.strides_frames must be >= 1"),
        (0.0 <= cfg.tcvc_blank_prob <= 1.0, "tcvc_blank_prob must be in [0, 1]"),
        (0.0 <= cfg.palette_aug <= 1.0, "palette_aug must be in [0, 1]"),
        (0.0 <= cfg.lineart_aug <= 1.0, "lineart_aug must be in [0, 1]"),
        (cfg.mixed_precision in ("auto", "bf16", "off"), "mixed_precision must be auto|bf16|off"),
        (cfg.keep_checkpoints >= 1, "keep_checkpoints must be >= 1"),
        (cfg.log_every_steps >= 1, "log_every_steps must be >= 1"),
        (cfg.loss.gate_loss in ("off", "penalty", "bce", "better"), "loss.gate_loss must be off|penalty|bce|better"),
        (cfg.loss.lambda_gate >= 0, "loss.lambda_gate must be >= 0"),
        (cfg.loss.gate_tau > 0, "loss.gate_tau must be > 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"invalid TrainConfig: {message}")


# ----------------------------------------------------------------------------- (de)serialise


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value, tp = data[f.name], hints[f.name]
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            value = _from_dict(tp, value)
        elif typing.get_origin(tp) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {sorted(unknown)}")
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Inverse of ``dataclasses.asdict`` for :class:`TrainConfig` (used on Ray workers)."""
    return _from_dict(TrainConfig, data)


def flatten_config(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """``{"optim.lr": 1e-4, "window.width_frames": 40, ...}``; tuples become ``"1,5,10"``."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(flatten_config(value, prefix=f"{key}."))
        elif isinstance(value, (tuple, list)):
            out[key] = ",".join(str(v) for v in value)
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[key] = value
        else:
            out[key] = str(value)
    return out
