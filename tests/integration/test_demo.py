"""`make demo` end to end at test scale: films -> ingest -> train -> register -> colorize."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration


def test_demo_runs_every_stage(ray_local, mlflow_client, tmp_path, capsys):
    from workflows import demo

    out = tmp_path / "demo"
    rc = demo.main(["--out", str(out), "--films", "2", "--seconds", "4", "--size", "64",
                    "--recipe", "smoke", "--set", "epochs=1", "--set", "steps_per_epoch=2"])
    assert rc == 0
    captured = capsys.readouterr()
    summary = json.loads([ln for ln in captured.out.splitlines() if ln.startswith('{"out"')][-1])
    # Quiet by default (issue 10): the stages' JSON lines go to OUT/logs/, no deprecation warning
    # from our ingest call, and the output ends with where to look. (Worker output is not checked
    # here: the fixture's ray.init(log_to_driver=True) forwards it; the jobs' own ray.init does
    # not, see tests/integration/test_quiet_output.py and the README's measured demo output.)
    console = captured.out + captured.err
    assert "ray_remote_args" not in console
    assert json.loads((out / "logs" / "train.out").read_text().strip().splitlines()[-1])["run_id"]
    assert "report.html" in captured.out.splitlines()[-3] and "mlflow ui" in captured.out.splitlines()[-1]
    assert (out / "confidence_calibration.json").is_file() and "flagged" in summary
    episode = summary["episode_frames"]
    assert episode == 96  # 4 s at 24 fps
    frames = sorted((out / "colorized" / "frames").glob("*.png"))
    assert len(frames) == episode
    assert (out / "colorized" / "episode.mp4").stat().st_size > 0
    report = json.loads((out / "colorized" / "report.json").read_text())
    assert report["totals"]["frames_written"] == episode
    # The model went through the registry: the demo's colorize stage loaded models:/lcmftn-demo@latest.
    version = mlflow_client.get_model_version_by_alias("lcmftn-demo", "latest")
    assert str(version.version) == "1"
    # Quality figures are computed (not asserted: a 2-step model is not meant to be good).
    assert 0 < summary["episode_psnr"] < 100 and 0 < summary["keyframe_copy_psnr"] <= 100
