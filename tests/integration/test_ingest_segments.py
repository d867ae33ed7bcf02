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
