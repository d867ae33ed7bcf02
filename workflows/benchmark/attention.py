"""Attention diagnostics of CMFT on pairs with a KNOWN displacement (issue 12).

    python -m workflows.benchmark attention                                   # every CMFT system, init
    python -m workflows.benchmark attention --systems lcmftn --checkpoint runs/x/model
    python -m workflows.benchmark attention --shifts 0,0 2,3 8,-6 --size 64 --json att.json

Pairs: frames of the procedural films (``lcmftn.data.synthetic``, one frame every
``--frame-step`` frames), line art by ``lcmftn.data.lineart.extract_lineart``, resized to
``--size``. The reference is (S_p, C_p) = (line art, frame); the current line art S_n is S_p moved
by (dy, dx) pixels with ``torch.roll`` (wrap-around), so every query's true match is known
exactly. Per system and shift it prints, for each CMFT level: entropy ÷ log M, max weight, mean
distance (full-resolution px) from the truth to the expected attended position and to the
argmax, the argmax hit rate (within one level pixel), the PSNR of the output against the rolled
colour frame (and of copy-ref / flow-warp for scale), and the gradient ratio ‖∇E_s‖/‖∇E_h‖ of one L1 backward. Torch/NumPy/OpenCV
only (no Ray, no MLflow).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_SYSTEMS = ("lcmftn", "lcmftn-cosine", "lcmftn-ours")
DEFAULT_SHIFTS = ("0,0", "2,3", "5,-4", "10,8")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workflows.benchmark attention", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                   help="comma-separated CMFT systems, built at init (ignored with --checkpoint)")
    p.add_argument("--checkpoint", default=None, help="checkpoint dir (model.safetensors + meta.json)")
    p.add_argument("--model-size", default="small", help="size preset for systems built at init")
    p.add_argument("--size", type=int, default=64, help="image side in px (multiple of 8)")
    p.add_argument("--shifts", nargs="+", default=list(DEFAULT_SHIFTS), metavar="DY,DX",
                   help="displacements of S_n w.r.t. S_p in px")
    p.add_argument("--frames", type=int, default=8, help="pairs per shift (batch)")
    p.add_argument("--frame-step", type=int, default=23, help="take one film frame every N")
    p.add_argument("--seed", type=int, default=0, help="torch seed (init) and film seed")
    p.add_argument("--json", default=None, help="write all figures here")
    return p


def synthetic_batch(n: int, size: int, frame_step: int, seed: int):
    """(S_p [n,1,s,s], C_p [n,3,s,s]) from a procedural film (float32 in [0, 1])."""
    import cv2
    import numpy as np
    import torch

    from lcmftn.data.lineart import extract_lineart
    from lcmftn.data.synthetic import FilmConfig, generate_film

    film = generate_film(FilmConfig(seed=seed, size=max(80, size), seconds=max(4.0, n * frame_step / 24 + 1)))
    frames = []
    for i, frame in enumerate(film.frames):
        if i % frame_step == 0:
            frames.append(frame)
        if len(frames) == n:
            break
    if len(frames) < n:
        raise ValueError(f"synthetic film gave {len(frames)} frames, need {n}")
    rgb = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])
    line = np.stack([extract_lineart(f) for f in rgb])
    c_p = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255.0
    s_p = torch.from_numpy(line).unsqueeze(1).float() / 255.0
    return s_p, c_p


def _models(args: argparse.Namespace) -> list[tuple[str, Any]]:
    import torch

    from lcmftn.models import registry

    if args.checkpoint:
        from lcmftn.checkpoint import load_checkpoint

        model, meta = load_checkpoint(args.checkpoint)
        return [(f"{meta['system']} ({args.checkpoint})", model)]
    out = []
    for system in [s.strip() for s in args.systems.split(",") if s.strip()]:
        torch.manual_seed(args.seed)
        out.append((f"{system} (init)", registry.build_generator(system, args.model_size)))
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from lcmftn.metrics import psnr
    from lcmftn.models.diagnostics import attention_diagnostics, encoder_gradients

    if args.size % 8:
        raise ValueError(f"--size must be a multiple of 8, got {args.size}")
    shifts = []
    for text in args.shifts:
        try:
            dy, dx = (int(v) for v in text.split(","))
        except ValueError:
            raise ValueError(f"--shifts: {text!r} is not DY,DX") from None
        shifts.append((dy, dx))
    s_p, c_p = synthetic_batch(args.frames, args.size, args.frame_step, args.seed)
    from lcmftn.models.baselines import CopyRef, FlowWarp

    references: dict[str, dict[str, float]] = {}
    for dy, dx in shifts:
        s_n = torch.roll(s_p, (dy, dx), dims=(2, 3))
        target = torch.roll(c_p, (dy, dx), dims=(2, 3))
        references[f"{dy},{dx}"] = {n: float(psnr(m(s_p, c_p, s_n), target).mean())
                                    for n, m in (("copy-ref", CopyRef()), ("flow-warp", FlowWarp()))}
    results: dict[str, Any] = {}
    for name, model in _models(args):
        model.eval()
        rows = {}
        for dy, dx in shifts:
            s_n = torch.roll(s_p, (dy, dx), dims=(2, 3))
            target = torch.roll(c_p, (dy, dx), dims=(2, 3))
            diag = attention_diagnostics(model, s_p, c_p, s_n, shift_px=(dy, dx))
            with torch.no_grad():
                diag["psnr"] = float(psnr(model(s_p, c_p, s_n), target).mean())
            diag.update(encoder_gradients(model, s_p, c_p, s_n, target))
            rows[f"{dy},{dx}"] = diag
        results[name] = rows
    return {"benchmark": "attention", "size": args.size, "frames": args.frames,
            "model_size": args.model_size, "seed": args.seed, "references_psnr": references,
            "systems": results}


def format_table(result: dict[str, Any]) -> str:
    lines = ["| system | shift | level | positions | entropy/logM | max w | err E[pos] px | "
             "err argmax px | hit rate | PSNR | ‖∇E_s‖/‖∇E_h‖ |", "|" + "---|" * 11]
    for name, rows in result["systems"].items():
        for shift, d in rows.items():
            levels = sorted({k.split("/")[0] for k in d if k.startswith("cmft")})
            for i, lv in enumerate(levels):
                def f(key: str, fmt: str = ".2f", lv: str = lv, d: dict = d) -> str:
                    v = d.get(f"{lv}/{key}")
                    return "-" if v is None else format(v, fmt)
                tail = (f"{d['psnr']:.2f} | {d['grad/e_s_over_e_h']:.2e}" if i == 0 else " | ")
                lines.append(f"| {name} | {shift} | {lv} | {d[f'{lv}/positions']:.0f} | "
                             f"{f('entropy', '.3f')} | {f('max_weight', '.3f')} | "
                             f"{f('err_expected_px')} | {f('err_argmax_px')} | {f('hit_rate')} | "
                             f"{tail} |")
    refs = "; ".join(f"shift {k}: " + ", ".join(f"{n} {v:.2f}" for n, v in r.items())
                     for k, r in result.get("references_psnr", {}).items())
    return "\n".join(lines) + f"\n\nReference PSNR (dB) — {refs}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except (ValueError, OSError) as e:
        print(f"attention: {e}", file=sys.stderr)
        return 2
    result["argv"] = argv
    print(format_table(result), flush=True)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        tmp.replace(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
