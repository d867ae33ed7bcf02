"""The ``lcmftn`` command: small data tools, and the workflows behind one entry point.

    lcmftn synth film.mp4 --seed 3 --size 256 --seconds 120      # procedural film + truth JSON
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
    from lcmftn.data.synthetic import FilmConfig, sidecar_path, write_film

    cfg = FilmConfig(
        seed=args.seed, size=args.size, aspect=args.aspect, fps=args.fps, num_shots=args.num_shots,
        seconds=args.seconds, shot_frames=args.shot_frames, shot_frames_jitter=args.jitter,
        num_characters=args.characters, motion=args.motion, hold_prob=args.hold_prob,
        still_prob=args.still_prob,
    )  # fmt: skip
    truth = write_film(args.out, cfg, crf=args.crf)
    summary = {k: truth[k] for k in ("frames", "fps", "width", "height", "cuts")}
    summary.update(video=str(args.out), truth=str(sidecar_path(args.out)), holds=len(truth["holds"]))
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
    s.add_argument("--hold-prob", type=float, default=0.5, help="P(shot animated on twos/threes)")
    s.add_argument("--still-prob", type=float, default=0.1, help="P(still shot)")
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
