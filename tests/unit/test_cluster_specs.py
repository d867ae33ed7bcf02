"""The cluster specs in ``cluster/`` must stay runnable: every entrypoint parses with its CLI."""

from __future__ import annotations

import importlib
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RAYJOBS = sorted((ROOT / "cluster" / "kuberay").glob("rayjob-*.yaml"))


def _entrypoint(path: Path) -> list[str]:
    spec = yaml.safe_load(path.read_text())
    return shlex.split(spec["spec"]["entrypoint"])


def test_every_workflow_has_a_rayjob():
    names = {p.stem.removeprefix("rayjob-") for p in RAYJOBS}
    assert names == {"ingest", "train", "tune", "colorize"}


@pytest.mark.parametrize("path", RAYJOBS, ids=lambda p: p.stem)
def test_rayjob_entrypoint_parses(path: Path):
    argv = _entrypoint(path)
    assert argv[:2] == ["python", "-m"], argv
    module = importlib.import_module(argv[2])
    parser = module.build_parser()
    try:
        parser.parse_args(argv[3:])
    except SystemExit as exc:  # argparse exits on unknown/missing flags
        pytest.fail(f"{path.name}: entrypoint does not parse with {argv[2]}: exit {exc.code}")


def test_rayjobs_and_cluster_carry_no_secrets():
    for path in [*RAYJOBS, *(ROOT / "cluster").glob("*.yaml"), ROOT / "cluster/kuberay/raycluster.yaml"]:
        text = path.read_text().lower()
        for word in ("aws_secret_access_key:", "password:", "token:"):
            assert word not in text, f"{path.name} holds {word}"
