"""Does confidence find the bad frames? Fit and test the confidence calibration (issue 10).

    python -m workflows.benchmark confidence --model runs/x/model            # fit + save beside it
    python -m workflows.benchmark confidence --model ckpt/ --train-films 4 --test-films 2 \\
        --real /work/shared/data/real/anime/onepiece_demo.mp4 --out cal.json

1. Colour synthetic *training* films (``lcmftn.data.synthetic``, seeds 0..N-1: the films the
   demo trains on) shot by shot in chain mode from the first frame of each shot
   (:func:`lcmftn.colorize.colorize_shot`, no hold copies: every frame goes through the model).
2. Per model frame: raw scores (:data:`lcmftn.calibration.FEATURES`: CMFT attention ``conf``,
   ``low`` fraction, line-art ``change`` keyframe -> frame, ``conf_x_stable``) and the PSNR vs the
   truth; per pixel: ``1 - attention map`` and the line-change map vs error > 0.1.
3. Pick the feature with the best Spearman vs PSNR on the training films, fit the isotonic map
   raw -> expected PSNR and the flag threshold (worst ``--flag-quantile`` of training frames),
   save it as ``confidence_calibration.json`` beside the checkpoint (or ``--out``).
4. Report Spearman (frame score vs PSNR) and pixel AUROC (low confidence vs large error) of every
   feature on held-out *test* films (seeds 1000+) and on ``--real`` (a real clip: line art by
   XDoG, shots by the content detector), and the fraction of frames the rule flags.
Torch/NumPy/OpenCV only (no Ray).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

PIXEL_SCORES = ("attention", "attention_inverted", "line_change", "distance", "distance_plus_line",
                "distance_plus_attention_inverted")
"""Per-pixel "low confidence" scores (higher = expected worse): 1 - CMFT attention map, the map
itself, the line-change map keyframe -> frame, the frame's distance from its keyframe (the same
for every pixel), distance / 24 + line change, and distance / 24 + the attention map."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workflows.benchmark confidence", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint dir (model.safetensors + meta.json)")
    p.add_argument("--train-films", type=int, default=3, help="synthetic training films (seeds 0..N-1)")
    p.add_argument("--test-films", type=int, default=2, help="held-out synthetic films (seeds 1000..)")
    p.add_argument("--film-size", type=int, default=80, help="synthetic film size (px, square)")
    p.add_argument("--shots", type=int, default=6, help="shots per synthetic film")
    p.add_argument("--shot-frames", type=int, default=24, help="frames per synthetic shot")
    p.add_argument("--real", default=None, help="a real colour clip to test on (video file)")
    p.add_argument("--real-frames", type=int, default=120, help="frames of --real used")
    p.add_argument("--max-shot-frames", type=int, default=24, help="frames coloured per real shot")
    p.add_argument("--flag-quantile", type=float, default=0.1)
    p.add_argument("--size", type=int, default=0, help="model short side (0 = training size)")
    p.add_argument("--out", default=None, help="calibration JSON (default: beside the model)")
    p.add_argument("--json", default=None, help="also write all figures to this file")
    return p


def _film(seed: int, args) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    from lcmftn.data.synthetic import FilmConfig, generate_film

    film = generate_film(FilmConfig(seed=seed, size=args.film_size, num_shots=args.shots,
                                    shot_frames=args.shot_frames))
    return list(film.frames), [(s["start"], s["end"]) for s in film.truth["shots"]]


def _real(path: str, args) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    from lcmftn.data.shots import detect_shots
    from lcmftn.data.video import read_frames, resize_image

    frames = [resize_image(f, 240) if min(f.shape[:2]) > 240 else f
              for f in read_frames(path)[: args.real_frames]]
    shots = [(int(a), min(int(b), int(a) + args.max_shot_frames))
             for a, b in detect_shots(frames, "content", fps=24.0).shots]
    return frames, shots


def score_clip(system, frames: list[np.ndarray], shots: list[tuple[int, int]], size_px: int,
               multiple_of: int) -> dict:
    """Colour every shot from its first frame; per-frame rows and per-pixel samples."""
    import cv2
    import torch

    from lcmftn import metrics
    from lcmftn.colorize import (
        ColorizeConfig,
        colorize_shot,
        line_change_confidence,
        lineart_at_size,
    )
    from lcmftn.data.lineart import extract_lineart

    cfg = ColorizeConfig(mode="chain", image_size_px=size_px, multiple_of=multiple_of)
    rows, pix = [], {k: [] for k in (*PIXEL_SCORES, "bad", "err")}
    for start, end in shots:
        if end - start < 2:
            continue
        color = frames[start:end]
        line = [extract_lineart(f) for f in color]
        out, stats, conf_maps = colorize_shot(system, line, {0: color[0]}, cfg)
        for f in stats["per_frame"]:
            if f["kind"] != "model":
                continue
            t = f["i"]
            pred = torch.from_numpy(out[t]).permute(2, 0, 1)[None].float() / 255
            true = torch.from_numpy(color[t]).permute(2, 0, 1)[None].float() / 255
            rows.append({"conf": f["conf"], "low": f["low"], "change": f["change"], "distance": f["distance"],
                         "psnr": float(metrics.psnr(pred, true)), "offset": t})
            cmap = conf_maps[t].astype(np.float64) / 255
            h, w = cmap.shape
            size = (w, h)
            err = np.abs(cv2.resize(out[t], size, interpolation=cv2.INTER_AREA).astype(np.float64)
                         - cv2.resize(color[t], size, interpolation=cv2.INTER_AREA)) .mean(2) / 255
            lc = 1 - line_change_confidence(lineart_at_size(line[0], (h, w)),
                                            lineart_at_size(line[t], (h, w)), cfg.proxy_blur_px)[0].numpy()
            step = max(1, h * w // 2048)
            dist = np.full(h * w, float(f["distance"]))[::step]
            pix["attention"].append((1 - cmap).ravel()[::step])
            pix["attention_inverted"].append(cmap.ravel()[::step])
            pix["line_change"].append(lc.ravel()[::step])
            pix["distance"].append(dist)
            pix["distance_plus_line"].append(dist / 24 + lc.ravel()[::step])
            pix["distance_plus_attention_inverted"].append(dist / 24 + cmap.ravel()[::step])
            pix["bad"].append((err > 0.1).ravel()[::step])
            pix["err"].append(err.ravel()[::step])
    return {"rows": rows, "pixels": {k: np.concatenate(v) if v else np.zeros(0) for k, v in pix.items()}}


def figures(clip: dict, cal=None) -> dict:
    """Spearman of each feature vs PSNR (sign: higher score = more confident), pixel AUROCs."""
    from lcmftn.calibration import FEATURES, frame_feature
    from lcmftn.evaluation import auroc, spearman

    rows = clip["rows"]
    psnr = np.array([r["psnr"] for r in rows])
    out: dict = {"frames": len(rows), "psnr_mean": round(float(psnr.mean()), 3) if rows else None,
                 "spearman_vs_psnr": {}, "pixel_auroc": {}}
    for name in FEATURES:  # raw score vs PSNR (negative: a higher score means a worse frame)
        raw = np.array([frame_feature(name, r["conf"], r["low"], r["change"], r["distance"]) for r in rows])
        out["spearman_vs_psnr"][name] = round(spearman(raw, psnr), 4)
    px = clip["pixels"]
    if len(px["bad"]):
        out["large_error_pixel_fraction"] = round(float(px["bad"].mean()), 4)
        for k in PIXEL_SCORES:
            out["pixel_auroc"][k] = round(auroc(px[k], px["bad"]), 4)
        out["pixel_auroc_error_0.25"] = {k: round(auroc(px[k], px["err"] > 0.25), 4) for k in PIXEL_SCORES}
    if cal is not None and rows:
        raw = np.array([frame_feature(cal.feature, r["conf"], r["low"], r["change"], r["distance"]) for r in rows])
        flags = cal.flag(raw)
        out["calibrated"] = {
            "feature": cal.feature, "spearman_expected_vs_psnr": round(spearman(cal.expected_psnr(raw), psnr), 4),
            "flagged_fraction": round(float(flags.mean()), 4),
            "psnr_flagged": round(float(psnr[flags].mean()), 3) if flags.any() else None,
            "psnr_unflagged": round(float(psnr[~flags].mean()), 3) if (~flags).any() else None,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from lcmftn.calibration import CALIBRATION_FILE, FEATURES, fit_calibration, frame_feature
    from lcmftn.checkpoint import load_checkpoint
    from lcmftn.models.registry import multiple_of

    torch.manual_seed(0)
    system, meta = load_checkpoint(args.model)
    size = args.size or int((meta.get("extra") or {}).get("train_config", {}).get("image_size_px") or 64)
    mult = multiple_of(meta["system"])
    print(f"confidence benchmark: {meta['system']} at {size} px, training films "
          f"{args.train_films}, test films {args.test_films}", file=sys.stderr)
    train = [score_clip(system, *_film(s, args), size, mult) for s in range(args.train_films)]
    merged = {"rows": [r for c in train for r in c["rows"]],
              "pixels": {k: np.concatenate([c["pixels"][k] for c in train]) for k in train[0]["pixels"]}}
    fig_train = figures(merged)
    # the feature, and its direction, that ranks the training frames best (|Spearman|)
    best = max(FEATURES, key=lambda n: abs(np.nan_to_num(fig_train["spearman_vs_psnr"][n], nan=0)))
    sign = 1.0 if fig_train["spearman_vs_psnr"][best] >= 0 else -1.0
    raw = np.array([frame_feature(best, r["conf"], r["low"], r["change"], r["distance"]) for r in merged["rows"]])
    cal = fit_calibration(best, raw, np.array([r["psnr"] for r in merged["rows"]]),
                          sign=sign, flag_quantile=args.flag_quantile,
                          fitted_on=f"{args.train_films} synthetic films (seeds 0..{args.train_films - 1}, "
                                    f"{args.film_size} px), chain mode, {len(raw)} frames")
    pixel_best = max(PIXEL_SCORES, key=lambda k: fig_train["pixel_auroc"][k])  # chosen on training films
    result = {"model": args.model, "size_px": size, "feature": best, "flag_psnr_db": round(cal.flag_psnr_db, 3),
              "pixel_score": pixel_best,
              "train": figures(merged, cal)}
    test = [score_clip(system, *_film(1000 + s, args), size, mult) for s in range(args.test_films)]
    merged_t = {"rows": [r for c in test for r in c["rows"]],
                "pixels": {k: np.concatenate([c["pixels"][k] for c in test]) for k in test[0]["pixels"]}}
    result["test"] = figures(merged_t, cal)
    if args.real:
        result["real"] = {"clip": Path(args.real).name, **figures(score_clip(system, *_real(args.real, args), size, mult), cal)}
    dest = Path(args.out) if args.out else Path(args.model) / CALIBRATION_FILE
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_text(cal.to_json())
    tmp.replace(dest)
    result["calibration"] = str(dest)
    for part in ("train", "test", "real"):
        if part in result:
            r = result[part]
            print(f"{part:5s} frames {r['frames']:4d}  Spearman(score, PSNR) "
                  + " ".join(f"{k} {v}" for k, v in r["spearman_vs_psnr"].items())
                  + "  pixel AUROC " + " ".join(f"{k} {v}" for k, v in r["pixel_auroc"].items())
                  + (f"  calibrated ({best}) Spearman {r['calibrated']['spearman_expected_vs_psnr']}"
                     f" flagged {r['calibrated']['flagged_fraction']}" if "calibrated" in r else ""))
    print(f"chosen on training films: frame score {best} (sign {sign:+.0f}), pixel score {pixel_best}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
