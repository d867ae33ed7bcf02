"""lcmftn.integrations.storage against a local folder and a real SeaweedFS S3 endpoint."""

from __future__ import annotations

import socket
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lcmftn.integrations import storage

pytestmark = pytest.mark.integration


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    """A fresh root URI: a local folder or an s3:// prefix on SeaweedFS."""
    if request.param == "local":
        return str(tmp_path / "root")
    s3 = request.getfixturevalue("s3_env")
    return s3.uri(f"storage-{request.node.name.replace('[', '-').rstrip(']')}-{time.monotonic_ns()}")


def test_round_trip_list_glob_delete(root, tmp_path):
    a, b = storage.join(root, "films", "a.mp4"), storage.join(root, "films", "sub", "b.mp4")
    storage.write_bytes_atomic(a, b"AAAA")
    storage.write_bytes_atomic(b, b"BB")
    storage.write_bytes_atomic(storage.join(root, "films", "notes.txt"), b"x")
    assert storage.read_bytes(a) == b"AAAA"
    assert storage.exists(a) and storage.exists(storage.join(root, "films"))
    assert not storage.exists(storage.join(root, "nothing-here"))
    listed = storage.list_uris(storage.join(root, "films"))
    assert sorted(u.rsplit("/", 1)[-1] for u in listed) == ["a.mp4", "b.mp4", "notes.txt"]
    assert storage.glob_uris(storage.join(root, "films", "*.mp4")) == [storage.normalize(a)]
    assert storage.glob_uris(storage.join(root, "films", "*", "*.mp4")) == [storage.normalize(b)]
    assert storage.glob_uris(storage.join(root, "films", "*.mkv")) == []
    # download / upload keep the bytes
    local = storage.download(a, tmp_path / "dl" / "a.mp4")
    assert local.read_bytes() == b"AAAA"
    storage.upload(local, storage.join(root, "copy", "a2.mp4"))
    assert storage.read_bytes(storage.join(root, "copy", "a2.mp4")) == b"AAAA"
    # delete a prefix
    assert storage.delete_prefix(storage.join(root, "films")) == 3
    assert storage.list_uris(storage.join(root, "films")) == []
    assert storage.exists(storage.join(root, "copy", "a2.mp4"))


def test_missing_object_is_named(root):
    uri = storage.join(root, "absent.json")
    with pytest.raises(storage.ObjectNotFoundError) as err:
        storage.read_bytes(uri)
    assert "absent.json" in str(err.value)
    assert isinstance(err.value, FileNotFoundError)


def test_atomic_write_replaces_whole(root):
    uri = storage.join(root, "m", "manifest.json")
    storage.write_bytes_atomic(uri, b"old" * 1000)
    storage.write_bytes_atomic(uri, b"new")
    assert storage.read_bytes(uri) == b"new"
    # no temporary files left next to it
    assert [u.rsplit("/", 1)[-1] for u in storage.list_uris(storage.join(root, "m"))] == ["manifest.json"]


def test_failed_local_write_keeps_old_content(tmp_path, monkeypatch):
    target = tmp_path / "d" / "manifest.json"
    storage.write_bytes_atomic(target, b"committed")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage.os, "fsync", disk_full)  # fails after the bytes were written
    with pytest.raises(storage.StorageError) as err:
        storage.write_bytes_atomic(target, b"half")
    monkeypatch.undo()
    assert "manifest.json" in str(err.value)
    assert target.read_bytes() == b"committed"
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["manifest.json"]


def test_pyarrow_filesystem_parquet_round_trip(root):
    fs, path = storage.filesystem_for(storage.join(root, "t", "x.parquet"))
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    table = pa.table({"a": [1, 2, 3], "b": [b"x", b"y", b"z"]})
    pq.write_table(table, path, filesystem=fs)
    assert pq.read_table(path, filesystem=fs).equals(table)
    # folders made by pyarrow (S3: "t/" marker objects) are not listed as files
    assert [u.rsplit("/", 1)[-1] for u in storage.list_uris(storage.join(root, "t"))] == ["x.parquet"]
    assert [u.rsplit("/", 1)[-1] for u in storage.list_uris(root)] == ["x.parquet"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_endpoint_fails_fast_and_clearly(monkeypatch):
    port = _closed_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    t0 = time.monotonic()
    with pytest.raises(storage.StorageError) as err:
        storage.read_bytes("s3://bucket/film.mp4")
    assert "cannot reach S3 endpoint" in str(err.value) and str(port) in str(err.value)
    assert "s3://bucket/film.mp4" in str(err.value)
    with pytest.raises(storage.StorageError, match="cannot reach"):
        storage.check_reachable("s3://bucket/datasets/v1")
    assert time.monotonic() - t0 < 15


def test_wrong_credentials_are_refused(local_s3, monkeypatch):
    for k, v in local_s3.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    with pytest.raises(storage.StorageError, match="access denied|S3 error"):
        storage.read_bytes(local_s3.uri("whatever.json"))


def test_missing_bucket_is_named(s3_env):
    with pytest.raises(storage.StorageError, match="no-such-bucket"):
        storage.check_reachable("s3://no-such-bucket/x")


def test_delete_prefix_does_not_swallow_a_refused_head(s3_env, monkeypatch):
    # Only "no object at this exact key" may be ignored; a refusal must surface, and nothing
    # is deleted on the strength of a check that did not run.
    from botocore.exceptions import ClientError

    uri = s3_env.uri(f"del-{time.monotonic_ns()}")
    storage.write_bytes_atomic(storage.join(uri, "a.bin"), b"A")
    real = storage.s3_client()

    class RefusingHead:
        def __getattr__(self, name):
            return getattr(real, name)

        def head_object(self, **kw):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "HeadObject")

    with monkeypatch.context() as m, pytest.raises(storage.StorageError, match="access denied"):
        m.setattr(storage, "s3_client", lambda: RefusingHead())
        storage.delete_prefix(uri)
    assert storage.read_bytes(storage.join(uri, "a.bin")) == b"A"
    assert storage.delete_prefix(uri) == 1 and not storage.exists(uri)
