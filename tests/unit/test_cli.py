"""The ``lcmftn`` console script, run as a subprocess like a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from lcmftn.data.video import probe_video, read_frames

LCMFTN = Path(sys.executable).parent / "lcmftn"  # installed by pyproject [project.scripts]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    assert LCMFTN.exists(), f"console script {LCMFTN} is not installed (pip install -e .)"
    return subprocess.run([str(LCMFTN), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def film(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("cli") / "film.mp4"
    r = run("synth", out, "--seed", 5, "--size", 64, "--num-shots", 3, "--shot-frames", 12, "--hold-prob", 1)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    return out, summary


def test_synth_writes_video_and_truth(film):
    path, summary = film
    truth = json.loads(Path(str(path) + ".json").read_text())
    assert summary["frames"] == truth["frames"] == 36 and summary["cuts"] == truth["cuts"] == [12, 24]
    assert summary["holds"] == len(truth["holds"]) > 0
    assert truth["config"]["seed"] == 5 and truth["config"]["hold_prob"] == 1
    assert probe_video(path).frames == 36


def test_shots_json(film):
    path, _ = film
    r = run("shots", path, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["frames"] == 36 and out["fps"] == 24.0
    assert out["shots"] == [{"start": 0, "end": 12}, {"start": 12, "end": 24}, {"start": 24, "end": 36}]
    r = run("shots", path, "--detector", "adaptive")
    assert r.returncode == 0 and "3 shots" in r.stdout


def test_lineart_video_image_and_folder(film, tmp_path):
    path, _ = film
    r = run("lineart", path, tmp_path / "la.mp4", "--method", "canny")
    assert r.returncode == 0, r.stderr
    frames = read_frames(tmp_path / "la.mp4")
    assert len(frames) == 36
    gray = frames[0].mean(axis=2)
    assert np.median(gray) > 230 and gray.min() < 60  # black lines on white paper
    src = tmp_path / "frames"
    src.mkdir()
    for i, f in enumerate(read_frames(path)[:4]):
        cv2.imwrite(str(src / f"f{i}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    r = run("lineart", src, tmp_path / "out", "--size", 32)
    assert r.returncode == 0, r.stderr
    outs = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in outs] == ["f0.png", "f1.png", "f2.png", "f3.png"]
    img = cv2.imread(str(outs[0]), cv2.IMREAD_UNCHANGED)
    assert img.shape == (32, 32) and img.dtype == np.uint8
    r = run("lineart", src / "f1.jpg", tmp_path / "one.png")
    assert r.returncode == 0 and cv2.imread(str(tmp_path / "one.png"), cv2.IMREAD_UNCHANGED).ndim == 2


def test_lineart_folder_goes_on_past_a_bad_image(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a1.png"), np.full((16, 16, 3), 200, np.uint8))
    (src / "a2.png").write_bytes(b"broken")
    cv2.imwrite(str(src / "a3.png"), np.full((16, 16, 3), 100, np.uint8))
    r = run("lineart", src, tmp_path / "out")
    assert r.returncode == 1
    assert "a2.png" in r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a1.png", "a3.png"]


def test_bad_input_exits_2_naming_the_file(tmp_path):
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all")
    r = run("shots", tmp_path / "junk.mp4", "--json")
    assert r.returncode == 2 and "junk.mp4" in r.stderr and r.stdout == ""
    r = run("lineart", tmp_path / "missing.mkv", tmp_path / "x.mkv")
    assert r.returncode == 2 and "missing.mkv" in r.stderr and not (tmp_path / "x.mkv").exists()
    assert run("synth", tmp_path / "f.mp4", "--size", 4).returncode == 2
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    r = run("lineart", tmp_path / "a.png", tmp_path / "a.mp4")
    assert r.returncode == 2 and "image output" in r.stderr
    assert run("frobnicate").returncode == 2


def test_workflow_subcommands_forward_to_python_m_workflows():
    r = run("ingest", "--help")
    assert r.returncode == 0, r.stderr
    assert "workflows.ingest" in r.stdout and "--films" in r.stdout


def test_cli_does_not_import_ray_or_mlflow():
    code = (
        "import sys, lcmftn.cli as c; c.build_parser();"
        "import lcmftn.data.shots, lcmftn.data.synthetic;"
        "bad = [m for m in ('ray', 'mlflow', 'boto3') if m in sys.modules]; assert not bad, bad"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_synth_generator_v2_and_v1_refuses_v2_knobs(tmp_path):
    out = tmp_path / "v2.mp4"
    r = run("synth", out, "--generator", "v2", "--size", 64, "--num-shots", 2, "--shot-frames", 8,
            "--effects", 0.5, "--zoom", 0.3)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    truth = json.loads(Path(summary["truth"]).read_text())
    assert summary["generator"] == "v2" and truth["version"] == 2 and truth["frames"] == 16
    assert truth["config"]["effects"] == 0.5 and truth["config"]["zoom"] == 0.3 and len(truth["motion"]) == 16
    bad = run("synth", tmp_path / "v1.mp4", "--generator", "v1", "--size", 64, "--effects", 0.5)
    assert bad.returncode == 2 and "effects" in bad.stderr and not (tmp_path / "v1.mp4").exists()
