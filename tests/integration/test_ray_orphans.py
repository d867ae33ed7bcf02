"""A SIGKILLed driver of a local Ray run leaves no Ray process of its session behind
(lcmftn.integrations.ray_watchdog, started by workflows.common.ensure_ray)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lcmftn.integrations.ray_watchdog import _descendants, _same

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")]

ROOT = Path(__file__).resolve().parents[2]
DRIVER = """
import os, sys, time
from workflows.common import ensure_ray
ensure_ray()
import ray
ray.get(ray.remote(lambda: 1).remote())  # a worker process exists too
print("READY", flush=True)
time.sleep(600)
"""


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"


def _ray_descendants(pid: int) -> dict[int, int]:
    return {p: t for p, t in _descendants(pid).items() if "ray_watchdog" not in _cmdline(p)}


def _wait_ready(proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.strip() == "READY":
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"driver did not start Ray (rc {proc.poll()}): {proc.stderr.read()[-2000:] if proc.poll() is not None else ''}")


def test_sigkilled_driver_leaves_no_ray_process(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_ready(proc, 180)
        time.sleep(2)  # the agents are up and the watchdog has snapshot them
        victims = _ray_descendants(proc.pid)
        names = " ".join(_cmdline(p) for p in victims)
        assert "raylet" in names and "DashboardAgent" in names and "RuntimeEnvAgent" in names, names
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        t0 = time.time()
        alive = victims
        while alive and time.time() < t0 + 30:  # bounded: unwatched, the agents outlive this
            time.sleep(0.5)
            alive = {p: t for p, t in alive.items() if _same(p, t)}
        left = [f"{p} {_cmdline(p)[:60]}" for p in alive]
        for p in alive:  # never leave them for the next test
            os.kill(p, signal.SIGKILL)
        print(f"all {len(victims)} Ray processes of the session gone {time.time() - t0:.1f} s after SIGKILL")
        assert not left, f"Ray processes survived the driver by 30 s: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
