"""The ingest job splitting a film into segments (local Ray): committed dataset identical to the
one-task-per-film run, resume skips it, segment files never visible."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.test_ingest_segments import SEGMENT, SIZE, TIMINGS, _shot_frames, _write_gop_video
from workflows import ingest

pytestmark = pytest.mark.integration


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def _entry(root: Path, film: str) -> dict:
    e = json.loads((root / "manifest.json").read_text())["films"][film]
    return {k: v for k, v in e.items() if k not in TIMINGS and k != "node_id"}  # where it ran


def test_segmented_job_equals_one_task_job_and_resumes(ray_local, tmp_path):
    film = tmp_path / "films" / "cuts.mp4"
    film.parent.mkdir()
    _write_gop_video(film, _shot_frames())
    cfg = ingest.IngestConfig(size_px=SIZE, rows_per_shard=32)
    one, split = tmp_path / "one", tmp_path / "split"
    s1 = ingest.run_ingest([str(film)], str(one), cfg, segment_frames=0)
    s2 = ingest.run_ingest([str(film)], str(split), cfg, segment_frames=SEGMENT)
    assert s1["ok"] == s2["ok"] == 1 and s1["frames"] == s2["frames"] == 100
    assert _entry(one, "cuts") == _entry(split, "cuts")
    assert [s["start"] for s in _entry(split, "cuts")["shots"][1:]] == [24, 47, 73]
    a, b = _files(one), _files(split)
    assert list(a) == list(b) and len(a) == 4 and a == b
    assert not (split / ingest.STAGING_DIR).exists()
    again = ingest.run_ingest([str(film)], str(split), cfg, segment_frames=SEGMENT)
    assert again["skipped"] == 1 and _files(split) == b


def test_s3_film_is_split_and_read_by_range(ray_local, s3_env, tmp_path):
    """An ``s3://`` film is split like a local one (the plan task probes a scratch copy; each
    segment decodes its byte ranges through ``storage.open_ranged``): the same dataset, byte for
    byte, as the local one-task run."""
    import pyarrow.fs as pafs

    from lcmftn.data.video import iter_frame_range, probe_keyframes
    from lcmftn.ingest_segments import plan_film
    from lcmftn.integrations import storage

    film = tmp_path / "films" / "cuts.mp4"
    film.parent.mkdir()
    _write_gop_video(film, _shot_frames())
    uri = s3_env.uri("split-test") + "/films/cuts.mp4"
    storage.upload(film, uri)
    fs_in = storage.filesystem_for(uri)[0]
    index = probe_keyframes(film)  # a range read from S3 = the same frames as from the file
    for a, b in zip(iter_frame_range(uri, 40, 60, index=index, filesystem=fs_in),
                    iter_frame_range(film, 40, 60, index=index), strict=True):
        assert (a == b).all()
    cfg = ingest.IngestConfig(size_px=SIZE, rows_per_shard=32)
    units = plan_film({"film": "cuts", "source": uri, "prev": ""}, str(tmp_path / "x"), pafs.LocalFileSystem(),
                      __import__("dataclasses").asdict(cfg), SEGMENT, fs_in)
    assert len(units) > 1 and {u["kind"] for u in units} == {"segment"} and units[0]["source"] == uri
    one, split = tmp_path / "one", tmp_path / "split"
    s1 = ingest.run_ingest([str(film)], str(one), cfg, segment_frames=0)
    s2 = ingest.run_ingest([uri], str(split), cfg, segment_frames=SEGMENT)
    assert s1["ok"] == s2["ok"] == 1
    e1, e2 = _entry(one, "cuts"), _entry(split, "cuts")
    assert {k: v for k, v in e1.items() if k not in ("source", "sha256")} == {
        k: v for k, v in e2.items() if k not in ("source", "sha256")}
    assert _files(one) == _files(split)
