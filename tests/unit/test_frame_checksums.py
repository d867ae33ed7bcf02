"""Issue 9: per-frame CRC-32 in the shards, verified on every read path, corrupt frames named."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from lcmftn.data import dataset_format as fmt
from lcmftn.data.dataset import load_frames
from tests.helpers.datasets import write_tiny_dataset


def corrupt_frame(root: Path, row: int, column: str = "color_png") -> tuple[Path, int]:
    """Flip one byte inside the stored PNG of the first row >= ``row`` whose PNG no other row
    repeats (tiny shots repeat drawings), in the first shard, in place (bit rot): shards are
    written uncompressed, so the PNG bytes lie verbatim in the file. Returns (shard, row)."""
    shard = next((root / fmt.FRAMES_DIR).rglob("*.parquet"))
    pngs = fmt.read_shard(str(shard), pafs.LocalFileSystem(), verify=False)[column].to_pylist()
    row = next(r for r in range(row, len(pngs)) if pngs.count(pngs[r]) == 1)
    png = pngs[row]
    raw = bytearray(shard.read_bytes())
    at = raw.find(png)
    assert at >= 0
    while at >= 0:  # the data page and (maybe) the column statistics hold a copy
        raw[at + len(png) // 2] ^= 0xFF
        at = raw.find(png, at + 1)
    shard.write_bytes(bytes(raw))
    return shard, row


def test_writer_stores_a_checksum_per_png(tmp_path):
    root = write_tiny_dataset(tmp_path / "ds", shots_per_film=2, frames_per_shot=4, size_px=16, hold_every=0)
    shard = next((root / fmt.FRAMES_DIR).rglob("*.parquet"))
    t = fmt.read_shard(str(shard), pafs.LocalFileSystem())
    for png_col, crc_col in fmt.CHECKSUM_COLUMNS.items():
        assert t[crc_col].null_count == 0
        assert t[crc_col].to_pylist() == [fmt.png_crc32(b) for b in t[png_col].to_pylist()]
    assert fmt.verify_frames(t, str(shard)) == []


def test_corrupt_frame_is_named_and_counted_by_the_format_reader(tmp_path):
    root = write_tiny_dataset(tmp_path / "ds", shots_per_film=2, frames_per_shot=4, size_px=16, hold_every=0)
    shard, row = corrupt_frame(root, row=4)
    with pytest.raises(fmt.CorruptFrameError) as exc:
        fmt.read_shard(str(shard), pafs.LocalFileSystem())
    (bad,) = exc.value.frames
    assert (bad["film"], bad["shot"], bad["frame"], bad["column"]) == ("film00", 1, row, "color_png")
    assert bad["shard"] == str(shard) and "checksum mismatch" in bad["problem"]
    msg = str(exc.value)
    assert msg.startswith("1 corrupt frame(s)") and f"film film00 shot 1 frame {row} (color_png) in {shard}" in msg
    # the error crosses process boundaries (Ray) with its frame list
    assert pickle.loads(pickle.dumps(exc.value)).frames == exc.value.frames
    # the library loader (training workers) raises the same named error
    with pytest.raises(fmt.CorruptFrameError, match=f"film film00 shot 1 frame {row} "):
        load_frames(str(root))


def test_two_corrupt_frames_are_both_counted(tmp_path):
    root = write_tiny_dataset(tmp_path / "ds", shots_per_film=2, frames_per_shot=4, size_px=16, hold_every=0)
    _, r1 = corrupt_frame(root, row=0, column="lineart_png")
    shard, r2 = corrupt_frame(root, row=4)
    with pytest.raises(fmt.CorruptFrameError) as exc:
        fmt.read_shard(str(shard), pafs.LocalFileSystem())
    assert sorted((f["frame"], f["column"]) for f in exc.value.frames) == [(r1, "lineart_png"), (r2, "color_png")]
    assert str(exc.value).startswith("2 corrupt frame(s)")


def test_shards_without_the_checksum_columns_still_read(tmp_path):
    """Datasets written before the column existed: read, checksums null (not verifiable)."""
    import pyarrow.parquet as pq

    t = fmt.frame_table("old", [0, 0], [fmt.encode_color_png(np.zeros((4, 4, 3), np.uint8))] * 2,
                        [fmt.encode_lineart_png(np.full((4, 4), 255, np.uint8))] * 2, [False, True], 4, 4)
    old = t.drop_columns(list(fmt.CHECKSUM_COLUMNS.values()))
    path = tmp_path / "old.parquet"
    pq.write_table(old, path)  # an old writer's shard (test-only: the format module owns writing)
    back = fmt.read_shard(str(path), pafs.LocalFileSystem())
    assert back.schema == fmt.FRAME_SCHEMA and back["color_crc32"].null_count == 2
    assert back.drop_columns(list(fmt.CHECKSUM_COLUMNS.values())).equals(old)


def test_decode_errors_name_the_frame():
    with pytest.raises(ValueError, match="^undecodable colour PNG$"):
        fmt.decode_color_png(b"junk")
    where = {"film": "f", "shot": 2, "frame": 17, "shard": "s.parquet"}
    with pytest.raises(fmt.CorruptFrameError, match=r"film f shot 2 frame 17 \(lineart_png\) in s.parquet"):
        fmt.decode_lineart_png(b"junk", where)


def test_ray_data_pair_reader_verifies_before_decoding(tmp_path):
    """``workflows.data.shot_pairs`` (the Ray Data training path) checks a shot's checksums."""
    from workflows.data import shot_pairs

    root = write_tiny_dataset(tmp_path / "ds", shots_per_film=1, frames_per_shot=6, size_px=16, hold_every=0)
    shard, row = corrupt_frame(root, row=0)
    t = pa.Table.from_pydict(fmt.read_shard(str(shard), pafs.LocalFileSystem(), verify=False).to_pydict())
    batch = {k: np.asarray(v, dtype=object) for k, v in t.to_pydict().items()}
    batch["path"] = np.asarray([str(shard)] * t.num_rows, dtype=object)
    window = {"width_frames": 3, "stride_frames": 1}
    with pytest.raises(fmt.CorruptFrameError, match=f"film film00 shot 0 frame {row} \\(color_png\\) in {shard}"):
        shot_pairs(batch, window, 16, False, 0, 0)


def test_train_exits_2_naming_the_corrupt_frame_before_ray(tmp_path):
    """Training never runs on corrupt data and never retries it: exit 2 at planning time."""
    root = write_tiny_dataset(tmp_path / "ds", shots_per_film=3, frames_per_shot=8, size_px=16, hold_every=0)
    shard, row = corrupt_frame(root, row=8)
    proc = subprocess.run([sys.executable, "-m", "workflows.train", "--data", str(root),
                           "--recipe", "cpu-small", "--storage", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"film film00 shot {row // 8} frame {row} (color_png) in {shard}: checksum mismatch" in proc.stderr
    assert "Traceback" not in proc.stderr
