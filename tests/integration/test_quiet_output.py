"""Issue 10 "quiet runs": a real job's default console output is its bar + summary, no chatter.

Runs ``python -m workflows.ingest`` (Ray Data on the local Ray) on two tiny films, stdout and
stderr captured (not a TTY: the plain-text bar), and checks the line count and that none of
the chatter patterns of a default run before the fix (Ray Data's progress blocks, the
``ray_remote_args_fn`` deprecation warning, per-film log lines) is there; then ``-v`` brings
the per-film lines back (so the patterns would be seen if they were printed)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lcmftn.data.synthetic import FilmConfig, write_film

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHATTER = [
    r"Running Dataset", r"logging_progress", r"Total Progress", r"streaming_executor",
    r"ray_remote_args", r"Deprecat", r"Reporting training result", r"TrainingReport\(",
    r"INFO workflows\.ingest: film ", r"\(pid=\d+\)", r"Progress bars disabled",
]


def _ingest(films: Path, out: Path, ray_local, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_ADDRESS=ray_local.get_runtime_context().gcs_address)
    for key in ("RAY_DATA_DISABLE_PROGRESS_BARS", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"):
        env.pop(key, None)  # the job must set them itself
    return subprocess.run([sys.executable, "-m", "workflows.ingest", "--films", str(films / "*.mp4"),
                           "--out", str(out), "--size", "64", *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_ingest_default_output_is_a_bar_and_a_summary(ray_local, tmp_path):
    films = tmp_path / "films"
    for seed in (1, 2):
        write_film(films / f"f{seed}.mp4", FilmConfig(seed=seed, size=64, num_shots=2, shot_frames=12,
                                                      num_characters=1, still_prob=0.0))
    proc = _ingest(films, tmp_path / "ds", ray_local)
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = (proc.stdout + proc.stderr).splitlines()
    hits = [line for line in console for pat in CHATTER if re.search(pat, line)]
    assert not hits, "\n".join(console)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["ok"] == 2
    assert any(line.startswith("ingest [") and "2/2 films 100%" in line for line in console), console
    assert len(console) <= 6, "\n".join(console)  # bar (start, end) + summary + JSON (+ Ray notice)

    loud = _ingest(films, tmp_path / "ds-v", ray_local, "-v")
    assert loud.returncode == 0, loud.stderr[-3000:]
    assert re.search(r"INFO workflows\.ingest: film f1: ok", loud.stderr), loud.stderr[-3000:]
