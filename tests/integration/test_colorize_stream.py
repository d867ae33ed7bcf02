"""Streaming colorize: same output as the in-memory job had, resume follows input changes,
memory bounded by a window (not by the episode)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lcmftn.data.video import iter_frames, read_frames
from tests.integration.stream_film import (
    RUNS,
    make_film,
    output_digests,
    run_colorize,
    run_in_memory,
    write_lineart_video,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
# Recorded once with `python -m tests.integration.stream_film` on main before streaming
# (driver held the whole line art and wrote every frame itself). "markers" / "report_shots"
# re-recorded the same way on branch usability before it merged streaming (76c8ad4: the same
# in-memory driver, per-frame records with the confidence fields change/distance; its frames,
# confidence maps and line art reproduced the main recording byte for byte).
# "frames" / "video" re-recorded after the guided upsampler's auto halo became
# max(1, round(scale)) (lcmftn/upsample.py): every other digest was unchanged by it.
# "markers" / "report_shots" re-recorded when colorize got ``fit`` (its settings and the shots'
# ``model_input_hw``); this film is square at 64 px, so nothing is padded and no pixel changed.
REFERENCE = json.loads((Path(__file__).with_name("stream_reference.json")).read_text())


@pytest.fixture(scope="module")
def film(tmp_path_factory):
    return make_film(tmp_path_factory.mktemp("stream") / "film")


@pytest.mark.parametrize("name", sorted(RUNS))
def test_streaming_output_is_byte_identical_to_the_in_memory_job(film, name, tmp_path):
    out = tmp_path / "out"
    assert run_colorize(film, out, RUNS[name]) == 0
    got, want = output_digests(out), REFERENCE[name]
    # NOTE: the video's decoded frames are not compared: x264's threaded encode is not bit-exact
    # run to run (two runs of the old code differed); its frame count is.
    for part in ("lineart", "markers", "report_shots"):
        assert got[part] == want[part], f"{name}: {part} differ from the recorded output"
    # NOTE: the model's output bits depend on the CPU's float kernels (the recorded "frames" /
    # "confidence" digests were taken on another CPU and differ on an AMD EPYC with the same
    # torch): they are compared with the same job over an in-memory source on this machine.
    oracle = tmp_path / "in-memory"
    assert run_in_memory(film, oracle, RUNS[name]) == 0
    mem = output_digests(oracle)
    for part in ("frames", "confidence", "lineart"):
        assert got[part] == mem[part], f"{name}: streaming {part} differ from the in-memory job's"
    assert sum(1 for _ in iter_frames(out / "episode.mp4")) == film["truth"]["frames"]


def test_resume_recolours_only_the_shot_whose_line_art_changed(film, tmp_path):
    out = tmp_path / "out"
    given = ["--mode", "chain", "--shots", json.dumps([[s["start"], s["end"]] for s in film["truth"]["shots"]])]
    assert run_colorize(film, out, given) == 0
    before = {p.name: p.read_bytes() for p in (out / "frames").glob("*.png")}
    la = [f[..., 0].copy() for f in read_frames(film["root"] / "lineart.mp4")]
    s1 = film["truth"]["shots"][1]
    la[s1["start"] + 5][10:20, 10:40] = 0  # a new stroke in shot 1
    edited = dict(film, root=tmp_path / "edited")
    edited["root"].mkdir()
    write_lineart_video(edited["root"] / "lineart.mp4", la, 24.0, gop=8)
    (edited["root"] / "keys").symlink_to(film["root"] / "keys")
    assert run_colorize(edited, out, given) == 0
    rep = json.loads((out / "report.json").read_text())
    resumed = {s["start"]: bool(s.get("resumed")) for s in rep["shots"]}
    assert resumed == {0: True, s1["start"]: False, film["truth"]["shots"][2]["start"]: True}
    after = {p.name: p.read_bytes() for p in (out / "frames").glob("*.png")}
    changed = {n for n in before if before[n] != after[n]}
    assert changed and all(s1["start"] <= int(n[:6]) < s1["end"] for n in changed)


def _peak_rss_mb(argv: list[str]) -> float:
    """Peak RSS of one colorize run in a fresh child process (``--local``: one process)."""
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "workflows.colorize", *argv],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip().splitlines()[-1]) / 1024  # Linux: KiB


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_peak_memory_does_not_grow_with_the_episode(tmp_path):
    """5x the frames, same peak RSS: within 1.2x and under 0.08 MB per extra frame. A 384x216
    gray frame is 0.083 MB; the in-memory job held every one (plus shot PNGs: 0.73 MB/frame
    measured at 640x360), i.e. +0.25 MB per extra frame here (+96 MB, a ratio of ~1.3)."""
    from workflows.benchmark.scale import colorize_cmd, make_episode

    peaks, lengths = [], (96, 480)
    for n in lengths:
        ep = make_episode(tmp_path / f"ep{n}", n, 384, 216, shot_frames=48)
        argv = colorize_cmd(ep, tmp_path / f"out{n}", 64, ray=False)[3:]
        peaks.append(_peak_rss_mb(argv))
        assert len(list((tmp_path / f"out{n}" / "frames").glob("*.png"))) == n
    per_frame = (peaks[1] - peaks[0]) / (lengths[1] - lengths[0])
    msg = f"peak RSS {peaks[0]:.0f} MB at {lengths[0]} frames, {peaks[1]:.0f} MB at {lengths[1]}"
    assert peaks[1] <= 1.2 * peaks[0], msg
    assert per_frame <= 0.08, f"{msg}: +{per_frame:.3f} MB per frame"
