"""The training job on real local Ray (2 CPU workers, gloo DDP), real SeaweedFS S3 and a real
MLflow sqlite store: checkpoints on S3, what the MLflow run holds, resume by run name, a killed
worker, and bad inputs refused before anything starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.datasets import upload_dir, write_tiny_dataset
from workflows import train

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("train-ds") / "ds", films=1,
                              shots_per_film=5, frames_per_shot=24, size_px=32, seed=11,
                              version="it-v1")


def _summary(capsys) -> dict:
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    assert lines, "no JSON summary line printed"
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def s3_run(ray_local, local_s3, dataset, tmp_path_factory):
    """One 2-worker smoke training reading from and checkpointing to SeaweedFS, tracked in a
    fresh sqlite MLflow store; yields (summary, argv, tracking URI)."""
    import contextlib
    import io

    mp = pytest.MonkeyPatch()
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    for k, v in {**local_s3.env(), "MLFLOW_TRACKING_URI": uri}.items():
        mp.setenv(k, v)
    data_uri = local_s3.uri("datasets", "train-it")
    upload_dir(dataset, data_uri)
    argv = ["--data", data_uri, "--recipe", "smoke", "--workers", "2",
            "--storage", local_s3.uri("runs"), "--run-name", "smoke-s3",
            "--experiment", "it-train", "--register-as", "lcmftn-it"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert train.main(argv) == 0
    lines = [ln for ln in out.getvalue().splitlines() if ln.startswith("{")]
    yield json.loads(lines[-1]), argv, uri
    mp.undo()


def test_two_worker_smoke_on_s3_tracked_in_mlflow(s3_run, local_s3, tmp_path):
    from mlflow import MlflowClient

    from lcmftn import checkpoint as ckpt_io
    from lcmftn.integrations import storage, tracking

    s, argv, uri = s3_run
    client = MlflowClient(uri)
    data_uri, runs_uri = argv[1], argv[7]
    assert s["epoch"] == 2 and s["step"] == 6 and s["start_epoch"] == 0 and s["workers"] == 2
    assert s["checkpoint"].startswith(runs_uri + "/smoke-s3/epoch0002")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in local_s3.env().items():
            mp.setenv(k, v)
        ckpt_files = storage.list_uris(s["checkpoint"])
    assert any(u.endswith("model/model.safetensors") for u in ckpt_files), ckpt_files
    assert any(u.endswith("train_state.pt") for u in ckpt_files)
    assert 0 < s["val_psnr"] < 60 and s["copyref_psnr"] > 0

    run = client.get_run(s["run_id"])
    params = run.data.params
    assert params["optim.lr"] == "0.0001" and params["window.width_frames"] == "8"
    assert params["data.uri"] == data_uri and params["data.version"] == "it-v1"
    assert params["data.manifest_uri"] == data_uri + "/manifest.json"
    assert params["vgg_source"].startswith("random init") and params["e_i_source"].startswith("off")
    assert params["cluster.workers"] == "2" and len(params["git_commit"]) >= 7
    steps = [m.step for m in client.get_metric_history(s["run_id"], "train/loss")]
    assert steps == [1, 2, 3, 4, 5, 6]  # rank 0 only: one value per step, not one per worker
    assert len(client.get_metric_history(s["run_id"], "val/psnr")) == 2
    assert "epoch/samples_per_s" in run.data.metrics and "val/psnr/s1_k1" in run.data.metrics
    # CMFT attention diagnostics at every validation (issue 12), with the known-shift pair
    assert len(client.get_metric_history(s["run_id"], "attn/cmft0/entropy")) == 2
    assert 0 <= run.data.metrics["attn/shift/cmft1/hit_rate"] <= 1
    samples = [a.path for a in client.list_artifacts(s["run_id"], "samples")]
    assert samples == ["samples/epoch_0001.png", "samples/epoch_0002.png"]

    assert s["model_uri"] == "models:/lcmftn-it/1"
    version = client.get_model_version("lcmftn-it", "1")
    assert version.run_id == s["run_id"] and version.tags["system"] == "lcmftn"
    assert version.tags["image_size_px"] == "32"
    local = tracking.resolve_model_uri(s["model_uri"], tmp_path / "fetched", tracking_uri=uri)
    _model, meta = ckpt_io.load_checkpoint(local)
    assert meta["system"] == "lcmftn" and meta["extra"]["epoch"] == 2


def test_rerun_with_the_same_name_resumes(s3_run, local_s3, monkeypatch, capsys):
    # The same run name again, asked for one more epoch: Train V2 restores the run from its
    # storage folder and training continues after epoch 2, in the same MLflow run.
    from mlflow import MlflowClient

    s, argv, uri = s3_run
    for k, v in {**local_s3.env(), "MLFLOW_TRACKING_URI": uri}.items():
        monkeypatch.setenv(k, v)
    assert train.main([*argv, "--set", "epochs=3"]) == 0
    r = _summary(capsys)
    assert (r["start_epoch"], r["epoch"], r["step"]) == (2, 3, 9)
    assert r["run_id"] == s["run_id"] and r["model_uri"] == "models:/lcmftn-it/2"
    steps = [m.step for m in MlflowClient(uri).get_metric_history(s["run_id"], "train/loss")]
    assert steps == list(range(1, 10))


def test_killed_worker_restarts_from_the_last_checkpoint(ray_local, mlflow_tracking, dataset,
                                                         capsys, tmp_path):
    # Rank 1 SIGKILLs its own process before step 4 (after the epoch-1 checkpoint at step 3).
    argv = ["--data", str(dataset), "--recipe", "smoke", "--workers", "2",
            "--storage", str(tmp_path / "runs"), "--run-name", "killed", "--experiment", "it-kill",
            "--register-as", "none", "--kill-worker-at-step", "4", "--max-failures", "1",
            "--set", "loss.lambda_vgg=0", "--set", "loss.vgg_weights=none"]
    assert train.main(argv) == 0
    s = _summary(capsys)
    assert s["start_epoch"] == 1, "the restarted workers did not resume from epoch 1"
    assert (s["epoch"], s["step"]) == (2, 6)
    assert s["model_uri"] is None
    ckpts = sorted(p.name for p in (tmp_path / "runs" / "killed").glob("epoch*"))
    assert [c[:9] for c in ckpts] == ["epoch0001", "epoch0002"]


@pytest.mark.parametrize("case", ["missing", "empty", "recipe", "model", "override",
                                  "too-small", "s3-unreachable"])
def test_bad_input_is_refused_before_anything_starts(case, tmp_path, monkeypatch, capsys, dataset):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    data, extra, expect = str(dataset), [], ""
    if case == "missing":
        data, expect = str(tmp_path / "nope"), "no such folder"
    elif case == "empty":
        empty = tmp_path / "empty"
        empty.mkdir()
        (empty / "manifest.json").write_text(json.dumps({"version": "x", "films": {
            "f": {"status": "failed", "reason": "undecodable video", "shards": []}}}))
        data, expect = str(empty), r"empty \(no committed film.*undecodable video"
    elif case == "recipe":
        extra, expect = ["--recipe", "huge"], "unknown recipe 'huge'"
    elif case == "model":
        extra, expect = ["--model", "deepanalogy"], "unknown or non-trainable system 'deepanalogy'"
    elif case == "override":
        extra, expect = ["--set", "optim.lr=fast"], "optim.lr: expected a float"
    elif case == "too-small":
        extra, expect = ["--set", "batch_size_per_worker=64"], "need at least 128"
    elif case == "s3-unreachable":
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
        data, expect = "s3://nobucket/ds", "cannot reach S3 endpoint http://127.0.0.1:9"
    argv = ["--data", data, "--recipe", "smoke", "--workers", "2", *extra]
    assert train.main(argv) == train.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "train: error:" in err
    import re

    assert re.search(expect, err), err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()
