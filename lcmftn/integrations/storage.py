"""Storage URIs: local paths and ``s3://bucket/key``, one small API for both.

Design decisions:

* Datasets (Parquet shards) go through ``pyarrow.fs`` (what Ray Data and ``pyarrow.parquet``
  read natively); small objects (manifests, single files) go through boto3.
* Endpoint and credentials come ONLY from the standard AWS variables (``AWS_ENDPOINT_URL`` or
  ``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
  ``AWS_SESSION_TOKEN``, ``AWS_DEFAULT_REGION``/``AWS_REGION``); nothing is hard-coded.
* Every failure is raised as :class:`StorageError` (or :class:`ObjectNotFoundError`) whose
  message names the URI and the problem ("cannot reach S3 endpoint ...", "no such object ...").
* boto3 is imported lazily inside functions, so importing this module (e.g. from
  ``lcmftn.data.dataset`` for an ``s3://`` dataset) never pulls boto3 into a pure process.

NOTE: pyarrow's S3 needs ``endpoint_override`` WITH the scheme (``http://127.0.0.1:P``) and
path-style addressing (``force_virtual_addressing=False``) for SeaweedFS/MinIO.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import hashlib
import io
import os
import random
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

S3_PREFIX = "s3://"
_GLOB_CHARS = "*?["
_CONNECT_TIMEOUT_S = 5.0
_REQUEST_TIMEOUT_S = 60.0
# Storage outages (an S3 service restarting, a network blip): every S3 call, boto3 and pyarrow,
# retries with exponential backoff (standard mode: random up to 2**n s, capped at 20 s) for at
# most LCMFTN_S3_MAX_ATTEMPTS attempts, then raises (StorageError naming the URI and endpoint).
# Default 3: a wrong or dead endpoint fails in seconds; jobs that must ride out a service
# restart set it higher (10 rode out a SeaweedFS restart mid-colorize and mid-ingest; README
# "Faults and bad input"). Read when the client is built (per process; Ray workers take it
# from their runtime_env / the raylet's env, the pyarrow filesystem carries it when pickled).
S3_MAX_ATTEMPTS_ENV = "LCMFTN_S3_MAX_ATTEMPTS"
_DEFAULT_S3_MAX_ATTEMPTS = 3


def s3_max_attempts() -> int:
    """Attempts per S3 call (``LCMFTN_S3_MAX_ATTEMPTS``, default 3, at least 1)."""
    return max(1, int(os.environ.get(S3_MAX_ATTEMPTS_ENV) or _DEFAULT_S3_MAX_ATTEMPTS))
_NOT_FOUND_CODES = ("404", "NoSuchKey", "NotFound")


class StorageError(OSError):
    """A storage operation failed; the message names the URI and the reason."""

    def __init__(self, uri: str, reason: str):
        self.uri = uri
        self.reason = reason
        super().__init__(f"{uri}: {reason}")

    def __str__(self) -> str:  # OSError's default str() ignores our message layout
        return f"{self.uri}: {self.reason}"


class ObjectNotFoundError(StorageError, FileNotFoundError):
    """The URI names no file/object."""


class NoSuchBucketError(ObjectNotFoundError):
    """The bucket of an ``s3://`` URI does not exist (not merely the key)."""


class PreconditionFailedError(StorageError):
    """A conditional write lost: the object exists (create) or changed (replace/delete)."""


class NotWritableError(StorageError):
    """An output location cannot be written (permissions, a file in the way, read-only)."""


# ---------------------------------------------------------------------------------------------
# URIs
# ---------------------------------------------------------------------------------------------
def is_s3(uri: str | os.PathLike) -> bool:
    return str(uri).startswith(S3_PREFIX)


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    if not is_s3(uri):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    rest = uri[len(S3_PREFIX) :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"s3 URI without a bucket: {uri!r}")
    return bucket, key


def join(uri: str | os.PathLike, *parts: str) -> str:
    """Join path parts onto a local path or an s3:// URI (always ``/`` for s3)."""
    uri = str(uri)
    if is_s3(uri):
        out = uri.rstrip("/")
        for p in parts:
            out = out + "/" + str(p).strip("/")
        return out
    return str(Path(uri, *parts))


def normalize(uri: str | os.PathLike) -> str:
    """Local paths become absolute; s3 URIs lose trailing slashes."""
    uri = str(uri)
    if is_s3(uri):
        return uri.rstrip("/") if uri.rstrip("/") != "s3:" else uri
    return str(Path(uri).expanduser().resolve())


def has_glob(uri: str) -> bool:
    return any(c in uri for c in _GLOB_CHARS)


# ---------------------------------------------------------------------------------------------
# Configuration from the standard AWS variables
# ---------------------------------------------------------------------------------------------
def s3_settings() -> dict[str, str | None]:
    """The S3 endpoint/region/credentials the process would use (from env only)."""
    env = os.environ
    return {
        "endpoint": env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
        "region": env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1",
        "access_key": env.get("AWS_ACCESS_KEY_ID") or None,
        "secret_key": env.get("AWS_SECRET_ACCESS_KEY") or None,
        "session_token": env.get("AWS_SESSION_TOKEN") or None,
        "max_attempts": s3_max_attempts(),
    }


def _settings_key() -> tuple:
    return tuple(sorted(s3_settings().items()))


@functools.lru_cache(maxsize=8)
def _s3_filesystem(key: tuple) -> pafs.S3FileSystem:
    s = dict(key)
    kwargs: dict[str, Any] = {
        "region": s["region"],
        "connect_timeout": _CONNECT_TIMEOUT_S,
        "request_timeout": _REQUEST_TIMEOUT_S,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=s["max_attempts"]),
    }
    if s["access_key"] and s["secret_key"]:
        kwargs.update(access_key=s["access_key"], secret_key=s["secret_key"])
        if s["session_token"]:
            kwargs["session_token"] = s["session_token"]
    if s["endpoint"]:
        endpoint = s["endpoint"]
        scheme = "https" if endpoint.startswith("https://") else "http"
        if "://" not in endpoint:  # pyarrow needs the scheme in the override (curlCode 35)
            endpoint = f"{scheme}://{endpoint}"
        kwargs.update(endpoint_override=endpoint, scheme=scheme, force_virtual_addressing=False)
    return pafs.S3FileSystem(**kwargs)


@functools.lru_cache(maxsize=8)
def _boto3_client(key: tuple):
    import boto3  # NOTE: lazy; lcmftn stays importable without boto3
    from botocore.config import Config

    s = dict(key)
    cfg = Config(
        connect_timeout=_CONNECT_TIMEOUT_S,
        read_timeout=_REQUEST_TIMEOUT_S,
        retries={"max_attempts": s["max_attempts"], "mode": "standard"},
        s3={"addressing_style": "path"},
    )
    return boto3.client(
        "s3",
        endpoint_url=s["endpoint"],
        region_name=s["region"],
        aws_access_key_id=s["access_key"],
        aws_secret_access_key=s["secret_key"],
        aws_session_token=s["session_token"],
        config=cfg,
    )


def s3_client():
    """A boto3 S3 client configured from the AWS env variables (cached per configuration)."""
    return _boto3_client(_settings_key())


def filesystem_for(uri: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """``(pyarrow filesystem, path inside it)`` for a local path or an s3:// URI.

    The S3 filesystem is picklable: Ray tasks can receive it instead of relying on the
    workers' environment (their env is fixed when the raylet starts)."""
    uri = str(uri)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        return _s3_filesystem(_settings_key()), f"{bucket}/{key}".rstrip("/")
    return pafs.LocalFileSystem(), normalize(uri)


# Connection-level failures worth another attempt (an endpoint restarting, a network blip), as
# pyarrow's S3 reports them (curl) and as the OS does. Not: missing objects, access denied.
_TRANSIENT_MARKS = ("could not connect", "couldn't connect", "curlcode", "connection refused",
                    "connection reset", "connection was reset", "timed out", "timeout", "broken pipe",
                    "unable to connect", "network is unreachable", "http status 503", "slowdown")


def is_transient(exc: BaseException) -> bool:
    """True for a connection-level storage failure (retrying may succeed), not for a missing
    object, a missing bucket or a denied access."""
    msg = str(exc).lower()
    if isinstance(exc, FileNotFoundError | PermissionError) or "nosuchbucket" in msg or "access denied" in msg:
        return False
    return isinstance(exc, ConnectionError | TimeoutError) or any(m in msg for m in _TRANSIENT_MARKS)


def retry_transient(fs: pafs.FileSystem, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, a whole pyarrow.fs operation on ``fs`` (a shard written, a folder
    created or listed), retried on a transient failure with the standard backoff (random up to
    2**n s, capped at 20 s), ``LCMFTN_S3_MAX_ATTEMPTS`` attempts in all. Why: pyarrow's own retry
    strategy covers S3 requests but not every step around them (the bucket check behind
    ``create_dir`` / ``get_file_info`` answered "could not connect" during a SeaweedFS restart
    and failed the film). Local filesystems are called once. ``fn`` must be idempotent."""
    attempts = s3_max_attempts() if isinstance(fs, pafs.S3FileSystem) else 1
    for n in range(attempts):
        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            if n + 1 >= attempts or not is_transient(exc):
                raise
            time.sleep(min(20.0, random.uniform(0, 2 ** n)))
    raise AssertionError("unreachable")


class _ArrowRaw(io.RawIOBase):
    """A pyarrow random-access file as a raw Python stream (for ``io.BufferedReader``)."""

    def __init__(self, f) -> None:
        self._f = f

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._f.read(len(b))
        b[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()


def open_ranged(uri: str, filesystem: pafs.FileSystem | None = None, buffer_bytes: int = 8 << 20) -> io.BufferedReader:
    """A seekable, buffered binary reader of an object (``s3://``: ranged GETs of
    ``buffer_bytes``, no download; a local path works too). What a segment of a film on S3 is
    decoded from (PyAV reads it like a file): a task reads the byte ranges of its frames, not the
    object. ``filesystem``: the pyarrow filesystem to use (a Ray task gets the driver's)."""
    fs, path = filesystem_for(uri)
    if filesystem is not None and is_s3(uri):
        fs = filesystem
    try:
        f = retry_transient(fs, fs.open_input_file, path)
    except OSError as exc:
        raise arrow_error(uri, exc) from exc
    return io.BufferedReader(_ArrowRaw(f), buffer_size=buffer_bytes)


# ---------------------------------------------------------------------------------------------
# Error translation
# ---------------------------------------------------------------------------------------------
def _s3_error(uri: str, exc: BaseException) -> StorageError:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    endpoint = s3_settings()["endpoint"] or "AWS S3"
    if isinstance(exc, EndpointConnectionError) or "Could not connect" in str(exc):
        return StorageError(uri, f"cannot reach S3 endpoint {endpoint} ({exc})")
    if isinstance(exc, NoCredentialsError):
        return StorageError(uri, "no S3 credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket" or (code in _NOT_FOUND_CODES and _bucket_missing(uri)):
            return NoSuchBucketError(uri, f"no such bucket {split_s3(uri)[0]!r} at {endpoint}")
        if code in _NOT_FOUND_CODES:
            return ObjectNotFoundError(uri, "no such object")
        if code in ("412", "PreconditionFailed"):
            return PreconditionFailedError(uri, "precondition failed (the object exists or changed)")
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return StorageError(uri, f"access denied by {endpoint} ({code})")
        return StorageError(uri, f"S3 error {code}: {exc}")
    return StorageError(uri, f"{type(exc).__name__}: {exc}")


def _bucket_missing(uri: str) -> bool:
    """True when the bucket of ``uri`` does not exist. A HEAD answers a bare 404 both for a
    missing key and a missing bucket, so a 404 is told apart with HEAD on the bucket."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        s3_client().head_bucket(Bucket=split_s3(uri)[0])
        return False
    except ClientError as exc:
        return str(exc.response.get("Error", {}).get("Code", "")) in ("404", "NoSuchBucket", "NotFound")
    except (BotoCoreError, ValueError):
        return False


def _call_s3(uri: str, fn, *args, **kwargs):
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(*args, **kwargs)
    except (BotoCoreError, ClientError) as exc:
        raise _s3_error(uri, exc) from exc


def arrow_error(uri: str, exc: BaseException) -> StorageError:
    """Translate a pyarrow.fs error into a StorageError naming ``uri``."""
    msg = str(exc)
    if "NoSuchBucket" in msg or ("bucket" in msg.lower() and "does not exist" in msg.lower()):
        return NoSuchBucketError(uri, f"no such bucket ({msg.strip()})")
    if isinstance(exc, FileNotFoundError) or "Path does not exist" in msg or "NoSuchKey" in msg:
        return ObjectNotFoundError(uri, "no such file or object")
    if "curlCode" in msg or "connect" in msg.lower():
        endpoint = s3_settings()["endpoint"] or "AWS S3"
        return StorageError(uri, f"cannot reach S3 endpoint {endpoint} ({msg.strip()})")
    return StorageError(uri, f"{type(exc).__name__}: {msg.strip()}")


# ---------------------------------------------------------------------------------------------
# Objects (boto3 for s3, plain files locally)
# ---------------------------------------------------------------------------------------------
def read_bytes(uri: str | os.PathLike) -> bytes:
    uri = str(uri)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        resp = _call_s3(uri, s3_client().get_object, Bucket=bucket, Key=key)
        return _call_s3(uri, resp["Body"].read)
    path = Path(uri)
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise ObjectNotFoundError(uri, "no such file") from exc
    except IsADirectoryError as exc:
        raise StorageError(uri, "is a directory, not a file") from exc
    except OSError as exc:
        raise StorageError(uri, f"unreadable: {exc.strerror or exc}") from exc


def write_bytes_atomic(uri: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` so readers see either the old or the new content, never a part.

    Local: temp file in the same folder + ``os.replace``. S3: one PUT (atomic by S3 semantics)."""
    uri = str(uri)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        _call_s3(uri, s3_client().put_object, Bucket=bucket, Key=key, Body=data)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(uri, f"cannot write: {exc.strerror or exc}") from exc


def exists(uri: str | os.PathLike) -> bool:
    """True when ``uri`` is a file/object, or a folder/prefix holding at least one object."""
    uri = str(uri)
    if not is_s3(uri):
        return Path(uri).exists()
    bucket, key = split_s3(uri)
    client = s3_client()
    from botocore.exceptions import ClientError

    if key:
        try:
            client.head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) not in _NOT_FOUND_CODES or _bucket_missing(uri):
                raise _s3_error(uri, exc) from exc
        except Exception as exc:  # connection errors
            raise _s3_error(uri, exc) from exc
    prefix = key.rstrip("/") + "/" if key else ""
    resp = _call_s3(uri, client.list_objects_v2, Bucket=bucket, Prefix=prefix, MaxKeys=1)
    return resp.get("KeyCount", 0) > 0


def list_uris(prefix: str | os.PathLike, recursive: bool = True) -> list[str]:
    """All files under a folder/prefix (sorted). A missing prefix gives ``[]``."""
    prefix = str(prefix)
    if is_s3(prefix):
        bucket, key = split_s3(prefix)
        key = key.rstrip("/") + "/" if key else ""
        out: list[str] = []
        paginator = s3_client().get_paginator("list_objects_v2")
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": key}
        if not recursive:
            kwargs["Delimiter"] = "/"
        pages = _call_s3(prefix, lambda: list(paginator.paginate(**kwargs)))
        for page in pages:
            # NOTE: keys ending in "/" are folder markers (pyarrow's create_dir makes them), not files.
            out += [f"s3://{bucket}/{o['Key']}" for o in page.get("Contents", []) if not o["Key"].endswith("/")]
            if not recursive:
                out += [f"s3://{bucket}/{p['Prefix'].rstrip('/')}" for p in page.get("CommonPrefixes", [])]
        return sorted(out)
    root = Path(prefix)
    if not root.is_dir():
        return []
    it = root.rglob("*") if recursive else root.iterdir()
    return sorted(str(p) for p in it if p.is_file() or not recursive)


def glob_uris(pattern: str | os.PathLike) -> list[str]:
    """Expand a glob (``*``, ``?``, ``[..]``) over local paths or s3 keys; sorted.

    Without glob characters the URI itself is returned when it exists (else ``[]``)."""
    pattern = str(pattern)
    if not has_glob(pattern):
        return [normalize(pattern)] if exists(pattern) else []
    if not is_s3(pattern):
        import glob

        return sorted(normalize(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True))
    bucket, key = split_s3(pattern)
    fixed = key[: min(key.find(c) for c in _GLOB_CHARS if c in key)]
    base = fixed.rsplit("/", 1)[0] if "/" in fixed else ""
    candidates = list_uris(f"s3://{bucket}/{base}" if base else f"s3://{bucket}")
    # Directories (common prefixes) can match too: add every parent prefix of each object.
    names = set(candidates)
    for c in candidates:
        k = split_s3(c)[1]
        parts = k.split("/")
        for i in range(1, len(parts)):
            names.add(f"s3://{bucket}/" + "/".join(parts[:i]))
    depth = pattern.count("/")
    return sorted(n for n in names if n.count("/") == depth and fnmatch.fnmatchcase(n, pattern))


def download(uri: str | os.PathLike, local_path: str | os.PathLike) -> Path:
    """Copy a file/object to a local path (atomic: temp + rename). Returns the local path."""
    uri, local_path = str(uri), Path(local_path)
    local_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = local_path.with_name(f".{local_path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        if is_s3(uri):
            bucket, key = split_s3(uri)
            _call_s3(uri, s3_client().download_file, bucket, key, str(tmp))
        else:
            if not Path(uri).is_file():
                raise ObjectNotFoundError(uri, "no such file")
            shutil.copyfile(uri, tmp)
        os.replace(tmp, local_path)
    finally:
        tmp.unlink(missing_ok=True)
    return local_path


def upload(local_path: str | os.PathLike, uri: str | os.PathLike) -> None:
    """Copy a local file to a path/URI (local: atomic temp + rename; s3: multipart-safe upload)."""
    local_path, uri = Path(local_path), str(uri)
    if not local_path.is_file():
        raise ObjectNotFoundError(str(local_path), "no such local file to upload")
    if is_s3(uri):
        bucket, key = split_s3(uri)
        _call_s3(uri, s3_client().upload_file, str(local_path), bucket, key)
        return
    dst = Path(uri)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dst.parent, prefix=f".{dst.name}.", delete=False) as f:
        tmp = Path(f.name)
    try:
        shutil.copyfile(local_path, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def delete_prefix(uri: str | os.PathLike) -> int:
    """Delete a file/object and everything under the folder/prefix; returns objects removed."""
    uri = str(uri)
    if not is_s3(uri):
        p = Path(uri)
        if p.is_dir():
            n = sum(1 for q in p.rglob("*") if q.is_file())
            shutil.rmtree(p)
            return n
        if p.exists():
            p.unlink()
            return 1
        return 0
    bucket, key = split_s3(uri)
    if not key:
        raise StorageError(uri, "refusing to delete a whole bucket")
    keys = [split_s3(u)[1] for u in list_uris(uri)]
    client = s3_client()
    from botocore.exceptions import ClientError

    try:
        client.head_object(Bucket=bucket, Key=key)
        keys.append(key)
    except ClientError as exc:  # only "no object at exactly this key" is fine (it is a prefix)
        if str(exc.response.get("Error", {}).get("Code")) not in _NOT_FOUND_CODES:
            raise _s3_error(uri, exc) from exc
    for i in range(0, len(keys), 1000):
        chunk = [{"Key": k} for k in keys[i : i + 1000]]
        _call_s3(uri, client.delete_objects, Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
    return len(keys)


def check_reachable(uri: str | os.PathLike) -> None:
    """Fail fast with a clear message when the bucket/endpoint of ``uri`` cannot be used."""
    uri = str(uri)
    if not is_s3(uri):
        return
    bucket, _ = split_s3(uri)
    _call_s3(uri, s3_client().head_bucket, Bucket=bucket)


# ---------------------------------------------------------------------------------------------
# Writability and conditional writes (leases: lcmftn.integrations.lease)
# ---------------------------------------------------------------------------------------------
def check_writable(uri: str | os.PathLike) -> None:
    """Fail fast (:class:`NotWritableError` naming the path) when ``uri`` cannot be created or
    written, before any work. Local: the nearest existing folder must accept a new file (a
    real probe file, so root, read-only mounts and ACLs are judged as the write would be). S3:
    the bucket must exist and accept a PUT (a probe object is written and deleted)."""
    uri = str(uri)
    if is_s3(uri):
        check_reachable(uri)
        probe = join(uri, f".write-probe-{uuid.uuid4().hex[:12]}")
        bucket, key = split_s3(probe)
        try:
            _call_s3(probe, s3_client().put_object, Bucket=bucket, Key=key, Body=b"")
        except StorageError as exc:
            raise NotWritableError(uri, f"cannot write under this prefix ({exc.reason})") from exc
        _call_s3(probe, s3_client().delete_object, Bucket=bucket, Key=key)
        return
    path = Path(normalize(uri))
    if path.exists() and not path.is_dir():
        raise NotWritableError(uri, "exists and is not a folder")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise NotWritableError(uri, f"{parent} is a file, not a folder")
    try:
        fd, probe_name = tempfile.mkstemp(prefix=".write-probe-", dir=parent)
        os.close(fd)
        os.unlink(probe_name)
    except OSError as exc:
        where = "" if parent == path else f" (its nearest existing parent {parent})"
        raise NotWritableError(uri, f"not writable{where}: {exc.strerror or exc}") from exc


def _etag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


@contextlib.contextmanager
def _local_cas_lock(path: Path):
    """Serialise compare-and-swap on a local file: ``flock`` on its FOLDER (no lock file is left
    in the output; the kernel drops the lock when the holder dies, so a crash never leaves it
    held). Other flock users of the same folder would only be serialised with us, never broken."""
    import fcntl

    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_versioned(uri: str | os.PathLike) -> tuple[bytes, str]:
    """``(content, etag)``; the etag is what :func:`replace_if_match`/:func:`delete_if_match`
    compare (S3: the object's ETag; local: a SHA-256 prefix of the content)."""
    uri = str(uri)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        resp = _call_s3(uri, s3_client().get_object, Bucket=bucket, Key=key)
        return _call_s3(uri, resp["Body"].read), resp["ETag"]
    data = read_bytes(uri)
    return data, _etag(data)


def create_exclusive(uri: str | os.PathLike, data: bytes) -> str:
    """Create ``uri`` only if nothing is there (atomic); returns its etag, else raises
    :class:`PreconditionFailedError`. S3: ``PUT`` with ``If-None-Match: *``; local: a complete
    temp file hard-linked to the name (``link`` fails when the name exists)."""
    uri = str(uri)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            resp = _call_s3(uri, s3_client().put_object, Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        except PreconditionFailedError as exc:
            raise PreconditionFailedError(uri, "already exists") from exc
        return resp["ETag"]
    path = Path(uri)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)
    except OSError as exc:
        raise NotWritableError(uri, f"cannot write: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    except FileExistsError as exc:
        raise PreconditionFailedError(uri, "already exists") from exc
    except OSError as exc:
        raise StorageError(uri, f"cannot write: {exc.strerror or exc}") from exc
    finally:
        os.unlink(tmp)
    return _etag(data)


def replace_if_match(uri: str | os.PathLike, data: bytes, etag: str) -> str:
    """Replace ``uri`` only while its etag is still ``etag``; returns the new etag, else raises
    :class:`PreconditionFailedError` (changed or gone). S3: ``PUT`` with ``If-Match``."""
    uri = str(uri)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            resp = _call_s3(uri, s3_client().put_object, Bucket=bucket, Key=key, Body=data, IfMatch=etag)
        except ObjectNotFoundError as exc:
            raise PreconditionFailedError(uri, "gone (deleted by someone else)") from exc
        return resp["ETag"]
    path = Path(uri)
    with _local_cas_lock(path):
        try:
            current = path.read_bytes()
        except FileNotFoundError as exc:
            raise PreconditionFailedError(uri, "gone (deleted by someone else)") from exc
        if _etag(current) != etag:
            raise PreconditionFailedError(uri, "changed by someone else")
        write_bytes_atomic(uri, data)
    return _etag(data)


def delete_if_match(uri: str | os.PathLike, etag: str) -> None:
    """Delete ``uri`` only while its etag is still ``etag`` (S3: ``DELETE`` with ``If-Match``);
    :class:`PreconditionFailedError` when it changed; nothing to do when it is gone."""
    uri = str(uri)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            _call_s3(uri, s3_client().delete_object, Bucket=bucket, Key=key, IfMatch=etag)
        except ObjectNotFoundError:
            return
        return
    path = Path(uri)
    with _local_cas_lock(path):
        try:
            if _etag(path.read_bytes()) != etag:
                raise PreconditionFailedError(uri, "changed by someone else")
            path.unlink()
        except FileNotFoundError:
            return
