"""Transient storage failures around pyarrow's own S3 retries are retried (the flaky mid-ingest
S3 restart: the bucket check behind create_dir answered "could not connect")."""

from __future__ import annotations

import pyarrow.fs as pafs
import pytest

from lcmftn.integrations import storage


def _flaky(fails: list[BaseException]):
    calls = []

    def fn(x):
        calls.append(x)
        if fails:
            raise fails.pop(0)
        return x * 2

    return fn, calls


def test_transient_s3_failures_are_retried_then_raised(monkeypatch):
    monkeypatch.setenv(storage.S3_MAX_ATTEMPTS_ENV, "3")
    slept = []
    monkeypatch.setattr(storage.time, "sleep", slept.append)
    s3 = pafs.S3FileSystem(endpoint_override="http://127.0.0.1:9", scheme="http", region="us-east-1")
    down = OSError("When getting information for bucket 'ds': AWS Error NETWORK_CONNECTION during "
                   "HeadBucket operation: curlCode: 7, Couldn't connect to server")
    fn, calls = _flaky([down, down])
    assert storage.retry_transient(s3, fn, 21) == 42 and len(calls) == 3 and len(slept) == 2
    assert all(0 <= s <= 20 for s in slept)
    fn, calls = _flaky([down, down, down])
    with pytest.raises(OSError, match="Couldn't connect"):
        storage.retry_transient(s3, fn, 1)
    assert len(calls) == 3  # LCMFTN_S3_MAX_ATTEMPTS in all


@pytest.mark.parametrize("err", [FileNotFoundError("ds/x.parquet"), PermissionError("denied"),
                                 OSError("NoSuchBucket: ds"), OSError("Access Denied")])
def test_permanent_failures_and_local_files_are_not_retried(monkeypatch, err):
    monkeypatch.setenv(storage.S3_MAX_ATTEMPTS_ENV, "5")
    monkeypatch.setattr(storage.time, "sleep", lambda s: None)
    s3 = pafs.S3FileSystem(endpoint_override="http://127.0.0.1:9", scheme="http", region="us-east-1")
    fn, calls = _flaky([err])
    with pytest.raises(OSError):
        storage.retry_transient(s3, fn, 1)
    assert len(calls) == 1
    fn, calls = _flaky([OSError("Connection refused")])
    with pytest.raises(OSError):
        storage.retry_transient(pafs.LocalFileSystem(), fn, 1)  # a local path: one attempt
    assert len(calls) == 1
