"""Parent-death watchdog for a LOCAL Ray instance started by a driver (``ray.init()`` with no
cluster): when the driver dies, even by SIGKILL, every process it spawned is ended.

Why (measured on Ray 2.60, see README "Faults and bad input"): ``ray.init()`` makes the driver
the parent of ``gcs_server``, ``raylet``, the dashboard and the monitors; the raylet is the
parent of ``ray::DashboardAgent``, ``ray::RuntimeEnvAgent`` and the workers. After a SIGKILL of
the driver, raylet and GCS fate-share and exit within seconds, but the two agents detect the dead
raylet ("Raylet is dead! Exiting Runtime Env Agent" in runtime_env_agent.log) and then block in
their exit path reporting the death to the GCS, which is gone too (``report_raylet_error_logs``
-> ``publish_error_to_driver`` retries against the dead GCS). They stay orphaned (parent pid 1)
for a minute or more, holding ports and memory.

Design: ``start(driver_pid)`` spawns ``python -m lcmftn.integrations.ray_watchdog`` in its own
session (so it survives the driver's process group being killed). It snapshots the driver's
descendants every ``interval_s`` from ``/proc`` (Linux; pid + start time, so a recycled pid is never touched); once
the driver is gone it SIGTERMs the recorded processes that still run, waits ``grace_s``, then
SIGKILLs the rest, and exits. A process spawned in the last ``interval_s`` before the crash may
be missed (it is then reaped by Ray's own fate-sharing). Only processes descended from this
driver are ever signalled: a cluster joined with ``address=`` has no such descendants.
Disable with ``LCMFTN_RAY_WATCHDOG=0``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

ENV_DISABLE = "LCMFTN_RAY_WATCHDOG"


def start(driver_pid: int | None = None, interval_s: float = 0.5, grace_s: float = 3.0) -> subprocess.Popen | None:
    """Spawn the watchdog for ``driver_pid`` (default: this process); None when disabled."""
    if os.environ.get(ENV_DISABLE, "1") == "0":
        return None
    cmd = [sys.executable, "-m", "lcmftn.integrations.ray_watchdog", "--pid", str(driver_pid or os.getpid()),
           "--interval", str(interval_s), "--grace", str(grace_s)]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)


def _stat(pid: int) -> tuple[int, int, str] | None:
    """``(parent pid, start time in clock ticks, state)`` from ``/proc/<pid>/stat`` (Linux)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[1]), int(fields[19]), fields[0]


def _descendants(root: int) -> dict[int, int]:
    """``{pid: start ticks}`` of every live descendant of ``root``."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None and st[2] != "Z":
                children.setdefault(st[0], []).append(int(name))
                starts[int(name)] = st[1]
    out, todo = {}, [root]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out[c] = starts[c]
                todo.append(c)
    return out


def _same(pid: int, start_ticks: int) -> bool:
    st = _stat(pid)
    return st is not None and st[1] == start_ticks and st[2] != "Z"


def _signal_all(procs: dict[int, int], sig: int) -> None:
    for pid, ticks in procs.items():
        if _same(pid, ticks):
            try:
                os.kill(pid, sig)
            except OSError:
                pass


def watch(driver_pid: int, interval_s: float = 0.5, grace_s: float = 3.0) -> int:
    """Block until ``driver_pid`` dies, then end its recorded descendants; returns how many
    still ran when it died."""
    me = _stat(driver_pid)
    if me is None:
        return 0
    known: dict[int, int] = {}
    own = os.getpid()
    while _same(driver_pid, me[1]):
        known.update({p: t for p, t in _descendants(driver_pid).items() if p != own})
        time.sleep(interval_s)
    victims = {p: t for p, t in known.items() if _same(p, t)}
    _signal_all(victims, signal.SIGTERM)
    deadline = time.time() + grace_s
    while time.time() < deadline and any(_same(p, t) for p, t in victims.items()):
        time.sleep(0.1)
    _signal_all(victims, signal.SIGKILL)
    return len(victims)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--grace", type=float, default=3.0)
    args = ap.parse_args(argv)
    watch(args.pid, args.interval, args.grace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
