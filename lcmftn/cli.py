"""The ``lcmftn`` command: small data tools, and the workflows behind one entry point.

    lcmftn synth film.mp4 --seed 3 --size 256 --seconds 120      # procedural film + truth JSON
    lcmftn synth film.mp4 --generator v2 --size 1080 --aspect 1.7778 --effects 0.5   # v2 generator
    lcmftn shots film.mp4 --json                                 # {"frames", "fps", "shots": [...]}
    lcmftn lineart film.mp4 lineart.mp4 --method xdog            # image, image folder or video
    lcmftn ingest|train|tune|colorize|demo ARGS...               # = python -m workflows.<name> ARGS

The workflow subcommands run ``python -m workflows.<name>`` in a child process with the remaining
arguments (``lcmftn train --help`` shows the workflow's own help); this module never imports
Ray or MLflow. Exit codes: 0 ok, 1 some items failed (others were done), 2 bad input/usage.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

WORKFLOWS = ("ingest", "train", "tune", "colorize", "demo")


def _err(msg: str) -> None:
    print(f"lcmftn: error: {msg}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# synth
# ---------------------------------------------------------------------------------------------
def _cmd_synth(args: argparse.Namespace) -> int:
    from lcmftn.data.synthetic import sidecar_path

    common = dict(
        seed=args.seed, size=args.size, aspect=args.aspect, fps=args.fps, num_shots=args.num_shots,
        seconds=args.seconds, shot_frames=args.shot_frames, shot_frames_jitter=args.jitter,
        num_characters=args.characters, motion=args.motion,
    )  # fmt: skip
    v2_only = {"zoom": args.zoom, "effects": args.effects, "rotation_deg": args.rotation,
               "close_up_prob": args.close_up_prob, "line_px": args.line_px}  # fmt: skip
    probs = {k: v for k, v in (("hold_prob", args.hold_prob), ("still_prob", args.still_prob)) if v is not None}
    if args.generator == "v1":
        given = [k for k, v in v2_only.items() if v is not None] + (["thin_lines"] if args.thin_lines else []) \
            + (["layers"] if args.layers else [])
        if given:
            raise ValueError(f"--generator v1 has no {', '.join(given)} (v2 knobs)")
        from lcmftn.data.synthetic import FilmConfig, write_film

        truth = write_film(args.out, FilmConfig(**common, **probs), crf=args.crf)
    else:
        from lcmftn.data.synth import FilmConfigV2, write_film

        extra = {k: v for k, v in v2_only.items() if v is not None}
        cfg = FilmConfigV2(**common, **probs, **extra, thin_lines=args.thin_lines)
        if args.layers:
            from lcmftn.data.synth.layers import layers_path, write_cel_layers

            if layers_path(args.out).exists():  # before writing anything
                raise ValueError(f"{layers_path(args.out)} exists; not overwriting layers")
        truth = write_film(args.out, cfg, crf=args.crf)
        if args.layers:
            write_cel_layers(layers_path(args.out), cfg)
    summary = {k: truth[k] for k in ("frames", "fps", "width", "height", "cuts")}
    summary.update(video=str(args.out), truth=str(sidecar_path(args.out)), holds=len(truth["holds"]),
                   generator=args.generator)  # fmt: skip
    if args.generator == "v2" and args.layers:
        from lcmftn.data.synth.layers import layers_path

        summary["layers"] = str(layers_path(args.out))
    print(json.dumps(summary))
    return 0


# ---------------------------------------------------------------------------------------------
# shots
# ---------------------------------------------------------------------------------------------
def _cmd_shots(args: argparse.Namespace) -> int:
    from lcmftn.data.shots import detect_shots

    shots = detect_shots(args.video, detector=args.detector, threshold=args.threshold,
                         min_shot_frames=args.min_shot_frames)  # fmt: skip
    if args.json:
        print(shots.dumps())
    else:
        print(f"{args.video}: {shots.frames} frames at {shots.fps:g} fps, {len(shots.shots)} shots")
        for k, (s, e) in enumerate(shots.shots):
            print(f"  shot {k:3d}: frames {s:6d} .. {e - 1:6d}  ({e - s} frames)")
    return 0


# ---------------------------------------------------------------------------------------------
# lineart
# ---------------------------------------------------------------------------------------------
def _to_lineart(img: np.ndarray, args: argparse.Namespace) -> np.ndarray:
    from lcmftn.data.lineart import LineArtConfig, extract_lineart, normalize_lineart
    from lcmftn.data.video import resize_image, to_rgb

    if args.method == "normalize":  # the input already is line art (artists' drawings)
        out = normalize_lineart(img)
    else:
        out = extract_lineart(to_rgb(img), LineArtConfig(method=args.method))
    return resize_image(out, args.size) if args.size else out


def _write_image(path: Path, img: np.ndarray) -> None:
    import cv2

    ok, buf = cv2.imencode(path.suffix or ".png", img)
    if not ok:
        raise ValueError(f"cannot encode {path.suffix!r} images ({path})")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)


def _cmd_lineart(args: argparse.Namespace) -> int:
    from lcmftn.data import video as v

    src, dst = Path(args.input), Path(args.output)
    if not src.exists():
        raise v.VideoReadError(src, "no such file or folder")
    if src.is_dir():  # folder -> folder of PNGs, one per readable image; bad ones reported
        files = v.list_image_files(src)
        if not files:
            raise v.VideoReadError(src, "image folder holds no images")
        dst.mkdir(parents=True, exist_ok=True)
        failed = 0
        for f in files:
            try:
                _write_image(dst / (f.stem + ".png"), _to_lineart(v.read_image(f), args))
            except (v.VideoReadError, ValueError) as exc:
                failed += 1
                _err(str(exc))
        print(json.dumps({"input": str(src), "output": str(dst), "frames": len(files) - failed, "failed": failed}))
        return 1 if failed else 0
    kind = "image" if src.suffix.lower() in v.IMAGE_EXTENSIONS else "video"
    allowed = v.IMAGE_EXTENSIONS if kind == "image" else v.VIDEO_EXTENSIONS
    if dst.suffix.lower() not in allowed:
        raise ValueError(f"{dst}: a {kind} input needs a {kind} output ({', '.join(allowed)})")
    if kind == "image":
        _write_image(dst, _to_lineart(v.read_image(src), args))
        print(json.dumps({"input": str(src), "output": str(dst), "frames": 1}))
        return 0
    fps = v.probe_video(src).fps or 24.0

    def frames() -> Iterator[np.ndarray]:
        for img in v.iter_frames(src):
            yield _to_lineart(img, args)

    n = v.write_video(dst, frames(), fps, crf=args.crf)
    print(json.dumps({"input": str(src), "output": str(dst), "frames": n, "fps": fps}))
    return 0


# ---------------------------------------------------------------------------------------------
# workflows
# ---------------------------------------------------------------------------------------------
def _run_workflow(name: str, rest: list[str]) -> int:
    # NOTE: a child process, so Ray/MLflow are never imported into this one.
    return subprocess.call([sys.executable, "-m", f"workflows.{name}", *rest])


def build_parser() -> argparse.ArgumentParser:
    from lcmftn.data.shots import DEFAULT_MIN_SHOT_FRAMES, DETECTORS

    p = argparse.ArgumentParser(prog="lcmftn", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("synth", help="write a procedural cel-animation film (H.264) + <out>.json truth")
    s.add_argument("out", help="output video (.mp4, .mkv, .mov, .avi)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, default=256, help="frame height in pixels")
    s.add_argument("--aspect", type=float, default=1.0, help="width / height")
    s.add_argument("--fps", type=float, default=24.0)
    s.add_argument("--num-shots", type=int, default=8)
    s.add_argument("--seconds", type=float, default=None, help="film length (overrides --num-shots)")
    s.add_argument("--shot-frames", type=int, default=48, help="mean shot length in frames")
    s.add_argument("--jitter", type=float, default=0.0, help="shot length jitter, fraction in [0,1)")
    s.add_argument("--characters", type=int, default=2, help="characters per shot")
    s.add_argument("--motion", type=float, default=1.0, help="motion scale (0 = stills)")
    s.add_argument("--hold-prob", type=float, default=None, help="P(shot animated on twos/threes) (v1 0.5, v2 0.8)")
    s.add_argument("--still-prob", type=float, default=None, help="P(still shot) (v1 0.1, v2 0.3)")
    s.add_argument("--generator", choices=("v1", "v2"), default="v1",
                   help="v1: lcmftn.data.synthetic (default); v2: lcmftn.data.synth (cel characters, camera, effects)")
    s.add_argument("--zoom", type=float, default=None, help="v2: largest zoom change per shot (fraction)")
    s.add_argument("--rotation", type=float, default=None, help="v2: largest camera roll per shot (degrees)")
    s.add_argument("--effects", type=float, default=None, help="v2: smoke/sparks amount in [0, 1]")
    s.add_argument("--close-up-prob", type=float, default=None, help="v2: P(close-up shot)")
    s.add_argument("--line-px", type=float, default=None, help="v2: line width at 256 px height")
    s.add_argument("--thin-lines", action="store_true", help="v2: 1-px lines at any size")
    s.add_argument("--layers", action="store_true",
                   help="v2: also write the cel layers (RGBA colour + line art per layer, background) to OUT.layers/")
    s.add_argument("--crf", type=int, default=18, help="x264 quality (0 = lossless luma)")
    s.set_defaults(fn=_cmd_synth)

    s = sub.add_parser("shots", help="detect shots (hard cuts) in a video or image folder")
    s.add_argument("video")
    s.add_argument("--detector", default="content", choices=sorted(DETECTORS),
                   help="; ".join(f"{k}: {v[2]}" for k, v in DETECTORS.items()))  # fmt: skip
    s.add_argument("--threshold", type=float, default=None, help="detector threshold (default: its own)")
    s.add_argument("--min-shot-frames", type=int, default=DEFAULT_MIN_SHOT_FRAMES)
    s.add_argument("--json", action="store_true", help='print {"frames", "fps", "shots": [{"start", "end"}]}')
    s.set_defaults(fn=_cmd_shots)

    s = sub.add_parser("lineart", help="line art of an image, image folder or video (same kind out)")
    s.add_argument("input")
    s.add_argument("output")
    s.add_argument("--method", default="xdog", choices=["xdog", "canny", "normalize"],
                   help="xdog/canny: extract from colour; normalize: artist line art -> black on white")  # fmt: skip
    s.add_argument("--size", type=int, default=None, help="short side of the output (default: input's)")
    s.add_argument("--crf", type=int, default=18, help="x264 quality for video output")
    s.set_defaults(fn=_cmd_lineart)

    for name in WORKFLOWS:
        sub.add_parser(name, help=f"run python -m workflows.{name} (arguments passed through)", add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in WORKFLOWS:  # pass everything through, --help included
        return _run_workflow(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    from lcmftn.data.video import VideoReadError

    try:
        return args.fn(args)
    except (VideoReadError, ValueError, FileNotFoundError) as exc:
        _err(str(exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())
