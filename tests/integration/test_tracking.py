"""MLflow helpers against a real sqlite store and a real local ``mlflow server`` whose
artifacts live on SeaweedFS: runs, params, the registry and every model URI form colorize
accepts."""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch

from lcmftn import checkpoint as ckpt_io
from lcmftn.integrations import tracking
from lcmftn.models import registry

pytestmark = pytest.mark.integration


@pytest.fixture
def ckpt_dir(tmp_path):
    model = registry.build_generator("lcmftn", "tiny")
    cfg = registry.generator_config("lcmftn", "tiny")
    from dataclasses import asdict

    return ckpt_io.save_checkpoint(tmp_path / "ckpt", model, "lcmftn", asdict(cfg),
                                   extra={"epoch": 1})


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values(), strict=True))


def test_runs_resume_by_name_and_params_drop_secrets(mlflow_client, mlflow_tracking):
    run = tracking.start_run("exp", "r1", tags={"k": "v"})
    assert tracking.start_run("exp", "r1") == run  # same name reopens the run
    assert tracking.start_run("exp", "r1", resume=False) != run
    tracking.log_params(run, {"optim.lr": 1e-4, "aws_secret_access_key": "x", "token": "y"})
    tracking.log_params(run, {"optim.lr": 1e-4, "epochs": 3})  # re-logging on resume is fine
    params = mlflow_client.get_run(run).data.params
    assert params == {"optim.lr": "0.0001", "epochs": "3"}
    tracking.log_metrics(run, {"a": 1.0, "nan": float("nan")}, step=2)
    assert set(mlflow_client.get_run(run).data.metrics) == {"a"}
    child = tracking.start_run("exp", "child", parent_run_id=run)
    assert mlflow_client.get_run(child).data.tags["mlflow.parentRunId"] == run
    assert tracking.find_run("exp", "child", parent_run_id=run) == child


def test_register_and_resolve_every_uri_form(mlflow_tracking, ckpt_dir, tmp_path):
    run = tracking.start_run("exp", "reg")
    v1 = tracking.register_checkpoint(run, ckpt_dir, "lcmftn-t", tags={"system": "lcmftn"},
                                      alias="champion")
    v2 = tracking.register_checkpoint(run, ckpt_dir, "lcmftn-t", as_pyfunc=False)  # the old folder form
    assert (v1, v2) == ("1", "2")
    original, _ = ckpt_io.load_checkpoint(ckpt_dir)
    # "@latest" is MLflow's reserved alias for the highest version (workflows.demo relies on it;
    # it cannot be set with register_checkpoint(alias="latest")).
    for i, uri in enumerate(["models:/lcmftn-t@champion", "models:/lcmftn-t/2", "models:/lcmftn-t@latest",
                             f"runs:/{run}/{tracking.CHECKPOINT_ARTIFACT_PATH}",
                             f"runs:/{run}/{tracking.MODEL_ARTIFACT_PATH}", str(ckpt_dir)]):
        path = tracking.resolve_model_uri(uri, tmp_path / f"dl{i}")
        model, meta = ckpt_io.load_checkpoint(path)
        assert meta["system"] == "lcmftn" and _same_weights(model, original), uri
    with pytest.raises(ValueError, match="models:/nope/1"):
        tracking.resolve_model_uri("models:/nope/1", tmp_path / "x")
    with pytest.raises(ValueError, match="no such checkpoint path"):
        tracking.resolve_model_uri(str(tmp_path / "missing"), tmp_path / "y")
    with pytest.raises(ValueError, match="not a checkpoint directory"):
        tracking.register_checkpoint(run, tmp_path, "lcmftn-t")


def test_resolve_an_s3_checkpoint(s3_env, ckpt_dir, tmp_path):
    from tests.helpers.datasets import upload_dir

    uri = s3_env.uri("models", "ck1")
    upload_dir(ckpt_dir, uri)
    path = tracking.resolve_model_uri(uri, tmp_path)
    _model, meta = ckpt_io.load_checkpoint(path)
    assert meta["extra"]["epoch"] == 1


def test_local_server_with_seaweedfs_artifacts_starts_logs_and_stops(s3_env, ckpt_dir, tmp_path):
    from infra.local.mlflow_server import LocalMlflowServer

    with LocalMlflowServer(tmp_path / "srv", artifacts_destination=s3_env.uri("mlflow"),
                           env=s3_env.env()) as server:
        pid = server.proc.pid
        run = tracking.start_run("srv-exp", "r", tracking_uri=server.tracking_uri)
        version = tracking.register_checkpoint(run, ckpt_dir, "lcmftn-srv",
                                               tracking_uri=server.tracking_uri)
        path = tracking.resolve_model_uri(f"models:/lcmftn-srv/{version}", tmp_path / "dl",
                                          tracking_uri=server.tracking_uri)
        assert (path / "model.safetensors").is_file()
        from lcmftn.integrations import storage

        # proxied artifacts really landed on S3
        assert any(u.endswith("model.safetensors") for u in storage.list_uris(s3_env.uri("mlflow")))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(pid, signal.SIGKILL)
        pytest.fail("mlflow server process group still alive after stop()")


def test_a_folder_with_several_checkpoints_is_ambiguous(ckpt_dir, tmp_path):
    # e.g. a Ray run folder (one checkpoint per epoch): never silently pick one of them.
    import shutil

    run = tmp_path / "run"
    for epoch in (1, 2):
        shutil.copytree(ckpt_dir, run / f"epoch{epoch:04d}" / "model")
    with pytest.raises(ValueError, match=r"holds 2 checkpoints \(epoch0001/model, epoch0002/model\)"):
        tracking.resolve_model_uri(str(run), tmp_path / "dl")
    assert tracking.resolve_model_uri(str(run / "epoch0002"), tmp_path / "dl") == run / "epoch0002" / "model"


def test_server_cli_refuses_detach_with_seaweedfs_before_starting_anything(tmp_path, capsys):
    from infra.local.mlflow_server import main

    assert main(["start", "--dir", str(tmp_path / "srv"), "--detach", "--with-seaweedfs"]) == 2
    assert "cannot be combined" in capsys.readouterr().err
    assert not (tmp_path / "srv" / "seaweedfs").exists()  # no S3 server was started and dropped


_RACE = """
import sys, time
from lcmftn.integrations import tracking
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
print(tracking.start_run("race", "r" + sys.argv[3], tracking_uri=sys.argv[1]))
"""


def test_jobs_started_together_on_a_fresh_sqlite_store_all_get_their_run(tmp_path):
    # MLflow migrates a fresh sqlite store on first use in each process; without the init lock
    # (tracking._init_sqlite_store) processes starting together fail ("table ... already exists",
    # alembic "expected to match one row"): measured 8 of 9 processes, 3 at a time.
    import subprocess
    import sys
    from pathlib import Path

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    start = time.time() + 8  # every process is waiting by then (mlflow is imported after the barrier)
    procs = [subprocess.Popen([sys.executable, "-c", _RACE, uri, str(start), str(i)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    runs = {out.strip().splitlines()[-1] for out, _ in outs}
    assert len(runs) == 4
    assert (tmp_path / "mlflow.db.init-lock").exists()


def test_sqlite_lock_path_ignores_the_query_and_memory_stores(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert tracking._sqlite_path("sqlite:///mlflow.db?timeout=30") == tmp_path / "mlflow.db"
    assert tracking._sqlite_path(f"sqlite:///{tmp_path}/a.db") == tmp_path / "a.db"
    assert tracking._sqlite_path("sqlite:///:memory:") is None
    # a folder where no lock file can be made: the store is used unlocked, nothing raises
    (tmp_path / "blocked").write_text("a file where the folder would be")
    tracking._init_sqlite_store(f"sqlite:///{tmp_path}/blocked/sub/mlflow.db")
