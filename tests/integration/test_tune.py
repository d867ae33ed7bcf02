"""A 2-trial smoke sweep on real local Ray (Train V2 inside Tune) with nested MLflow runs,
the best model registered, and the sweep resumable by name."""

from __future__ import annotations

import json

import pytest

from tests.helpers.datasets import write_tiny_dataset
from workflows import tune

pytestmark = pytest.mark.integration


def test_reused_sweep_name_is_bad_input_before_ray_starts(tmp_path, capsys, monkeypatch):
    """Pre-flight: an existing experiment state under <storage>/<name> without --resume is
    exit 2 naming the sweep, and Ray is never started (fast: no sweep runs)."""
    import workflows.common

    def no_ray(*a, **k):
        raise AssertionError("Ray must not start for bad input")

    monkeypatch.setattr(workflows.common, "ensure_ray", no_ray)
    data = write_tiny_dataset(tmp_path / "ds", shots_per_film=5, frames_per_shot=24, size_px=32)
    runs = tmp_path / "runs"
    argv = ["--data", str(data), "--recipe", "smoke", "--num-samples", "2", "--name", "old",
            "--storage", str(runs), "--set", "loss.vgg_weights=none", "--set",
            "loss.lambda_vgg=0"]
    base = tune.make_spec(data=str(data), recipe_name="smoke", model=None,
                          overrides=["loss.vgg_weights=none", "loss.lambda_vgg=0"], workers=1,
                          gpus_per_worker=0, cpus_per_worker=None, run_name="old",
                          storage=str(runs), experiment="x", register_as=None, max_failures=1)
    assert tune.check_sweep_name(base, "old", resume=False) is False  # nothing there yet
    (runs / "old").mkdir(parents=True)
    assert tune.check_sweep_name(base, "old", resume=False) is False  # a folder is no state
    (runs / "old" / "tuner.pkl").write_bytes(b"state")  # what Tuner.can_restore looks for
    assert tune.check_sweep_name(base, "old", resume=True) is True
    assert tune.check_sweep_name(base, "new", resume=False) is False
    with pytest.raises(tune.BadInput, match="pass --resume"):
        tune.check_sweep_name(base, "old", resume=False)
    assert tune.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("tune: error: sweep ") and str(runs / "old") in err


def test_two_trial_smoke_sweep_with_nested_runs(ray_local, mlflow_client, mlflow_tracking,
                                                tmp_path, capsys):
    data = write_tiny_dataset(tmp_path / "ds", shots_per_film=5, frames_per_shot=24, size_px=32,
                              seed=5)
    argv = ["--data", str(data), "--recipe", "smoke", "--num-samples", "2", "--name", "sweep",
            "--storage", str(tmp_path / "runs"), "--experiment", "it-tune",
            "--register-as", "lcmftn-tuned", "--set", "epochs=2",
            "--set", "loss.vgg_weights=none", "--set", "loss.lambda_vgg=0"]
    assert tune.main(argv) == 0
    out = capsys.readouterr().out
    summary = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
    assert summary["trials"] == 2 and summary["best_val_psnr"] > 0
    assert "| trial | epoch | val_psnr |" in out  # the best-trials table

    exp = mlflow_client.get_experiment_by_name("it-tune")
    runs = mlflow_client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.info.run_id == summary["parent_run_id"]][0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2
    names = {c.info.run_name for c in children}
    assert len(names) == 2 and all(n.startswith("trial_") for n in names)
    for c in children:
        # ASHA may stop the weaker trial at the epoch-1 rung: KILLED and tagged so.
        stopped = c.data.tags["tune.stopped_early"] == "True"
        assert c.info.status == ("KILLED" if stopped else "FINISHED")
        assert "tune.lambda_l1" in c.data.params and "window.width_frames" in c.data.params
        assert c.data.params["val.every_epochs"] == "1"
        assert "val/psnr" in c.data.metrics
    # The trial's sampled λ1 really reached its training config.
    for c in children:
        assert float(c.data.params["loss.lambda_l1"]) == float(c.data.params["tune.lambda_l1"])
    assert parent.data.metrics["best_val_psnr"] == pytest.approx(summary["best_val_psnr"])
    assert parent.data.params["search.lambda_vgg"].startswith("held at 0")

    assert summary["model_uri"] == "models:/lcmftn-tuned/1"
    version = mlflow_client.get_model_version("lcmftn-tuned", "1")
    best_child = [c for c in children if c.info.run_name == f"trial_{summary['best_trial']}"][0]
    assert version.run_id == best_child.info.run_id

    # Same name without --resume is bad input (exit 2); with --resume the finished sweep is
    # restored (nothing left to run) and reported again under the same parent run.
    capsys.readouterr()
    assert tune.main(argv) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "runs" / "sweep") in err and "pass --resume" in err
    assert tune.main([*argv, "--resume", "--register-as", "none"]) == 0
    again = json.loads([ln for ln in capsys.readouterr().out.splitlines()
                        if ln.startswith("{")][-1])
    assert again["parent_run_id"] == summary["parent_run_id"] and again["trials"] == 2
    assert again["best_trial"] == summary["best_trial"]
