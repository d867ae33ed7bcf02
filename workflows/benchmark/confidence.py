"""Does confidence find the bad frames? Fit and test the confidence calibration (issue 10).

    python -m workflows.benchmark confidence --model runs/x/model            # fit + save beside it
    python -m workflows.benchmark confidence --model ckpt/ --train-films 4 --test-films 2 \\
        --real /work/shared/data/real/anime/onepiece_demo.mp4 --out cal.json

1. Colour synthetic *training* films (``lcmftn.data.synthetic``, seeds 0..N-1: the films the
   demo trains on) shot by shot in chain mode from the first frame of each shot
   (:func:`lcmftn.colorize.colorize_shot`, no hold copies: every frame goes through the model).
2. Per model frame: the run-time pixel features (:mod:`lcmftn.pixel_confidence`: flow, line-art
   change, palette, drift, ...), the system's own map, the error map and the PSNR vs the truth.
3. Pixel map: fit the logistic P(error > 0.1) over the features on a pixel subsample of the
   training films (:func:`lcmftn.pixel_confidence.fit_pixel_model`); each frame's ``conf`` /
   ``low`` then come from that map, as at colorize time.
4. Frame rule: pick the frame score (:data:`lcmftn.calibration.FEATURES`) with the best
   Spearman vs PSNR on the training films, fit the isotonic map raw -> expected PSNR and the
   flag threshold (worst ``--flag-quantile`` of training frames); save both (the pixel model in
   ``pixel``) as ``confidence_calibration.json`` beside the checkpoint (or ``--out``).
5. Report Spearman (frame score vs PSNR) and pixel AUROC (each feature and the calibrated map vs
   error > 0.1) on held-out *test* films (seeds 1000+) and on ``--real`` (a real clip: line art
   by XDoG, shots by the content detector), and the fraction of frames the rule flags.
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
    p.add_argument("--pixel-features", default="",
                   help="comma-separated lcmftn.pixel_confidence features of the pixel map (default: all)")
    p.add_argument("--pixel-interaction", default="line_dist",
                   help="feature whose products with every feature the pixel map also uses ('' = none)")
    p.add_argument("--pixel-l2", type=float, default=1e-3, help="L2 penalty of the pixel map's logistic fit")
    p.add_argument("--dump", default=None, help="save the sampled pixel features/errors (npz) for analysis")
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
    """Colour every shot from its first frame (no calibration); per-frame rows (with the full
    pixel feature maps of :mod:`lcmftn.pixel_confidence` and the error map) for :func:`apply_pixel_model`."""
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
    rows = []
    for start, end in shots:
        if end - start < 2:
            continue
        color = frames[start:end]
        line = [extract_lineart(f) for f in color]
        feats: dict[int, dict] = {}
        out, stats, conf_maps = colorize_shot(system, line, {0: color[0]}, cfg, feature_sink=feats.__setitem__)
        for f in stats["per_frame"]:
            if f["kind"] != "model":
                continue
            t = f["i"]
            pred = torch.from_numpy(out[t]).permute(2, 0, 1)[None].float() / 255
            true = torch.from_numpy(color[t]).permute(2, 0, 1)[None].float() / 255
            cmap = conf_maps[t].astype(np.float32) / 255
            h, w = cmap.shape
            size = (w, h)
            err = np.abs(cv2.resize(out[t], size, interpolation=cv2.INTER_AREA).astype(np.float32)
                         - cv2.resize(color[t], size, interpolation=cv2.INTER_AREA)).mean(2) / 255
            lc = 1 - line_change_confidence(lineart_at_size(line[0], (h, w)),
                                            lineart_at_size(line[t], (h, w)), cfg.proxy_blur_px)[0].numpy()
            rows.append({"conf": f["conf"], "low": f["low"], "change": f["change"], "distance": f["distance"],
                         "psnr": float(metrics.psnr(pred, true)), "offset": t,
                         "maps": {"system": cmap, "line_change": lc.astype(np.float32), "err": err},
                         "features": feats[t]})
    return {"rows": rows}


def merge(clips: list[dict]) -> dict:
    return {"rows": [r for c in clips for r in c["rows"]]}


def pixel_samples(clip: dict, pixel_model=None, max_pixels: int = 2048) -> dict[str, np.ndarray]:
    """Deterministic per-frame pixel subsample (stride) of every score, feature and the error."""
    from lcmftn.pixel_confidence import PIXEL_FEATURES

    pix: dict[str, list] = {k: [] for k in (*PIXEL_SCORES, *PIXEL_FEATURES, "calibrated", "err")}
    for r in clip["rows"]:
        m = r["maps"]
        h, w = m["err"].shape
        step = max(1, h * w // max_pixels)
        dist = np.full(h * w, float(r["distance"]))[::step]
        cmap, lc = m["system"].ravel()[::step], m["line_change"].ravel()[::step]
        pix["attention"].append(1 - cmap)
        pix["attention_inverted"].append(cmap)
        pix["line_change"].append(lc)
        pix["distance"].append(dist)
        pix["distance_plus_line"].append(dist / 24 + lc)
        pix["distance_plus_attention_inverted"].append(dist / 24 + cmap)
        for k in PIXEL_FEATURES:
            pix[k].append(r["features"][k].ravel()[::step])
        if pixel_model is not None:
            pix["calibrated"].append(pixel_model.error_probability(r["features"]).ravel()[::step])
        pix["err"].append(m["err"].ravel()[::step])
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in pix.items()}


def apply_pixel_model(clip: dict, pixel_model, low_confidence: float = 0.5) -> None:
    """Set each row's ``conf``/``low`` from the calibrated map, as colorize does with the calibration."""
    for r in clip["rows"]:
        c = pixel_model.confidence(r["features"])
        r["conf"], r["low"] = round(float(c.mean()), 4), round(float((c < low_confidence).mean()), 4)


def figures(clip: dict, cal=None, large_error: float = 0.1) -> dict:
    """Spearman of each feature vs PSNR (sign: higher score = more confident), pixel AUROCs of
    every score (higher = expected worse) vs error > ``large_error`` (and > 0.25)."""
    from lcmftn.calibration import FEATURES, frame_feature
    from lcmftn.evaluation import auroc, spearman

    rows = clip["rows"]
    psnr = np.array([r["psnr"] for r in rows])
    out: dict = {"frames": len(rows), "psnr_mean": round(float(psnr.mean()), 3) if rows else None,
                 "spearman_vs_psnr": {}, "pixel_auroc": {}}
    for name in FEATURES:  # raw score vs PSNR (negative: a higher score means a worse frame)
        raw = np.array([frame_feature(name, r["conf"], r["low"], r["change"], r["distance"]) for r in rows])
        out["spearman_vs_psnr"][name] = round(spearman(raw, psnr), 4)
    px = pixel_samples(clip, cal.pixel_model if cal is not None else None)
    if len(px["err"]):
        bad = px["err"] > large_error
        out["large_error_pixel_fraction"] = round(float(bad.mean()), 4)
        keys = [k for k in px if k != "err" and len(px[k])]
        out["pixel_auroc"] = {k: round(auroc(px[k], bad), 4) for k in keys}
        out["pixel_auroc_error_0.25"] = {k: round(auroc(px[k], px["err"] > 0.25), 4) for k in keys}
        # the same away from the drawing (>= 2 px from the nearest line of S_n), where the error is
        # not the outline's rendering: does the map know more than "lines are hard"?
        off = px["line_dist"] >= np.log1p(2.0)
        out["pixel_auroc_off_lines"] = {k: round(auroc(px[k][off], bad[off]), 4) for k in keys}
        out["off_lines_pixel_fraction"] = round(float(off.mean()), 4)
    if cal is not None and rows:
        raw = np.array([frame_feature(cal.feature, r["conf"], r["low"], r["change"], r["distance"]) for r in rows])
        flags = cal.flag(raw)
        out["calibrated"] = {
            "feature": cal.feature, "spearman_expected_vs_psnr": round(spearman(cal.expected_psnr(raw), psnr), 4),
            "flagged_fraction": round(float(flags.mean()), 4),
            "psnr_flagged": round(float(psnr[flags].mean()), 3) if flags.any() else None,
            "psnr_unflagged": round(float(psnr[~flags].mean()), 3) if (~flags).any() else None,
        }
        if cal.pixel is not None and len(px["err"]):
            out["calibrated"]["pixel_auroc"] = out["pixel_auroc"]["calibrated"]
            out["calibrated"]["pixel_auroc_off_lines"] = out["pixel_auroc_off_lines"]["calibrated"]
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from lcmftn.calibration import CALIBRATION_FILE, FEATURES, fit_calibration, frame_feature
    from lcmftn.checkpoint import load_checkpoint
    from lcmftn.evaluation import LARGE_ERROR
    from lcmftn.models.registry import multiple_of
    from lcmftn.pixel_confidence import PIXEL_FEATURES, fit_pixel_model

    torch.manual_seed(0)
    system, meta = load_checkpoint(args.model)
    size = args.size or int((meta.get("extra") or {}).get("train_config", {}).get("image_size_px") or 64)
    mult = multiple_of(meta["system"])
    print(f"confidence benchmark: {meta['system']} at {size} px, training films "
          f"{args.train_films}, test films {args.test_films}", file=sys.stderr)
    train = merge([score_clip(system, *_film(s, args), size, mult) for s in range(args.train_films)])
    # 1. the per-pixel map: logistic P(error > 0.1) on the training films' pixels
    names = tuple(args.pixel_features.split(",")) if args.pixel_features else PIXEL_FEATURES
    px = pixel_samples(train)
    pixel_model = fit_pixel_model({k: px[k] for k in names}, px["err"] > LARGE_ERROR, names,
                                  large_error=LARGE_ERROR, l2=args.pixel_l2,
                                  interaction=args.pixel_interaction or None)
    apply_pixel_model(train, pixel_model)  # frame conf/low from the calibrated map, as colorize does
    fig_train = figures(train)
    # 2. the frame score, and its direction, that ranks the training frames best (|Spearman|)
    best = max(FEATURES, key=lambda n: abs(np.nan_to_num(fig_train["spearman_vs_psnr"][n], nan=0)))
    sign = 1.0 if fig_train["spearman_vs_psnr"][best] >= 0 else -1.0
    raw = np.array([frame_feature(best, r["conf"], r["low"], r["change"], r["distance"]) for r in train["rows"]])
    cal = fit_calibration(best, raw, np.array([r["psnr"] for r in train["rows"]]),
                          sign=sign, flag_quantile=args.flag_quantile,
                          fitted_on=f"{args.train_films} synthetic films (seeds 0..{args.train_films - 1}, "
                                    f"{args.film_size} px), chain mode, {len(raw)} frames",
                          pixel=pixel_model.to_dict())
    result = {"model": args.model, "size_px": size, "feature": best, "flag_psnr_db": round(cal.flag_psnr_db, 3),
              "pixel_model": pixel_model.to_dict(), "train": figures(train, cal)}
    test = merge([score_clip(system, *_film(1000 + s, args), size, mult) for s in range(args.test_films)])
    apply_pixel_model(test, pixel_model)
    result["test"] = figures(test, cal)
    if args.real:
        real = score_clip(system, *_real(args.real, args), size, mult)
        apply_pixel_model(real, pixel_model)
        result["real"] = {"clip": Path(args.real).name, **figures(real, cal)}
    if args.dump:  # pixel samples + frame rows of every part, to study the map offline
        parts = {"train": train, "test": test, **({"real": real} if args.real else {})}
        arrays = {}
        for part, clip in parts.items():
            arrays.update({f"{part}/px/{k}": v for k, v in pixel_samples(clip, pixel_model).items()})
            for k in ("psnr", "distance", "change", "conf", "low", "offset"):
                arrays[f"{part}/row/{k}"] = np.array([r[k] for r in clip["rows"]], np.float64)
        np.savez_compressed(args.dump, **arrays)
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
                  + f"  off lines {r.get('pixel_auroc_off_lines', {}).get('calibrated')}"
                  + (f"  calibrated ({best}) Spearman {r['calibrated']['spearman_expected_vs_psnr']}"
                     f" flagged {r['calibrated']['flagged_fraction']}" if "calibrated" in r else ""))
    print(f"chosen on training films: frame score {best} (sign {sign:+.0f}); pixel map: logistic over "
          + ", ".join(f"{n} {w:+.2f}" for n, w in zip(pixel_model.features, pixel_model.weights, strict=False))
          + (f" (+ products with {pixel_model.interaction})" if pixel_model.interaction else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
