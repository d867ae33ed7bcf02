"""A deterministic generated film for the streaming-colorize tests, and a digest of a colorize
output that ignores what legitimately differs between runs (timings, the fingerprint scheme).

``python -m tests.integration.stream_film`` prints the digests of the current code's output
(how ``REFERENCE_SHA256`` in ``test_colorize_stream.py`` was recorded, on ``main`` before the
streaming rewrite).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

# Per-frame fields of markers / report records that differ run to run or by fingerprint scheme.
VOLATILE = {"time_s", "fingerprint"}


def make_film(root: Path) -> dict:
    """3 shots x 20 frames (64 px, on twos/threes), H.264 lossless line art with a keyframe every
    8 frames, keys: shot 0 first frame; shot 1 first + middle; shot 2 middle only (backward chain)."""
    import torch

    from lcmftn.checkpoint import save_checkpoint
    from lcmftn.data.lineart import extract_lineart
    from lcmftn.data.synthetic import FilmConfig, generate_film
    from lcmftn.models.registry import build_generator, generator_config

    root.mkdir(parents=True, exist_ok=True)
    cfg = FilmConfig(seed=5, size=64, num_shots=3, shot_frames=20, hold_prob=1.0, still_prob=0.0)
    # NOTE: rendered frames, no lossy encode: x264's threaded encode is not bit-exact run to run
    film = generate_film(cfg)
    color, truth = list(film.frames), film.truth
    write_lineart_video(root / "lineart.mp4", [extract_lineart(f) for f in color], cfg.fps, gop=8)
    s0, s1, s2 = truth["shots"]
    keys = [s0["start"], s1["start"], s1["start"] + 9, s2["start"] + 10]
    for k in keys:
        (root / "keys").mkdir(exist_ok=True)
        cv2.imwrite(str(root / "keys" / f"{k:06d}.png"), cv2.cvtColor(color[k], cv2.COLOR_RGB2BGR))
    torch.manual_seed(0)
    model = build_generator("lcmftn", "tiny")
    ckpt = save_checkpoint(root / "ckpt", model, "lcmftn", dataclasses.asdict(generator_config("lcmftn", "tiny")))
    return {"root": root, "truth": truth, "ckpt": ckpt, "keys": keys}


def write_lineart_video(path: Path, frames: list[np.ndarray], fps: float, gop: int) -> None:
    """Lossless H.264 (qp 0) with a keyframe every ``gop`` frames (so seeking is exercised)."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as c:
        st = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        st.height, st.width = frames[0].shape[:2]
        st.pix_fmt = "yuv444p"
        st.options = {"qp": "0", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "0"}
        for f in frames:
            rgb = cv2.cvtColor(f, cv2.COLOR_GRAY2RGB) if f.ndim == 2 else f
            c.mux(st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")))
        c.mux(st.encode(None))


def _clean(obj):
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def output_digests(out: Path) -> dict[str, str]:
    """sha256 per part of OUT: frames/, confidence/, lineart/ (file name + bytes), markers and
    report shot records (JSON without timings/fingerprints), the episode video's decoded frames."""
    from lcmftn.data.video import iter_frames

    res = {}
    for part in ("frames", "confidence", "lineart"):
        h = hashlib.sha256()
        for p in sorted((out / part).glob("*.png")):
            h.update(p.name.encode() + p.read_bytes())
        res[part] = h.hexdigest()
    h = hashlib.sha256()
    for p in sorted((out / "shots").glob("*.json")):
        h.update(p.name.encode() + json.dumps(_clean(json.loads(p.read_text())), sort_keys=True).encode())
    res["markers"] = h.hexdigest()
    rep = json.loads((out / "report.json").read_text())
    res["report_shots"] = hashlib.sha256(json.dumps(_clean(rep["shots"]), sort_keys=True).encode()).hexdigest()
    h = hashlib.sha256()
    for f in iter_frames(out / "episode.mp4"):
        h.update(f.tobytes())
    res["video"] = h.hexdigest()
    return res


RUNS = {  # name -> extra CLI arguments (all --local, --size 64)
    "chain": ["--mode", "chain"],
    "auto": ["--mode", "auto"],
    "anchor_nohold": ["--mode", "anchor", "--no-holds"],
}


def run_colorize(film: dict, out: Path, extra: list[str]) -> int:
    from workflows import colorize as job

    r = film["root"]
    return job.main(["--lineart", str(r / "lineart.mp4"), "--refs", str(r / "keys"), "--model",
                     str(film["ckpt"]), "--out", str(out), "--size", "64", "--local", *extra])


def run_in_memory(film: dict, out: Path, extra: list[str]) -> int:
    """The same job on this machine with the whole line art decoded into memory first (an
    in-memory source, keyframes as arrays, shots detected on the in-memory frames): the oracle
    the streaming job's model-coloured frames are compared with. (Their bytes depend on the
    CPU's float kernels, so a digest recorded on another machine cannot be compared.)"""
    import tempfile

    from lcmftn.episode import (
        LINEART_DETECTOR,
        memory_source,
        read_keyframes,
        read_lineart,
        scan_lineart,
    )
    from lcmftn.jobs import load_model_files, training_size
    from workflows import colorize as job

    r = film["root"]
    args = job.build_parser().parse_args(["--lineart", str(r / "lineart.mp4"), "--refs", str(r / "keys"), "--model",
                                          str(film["ckpt"]), "--out", str(out), "--size", "64", "--local", *extra])
    rs = job._settings(args)
    with tempfile.TemporaryDirectory() as tmp:
        model_files = load_model_files(args.model, Path(tmp))
    rs.size = rs.size or training_size(json.loads(model_files["meta.json"]))
    src = memory_source(read_lineart(r / "lineart.mp4"))
    keys, _, _ = read_keyframes(r / "keys", src.n_frames, src.size_hw)
    scan = scan_lineart(src, True, LINEART_DETECTOR)
    shots = [(int(a), int(b)) for a, b in scan.shots]
    report = job.run_episode(src, scan, keys, shots, str(out), model_files, rs, {"lineart": "in memory"})
    return 0 if report["totals"]["shots_done"] == report["totals"]["shots"] else 3


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        film = make_film(Path(tmp) / "film")
        print(json.dumps({"shots": film["truth"]["shots"], "keys": film["keys"]}), file=sys.stderr)
        ref = {}
        for name, extra in RUNS.items():
            rc = run_colorize(film, Path(tmp) / name, extra)
            ref[name] = {"rc": rc, **output_digests(Path(tmp) / name)}
        print(json.dumps(ref, indent=1))
