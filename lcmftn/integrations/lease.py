"""A lease on an output prefix: one writer per ``--out`` at a time (local folders and S3).

    with lease.acquire(out, run_id="colorize") :     # LeaseHeldError when another run holds it
        ...                                          # a heartbeat thread renews it meanwhile

The lock object is ``<out>/_lease.json``::

    {"owner": "colorize", "run_id": "<uuid>", "host": "node-3", "pid": 4242,
     "created": "2026-12-01T19:50:00Z", "created_unix": ..., "renewed_unix": ..., "expires_unix": ...}

Design decisions:

* Creation is atomic on both back ends (:func:`storage.create_exclusive`): local ``link`` of a
  complete temp file (fails when the name exists); S3 ``PUT`` with ``If-None-Match: *``.
  Renewal, takeover and release are compare-and-swap on the etag read
  (:func:`storage.replace_if_match` / :func:`storage.delete_if_match`; S3 ``If-Match``). Verified
  against SeaweedFS 4.48 (tests/integration/test_lease_s3.py): a second create, a stale
  ``If-Match`` PUT and a stale ``If-Match`` DELETE are all refused with 412, so no fallback is
  needed there. An S3 service that ignores the conditions would break the guarantee; the
  integration test is the check to run against a new endpoint.
* A lease expires ``ttl_s`` after its last renewal (the holder's clock; keep clocks in NTP
  sync). An expired lease -- its holder crashed or hangs -- is taken over with a warning naming
  the old holder. On the SAME host a lease whose pid no longer runs is stale at once (a
  SIGKILLed run does not block the rerun for ``ttl_s``).
* The heartbeat thread renews every ``heartbeat_s``. If a renewal finds the lease taken over
  (this run stalled past ``ttl_s``), the lease is *lost*: ``on_lost`` runs (default: log and
  interrupt the main thread, so the run stops instead of writing beside the new holder).
  Transient storage errors in a renewal are logged and retried at the next beat.
"""

from __future__ import annotations

import _thread
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from lcmftn.integrations import storage

log = logging.getLogger("lcmftn.lease")

LEASE_NAME = "_lease.json"
ENV_TTL = "LCMFTN_LEASE_TTL_S"
ENV_HEARTBEAT = "LCMFTN_LEASE_HEARTBEAT_S"


@dataclass(frozen=True)
class LeaseConfig:
    """Timing of a lease (env ``LCMFTN_LEASE_TTL_S`` / ``LCMFTN_LEASE_HEARTBEAT_S``)."""

    ttl_s: float = 120.0  # not renewed for this long = stale (holder presumed dead)
    heartbeat_s: float = 20.0  # renewal period; keep <= ttl_s / 3

    def __post_init__(self) -> None:
        if not (0 < self.heartbeat_s * 2 <= self.ttl_s):
            raise ValueError(f"lease: heartbeat_s={self.heartbeat_s} must be > 0 and <= ttl_s/2 (ttl_s={self.ttl_s})")

    @classmethod
    def from_env(cls) -> LeaseConfig:
        ttl = float(os.environ.get(ENV_TTL) or cls.ttl_s)
        beat = float(os.environ.get(ENV_HEARTBEAT) or min(cls.heartbeat_s, ttl / 3))
        return cls(ttl_s=ttl, heartbeat_s=beat)


class LeaseHeldError(storage.StorageError):
    """Another live run holds the lease; ``holder`` is its record."""

    def __init__(self, uri: str, reason: str, holder: dict):
        super().__init__(uri, reason)
        self.holder = holder


class LeaseLostError(storage.StorageError):
    """This run's lease was taken over (it stalled past its expiry) or deleted."""


def lease_uri(prefix: str) -> str:
    return storage.join(storage.normalize(prefix), LEASE_NAME)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def describe(holder: dict) -> str:
    """``run colorize/ab12 on host h (pid 42) since 2026-...Z, expires ...Z``."""
    return (f"run {holder.get('owner', '?')}/{str(holder.get('run_id', '?'))[:8]} on host "
            f"{holder.get('host', '?')} (pid {holder.get('pid', '?')}) since {holder.get('created', '?')}, "
            f"lease expires {_iso(float(holder.get('expires_unix', 0)))}")


def _pid_gone(holder: dict) -> bool:
    """Same host and the holder's pid no longer runs (a crashed local run)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
        return False
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, another user's
        return False


class Lease:
    """A held lease; use as a context manager (heartbeat on enter, release on exit)."""

    def __init__(self, uri: str, record: dict, etag: str, config: LeaseConfig,
                 on_lost: Callable[[LeaseLostError], None] | None = None) -> None:
        self.uri, self.record, self.etag, self.config = uri, record, etag, config
        self.on_lost = on_lost or _interrupt_main
        self.lost: LeaseLostError | None = None
        self.created_dirs: list[str] = []  # local folders the lease created (removed on release if empty)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def renew(self) -> None:
        """Push the expiry ``ttl_s`` ahead (compare-and-swap); :class:`LeaseLostError` if taken."""
        now = time.time()
        record = dict(self.record, renewed_unix=now, expires_unix=now + self.config.ttl_s)
        try:
            self.etag = storage.replace_if_match(self.uri, _dump(record), self.etag)
        except storage.PreconditionFailedError as exc:
            self.lost = LeaseLostError(self.uri, f"lease lost: {exc.reason}; another run may be writing here")
            raise self.lost from exc
        self.record = record

    def release(self) -> None:
        """Delete the lease if it is still ours (never someone else's)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.config.heartbeat_s + 5)
        if self.lost is None:
            try:
                storage.delete_if_match(self.uri, self.etag)
            except storage.PreconditionFailedError:
                log.warning("%s: not released, it is no longer ours", self.uri)
        for d in self.created_dirs:  # deepest first: a run that wrote nothing leaves nothing
            try:
                os.rmdir(d)
            except OSError:
                break  # not empty (the run wrote output) or gone

    def start_heartbeat(self) -> Lease:
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.config.heartbeat_s):
            try:
                self.renew()
            except LeaseLostError as exc:
                log.error("%s", exc)
                self.on_lost(exc)
                return
            except storage.StorageError as exc:  # transient: retried at the next beat
                log.warning("%s: lease renewal failed (%s); retrying in %.0f s", self.uri, exc.reason,
                            self.config.heartbeat_s)

    def __enter__(self) -> Lease:
        return self.start_heartbeat()

    def __exit__(self, *exc) -> None:
        self.release()


def _interrupt_main(exc: LeaseLostError) -> None:
    _thread.interrupt_main()


def _dump(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True).encode()


def _missing_dirs(uri: str) -> list[str]:
    """Local folders above ``uri`` that do not exist yet, deepest first (none for S3)."""
    if storage.is_s3(uri):
        return []
    out, d = [], os.path.dirname(uri)
    while d and not os.path.exists(d):
        out.append(d)
        d = os.path.dirname(d)
    return out


def acquire(prefix: str, owner: str = "run", run_id: str | None = None, config: LeaseConfig | None = None,
            on_lost: Callable[[LeaseLostError], None] | None = None) -> Lease:
    """Take the lease on ``prefix`` (``<prefix>/_lease.json``), or raise :class:`LeaseHeldError`
    naming the live holder. An expired lease (or one of a dead pid on this host) is taken over
    with a warning. Start the heartbeat with ``with`` or :meth:`Lease.start_heartbeat`."""
    cfg = config or LeaseConfig.from_env()
    uri = lease_uri(prefix)
    missing = _missing_dirs(uri)
    for _ in range(5):  # each retry means another run changed the lease between our steps
        now = time.time()
        record = {"owner": owner, "run_id": run_id or uuid.uuid4().hex, "host": socket.gethostname(),
                  "pid": os.getpid(), "created": _iso(now), "created_unix": now, "renewed_unix": now,
                  "expires_unix": now + cfg.ttl_s}
        try:
            held = Lease(uri, record, storage.create_exclusive(uri, _dump(record)), cfg, on_lost)
            held.created_dirs = missing
            return held
        except storage.PreconditionFailedError:
            pass
        try:
            data, etag = storage.read_versioned(uri)
        except storage.ObjectNotFoundError:
            continue  # released meanwhile: create again
        try:
            holder = json.loads(data)
            expires = float(holder["expires_unix"])
        except (ValueError, KeyError, TypeError) as exc:
            raise LeaseHeldError(uri, f"unreadable lease object ({exc}); if no run writes to {prefix}, "
                                      f"delete {uri}", {}) from exc
        dead = _pid_gone(holder)
        if expires > now and not dead:
            raise LeaseHeldError(uri, f"output in use by {describe(holder)}; if that run is gone, wait "
                                      f"for the expiry or delete {uri}", holder)
        why = "its pid is gone on this host" if dead else f"expired {now - expires:.0f} s ago"
        try:
            new_etag = storage.replace_if_match(uri, _dump(record), etag)
        except storage.PreconditionFailedError:
            continue  # another run took it over first: look again
        log.warning("%s: took over the stale lease of %s (%s)", uri, describe(holder), why)
        return Lease(uri, record, new_etag, cfg, on_lost)
    raise storage.StorageError(uri, "lease contended: it changed 5 times while acquiring; retry")


def guard_output(prefix: str, owner: str, config: LeaseConfig | None = None) -> Lease:
    """What a job does before touching its ``--out``: :func:`storage.check_writable` (a
    :class:`storage.NotWritableError` naming the path) and :func:`acquire` (a
    :class:`LeaseHeldError` naming the holder). Returns the lease, heartbeat not yet started:
    ``with guard_output(out, "colorize"): ...``. Both errors are :class:`storage.StorageError`."""
    storage.check_writable(prefix)
    return acquire(prefix, owner=owner, config=config)
