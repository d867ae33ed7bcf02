"""The paper's evaluation on a film-level split, every system, several training seeds
(LCMFTN paper §4.1-4.3, Tables 1-4, Figures 5-7; DESIGN §6).

    python -m workflows.evaluate --out /tmp/eval --seeds 0,1,2 --size 64 --steps 300 \\
        --systems lcmftn,lcmftn-cosine,lcmftn-ours,lcmftn-nocmft,flow-warp,copy-ref
    python -m workflows.evaluate --out /tmp/eval --real /work/shared/data/real/anime/clip.mp4

Ray-free (``lcmftn.harness``): training films and test films are generated from disjoint seeds
(v2 generator: other casts and palettes; checked), every trainable system is trained per seed on
the training films only (``train_single_process``, the worker's step code), and every system is
scored on the test films with the protocol (Tables 1-3), whole shots from one keyframe in
chain/anchor/auto mode (``lcmftn.colorize.colorize_shot``; drift + flicker) and timed (Table 4).
``--real CLIP`` also colours a real colour clip with each system's seed-0 model through the
``colorize --from-color`` library path (line art extracted, first frame of each shot as key):
evaluation only, never training or tuning.

Systems: the registry's (``lcmftn``, ``lcmftn-cosine``, ``lcmftn-ours``, ``lcmftn-nocmft``,
``pix2pix-ref``, ``tcvc``, ``copy-ref``, ``flow-warp``, ``deep-analogy``) plus the loss variants
``pix2pix-ref:our-loss`` / ``tcvc:our-loss`` (``loss.baseline_loss=ours``). With the CPU
recipes "our loss" is L1 only: no pretrained VGG-19 offline (``lambda_vgg=0``).

Writes to ``--out``: ``report/tables.md``, ``report/results.json``, ``report/psnr_vs_interval.png``,
``report/drift.png``, ``report/contact_sheet.png`` (+ ``report/real.json``), and ONE MLflow run
(``--tracking-uri``, default ``sqlite:///OUT/mlflow.db``) with the params, mean metrics and the
report folder as artifacts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

VARIANTS = {"pix2pix-ref:our-loss": ("pix2pix-ref", ["loss.baseline_loss=ours"]),
            "tcvc:our-loss": ("tcvc", ["loss.baseline_loss=ours"])}
DEFAULT_SYSTEMS = ("lcmftn", "lcmftn-cosine", "lcmftn-ours", "lcmftn-nocmft", "pix2pix-ref",
                   "pix2pix-ref:our-loss", "tcvc", "tcvc:our-loss", "deep-analogy", "copy-ref", "flow-warp")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workflows.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (local)")
    p.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS))
    p.add_argument("--seeds", default="0,1,2", help="training seeds (comma-separated)")
    p.add_argument("--recipe", default="cpu-small")
    p.add_argument("--size", type=int, default=0, help="image side px (0 = the recipe's); frames too")
    p.add_argument("--model-size", default="", help="model size preset (default: the recipe's)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--steps", type=int, default=300, help="steps per epoch")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--train-films", type=int, default=3)
    p.add_argument("--test-films", type=int, default=2)
    p.add_argument("--shots-per-film", type=int, default=6)
    p.add_argument("--shot-frames", type=int, default=48)
    p.add_argument("--strides", default="1,5,10")
    p.add_argument("--max-sequences-per-stride", type=int, default=0, help="0 = all")
    p.add_argument("--modes", default="chain,anchor,auto", help="whole-shot modes ('' = none)")
    p.add_argument("--whole-shots", type=int, default=3, help="test shots coloured whole")
    p.add_argument("--contact-sequences", type=int, default=2)
    p.add_argument("--real", action="append", default=[], metavar="CLIP", help="colour video (repeatable)")
    p.add_argument("--real-max-frames", type=int, default=96)
    p.add_argument("--real-score-px", type=int, default=128, help="short side the real clip is scored at")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tracking-uri", default="", help="MLflow URI (default sqlite:///OUT/mlflow.db)")
    p.add_argument("--experiment", default="lcmftn-evaluate")
    return p


def _config(args: argparse.Namespace, system: str, seed: int) -> Any:
    from lcmftn.recipes import apply_overrides, recipe

    base, extra = VARIANTS.get(system, (system, []))
    sets = [f"system={base}", f"seed={seed}", f"epochs={args.epochs}", f"steps_per_epoch={args.steps}"]
    if args.size:
        sets.append(f"image_size_px={args.size}")
    if args.model_size:
        sets.append(f"model_size={args.model_size}")
    return apply_overrides(recipe(args.recipe), [*sets, *extra, *args.overrides])


def _systems(spec: str) -> list[str]:
    from lcmftn.models import registry

    names = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [s for s in names if s not in registry.SYSTEMS and s not in VARIANTS]
    if bad or not names:
        raise ValueError(f"--systems: unknown {bad or 'none given'}; known: "
                         f"{', '.join([*registry.SYSTEMS, *VARIANTS])}")
    return names


def _model_for(args, system: str, seed: int, split, device, work: Path) -> tuple[Any, dict, Any]:
    from lcmftn import harness
    from lcmftn.models import registry

    base = VARIANTS.get(system, (system, []))[0]
    cfg = _config(args, system if registry.is_trainable(base) else "lcmftn", seed)
    if registry.is_trainable(base):
        model, facts = harness.train_system(cfg, split.train_shots, device, work)
    else:
        model, facts = registry.build_generator(base, cfg.model_size).to(device).eval(), {"train_seconds": 0.0, "steps": 0}
    return model, facts, cfg


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Everything but the MLflow run: returns the results dict (also written to ``--out``)."""
    import torch

    from lcmftn import eval_tables as tab
    from lcmftn import harness
    from lcmftn.evaluation import load_eval_clips
    from lcmftn.models import registry

    systems, seeds = _systems(args.systems), [int(s) for s in args.seeds.split(",") if s.strip()]
    strides = tuple(int(s) for s in args.strides.split(",") if s.strip())
    modes = [m for m in args.modes.split(",") if m.strip()]
    if not seeds:
        raise ValueError("--seeds: none given")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    probe = _config(args, "lcmftn", seeds[0])
    size = probe.image_size_px
    scfg = harness.SplitConfig(train_films=args.train_films, test_films=args.test_films,
                               shots_per_film=args.shots_per_film, shot_frames=args.shot_frames, size_px=size)
    t0 = time.perf_counter()
    split = harness.make_split(scfg)
    clips = load_eval_clips(split.test_shots, strides, size, 1234, args.max_sequences_per_stride)
    if not clips:
        raise ValueError(f"no evaluation sequence in the {len(split.test_shots)} test shots for strides {strides}")
    whole = [s for s in split.test_shots if not s.holds[1:].all()][:args.whole_shots]
    contact = [c for c in clips if c.stride == max(strides)][:args.contact_sequences] or clips[:1]
    print(f"[evaluate] {len(split.train)} training films ({len(split.train_shots)} shots), {len(split.test)} test "
          f"films ({len(split.test_shots)} shots) -> {len(clips)} sequences; {len(whole)} whole shots; "
          f"generated in {time.perf_counter() - t0:.0f} s", flush=True)
    per_seed: dict[str, list[dict]] = {s: [] for s in systems}
    sheet_rows: dict[str, Any] = {}
    import numpy as np

    for i, c in enumerate(contact):
        sheet_rows[f"line art {i}"] = tab.strip(c.lineart)
        sheet_rows[f"truth {i}"] = tab.strip(c.color)
    real_models: dict[str, Any] = {}
    with harness.tmpdir() as tmp:
        for system in systems:
            base = VARIANTS.get(system, (system, []))[0]
            for seed in seeds:
                if not registry.is_trainable(base) and per_seed[system]:
                    # deterministic, untrained: every seed's figures are the first seed's (std 0)
                    per_seed[system].append(per_seed[system][0])
                    continue
                model, facts, cfg = _model_for(args, system, seed, split, device, Path(tmp))
                proto = harness.score_protocol(model, clips, device)
                entry = {"protocol": proto, "pooled": tab.pooled_per_stride(proto), "train": facts,
                         "params": registry.count_parameters(model)}
                gated = harness.protocol_parts(model, clips, device)  # None for models without a gate
                gates = harness.gate_stats(model, clips, device, parts=gated) if gated is not None else {}
                if gates:
                    entry["gate"] = gates
                    entry["headroom"] = harness.correction_headroom(model, clips, device, parts=gated)
                del gated
                entry["whole"] = harness.score_whole_shots(model, whole, modes, size, registry.multiple_of(base),
                                                           str(device)) if modes and whole else {}
                if seed == seeds[0]:
                    entry["timing"] = harness.time_system(model, size, device)
                    with torch.no_grad():
                        for i, c in enumerate(contact):
                            ref = [c.color[0]] + [model(c.lineart[:1], c.color[:1], c.lineart[k:k + 1])[0].clamp(0, 1)
                                                  for k in range(1, c.color.shape[0])]
                            sheet_rows[f"{system} {i}"] = tab.strip(torch.stack(ref))
                    if args.real:
                        real_models[system] = (model, registry.multiple_of(base))
                per_seed[system].append(entry)
                print(f"[evaluate] {system} seed {seed}: PSNR {proto['psnr']:.2f} SSIM {proto['ssim']:.4f} "
                      f"(copy-ref {proto['copyref_psnr']:.2f}) train {facts['train_seconds']:.0f} s" +
                      (f" gate {gates['mean']:.4f} (warp right {gates['warp_right']:.4f}, "
                       f"wrong {gates['warp_wrong']:.4f})" if gates else ""), flush=True)
    agg = tab.aggregate(per_seed)
    real = {clip: evaluate_real(clip, real_models, size, args) for clip in args.real}
    out = Path(args.out) / "report"
    out.mkdir(parents=True, exist_ok=True)
    tables = _tables(agg, strides, modes, str(device), args, split, len(clips))
    _write(out / "tables.md", tables.encode())
    result = {"argv": getattr(args, "argv", None), "seeds": seeds, "strides": list(strides), "modes": modes,
              "device": str(device), "torch_threads": torch.get_num_threads(), "image_size_px": size,
              "recipe": probe.recipe, "window": {"width_frames": probe.window.width_frames,
                                                  "stride_frames": probe.window.stride_frames},
              "vgg": "none (no pretrained VGG-19 offline: 'our loss' = L1 only)" if probe.loss.lambda_vgg == 0
              else probe.loss.vgg_weights,
              "split": split.manifest_films(), "eval_sequences": len(clips),
              "whole_shots": [s.shot_id for s in whole], "per_seed": per_seed, "aggregate": agg, "real": real}
    _write(out / "results.json", json.dumps(result, indent=1, default=float).encode())
    _write(out / "psnr_vs_interval.png", tab.plot_psnr_vs_interval(agg, strides))
    if modes and whole:
        _write(out / "drift.png", tab.plot_drift(agg, modes[0]))
    from lcmftn.data.dataset_format import encode_color_png

    _write(out / "contact_sheet.png", encode_color_png(np.ascontiguousarray(tab.contact_sheet(sheet_rows))))
    return result


def _tables(agg, strides, modes, device, args, split, n_clips) -> str:
    from lcmftn import eval_tables as tab

    parts = [f"# Evaluation (film-level split)\n\n{len(split.train)} training films / {len(split.test)} test films "
             f"(disjoint seeds, casts and palettes), {n_clips} test sequences; seeds {args.seeds}; "
             f"mean ± std over seeds.\n"]
    for i, s in enumerate(strides, start=1):
        parts.append(f"## Table {i}. PSNR/SSIM, stride {s}\n\n{tab.protocol_table(agg, s)}\n")
    parts.append(f"## Summary (all sequences; PSNR per stride)\n\n{tab.summary_table(agg, strides)}\n")
    parts.append(f"## Table {len(strides) + 1}. Time per frame ({device}, {args.threads} thread(s))\n\n"
                 f"{tab.timing_table(agg, device)}\n")
    if modes:
        parts.append(f"## Whole shots from one keyframe (beyond the paper)\n\n{tab.whole_shot_table(agg, modes)}\n")
    if headroom := tab.headroom_table(agg, strides):
        parts.append("## Headroom of the gated correction (diagnostic; uses the truth)\n\n"
                     "PSNR on the protocol's pairs: the output; the base (gate closed); T wherever the gate may "
                     "open; a perfect gate (per pixel the better of base and T); a perfect pick of one "
                     "resampling candidate (`lcmftn.harness.correction_headroom`).\n\n" + headroom + "\n")
    return "\n".join(parts)


def evaluate_real(clip: str, models: dict, size: int, args) -> dict:
    """A real colour clip through the ``--from-color`` library path, per system (seed-0 model)."""
    import numpy as np
    import torch

    from lcmftn import metrics
    from lcmftn.colorize import ColorizeConfig, colorize_shot
    from lcmftn.data.video import read_frames, resize_image
    from lcmftn.episode import LINEART_DETECTOR, episode_from_color, load_shots

    color = read_frames(clip)[:args.real_max_frames]
    if not color:
        raise ValueError(f"--real {clip}: no frames")
    ep = episode_from_color(color, "xdog", 24.0, clip)
    shots = load_shots(None, len(color), ep.lineart, LINEART_DETECTOR)

    def t(imgs):
        imgs = [resize_image(i, args.real_score_px) if min(i.shape[:2]) > args.real_score_px else i for i in imgs]
        return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0

    out: dict[str, Any] = {"frames": len(color), "shots": shots, "scored_at_short_side_px": args.real_score_px}
    for system, (model, mult) in models.items():
        row = {}
        for mode in ("chain", "anchor"):
            cfg = ColorizeConfig(mode=mode, image_size_px=size, multiple_of=mult)
            ps, ss = [], []
            for a, b in shots:
                if b - a < 2:
                    continue
                frames, _, _ = colorize_shot(model, ep.lineart[a:b], {0: color[a]}, cfg, None, device=args.device)
                pred, true = t(frames[1:]), t(color[a + 1:b])
                ps += metrics.psnr(pred, true).tolist()
                ss += metrics.ssim(pred, true).tolist()
            row[mode] = {"psnr": float(np.mean(ps)) if ps else None, "ssim": float(np.mean(ss)) if ss else None,
                         "frames": len(ps)}
        out[system] = row
        print(f"[evaluate] real {Path(clip).name} {system}: " +
              ", ".join(f"{m} {v['psnr']:.2f} dB" for m, v in row.items() if v["psnr"] is not None), flush=True)
    return out


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def log_to_mlflow(result: dict, out: Path, tracking_uri: str, experiment: str) -> str:
    """One MLflow run: params, the mean of every aggregated metric, the report folder."""
    from lcmftn.integrations import tracking

    run_id = tracking.start_run(experiment, f"evaluate-{int(time.time())}", tracking_uri, resume=False,
                                tags={"lcmftn.job": "evaluate"})
    tracking.log_params(run_id, {"seeds": ",".join(map(str, result["seeds"])), "strides": ",".join(map(str, result["strides"])),
                                 "modes": ",".join(result["modes"]), "device": result["device"],
                                 "image_size_px": result["image_size_px"], "recipe": result["recipe"],
                                 "window.width_frames": result["window"]["width_frames"], "vgg": result["vgg"],
                                 "systems": ",".join(result["aggregate"]), "eval_sequences": result["eval_sequences"]},
                        tracking_uri)
    metrics = {}
    for system, agg in result["aggregate"].items():
        for key in ("protocol/psnr", "protocol/ssim", *[f"pooled/psnr/s{s}" for s in result["strides"]],
                    *[f"whole/{m}/psnr" for m in result["modes"]], *[f"whole/{m}/flicker" for m in result["modes"]],
                    "timing/seconds_per_frame_b1", "gate/mean", "gate/warp_right", "gate/warp_wrong"):
            if key in agg:
                metrics[f"{system}/{key}"] = agg[key]["mean"]
                metrics[f"{system}/{key}_std"] = agg[key]["std"]
    tracking.log_metrics(run_id, {k.replace(":", "_"): v for k, v in metrics.items()}, 0, tracking_uri)
    tracking.log_artifacts(run_id, out / "report", "report", tracking_uri)
    tracking.end_run(run_id, "FINISHED", tracking_uri)
    return run_id


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    out = Path(args.out).resolve()
    uri = args.tracking_uri or f"sqlite:///{out / 'mlflow.db'}"
    try:
        result = run(args)
    except (ValueError, OSError) as e:
        print(f"evaluate: {e}", file=sys.stderr)
        return 2
    run_id = log_to_mlflow(result, out, uri, args.experiment)
    print((out / "report" / "tables.md").read_text(), flush=True)
    print(f"[evaluate] report in {out / 'report'}; MLflow run {run_id} at {uri}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
