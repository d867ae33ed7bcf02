"""Cel-layer colouring benchmark (issue 11.3): does colorize keep a layer's paper?

    PYTHONPATH=. python -m workflows.benchmark.layers --size 128 --shots 3 --shot-frames 12 \\
        --systems copy-ref,flow-warp [--model CKPT_DIR]
    # the artist's case: a 27-frame drawn smoke effect, 1000x1000 on transparent paper
    PYTHONPATH=. python -m workflows.benchmark.layers --smoke 1000 --model-size 256

A v2 film's cel layer (characters and props on transparent paper, :mod:`lcmftn.data.synth.layers`)
is coloured shot by shot (keyframe = the layer's first frame, RGBA over white as the job reads it;
held drawings copied) by each system, with ``paper`` ``off`` (the model's output as is) and
``alpha`` (:func:`lcmftn.paper.keep_paper`: RGBA out, paper transparent). Scored on the
model-coloured frames against the layer's colour over white:

* ``paper_exact``: fraction of the true paper pixels (no cel colour, no ink) that are exactly
  paper in the output (alpha 0 with ``alpha``; RGB 255 with ``off``);
* ``drawn_lost``: fraction of drawn pixels (cel colour or ink) made paper (the documented
  limitation: drawings cut open by the frame border);
* ``psnr_drawn`` / ``psnr_frame`` (dB): PSNR over the drawn pixels / the whole frame, output over
  white vs the truth.

Prints one JSON line per (system, paper) and a table. Ray-free, seconds at 128 px on one core.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np


def _system(name: str):
    if name.startswith("ckpt:"):
        from lcmftn.checkpoint import load_checkpoint

        return load_checkpoint(name[5:])[0]
    from lcmftn.models.registry import build_generator

    return build_generator(name, "small").eval()


def _shots(args: argparse.Namespace) -> list[dict]:
    from lcmftn.data.synth import FilmConfigV2, iter_layers
    from lcmftn.data.synth.layers import cel_color
    from lcmftn.data.video import to_rgb

    cfg = FilmConfigV2(seed=args.seed, size=args.size, aspect=args.aspect, num_shots=args.shots,
                       shot_frames=args.shot_frames, effects=0.0)
    shots: list[dict] = []
    for ly, held in iter_layers(cfg):
        if not shots or ly.motion["shot"] != shots[-1]["shot"]:
            shots.append({"shot": ly.motion["shot"], "lineart": [], "truth": [], "alpha": [], "holds": []})
        s, rgba = shots[-1], cel_color(ly)
        s["lineart"].append(ly.lineart)
        s["truth"].append(to_rgb(rgba))
        s["alpha"].append(rgba[..., 3])
        s["holds"].append(bool(held) and len(s["holds"]) > 0)
    return shots


def _smoke_shot(size: int, frames: int, seed: int) -> dict:
    """A drawn smoke effect like the artist's case (issue 11): puffs rising and growing, drawn as
    two flat cel bands (body, core) bounded by 1-px anti-aliased lines on transparent paper,
    ``size`` x ``size``, no background."""
    import cv2

    from lcmftn.data.synth.scene import smoke_layer

    rng = np.random.default_rng([seed, 27])
    s = float(size)
    puffs = [{"t0": int(rng.integers(0, frames // 2)) * (k % 2), "life": int(rng.integers(frames // 2, frames)),
              "x": s * rng.uniform(0.35, 0.65), "y": s * rng.uniform(0.7, 0.9), "vx": s * rng.uniform(-0.004, 0.004),
              "vy": -s * rng.uniform(0.008, 0.016), "r": s * rng.uniform(0.05, 0.09), "color": (0, 0, 0)}
             for k in range(10)]  # fmt: skip
    shot: dict = {"shot": "smoke", "lineart": [], "truth": [], "alpha": [], "holds": []}
    eye = np.eye(2, 3)
    for i in range(frames):
        a = smoke_layer(puffs, i, size, size, eye, 1.0)[1]
        body, core = (a > 0.2).astype(np.uint8), (a > 0.55).astype(np.uint8)
        ink = np.zeros((size, size), np.uint8)
        for m in (body, core):
            cs, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(ink, cs, -1, 255, 1, cv2.LINE_AA)
        rgb = np.full((size, size, 3), 255, np.uint8)
        rgb[body > 0], rgb[core > 0] = (150, 160, 190), (225, 228, 240)
        k = ink[..., None].astype(np.float32) / 255
        truth = (rgb * (1 - k) + 0.5).astype(np.uint8)  # black lines over the colour, all over white
        shot["lineart"].append(255 - ink)
        shot["truth"].append(truth)
        shot["alpha"].append(np.maximum(body * 255, ink))
        shot["holds"].append(False)
    return shot


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2)) if a.size else 0.0
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


def score(system, shots: list[dict], paper: str, size: int) -> dict:
    """Colour every shot with ``paper`` (``off`` | ``alpha``) and score it (module docstring)."""
    import torch

    from lcmftn.colorize import ColorizeConfig, colorize_shot
    from lcmftn.data.video import to_rgb

    cfg = ColorizeConfig(mode="chain", image_size_px=size, multiple_of=8, paper=paper)
    exact = paper_px = lost = drawn_px = 0
    err_drawn, err_all = [], []
    with torch.no_grad():
        for s in shots:
            frames, _, _ = colorize_shot(system, s["lineart"], {0: s["truth"][0]}, cfg, holds=s["holds"])
            for t in range(1, len(frames)):
                out, truth, alpha = frames[t], s["truth"][t], s["alpha"][t]
                is_paper = (out[..., 3] == 0) if out.shape[2] == 4 else (out == 255).all(axis=2)
                rgb = to_rgb(out)
                tp = alpha == 0
                exact += int(is_paper[tp].sum())
                paper_px += int(tp.sum())
                lost += int((is_paper & ~tp & (truth != 255).any(axis=2)).sum())
                drawn_px += int((~tp).sum())
                err_drawn.append((rgb[~tp], truth[~tp]))
                err_all.append((rgb, truth))
    cat = [np.concatenate([a.reshape(-1, 3) for a, _ in e]) for e in (err_drawn, err_all)]
    ref = [np.concatenate([b.reshape(-1, 3) for _, b in e]) for e in (err_drawn, err_all)]
    return {"paper": paper, "paper_exact": round(exact / max(paper_px, 1), 4),
            "drawn_lost": round(lost / max(drawn_px, 1), 4), "psnr_drawn": round(_psnr(cat[0], ref[0]), 2),
            "psnr_frame": round(_psnr(cat[1], ref[1]), 2), "paper_px": paper_px, "drawn_px": drawn_px}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workflows.benchmark.layers", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=128, help="film short side, px (the model runs at this size)")
    ap.add_argument("--aspect", type=float, default=1.5)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--shots", type=int, default=3)
    ap.add_argument("--shot-frames", type=int, default=12)
    ap.add_argument("--systems", default="copy-ref,flow-warp", help="registry systems (reference ones need no weights)")
    ap.add_argument("--model", action="append", default=[], help="also a checkpoint dir (repeatable)")
    ap.add_argument("--smoke", type=int, default=0, metavar="PX",
                    help="instead: a 27-frame drawn smoke effect PX x PX on transparent paper (the artist's case)")
    ap.add_argument("--model-size", type=int, default=0, help="model short side (0 = the film's size)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    shots = [_smoke_shot(args.smoke, 27, args.seed)] if args.smoke else _shots(args)
    names = [n for n in args.systems.split(",") if n] + [f"ckpt:{m}" for m in args.model]
    rows = []
    for name in names:
        system = _system(name)
        for paper in ("off", "alpha"):
            row = {"system": name, **score(system, shots, paper, args.model_size or args.size)}
            print(json.dumps(row))
            rows.append(row)
    print(f"{'system':<24}{'paper':>7}{'paper_exact':>13}{'drawn_lost':>12}{'psnr_drawn':>12}{'psnr_frame':>12}")
    for r in rows:
        print(f"{r['system']:<24}{r['paper']:>7}{r['paper_exact']:>13.4f}{r['drawn_lost']:>12.4f}"
              f"{r['psnr_drawn']:>12.2f}{r['psnr_frame']:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
