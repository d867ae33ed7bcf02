"""Leases on an output prefix (lcmftn.integrations.lease) on a local folder and on a real
SeaweedFS (conditional PUT/DELETE: If-None-Match / If-Match), plus the storage primitives."""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lcmftn.integrations import lease, storage

FAST = lease.LeaseConfig(ttl_s=2.0, heartbeat_s=0.5)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "out")
    s3 = request.getfixturevalue("s3_env")
    return s3.uri(f"lease-{request.node.name.replace('[', '-').rstrip(']')}-{time.monotonic_ns()}")


def test_conditional_primitives(root):
    uri = storage.join(root, "obj.json")
    etag = storage.create_exclusive(uri, b"one")
    with pytest.raises(storage.PreconditionFailedError, match="already exists"):
        storage.create_exclusive(uri, b"two")
    assert storage.read_versioned(uri) == (b"one", etag)
    with pytest.raises(storage.PreconditionFailedError):
        storage.replace_if_match(uri, b"three", etag + "x" if not etag.endswith('"') else '"0000"')
    new = storage.replace_if_match(uri, b"four", etag)
    assert storage.read_bytes(uri) == b"four" and new != etag
    with pytest.raises(storage.PreconditionFailedError):  # the old etag no longer matches
        storage.replace_if_match(uri, b"five", etag)
    with pytest.raises(storage.PreconditionFailedError):
        storage.delete_if_match(uri, etag)
    assert storage.read_bytes(uri) == b"four"
    storage.delete_if_match(uri, new)
    assert not storage.exists(uri)


def test_second_writer_refused_naming_the_holder(root):
    first = lease.acquire(root, owner="colorize", config=FAST)
    with pytest.raises(lease.LeaseHeldError) as err:
        lease.acquire(root, owner="colorize", config=FAST)
    msg = str(err.value)
    assert socket.gethostname() in msg and f"pid {first.record['pid']}" in msg
    assert first.record["created"] in msg and "_lease.json" in msg
    first.release()
    assert not storage.exists(lease.lease_uri(root))
    if not storage.is_s3(root):  # no lock/temp file left; the folder the lease made is gone too
        assert not Path(root).exists()
    lease.acquire(root, config=FAST).release()  # free again after release


def test_heartbeat_keeps_a_lease_alive_past_its_ttl(root):
    with lease.acquire(root, config=FAST) as held:
        time.sleep(FAST.ttl_s * 1.6)
        assert held.lost is None
        with pytest.raises(lease.LeaseHeldError):
            lease.acquire(root, config=FAST)
        assert held.record["expires_unix"] > time.time()


def test_expired_lease_is_taken_over_with_a_warning(root, caplog):
    stale = lease.acquire(root, owner="old", config=FAST)
    # a holder on another host (so its pid cannot be probed) that stopped renewing 1 min ago
    rec = dict(stale.record, host="elsewhere", expires_unix=time.time() - 60)
    storage.replace_if_match(stale.uri, json.dumps(rec).encode(), stale.etag)
    with caplog.at_level(logging.WARNING, logger="lcmftn.lease"):
        new = lease.acquire(root, owner="new", config=FAST)
    assert "took over the stale lease" in caplog.text and "elsewhere" in caplog.text
    assert json.loads(storage.read_bytes(new.uri))["owner"] == "new"
    with pytest.raises(lease.LeaseLostError):  # the old holder notices on its next renewal
        stale.renew()
    new.release()


def test_lease_of_a_dead_pid_on_this_host_is_stale_at_once(root, caplog):
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(proc.stdout)
    held = lease.acquire(root, config=FAST)
    rec = dict(held.record, pid=dead_pid, expires_unix=time.time() + 3600)
    storage.replace_if_match(held.uri, json.dumps(rec).encode(), held.etag)
    with caplog.at_level(logging.WARNING, logger="lcmftn.lease"):
        lease.acquire(root, config=FAST).release()
    assert "pid is gone" in caplog.text


def test_lost_lease_calls_on_lost(root):
    lost = []
    held = lease.acquire(root, config=FAST, on_lost=lost.append).start_heartbeat()
    storage.write_bytes_atomic(held.uri, b'{"owner": "intruder", "expires_unix": 1e12}')
    deadline = time.time() + 10
    while not lost and time.time() < deadline:
        time.sleep(0.1)
    held.release()
    assert lost and isinstance(lost[0], lease.LeaseLostError)
    assert b"intruder" in storage.read_bytes(held.uri)  # release never deletes another's lease


def test_garbage_lease_is_refused_with_the_file_named(root):
    storage.write_bytes_atomic(lease.lease_uri(root), b"\xff\xfe not json")
    with pytest.raises(lease.LeaseHeldError, match="unreadable lease object.*delete"):
        lease.acquire(root, config=FAST)


def _race(root: str, env: dict, go, done, q) -> None:
    import os

    os.environ.update(env)
    go.wait(60)
    try:
        held = lease.acquire(root, config=lease.LeaseConfig(ttl_s=300, heartbeat_s=60))
        q.put("won")
        done.wait(60)  # stay alive (the lease's pid must run) until every racer has tried
        held.release()
    except lease.LeaseHeldError:
        q.put("refused")


def test_concurrent_acquire_exactly_one_wins(root):
    import os

    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    ctx = mp.get_context("spawn")
    q, go, done = ctx.Queue(), ctx.Event(), ctx.Event()
    procs = [ctx.Process(target=_race, args=(root, env, go, done, q)) for _ in range(6)]
    for p in procs:
        p.start()
    time.sleep(3)  # let the spawned interpreters import, then release them together
    go.set()
    results = [q.get(timeout=90) for _ in procs]
    done.set()
    for p in procs:
        p.join(30)
    assert sorted(results) == ["refused"] * 5 + ["won"]


def test_config_validation():
    with pytest.raises(ValueError, match="heartbeat_s"):
        lease.LeaseConfig(ttl_s=1.0, heartbeat_s=1.0)
