"""``python -m workflows.evaluate`` smoke run (tiny sizes, 2 steps, 2 seeds, a trained system and
two references): the tables, plots, contact sheet and ONE MLflow run with all of it."""

from __future__ import annotations

import json
import math

import cv2
import pytest

from workflows import evaluate

pytestmark = pytest.mark.integration

SYSTEMS = ("lcmftn", "deep-analogy", "copy-ref")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate")
    uri = f"sqlite:///{out / 'mlflow.db'}"
    rc = evaluate.main(["--out", str(out), "--recipe", "smoke", "--size", "32", "--steps", "2",
                        "--seeds", "0,1", "--systems", ",".join(SYSTEMS), "--train-films", "1",
                        "--test-films", "1", "--shots-per-film", "2", "--shot-frames", "12",
                        "--strides", "1,2", "--modes", "chain,anchor", "--whole-shots", "1",
                        "--tracking-uri", uri, "--experiment", "eval-smoke"])
    assert rc == 0
    return out, uri


def test_report_files(run):
    out, _ = run
    rep = out / "report"
    tables = (rep / "tables.md").read_text()
    for name in SYSTEMS:
        assert f"| {name} |" in tables
    assert "Table 1. PSNR/SSIM, stride 1" in tables and "Table 2. PSNR/SSIM, stride 2" in tables
    assert "frame4 (iv:8)" in tables and "Time per frame" in tables and "chain PSNR" in tables
    for png in ("psnr_vs_interval.png", "drift.png", "contact_sheet.png"):
        img = cv2.imread(str(rep / png))
        assert img is not None and img.shape[0] > 32, png
    sheet = cv2.imread(str(rep / "contact_sheet.png"))
    assert sheet.shape[0] >= 32 * (2 + len(SYSTEMS))  # line art + truth + one row per system
    res = json.loads((rep / "results.json").read_text())
    assert res["seeds"] == [0, 1] and set(res["aggregate"]) == set(SYSTEMS)
    assert {e["split"] for e in res["split"].values()} == {"train", "test"}
    for name in SYSTEMS:
        assert len(res["per_seed"][name]) == 2
        agg = res["aggregate"][name]
        assert agg["protocol/psnr"]["n"] == 2 and math.isfinite(agg["protocol/psnr"]["std"])
        assert math.isfinite(agg["whole/chain/flicker"]["mean"])
    # copy-ref is the protocol's copy baseline; the trained model was trained per seed
    cr = res["aggregate"]["copy-ref"]
    assert cr["protocol/psnr"]["mean"] == pytest.approx(cr["protocol/copyref_psnr"]["mean"], abs=1e-6)
    assert [r["train"]["steps"] for r in res["per_seed"]["lcmftn"]] == [2, 2]


def test_one_mlflow_run_holds_it_all(run):
    from mlflow import MlflowClient

    out, uri = run
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("eval-smoke")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    r = runs[0]
    assert r.info.status == "FINISHED" and r.data.params["seeds"] == "0,1"
    assert "lcmftn/protocol/psnr" in r.data.metrics and "copy-ref/protocol/psnr_std" in r.data.metrics
    assert "deep-analogy/whole/chain/psnr" in r.data.metrics
    names = {a.path for a in client.list_artifacts(r.info.run_id, "report")}
    assert {"report/tables.md", "report/results.json", "report/contact_sheet.png",
            "report/psnr_vs_interval.png", "report/drift.png"} <= names


def test_bad_system_is_a_usage_error(tmp_path, capsys):
    assert evaluate.main(["--out", str(tmp_path), "--systems", "lcmftn,nope"]) == 2
    assert "nope" in capsys.readouterr().err
