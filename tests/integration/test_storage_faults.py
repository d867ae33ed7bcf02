"""Storage faults on a real SeaweedFS: a missing bucket is named as such (not "no such
object"), for reads, existence checks, downloads and the writability check."""

from __future__ import annotations

import pytest

from lcmftn.integrations import storage
from workflows import ingest

pytestmark = pytest.mark.integration


def test_missing_bucket_is_not_a_missing_object(s3_env, tmp_path):
    uri = "s3://no-such-bucket-zz/films/a.mp4"
    for call in (lambda: storage.read_bytes(uri), lambda: storage.exists(uri),
                 lambda: storage.download(uri, tmp_path / "a.mp4"), lambda: storage.check_writable(uri),
                 lambda: storage.list_uris("s3://no-such-bucket-zz/films")):
        with pytest.raises(storage.NoSuchBucketError, match="no such bucket 'no-such-bucket-zz'"):
            call()
    # a missing key in an existing bucket stays "no such object"
    with pytest.raises(storage.ObjectNotFoundError, match="no such object") as err:
        storage.read_bytes(s3_env.uri("nothing-here.bin"))
    assert not isinstance(err.value, storage.NoSuchBucketError)
    assert storage.exists(s3_env.uri("nothing-here.bin")) is False


def test_ingest_into_a_missing_bucket_exits_2(s3_env, tmp_path, capsys):
    (tmp_path / "f.mp4").write_bytes(b"x")
    assert ingest.main(["--films", str(tmp_path / "f.mp4"), "--out", "s3://no-such-bucket-zz/ds"]) == 2
    assert "no such bucket" in capsys.readouterr().err
