"""The library imports no Ray / MLflow / boto3 (subprocess: a fresh interpreter's sys.modules)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("ray", "mlflow", "boto3", "botocore")


def _imported_top_level(modules: list[str]) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted({k.split('.')[0] for k in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_library_imports_no_ray_mlflow_boto3() -> None:
    mods = ["lcmftn", "lcmftn.models.registry", "lcmftn.losses", "lcmftn.metrics", "lcmftn.checkpoint",
            "lcmftn.training", "lcmftn.colorize", "lcmftn.data.dataset",
            "lcmftn.data.dataset_format", "lcmftn.ingest", "lcmftn.episode", "lcmftn.jobs",
            "lcmftn.train_plan", "lcmftn.calibration", "lcmftn.pixel_confidence"]
    loaded = _imported_top_level(mods)
    assert "torch" in loaded  # the check itself works
    bad = sorted(loaded & set(FORBIDDEN))
    assert not bad, f"importing {mods} pulled in {bad}"


def test_model_benchmark_needs_only_torch_numpy_opencv() -> None:
    """The GPU box has no ray/mlflow/av/pyarrow: the model benchmark must not import them."""
    if not (ROOT / "workflows" / "benchmark" / "model.py").is_file():
        pytest.fail("workflows/benchmark/model.py is missing")
    loaded = _imported_top_level(["workflows.benchmark.model"])
    bad = sorted(loaded & {*FORBIDDEN, "av", "pyarrow", "torchmetrics"})
    assert not bad, f"workflows.benchmark.model pulled in {bad}"


def test_model_benchmark_smoke(tmp_path) -> None:
    """The benchmark runs end to end at toy sizes and writes consistent JSON (no timing asserts)."""
    from workflows.benchmark import model as bench

    out = tmp_path / "bench.json"
    rc = bench.main(["--quick", "--device", "cpu", "--model-size", "tiny", "--sizes", "32",
                     "--systems", "copy-ref,lcmftn", "--batches", "1,2", "--cmft-sides", "16",
                     "--skip-cmft3", "--timer", "cpu", "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert [r["system"] for r in res["systems"]] == ["copy-ref", "lcmftn"]
    assert all(r["latency_ms"] > 0 and r["throughput_fps"] > 0 for r in res["systems"])
    cases = res["cmft"]["cases"]
    assert [c["N"] for c in cases] == [256]
    assert all("error" not in c["fused"] and "error" not in c["naive"] for c in cases), cases
    assert cases[0]["naive_matrix_bytes"] == 256 * 256 * 4
    assert bench.main(["--systems", "nope"]) == 2
