"""Cel-layer colouring benchmark (issue 11.3): does colorize keep a layer's paper?

    PYTHONPATH=. python -m workflows.benchmark.layers --size 128 --shots 3 --shot-frames 12 \\
        --systems copy-ref,flow-warp [--model CKPT_DIR]

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
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    shots = _shots(args)
    names = [n for n in args.systems.split(",") if n] + [f"ckpt:{m}" for m in args.model]
    rows = []
    for name in names:
        system = _system(name)
        for paper in ("off", "alpha"):
            row = {"system": name, **score(system, shots, paper, args.size)}
            print(json.dumps(row))
            rows.append(row)
    print(f"{'system':<24}{'paper':>7}{'paper_exact':>13}{'drawn_lost':>12}{'psnr_drawn':>12}{'psnr_frame':>12}")
    for r in rows:
        print(f"{r['system']:<24}{r['paper']:>7}{r['paper_exact']:>13.4f}{r['drawn_lost']:>12.4f}"
              f"{r['psnr_drawn']:>12.2f}{r['psnr_frame']:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
