"""Cel layers, the production form of a v2 film (issue 11 part 3).

In production, characters and effects are coloured as cel layers on transparent paper and the
backgrounds are painted separately, without line art. :func:`write_cel_layers` writes a v2 film
in that form, one PNG sequence per layer, in a folder (``lcmftn synth OUT.mp4 --generator v2
--layers`` writes it to ``OUT.layers/`` next to the composited film)::

    OUT.layers/
      layers.json               which layers exist, their order, size, fps, cuts, holds, config
      bg/00000.png              painted background seen through the camera, RGB (no line art)
      cels/color/00000.png      characters and props: RGBA, straight alpha; alpha 255 on painted
                                cels, the line art's ink coverage on the outline's outer fringe,
                                0 on paper; the lines are in the colour (as on a traced cel)
      cels/lines/00000.png      the cels' artist line art on transparent paper: RGBA, ink colour,
                                alpha = ink coverage (0 = paper)
      fx/color/00000.png        effects (smoke, sparks): RGBA, straight alpha; no line art
                                (only written when a shot has effects)

``layers.json``::

    {"version": 1, "kind": "cel-layers", "generator": "lcmftn.data.synth", "frames", "fps",
     "width", "height", "background": "bg",
     "layers": [{"name", "kind": "characters" | "effects", "color": dir, "lines": dir | null}],
     "order": ["bg", "cels", "fx"],     # bottom to top
     "cuts", "holds", "config"}

:func:`composite_layers` stacks the folder's PNGs back (straight-alpha "over", bottom to top);
it reproduces :func:`lcmftn.data.synth.film.composite` exactly (same float32 blend, one
rounding per layer; the test allows 1 level for uint8 rounding and measures 0).
Deterministic by seed: same config, same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from lcmftn.data.synth.config import INK_RGB, FilmConfigV2
from lcmftn.data.synth.film import FrameLayers, film_truth, iter_layers, plan_shots

__all__ = ["LAYERS_JSON", "cel_color", "lines_rgba", "composite_layers", "layers_path", "write_cel_layers",
           "read_layer_frame"]

LAYERS_JSON = "layers.json"


def layers_path(video: str | os.PathLike) -> Path:
    """Where ``--layers`` puts the layer folder of film ``video``: ``film.mp4`` -> ``film.layers``."""
    return Path(video).with_suffix(".layers")


def cel_color(ly: FrameLayers) -> np.ndarray:
    """The cel layer's colour, lines included, as straight-alpha RGBA uint8 [H,W,4] (see module)."""
    h, w = ly.lineart.shape
    out = np.zeros((h, w, 4), np.uint8)
    cel = ly.cels[..., 3] > 0
    out[cel] = ly.cels[cel]
    ys, xs = np.nonzero(ly.lineart < 255)
    ink = (255 - ly.lineart[ys, xs]).astype(np.float32)[:, None] * (1 / 255)
    inside = cel[ys, xs]
    px = out[ys, xs, :3].astype(np.float32)
    blended = (px * (1 - ink) + np.asarray(INK_RGB, np.float32) * ink + 0.5).astype(np.uint8)
    ink_rgb = np.broadcast_to(np.asarray(INK_RGB, np.uint8), blended.shape)
    out[ys, xs, :3] = np.where(inside[:, None], blended, ink_rgb)
    out[ys, xs, 3] = np.where(inside, 255, 255 - ly.lineart[ys, xs])
    return out


def lines_rgba(lineart: np.ndarray) -> np.ndarray:
    """Line art (uint8 [H,W], 255 = paper) -> RGBA on transparent paper (ink colour, alpha = ink)."""
    out = np.zeros((*lineart.shape, 4), np.uint8)
    out[..., :3] = INK_RGB
    out[..., 3] = 255 - lineart
    return out


def _over(dst: np.ndarray, rgba: np.ndarray) -> None:
    """Straight-alpha ``rgba`` over RGB ``dst`` in place (float32, one rounding)."""
    ys, xs = np.nonzero(rgba[..., 3])
    if not len(ys):
        return
    a = rgba[ys, xs, 3:].astype(np.float32) * (1 / 255)
    px = dst[ys, xs].astype(np.float32) * (1 - a) + rgba[ys, xs, :3].astype(np.float32) * a
    dst[ys, xs] = np.clip(px + 0.5, 0, 255).astype(np.uint8)


def composite_layers(background: np.ndarray, layers: list[np.ndarray]) -> np.ndarray:
    """RGB ``background`` with straight-alpha RGBA ``layers`` over it, bottom to top."""
    out = np.array(background[..., :3], np.uint8, copy=True)
    for rgba in layers:
        if rgba.shape[:2] != out.shape[:2] or rgba.shape[2] != 4:
            raise ValueError(f"layer of shape {rgba.shape} does not fit a {out.shape[1]}x{out.shape[0]} background")
        _over(out, rgba)
    return out


def _png(path: Path, img: np.ndarray) -> None:
    if img.ndim == 3:
        img = img[..., [2, 1, 0, 3]] if img.shape[2] == 4 else img[..., ::-1]
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")


def write_cel_layers(folder: str | os.PathLike, cfg: FilmConfigV2) -> dict:
    """Write the film of ``cfg`` as cel layers to ``folder`` (layout: module docstring; built in a
    temp folder beside it and renamed when complete). Returns the ``layers.json`` dict."""
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder} exists; not overwriting layers")
    shots = plan_shots(cfg)
    truth = film_truth(cfg, shots, [])
    has_fx = any(s["effects"] for s in shots)
    layers = [{"name": "cels", "kind": "characters", "color": "cels/color", "lines": "cels/lines"}]
    if has_fx:
        layers.append({"name": "fx", "kind": "effects", "color": "fx/color", "lines": None})
    meta = {"version": 1, "kind": "cel-layers", "generator": "lcmftn.data.synth", "frames": truth["frames"],
            "fps": truth["fps"], "width": cfg.width, "height": cfg.height, "background": "bg",
            "layers": layers, "order": ["bg"] + [ly["name"] for ly in layers],
            "cuts": truth["cuts"], "holds": truth["holds"], "config": truth["config"]}  # fmt: skip
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for d in ["bg", "cels/color", "cels/lines"] + (["fx/color"] if has_fx else []):
        (tmp / d).mkdir(parents=True)
    try:
        for t, (ly, _held) in enumerate(iter_layers(cfg, shots)):
            name = f"{t:05d}.png"
            _png(tmp / "bg" / name, ly.background)
            _png(tmp / "cels/color" / name, cel_color(ly))
            _png(tmp / "cels/lines" / name, lines_rgba(ly.lineart))
            if has_fx:
                _png(tmp / "fx/color" / name, ly.effects)
        (tmp / LAYERS_JSON).write_text(json.dumps(meta, separators=(",", ":")))
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def read_layer_frame(folder: str | os.PathLike, t: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Frame ``t`` of a layer folder: (background RGB, [layer colour RGBA, bottom to top])."""
    from lcmftn.data.video import read_image

    folder = Path(folder)
    meta = json.loads((folder / LAYERS_JSON).read_text())
    name = f"{t:05d}.png"
    bg = read_image(folder / meta["background"] / name)
    return bg, [read_image(folder / ly["color"] / name) for ly in meta["layers"]]
