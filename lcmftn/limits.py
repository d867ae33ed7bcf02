"""Resource limits checked BEFORE anything is allocated (one frozen config for the project).

A checkpoint's ``meta.json``, a ``--set`` override or an odd video must not make a process try to
allocate a 10^5-channel model or a 64:1 frame at model resolution: every size that decides an
allocation is checked here first, and the error names the value, the limit, where the value
came from (file path or ``--set key``) and how to raise the limit.

    limits.current()                                   # Limits, with LCMFTN_LIMIT_* overrides
    limits.check_generator_config("lcmftn", cfg, source="ckpt/meta.json")
    limits.check_frame_shape(10, 4000, source="ep07/lineart.mp4")

Every field can be overridden with an environment variable ``LCMFTN_LIMIT_<FIELD>`` (e.g.
``LCMFTN_LIMIT_MAX_ASPECT=12``); set it on the driver AND (for Ray jobs) in the job's
``runtime_env`` so workers see the same limits.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

ENV_PREFIX = "LCMFTN_LIMIT_"


class LimitError(ValueError):
    """A value exceeds a configured limit (the message names value, limit, source, override)."""


@dataclass(frozen=True)
class Limits:
    """Upper (and a few lower) bounds on sizes that decide allocations."""

    max_channels: int = 4096  # any model width (enc_channels, ru_widths, base_channels, ...)
    max_blocks: int = 128  # any model depth (ru_blocks, num_res_blocks, num_downs, n_layers)
    max_dilation: int = 64  # conv dilations
    max_parameters: int = 500_000_000  # parameters of the whole generator (counted on "meta")
    max_image_side_px: int = 4096  # model resolution short side (--size, image_size_px)
    min_image_side_px: int = 8
    max_frame_side_px: int = 16384  # a decoded frame's longer side
    min_frame_side_px: int = 4  # a decoded frame's shorter side
    max_aspect: float = 8.0  # long side / short side of a frame
    max_model_pixels: int = 16_777_216  # H*W of one frame at model resolution (4096^2)
    max_batch: int = 4096  # batch sizes

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if not getattr(self, f.name) > 0:
                raise LimitError(f"limit {f.name}={getattr(self, f.name)!r} must be > 0")


def current() -> Limits:
    """:class:`Limits` with every ``LCMFTN_LIMIT_<FIELD>`` environment override applied."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Limits):
        text = os.environ.get(ENV_PREFIX + f.name.upper())
        if text is None or not text.strip():
            continue
        try:
            values[f.name] = float(text) if f.type in (float, "float") else int(text)
        except ValueError:
            raise LimitError(f"{ENV_PREFIX}{f.name.upper()}={text!r}: not a number") from None
    return Limits(**values)


def _fail(what: str, value: Any, limit_name: str, limit: Any, source: str, above: bool = True) -> None:
    side = "exceeds the limit" if above else "is below the minimum"
    raise LimitError(f"{source}: {what}={value!r} {side} {limit_name}={limit} "
                     f"(raise it with {ENV_PREFIX}{limit_name.upper()} if this is intended)")


def check_upper(what: str, value: float, limit_name: str, source: str, lim: Limits | None = None) -> None:
    lim = lim or current()
    if value > getattr(lim, limit_name):
        _fail(what, value, limit_name, getattr(lim, limit_name), source)


def _kind(field_name: str) -> str | None:
    name = field_name.lower()
    if "channels" in name or "widths" in name or name == "cardinality":
        return "max_channels"
    if "blocks" in name or "downs" in name or "layers" in name:
        return "max_blocks"
    if "dilation" in name:
        return "max_dilation"
    return None


def check_generator_config(system: str, cfg: Any, source: str, lim: Limits | None = None) -> None:
    """Every width/depth field of a generator config dataclass is a positive int within the
    limits, and the generator (built on PyTorch's ``meta`` device: no memory) has at most
    ``max_parameters`` parameters."""
    lim = lim or current()
    for f in dataclasses.fields(cfg):
        kind = _kind(f.name)
        if kind is None:
            continue
        value = getattr(cfg, f.name)
        items = value if isinstance(value, tuple) else (value,)
        lowest = 0 if f.default == 0 else 1  # fields whose default is 0 (extra_out_channels) may be off
        for v in items:
            if isinstance(v, bool) or not isinstance(v, int) or v < lowest:
                raise LimitError(f"{source}: {system} config field {f.name}={value!r}: "
                                 f"expected integers >= {lowest}")
            if v > getattr(lim, kind):
                _fail(f"{system} config field {f.name}", value, kind, getattr(lim, kind), source)
    n = _meta_parameter_count(system, cfg, source)
    if n > lim.max_parameters:
        _fail(f"{system} parameter count", n, "max_parameters", lim.max_parameters, source)


def _meta_parameter_count(system: str, cfg: Any, source: str) -> int:
    import torch

    from lcmftn.models import registry

    try:
        with torch.device("meta"):
            model = registry._build(system, cfg, load_pretrained=False)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise LimitError(f"{source}: {system} config cannot build a model ({exc})") from exc
    return sum(p.numel() for p in model.parameters())


def check_frame_shape(height: int, width: int, source: str, lim: Limits | None = None) -> None:
    """A decoded frame's shape is plausible: sides within [min, max], aspect <= ``max_aspect``."""
    lim = lim or current()
    short, long_ = min(height, width), max(height, width)
    shape = f"frame shape {width}x{height} (WxH)"
    if short < lim.min_frame_side_px:
        _fail(shape + " short side", short, "min_frame_side_px", lim.min_frame_side_px, source, above=False)
    if long_ > lim.max_frame_side_px:
        _fail(shape + " long side", long_, "max_frame_side_px", lim.max_frame_side_px, source)
    if long_ / short > lim.max_aspect:
        _fail(shape + " aspect ratio", round(long_ / short, 2), "max_aspect", lim.max_aspect, source)


def check_model_size(height: int, width: int, image_size_px: int, source: str,
                     lim: Limits | None = None) -> None:
    """Frame shape + the model-resolution frame (short side ``image_size_px``) within limits."""
    lim = lim or current()
    if not (lim.min_image_side_px <= image_size_px <= lim.max_image_side_px):
        above = image_size_px > lim.max_image_side_px
        name = "max_image_side_px" if above else "min_image_side_px"
        _fail("model resolution (short side, --size)", image_size_px, name, getattr(lim, name), source, above)
    check_frame_shape(height, width, source, lim)
    pixels = math.ceil(height * image_size_px / min(height, width)) * math.ceil(width * image_size_px / min(height, width))
    if pixels > lim.max_model_pixels:
        _fail(f"model-resolution pixels of a {width}x{height} frame at {image_size_px} px", pixels,
              "max_model_pixels", lim.max_model_pixels, source)
