"""The whole pipeline end to end on the embedded defaults: ``make demo``.

    synthetic films ──ingest (Ray Data)──▶ shot dataset (local folder)
        ──train (Ray Train, 2 CPU workers, MLflow sqlite)──▶ registered model
        ──colorize (Ray)──▶ a held-out episode coloured from one keyframe per shot

Everything is real: H.264 films from the procedural generator, a local Ray instance, a local
sqlite MLflow store (``OUT/mlflow.db`` unless ``MLFLOW_TRACKING_URI`` is set), local folders for
storage (``--s3`` starts a SeaweedFS server on 127.0.0.1 and puts dataset, runs and episode on
it instead). The stages call the same ``main(argv)`` the ``python -m workflows.X`` commands run,
inside one Ray session, and print what to open afterwards.

The default training is recipe ``cpu-small`` with system ``lcmftn-ours`` (flow-warped reference +
gated LCMFTN correction, README "CMFT kernels, lcmftn-ours"), cut to 8 epochs (400 steps, ~2-4
minutes on 2 CPU cores); the episode is coloured at its own size (``--size``). The whole demo takes
about 3-5 minutes. The last line compares the coloured episode with the ground truth: PSNR of the
model's frames vs repeating each shot's keyframe (README, "The demo": measured figures and the
ceiling the line-guided output stage puts on them).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path

log = logging.getLogger("workflows.demo")

# cpu-small (`small`, 64 px crops, L1) cut to 8 of its 24 epochs, system lcmftn-ours: on the demo
# episode 19.6 dB at 64 px / 19.9 dB at 80 px where the paper's lcmftn with the same budget
# scored 16.8 dB (README, "The demo").
DEFAULT_TRAIN_SET = ("epochs=8", "system=lcmftn-ours")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workflows.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="demo-out", help="output folder (recreated)")
    p.add_argument("--films", type=int, default=4, help="synthetic training films")
    p.add_argument("--size", type=int, default=80, help="film size in pixels (square)")
    p.add_argument("--seconds", type=float, default=16.0, help="length of each film")
    p.add_argument("--recipe", default="cpu-small")
    p.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                   help=f"training overrides (default: {' '.join(DEFAULT_TRAIN_SET)})")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--mode", default="chain", choices=("chain", "anchor", "auto"))
    p.add_argument("--s3", action="store_true", help="use a local SeaweedFS S3 server for storage")
    p.add_argument("--keep", action="store_true", help="do not wipe --out first")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show every stage's logs, Ray's worker output and progress chatter")
    return p


def _stage(name: str):
    print(f"──── {name}", file=sys.stderr, flush=True)
    return time.perf_counter()


def _run(stage: str, main, argv: list[str], logs: Path) -> None:
    """Run a stage's ``main``; its stdout (the stage's JSON summary) goes to ``logs/<stage>.out``
    (shown too with ``-v``), its progress bars and errors (stderr) to the console."""
    import contextlib
    import io

    from workflows.common import is_verbose

    log.info("$ python -m workflows.%s %s", stage, " ".join(argv))
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            rc = main(argv + (["-v"] if is_verbose() else []))
    finally:
        logs.mkdir(parents=True, exist_ok=True)
        (logs / f"{stage}.out").write_text(captured.getvalue())
        if is_verbose():
            sys.stdout.write(captured.getvalue())
    if rc:
        raise SystemExit(f"demo: stage {stage!r} failed with exit code {rc}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from workflows.common import ensure_ray, setup_logging

    setup_logging(args.verbose)
    out = Path(args.out).resolve()
    if out.exists() and not args.keep:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{out / 'mlflow.db'}")
    timings: dict[str, float] = {}

    with ExitStack() as stack:
        if args.s3:
            from infra.local.seaweedfs import LocalS3

            s3 = stack.enter_context(LocalS3(out / "seaweedfs"))
            os.environ.update(s3.env())
            store = s3.uri  # s3.uri("a", "b") -> s3://bucket/a/b
        else:
            def store(*parts: str) -> str:
                return str(out.joinpath(*parts))

        # 1. Films: the procedural generator (training films + one held-out episode).
        from lcmftn.data.synthetic import FilmConfig, write_film

        t = _stage("1/4 synthetic films")
        films_dir = out / "films"
        films_dir.mkdir(exist_ok=True)
        from lcmftn.progress import Progress

        bar = Progress("films", args.films, "films", enabled=not args.verbose)
        for i in range(args.films):
            truth = write_film(films_dir / f"film-{i}.mp4",
                               FilmConfig(seed=i, size=args.size, seconds=args.seconds))
            log.info("film-%d: %d frames, cuts at %s", i, truth["frames"], truth["cuts"])
            bar.update(1)
        bar.close()
        episode = out / "episode"
        episode.mkdir(exist_ok=True)
        ep_truth = write_film(episode / "color.mp4",
                              FilmConfig(seed=1000, size=args.size, seconds=args.seconds))
        timings["films"] = time.perf_counter() - t

        ensure_ray()

        # 2. Ingest.
        from workflows import ingest

        t = _stage("2/4 ingest (Ray Data)")
        dataset = store("dataset")
        _run("ingest", ingest.main, ["--films", str(films_dir / "*.mp4"), "--out", dataset,
                                     "--size", str(args.size)], out / "logs")
        timings["ingest"] = time.perf_counter() - t

        # 3. Train + register.
        from workflows import train

        t = _stage("3/4 train (Ray Train DDP, MLflow)")
        sets = args.set if args.set is not None else list(DEFAULT_TRAIN_SET)
        train_argv = ["--data", dataset, "--recipe", args.recipe, "--workers", str(args.workers),
                      "--storage", store("runs"), "--run-name", "demo",
                      "--experiment", "demo", "--register-as", "lcmftn-demo"]
        for kv in sets:
            train_argv += ["--set", kv]
        _run("train", train.main, train_argv, out / "logs")
        timings["train"] = time.perf_counter() - t
        calibration = _calibrate(out, args) if not args.s3 else None
        if calibration is not None:
            timings["calibrate"] = time.perf_counter() - t - timings["train"]

        # 4. Colorize the held-out episode from its line art and one keyframe per shot.
        import cv2

        from lcmftn.data.lineart import extract_lineart
        from lcmftn.data.video import read_frames, write_video

        t = _stage("4/4 colorize (Ray batch inference)")
        color = read_frames(episode / "color.mp4")
        write_video(episode / "lineart.mp4", [extract_lineart(f) for f in color], fps=24)
        keys = episode / "keys"
        keys.mkdir(exist_ok=True)
        for start in [0, *ep_truth["cuts"]]:
            cv2.imwrite(str(keys / f"{start:06d}.png"), cv2.cvtColor(color[start], cv2.COLOR_RGB2BGR))
        # The studio's edit gives the shot list (here: the generator's truth); detecting cuts on
        # line art alone is less reliable (README, "Shot detection").
        shots_json = episode / "shots.json"
        shots_json.write_text(json.dumps({"shots": [[s["start"], s["end"]] for s in ep_truth["shots"]]}))
        from workflows import colorize

        result = store("colorized")
        _run("colorize", colorize.main, ["--lineart", str(episode / "lineart.mp4"),
                                         "--refs", str(keys), "--model", "models:/lcmftn-demo@latest",
                                         "--out", result, "--mode", args.mode,
                                         "--shots", str(shots_json), "--size", str(args.size)]
             + (["--calibration", str(calibration)] if calibration else []), out / "logs")
        timings["colorize"] = time.perf_counter() - t

    quality = _episode_quality(result, color, ep_truth) if not args.s3 else {}
    summary = {"out": str(out), "tracking_uri": os.environ["MLFLOW_TRACKING_URI"],
               "episode_frames": len(color), "keyframes": len(list(keys.iterdir())),
               "colorized": result, **quality, **_flags(out),
               "seconds": {k: round(v, 1) for k, v in timings.items()}}
    print(json.dumps(summary))
    print(final_summary(summary, result))
    return 0


def _calibrate(out: Path, args: argparse.Namespace) -> Path | None:
    """Fit the confidence calibration of the trained checkpoint on 2 synthetic training films
    (``python -m workflows.benchmark confidence``); its figures go to ``OUT/logs/confidence.json``."""
    from workflows.benchmark import confidence

    t = json.loads((out / "logs" / "train.out").read_text().strip().splitlines()[-1])
    model = Path(t["checkpoint"]) / "model"
    dest = out / "confidence_calibration.json"
    _stage("3b/4 confidence calibration (synthetic training films)")
    _run("benchmark.confidence", confidence.main,
         # shots as long as the episode's (8 per film): the chain distance from the keyframe is
         # what the calibration maps, and the map is flat beyond the longest fitted shot
         ["--model", str(model), "--train-films", "2", "--test-films", "1", "--shots", "4",
          "--shot-frames", str(max(2, round(args.seconds * 24 / 8))), "--film-size", str(args.size), "--out", str(dest), "--json", str(out / "logs" / "confidence.json")],
         out / "logs")
    return dest


def _flags(out: Path) -> dict:
    """Flagged frames of the coloured episode (colorize's JSON line) and the calibration's rule."""
    try:
        c = json.loads((out / "logs" / "colorize.out").read_text().strip().splitlines()[-1])
        cal = json.loads((out / "logs" / "confidence.json").read_text())
    except (OSError, ValueError, IndexError):
        return {}
    return {"flagged": c.get("flagged"), "model_frames": c.get("colorized"), "flag_psnr_db": cal["flag_psnr_db"],
            "confidence_test_spearman": cal["test"]["calibrated"]["spearman_expected_vs_psnr"]}


def final_summary(summary: dict, result: str) -> str:
    """The demo's last lines: the figures, then where to look."""
    from lcmftn.progress import summary_block

    rows = {"episode": f"{summary['episode_frames']} frames, {summary['keyframes']} keyframes"}
    if "episode_psnr" in summary:
        rows["quality"] = (f"PSNR {summary['episode_psnr']} dB vs {summary['keyframe_copy_psnr']} dB "
                           "copying the keyframe")
    if "flagged" in summary:
        rows["flagged"] = (f"{summary['flagged']} of {summary['model_frames']} model-coloured frames "
                           f"(calibrated: expected PSNR <= {summary['flag_psnr_db']} dB)")
    rows["time"] = ", ".join(f"{k} {v:.0f}s" for k, v in summary["seconds"].items())
    rows["review page"] = f"{result}/report.html"
    rows["video"] = f"{result}/episode.mp4"
    rows["MLflow UI"] = f"mlflow ui --backend-store-uri {summary['tracking_uri']}"
    return summary_block("demo done:", rows).rstrip("\n")


def _episode_quality(result: str, color: list, truth: dict) -> dict[str, float]:
    """PSNR (dB) of the coloured episode vs the real colour frames, and of the keyframe-copy
    baseline (every frame = its shot's first frame), over the non-keyframe frames."""
    import cv2
    import torch

    from lcmftn.metrics import psnr

    def t(img):
        return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0

    ours, base = [], []
    for shot in truth["shots"]:
        for i in range(shot["start"] + 1, shot["end"]):
            frame = cv2.cvtColor(cv2.imread(f"{result}/frames/{i:06d}.png"), cv2.COLOR_BGR2RGB)
            ours.append(float(psnr(t(frame), t(color[i]))))
            base.append(float(psnr(t(color[shot["start"]]), t(color[i]))))
    return {"episode_psnr": round(sum(ours) / len(ours), 2),
            "keyframe_copy_psnr": round(sum(base) / len(base), 2)}


if __name__ == "__main__":
    sys.exit(main())
