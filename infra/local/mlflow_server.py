"""A local MLflow tracking server: sqlite backend, artifacts on local S3 (SeaweedFS) or a folder.

    python -m infra.local.mlflow_server start --dir .mlflow-server --with-seaweedfs   # foreground
    python -m infra.local.mlflow_server start --dir .mlflow-server --detach          # background
    python -m infra.local.mlflow_server stop --dir .mlflow-server

Then point clients at it: ``export MLFLOW_TRACKING_URI=http://127.0.0.1:<port>`` (printed).
The server proxies artifacts (``--artifacts-destination``), so clients need no S3 settings.

Design notes
- Binds 127.0.0.1 only. One gunicorn/uvicorn worker (``-w 1``): enough locally, and sqlite
  dislikes concurrent writers.
- ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``: otherwise MLflow 3 starts job-consumer
  processes that outlive the server.
- The server runs in its own process group (``start_new_session``) and is stopped with
  SIGTERM to the whole group (then SIGKILL after a grace period), so no child is left behind.
- S3 endpoint and credentials come from the standard AWS variables (or from the SeaweedFS
  fixture started with ``--with-seaweedfs``); ``MLFLOW_S3_ENDPOINT_URL`` is derived from
  ``AWS_ENDPOINT_URL`` for the server process only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalMlflowServer:
    """``mlflow server`` on 127.0.0.1 as a context manager (``.tracking_uri`` once started)."""

    def __init__(self, workdir: str | Path, port: int | None = None,
                 artifacts_destination: str | None = None, env: dict[str, str] | None = None,
                 ready_timeout_s: float = 60.0) -> None:
        self.workdir = Path(workdir).resolve()
        self.port = port or free_port()
        self.artifacts_destination = artifacts_destination or str(self.workdir / "artifacts")
        self.extra_env = dict(env or {})
        self.ready_timeout_s = ready_timeout_s
        self.proc: subprocess.Popen | None = None

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        env = {**os.environ, **self.extra_env}
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        env.pop("MLFLOW_TRACKING_URI", None)
        if env.get("AWS_ENDPOINT_URL") and not env.get("MLFLOW_S3_ENDPOINT_URL"):
            env["MLFLOW_S3_ENDPOINT_URL"] = env["AWS_ENDPOINT_URL"]
        return env

    def start(self) -> LocalMlflowServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{self.workdir / 'mlflow.db'}",
            "--artifacts-destination", self.artifacts_destination,
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 (kept open for the child)
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self._env(),
                                     cwd=self.workdir, start_new_session=True)
        log.close()
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.workdir / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}:\n{tail}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.tracking_uri}/health", timeout=2) as r:
                    if r.status == 200:
                        (self.workdir / "server.json").write_text(json.dumps(
                            {"pid": self.proc.pid, "port": self.port,
                             "tracking_uri": self.tracking_uri}))
                        return self
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"mlflow server not ready on {self.tracking_uri} after "
                           f"{self.ready_timeout_s:.0f}s (log: {self.workdir / 'server.log'})")

    def stop(self, grace_s: float = 10.0) -> None:
        if self.proc is None:
            return
        stop_process_group(self.proc.pid, grace_s)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=1)
        self.proc = None
        with contextlib.suppress(FileNotFoundError):
            (self.workdir / "server.json").unlink()

    def __enter__(self) -> LocalMlflowServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_process_group(pid: int, grace_s: float = 10.0) -> None:
    """SIGTERM the process group led by ``pid``; SIGKILL it after ``grace_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infra.local.mlflow_server", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["start", "stop"])
    p.add_argument("--dir", default=".mlflow-server", help="state folder (db, log, pid file)")
    p.add_argument("--port", type=int, default=None, help="default: a free port")
    p.add_argument("--artifacts", default=None,
                   help="artifact destination (s3://bucket/prefix or a folder; default DIR/artifacts)")
    p.add_argument("--with-seaweedfs", action="store_true",
                   help="also start a local SeaweedFS S3 and keep artifacts there")
    p.add_argument("--detach", action="store_true", help="start in the background and return")
    args = p.parse_args(argv)
    workdir = Path(args.dir)

    if args.action == "stop":
        state = workdir / "server.json"
        if not state.is_file():
            print(f"no server state in {state}", file=sys.stderr)
            return 1
        stop_process_group(int(json.loads(state.read_text())["pid"]))
        state.unlink(missing_ok=True)
        print("mlflow server stopped")
        return 0

    if args.detach and args.with_seaweedfs:  # before anything starts
        print("--detach cannot be combined with --with-seaweedfs", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {}
        artifacts = args.artifacts
        if args.with_seaweedfs:
            from infra.local.seaweedfs import LocalS3

            s3 = stack.enter_context(LocalS3(workdir / "seaweedfs"))
            env.update(s3.env())
            artifacts = artifacts or f"s3://{s3.bucket}/mlflow"
        server = LocalMlflowServer(workdir, args.port, artifacts, env)
        if args.detach:
            server.start()
            print(f"MLFLOW_TRACKING_URI={server.tracking_uri} (pid {server.proc.pid}; "
                  f"stop: python -m infra.local.mlflow_server stop --dir {workdir})")
            return 0
        stack.enter_context(server)
        print(f"MLFLOW_TRACKING_URI={server.tracking_uri}  artifacts: {server.artifacts_destination}",
              flush=True)
        stop = {"now": False}

        def _handler(signum, frame):
            stop["now"] = True

        signal.signal(signal.SIGTERM, _handler)
        try:
            while not stop["now"] and server.proc is not None and server.proc.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        if not stop["now"] and server.proc is not None and server.proc.poll() is not None:
            # The server died on its own: say so (exit 1), do not report a clean stop.
            print(f"mlflow server exited with {server.proc.returncode}; log: "
                  f"{server.workdir / 'server.log'}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
