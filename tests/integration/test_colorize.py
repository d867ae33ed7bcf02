"""The colorize job end to end: generated film and the real anime clip, on local Ray.

A freshly initialised tiny LCMFTN saved as a checkpoint dir stands in for a trained model (the
job's plumbing, not colour quality, is under test). Frames are 64 px, the model runs at 32-64 px.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from lcmftn.checkpoint import save_checkpoint
from lcmftn.data.lineart import extract_lineart
from lcmftn.data.synthetic import FilmConfig, write_film
from lcmftn.data.video import iter_frames, read_frames, write_video
from lcmftn.models.registry import build_generator, generator_config
from workflows import colorize as job

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    model = build_generator("lcmftn", "tiny")
    return save_checkpoint(path, model, "lcmftn", dataclasses.asdict(generator_config("lcmftn", "tiny")))


def _video_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def _frames(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "frames").glob("*.png"))}


@pytest.fixture(scope="module")
def film(tmp_path_factory):
    """A 3-shot synthetic film (64 px, held on twos/threes): line-art video, keys, checkpoint."""
    root = tmp_path_factory.mktemp("film")
    cfg = FilmConfig(seed=3, size=64, num_shots=3, shot_frames=12, hold_prob=1.0, still_prob=0.0)
    truth = write_film(root / "film.mp4", cfg)
    color = read_frames(root / "film.mp4")
    write_video(root / "lineart.mp4", [extract_lineart(f) for f in color], cfg.fps, crf=0)
    for s in truth["shots"]:
        _write_rgb(root / "keys" / f"{s['start']:06d}.png", color[s["start"]])
    (root / "shots.json").write_text(json.dumps([[s["start"], s["end"]] for s in truth["shots"]]))
    return {"root": root, "truth": truth, "color": color, "ckpt": _checkpoint(root / "ckpt")}


def _args(film, out: Path, *extra: str) -> list[str]:
    r = film["root"]
    return ["--lineart", str(r / "lineart.mp4"), "--refs", str(r / "keys"), "--model", str(film["ckpt"]),
            "--out", str(out), "--size", "64", *extra]


@pytest.fixture(scope="module")
def reference_run(film, ray_local, tmp_path_factory):
    """One uninterrupted run on local Ray (2 actors), shots detected on the line art."""
    out = tmp_path_factory.mktemp("ref") / "out"
    console = io.StringIO()
    with contextlib.redirect_stderr(console):  # the progress bar (plain text: not a TTY)
        rc = job.main(_args(film, out, "--actors", "2", "--cpus-per-actor", "0.5"))
    assert rc == 0
    (out.parent / "stderr.txt").write_text(console.getvalue())
    return out


@pytest.fixture(scope="module")
def local_run(film, tmp_path_factory):
    """The same film coloured in-process (no Ray) with the shot list given."""
    out = tmp_path_factory.mktemp("local") / "out"
    assert job.main(_args(film, out, "--local", "--shots", str(film["root"] / "shots.json"))) == 0
    return out


def test_episode_on_ray_writes_frames_video_report(film, reference_run):
    out, truth = reference_run, film["truth"]
    n = truth["frames"]
    assert sorted(_frames(out)) == [f"{i:06d}.png" for i in range(n)]
    assert _video_frames(out / "episode.mp4") == n
    img = cv2.imread(str(out / "frames" / "000005.png"))
    assert img.shape[:2] == (truth["height"], truth["width"])  # input resolution
    rep = json.loads((out / "report.json").read_text())
    assert [(s["start"], s["end"]) for s in rep["shots"]] == [(s["start"], s["end"]) for s in truth["shots"]]
    t = rep["totals"]
    # every held drawing is copied, every new drawing coloured by the model, keys given
    assert t["copied"] == len(truth["holds"])
    assert t["colorized"] == n - len(truth["holds"]) - len(truth["shots"])
    assert t["key"] == len(truth["shots"]) and t["frames_written"] == n
    # copies are byte-identical to their source frame
    h = truth["holds"][0]
    assert (out / "frames" / f"{h:06d}.png").read_bytes() == (out / "frames" / f"{h - 1:06d}.png").read_bytes()
    # keyframes are emitted as given
    np.testing.assert_array_equal(cv2.imread(str(out / "frames" / "000000.png")),
                                  cv2.imread(str(film["root"] / "keys" / "000000.png")))
    # one low-confidence map per model frame; report + html
    assert len(list((out / "confidence").glob("*.png"))) == t["colorized"]
    for s in rep["shots"]:
        assert s["status"] == "done" and s["keyframes"] == [s["start"]] and s["time_s"] >= 0
        assert 0 <= s["confidence"] <= 1 and all(s["start"] <= i < s["end"] for i in s["flagged"])
    html = (out / "report.html").read_text()
    assert "Colorize report" in html and rep["shots"][0]["id"] in html
    # progress: the frames the 2 actors wrote, summed on the driver's board (workflows.progress)
    bar = (out.parent / "stderr.txt").read_text().splitlines()
    assert bar[0] == f"colorize (chain): 0/{n} frames", bar
    assert any(ln.startswith("colorize (chain) [") and f" {n}/{n} frames 100%" in ln for ln in bar), bar


def test_crash_then_resume_is_byte_identical(film, local_run, ray_local, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv(job.FAULT_ENV, "1")
    with pytest.raises(job.InjectedFault):
        job.main(_args(film, out, "--actors", "1", "--shots", str(film["root"] / "shots.json")))
    assert len(list((out / "shots").glob("*.json"))) == 1
    # every visible file is complete; an actor killed mid-write may leave a hidden temp file
    # (.NAME.xxxxxxxx.tmp), which the next run removes; no video/report yet
    assert all(p.name.endswith(".tmp") for p in out.rglob(".*"))
    assert not (out / "episode.mp4").exists() and not (out / "report.json").exists()
    (out / "frames" / ".000001.png.deadbeef.tmp").write_bytes(b"half")  # as a killed writer leaves it
    monkeypatch.delenv(job.FAULT_ENV)
    assert job.main(_args(film, out, "--actors", "1", "--shots", str(film["root"] / "shots.json"))) == 0
    assert not list(out.rglob(".*.tmp"))
    rep = json.loads((out / "report.json").read_text())
    assert rep["run"]["shots_coloured"] == 2
    assert sum(bool(s.get("resumed")) for s in rep["shots"]) == 1
    assert _frames(out) == _frames(local_run)  # and Ray actors == in-process colouring


def test_killed_process_resumes(film, local_run, tmp_path):
    """SIGKILL the job (in-process colouring, no Ray) once its first shot is on disk; rerun."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "workflows.colorize", *_args(film, out, "--local", "--shots", str(film["root"] / "shots.json"))]
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{job.DELAY_ENV: "2"})
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 50
    while time.time() < deadline and proc.poll() is None and not list((out / "shots").glob("*.json")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    markers = len(list((out / "shots").glob("*.json")))
    assert 1 <= markers < 3
    env.pop(job.DELAY_ENV)
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["frames_written"] == film["truth"]["frames"]
    assert _frames(out) == _frames(local_run)
    assert not list((out / "frames").glob(".*"))
    rep = json.loads((out / "report.json").read_text())
    assert rep["run"]["shots_coloured"] == 3 - markers


def test_bad_inputs_are_named_and_other_shots_go_on(film, tmp_path, caplog):
    truth, color = film["truth"], film["color"]
    s0, s1, s2 = truth["shots"]
    # line art as an image folder, white lines on black (normalised), with one unreadable frame
    la_dir = tmp_path / "lineart"
    la_dir.mkdir()
    for i, f in enumerate(color):
        cv2.imwrite(str(la_dir / f"la_{i:04d}.png"), 255 - extract_lineart(f))
    bad = s2["start"] + 3
    (la_dir / f"la_{bad:04d}.png").write_bytes(b"not a png")
    keys = tmp_path / "keys"
    _write_rgb(keys / f"{s0['start']:06d}.png", cv2.resize(color[s0["start"]], (128, 128)))  # same aspect: resized
    _write_rgb(keys / f"{s1['start']:06d}.png", cv2.resize(color[s1["start"]], (96, 64)))  # other aspect: rejected
    _write_rgb(keys / f"{s2['start']:06d}.png", color[s2["start"]])
    _write_rgb(keys / "cover.png", color[0])  # no frame index
    shots = str(film["root"] / "shots.json")
    base = ["--lineart", str(la_dir), "--refs", str(keys), "--model", str(film["ckpt"]), "--size", "64",
            "--shots", shots, "--local"]
    out = tmp_path / "out"
    assert job.main([*base, "--out", str(out)]) == 3
    rep = json.loads((out / "report.json").read_text())
    by_start = {s["start"]: s for s in rep["shots"]}
    assert by_start[s0["start"]]["status"] == "done"
    assert any("000000.png" in w and "resized to 64x64" in w for w in rep["warnings"])
    assert any(f"{s1['start']:06d}.png" in e and "rejected" in e and "aspect" in e for e in rep["errors"])
    assert any("cover.png" in e and "no frame index" in e for e in rep["errors"])
    assert by_start[s1["start"]]["status"] == "skipped" and "no keyframe" in by_start[s1["start"]]["reason"]
    assert by_start[s2["start"]]["status"] == "failed" and f"la_{bad:04d}.png" in by_start[s2["start"]]["reason"]
    assert any(f"la_{bad:04d}.png" in e for e in rep["errors"])
    assert sorted(_frames(out)) == [f"{i:06d}.png" for i in range(s0["start"], s0["end"])]
    assert _video_frames(out / "episode.mp4") == truth["frames"]  # timing kept (line art shown)
    # the same with --borrow-keyframes: shot 1 is coloured from the nearest keyframe (shot 2's
    # first frame, 1 frame away; shot 0's is 12 away), the rerun keeps shot 0 (resume)
    assert job.main([*base, "--out", str(out), "--borrow-keyframes"]) == 3
    rep = json.loads((out / "report.json").read_text())
    by_start = {s["start"]: s for s in rep["shots"]}
    assert by_start[s1["start"]]["status"] == "done" and by_start[s1["start"]]["borrowed_from"] == s2["start"]
    assert by_start[s1["start"]]["key"] == 0 and by_start[s0["start"]].get("resumed")
    assert len(_frames(out)) == s1["end"]
    # keyframes of another size rejected outright on request; unusable inputs stop with rc 2
    out3 = tmp_path / "out3"
    assert job.main([*base, "--out", str(out3), "--keyframe-size", "reject"]) == 3
    assert any("000000.png" in e and "rejected" in e for e in json.loads((out3 / "report.json").read_text())["errors"])
    assert job.main([*base[:2], "--refs", str(tmp_path / "nope"), *base[4:], "--out", str(tmp_path / "o4")]) == 2
    assert job.main([*base, "--out", str(tmp_path / "o5"), "--shots", "[[0, 5]]"]) == 2


def test_evaluation_mode_reports_drift(film, tmp_path):
    out = tmp_path / "ev"
    rc = job.main(["--from-color", str(film["root"] / "film.mp4"), "--model", str(film["ckpt"]), "--out", str(out),
                   "--size", "32", "--shots", str(film["root"] / "shots.json"), "--local"])
    assert rc == 0
    ev = json.loads((out / "eval.json").read_text())
    n, n_shots = film["truth"]["frames"], len(film["truth"]["shots"])
    for mode in ("chain", "anchor"):
        m = ev["modes"][mode]
        assert m["frames"] == n - n_shots and len(m["per_frame"]) == n - n_shots
        assert 5 < m["psnr"] < 60 and 0 < m["ssim"] <= 1
        assert len(m["per_offset"]["psnr"]) == 11 and m["per_offset"]["count"][0] == n_shots
        assert set(m["per_shot"]) == {f"{s['start']:06d}-{s['end']:06d}" for s in film["truth"]["shots"]}
        assert len(list((out / mode / "frames").glob("*.png"))) == n
        c = m["confidence"]  # issue 10: does confidence find the bad frames (model frames only)
        assert 0 < c["frames"] <= m["frames"] and c["pixels"] > 0
        assert -1 <= c["spearman_conf_psnr"] <= 1 and 0 <= c["pixel_auroc_low_conf_vs_large_error"] <= 1
    assert (out / "drift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.real_data
def test_calibrated_confidence_maps_are_written(film, local_run, tmp_path):
    """With a calibration holding a pixel model (lcmftn.pixel_confidence) ``confidence/`` holds
    that model's map (here all weights 0, bias 0: P(large error) = 0.5 -> 128 everywhere) instead
    of the system's own; the coloured frames are the same bytes (confidence never changes colour)."""
    from lcmftn.calibration import fit_calibration
    from lcmftn.pixel_confidence import PIXEL_FEATURES, PixelModel

    n = len(PIXEL_FEATURES)
    flat = PixelModel(PIXEL_FEATURES, (0.0,) * n, (1.0,) * n, (0.0,) * n, 0.0)
    cal = fit_calibration("distance", np.arange(5.0), np.arange(5.0)[::-1], sign=-1.0, pixel=flat.to_dict())
    (tmp_path / "cal.json").write_text(cal.to_json())
    out = tmp_path / "out"
    assert job.main(_args(film, out, "--local", "--shots", str(film["root"] / "shots.json"),
                          "--calibration", str(tmp_path / "cal.json"))) == 0
    maps = sorted((out / "confidence").glob("*.png"))
    plain = sorted((local_run / "confidence").glob("*.png"))
    assert [p.name for p in maps] == [p.name for p in plain] and maps
    for p in maps:
        assert set(np.unique(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE))) == {128}, p.name
    assert any(len(np.unique(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE))) > 1 for p in plain)
    assert _frames(out) == _frames(local_run)
    rep = json.loads((out / "report.json").read_text())
    confs = [f["conf"] for s in rep["shots"] for f in s["per_frame"] if f["kind"] == "model"]
    assert confs and all(c == 0.5 for c in confs)


def test_real_anime_clip(real_data, ray_local, tmp_path):
    """A 30-frame window of the real clip around its cut (frame 100), line art by XDoG, 160x120."""
    clip = real_data / "anime" / "onepiece_demo.mp4"
    if not clip.exists():
        pytest.skip(f"{clip} is absent")
    color = []
    for i, f in enumerate(iter_frames(clip, size_px=120)):
        if i >= 85:
            color.append(f)
        if i >= 114:
            break
    la_dir, keys = tmp_path / "la", tmp_path / "keys"
    la_dir.mkdir()
    for i, f in enumerate(color):
        cv2.imwrite(str(la_dir / f"{i:06d}.png"), extract_lineart(f))
    for k in (0, 15):  # the clip's frames 85 and 100 (the first frame after the cut)
        _write_rgb(keys / f"{k:06d}.png", color[k])
    out = tmp_path / "out"
    rc = job.main(["--lineart", str(la_dir), "--refs", str(keys), "--model", str(_checkpoint(tmp_path / "ckpt")),
                   "--out", str(out), "--size", "64", "--actors", "1", "--fps", "23.976"])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    assert [s["start"] for s in rep["shots"]] == [0, 15]  # the cut, found on the line art
    assert len(_frames(out)) == 30 and _video_frames(out / "episode.mp4") == 30
    assert cv2.imread(str(out / "frames" / "000003.png")).shape[:2] == color[0].shape[:2]
    assert rep["totals"]["copied"] >= 10  # heavy holds in this clip are copied, not re-coloured
    assert rep["totals"]["copied"] + rep["totals"]["colorized"] + rep["totals"]["key"] == 30


def test_s3_inputs_and_output_resume(film, s3_env, tmp_path):
    """Line art, keyframes and output on (local SeaweedFS) S3; a rerun finds the markers there."""
    from lcmftn.integrations import storage

    r = film["root"]
    storage.upload(r / "lineart.mp4", s3_env.uri("ep", "lineart.mp4"))
    for k in (r / "keys").iterdir():
        storage.upload(k, s3_env.uri("ep", "keys", k.name))
    out = s3_env.uri("ep", "color")
    argv = ["--lineart", s3_env.uri("ep", "lineart.mp4"), "--refs", s3_env.uri("ep", "keys"),
            "--model", str(film["ckpt"]), "--out", out, "--size", "64", "--local",
            "--shots", str(r / "shots.json"), "--work-dir", str(tmp_path)]
    assert job.main(argv) == 0
    names = {u.rsplit("/", 2)[-2] + "/" + u.rsplit("/", 1)[-1] for u in storage.list_uris(out)}
    n = film["truth"]["frames"]
    assert {f"frames/{i:06d}.png" for i in range(n)} <= names
    assert {"color/episode.mp4", "color/report.json", "color/report.html"} <= names
    assert job.main(argv) == 0  # resume: every shot done already
    rep = json.loads(storage.read_bytes(storage.join(out, "report.json")))
    assert rep["run"]["shots_coloured"] == 0 and all(s.get("resumed") for s in rep["shots"])


def test_auto_mode_colours_from_both_ends(film, tmp_path):
    """Two keyframes in one shot: ``auto`` chains forwards from the first and backwards from the
    second, meeting in the middle; holds are still copied in the direction of travel."""
    color, (s0, *_rest) = film["color"], film["truth"]["shots"]
    keys = tmp_path / "keys"
    for k in (s0["start"], s0["end"] - 1):
        _write_rgb(keys / f"{k:06d}.png", color[k])
    out = tmp_path / "out"
    argv = ["--lineart", str(film["root"] / "lineart.mp4"), "--refs", str(keys), "--model", str(film["ckpt"]),
            "--out", str(out), "--size", "32", "--local", "--mode", "auto", "--shots", json.dumps([[s0["start"], s0["end"]]]),
            "--fps", "24"]
    # the episode has more frames than this shot list covers: a clear error, nothing written
    assert job.main(argv) == 2 and not out.exists()
    argv[argv.index("--shots") + 1] = str(film["root"] / "shots.json")
    assert job.main(argv) == 3  # the other two shots have no keyframe
    shot = json.loads((out / "report.json").read_text())["shots"][0]
    refs = {f["i"]: f["ref"] for f in shot["per_frame"]}
    last = s0["end"] - 1
    assert shot["keyframes"] == [s0["start"], last] and shot["status"] == "done"
    assert refs[s0["start"] + 1] == s0["start"] and refs[last - 1] == last  # both directions
    assert shot["copied"] >= 1 and shot["colorized"] + shot["copied"] + shot["key"] == s0["end"] - s0["start"]


def test_long_episode_video_is_encoded_in_parallel_parts(film, ray_local, tmp_path, monkeypatch):
    """A long episode's episode.mp4 is encoded in parts (one Ray task each) and joined without
    re-encoding: every frame present in order, the parts folder gone, the same file as --local."""
    from lcmftn.jobs import VIDEO_PART_FRAMES_ENV, VIDEO_PARTS_DIR, plan_video_parts

    monkeypatch.setenv(VIDEO_PART_FRAMES_ENV, "12")  # 3 shots of ~12 frames -> 3 parts
    shots = [tuple(s) for s in json.loads((film["root"] / "shots.json").read_text())]
    assert len(plan_video_parts(shots)) == 3
    n = film["truth"]["frames"]
    outs = {}
    for mode in ("--local", "--actors"):
        out = tmp_path / mode.strip("-")
        extra = [mode] if mode == "--local" else [mode, "2"]
        assert job.main(_args(film, out, *extra, "--shots", str(film["root"] / "shots.json"))) == 0
        assert _video_frames(out / "episode.mp4") == n and not (out / VIDEO_PARTS_DIR).exists()
        outs[mode] = (out / "episode.mp4").read_bytes()
    assert outs["--local"] == outs["--actors"]
    frames = read_frames(tmp_path / "local" / "episode.mp4")  # the video shows the coloured frames
    pngs = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted((tmp_path / "local" / "frames").glob("*.png"))]
    assert len(frames) == len(pngs) == n
    assert max(float(np.abs(a.astype(int) - b.astype(int)).mean()) for a, b in zip(frames, pngs, strict=True)) < 6
