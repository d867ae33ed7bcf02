"""The dataset format module round-trips, and it is the only writer of shards and manifests."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest

from lcmftn.data import dataset_format as fmt
from lcmftn.data.dataset import load_frames

ROOT = Path(__file__).resolve().parents[2]


def _film(rng: np.random.Generator, n: int = 7, h: int = 12, w: int = 16):
    colors = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]
    lines = [np.where(rng.random((h, w)) < 0.1, 0, 255).astype(np.uint8) for _ in range(n)]
    shot_of = [0] * 3 + [1] * (n - 3)
    holds = [False, True, False, False, True, False, True][:n]
    return colors, lines, shot_of, holds


def test_png_codecs_round_trip_exactly():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (9, 11), dtype=np.uint8)
    for params in ((), fmt.PNG_FAST_COLOR):
        assert np.array_equal(fmt.decode_color_png(fmt.encode_png(rgb, params)), rgb)
    assert np.array_equal(fmt.decode_color_png(fmt.encode_color_png(rgb)), rgb)
    assert np.array_equal(fmt.decode_lineart_png(fmt.encode_lineart_png(gray)), gray)
    assert np.array_equal(fmt.decode_lineart_png(fmt.encode_png(gray, fmt.PNG_FAST_LINEART)), gray)
    with pytest.raises(ValueError, match="undecodable"):
        fmt.decode_color_png(b"not a png")


def test_shards_and_manifest_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    colors, lines, shot_of, holds = _film(rng)
    table = fmt.frame_table("f1", shot_of, [fmt.encode_color_png(c) for c in colors],
                            [fmt.encode_lineart_png(x) for x in lines], holds, 12, 16)
    assert table.schema == fmt.FRAME_SCHEMA
    fs = pafs.LocalFileSystem()
    root = str(tmp_path / "ds")
    names = fmt.write_shards(table, fs, f"{root}/{fmt.FRAMES_DIR}/f1/v1", rows_per_shard=3)
    assert names == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    shards = [f"{fmt.FRAMES_DIR}/f1/v1/{n}" for n in names]
    back = [fmt.read_shard(f"{root}/{s}", fs) for s in shards]
    assert sum(t.num_rows for t in back) == 7
    assert all(t.schema == fmt.FRAME_SCHEMA for t in back)
    import pyarrow as pa

    assert pa.concat_tables(back).equals(table)
    manifest = {"version": fmt.MANIFEST_VERSION, "films": {
        "f1": {"status": "ok", "shards": shards, "frames": 7},
        "f2": {"status": "failed", "shards": ["frames/f2/x.parquet"], "reason": "bad"}}}
    fmt.write_manifest(root, manifest)
    assert fmt.read_manifest(root) == manifest
    assert fmt.committed_shards(manifest) == shards
    assert not list(Path(root).glob(".*.tmp"))  # atomic write leaves no temp file
    shots = load_frames(root)  # the reader sees exactly what was written
    assert [s.shot_id for s in shots] == ["f1/0000", "f1/0001"]
    assert np.array_equal(shots["f1/0001"].color(0), colors[3])
    assert np.array_equal(shots["f1/0000"].lineart(2), lines[2])
    assert shots["f1/0000"].holds.tolist() == [False, True, False]
    assert fmt.read_manifest(str(tmp_path / "none")) is None


def test_write_film_records_checksums(tmp_path):
    import hashlib

    rng = np.random.default_rng(2)
    colors, lines, shot_of, holds = _film(rng)
    table = fmt.frame_table("f", shot_of, [fmt.encode_color_png(c) for c in colors],
                            [fmt.encode_lineart_png(x) for x in lines], holds, 12, 16)
    rels, shas = fmt.write_film(tmp_path, "f", table)
    assert rels == ["frames/f/part-00000.parquet"]
    assert shas == [hashlib.sha256((tmp_path / rels[0]).read_bytes()).hexdigest()]


# Writing a shard (pq.write_table / ParquetWriter) or the manifest (the MANIFEST_NAME file) by
# hand anywhere but the format module is a second, drifting copy of the format.
_HAND_WRITES = (
    re.compile(r"\bpq\.write_table\(|\bParquetWriter\(|parquet\.write_table\("),
    re.compile(r"MANIFEST_NAME\)?\s*\)?\.write_(text|bytes)\(|manifest\.json\"?\)?\.write_(text|bytes)\("),
    re.compile(r"write_bytes_atomic\([^)]*MANIFEST_NAME"),
    re.compile(r"cv2\.im(en|de)code\(\s*\"?\.?png"),
)
_SCOPE = ("lcmftn", "workflows", "tests/helpers")


def _hand_writers(files: list[Path]) -> list[str]:
    hits = []
    for f in files:
        text = f.read_text()
        for pat in _HAND_WRITES:
            for m in pat.finditer(text):
                hits.append(f"{f.relative_to(ROOT)}:{text[:m.start()].count(chr(10)) + 1}: {m.group(0)}")
    return hits


def test_only_the_format_module_writes_shards_manifests_and_pngs():
    files = [p for d in _SCOPE for p in sorted((ROOT / d).rglob("*.py"))]
    assert len(files) > 30  # the scan itself sees the code base
    owner = ROOT / "lcmftn" / "data" / "dataset_format.py"
    assert _hand_writers([owner])  # the patterns match the real writer (so they can fail)
    hits = _hand_writers([f for f in files if f != owner])
    assert not hits, "write through lcmftn.data.dataset_format instead:\n" + "\n".join(hits)
