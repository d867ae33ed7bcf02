"""Reading a shot dataset (Parquet + manifest) written by hand with FRAME_SCHEMA."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lcmftn.data.dataset import (
    FRAME_SCHEMA,
    FRAMES_DIR,
    MANIFEST_NAME,
    EvalSequenceDataset,
    WindowPairDataset,
    encode_color_png,
    encode_lineart_png,
    eval_sequences,
    load_frames,
    shot_id_for,
    split_shots,
)
from lcmftn.data.dataset_format import png_crc32
from lcmftn.data.pairs import WindowConfig

H, W = 24, 32


def _color(film: str, frame: int) -> np.ndarray:
    """Colour frame whose red channel encodes the frame index and green the film."""
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = frame * 4
    img[..., 1] = 100 if film == "a" else 200
    img[:, : W // 2, 2] = 255  # the left half is blue: shows horizontal flips
    return img


def _rows(film: str, shots: list[tuple[int, int]], hold_every: int = 0) -> pa.Table:
    rows = {k: [] for k in FRAME_SCHEMA.names}
    for k, (s, e) in enumerate(shots):
        for f in range(s, e):
            la = np.full((H, W), 255, np.uint8)
            la[f % H, :] = 0
            rows["film"].append(film)
            rows["shot"].append(k)
            rows["shot_id"].append(shot_id_for(film, k))
            rows["frame"].append(f)
            rows["color_png"].append(encode_color_png(_color(film, f)))
            rows["lineart_png"].append(encode_lineart_png(la))
            rows["hold"].append(bool(hold_every and f > s and f % hold_every == 1))
            rows["height"].append(H)
            rows["width"].append(W)
            rows["color_crc32"].append(png_crc32(rows["color_png"][-1]))
            rows["lineart_crc32"].append(png_crc32(rows["lineart_png"][-1]))
    return pa.table(rows, schema=FRAME_SCHEMA)


@pytest.fixture
def dataset(tmp_path):
    """Film "a" (ok, 2 shards, rows shuffled), film "b" (failed: shard on disk, not listed),
    and a stray unlisted shard of "a" (a half-written retry) that must never be read."""
    root = tmp_path / "ds"
    (root / FRAMES_DIR / "a").mkdir(parents=True)
    (root / FRAMES_DIR / "b").mkdir(parents=True)
    a = _rows("a", [(0, 50), (50, 62)], hold_every=2)
    a = a.take(np.random.default_rng(0).permutation(a.num_rows))  # readers must sort
    pq.write_table(a.slice(0, 30), root / FRAMES_DIR / "a" / "part-00000.parquet")
    pq.write_table(a.slice(30), root / FRAMES_DIR / "a" / "part-00001.parquet")
    pq.write_table(_rows("a", [(0, 5)]), root / FRAMES_DIR / "a" / "part-99999.parquet")
    pq.write_table(_rows("b", [(0, 20)]), root / FRAMES_DIR / "b" / "part-00000.parquet")
    manifest = {
        "version": 1, "config": {"size_px": H},
        "films": {
            "a": {"status": "ok", "source": "a.mp4", "sha256": "0" * 64, "reason": None,
                  "shots": [{"shot": 0, "start": 0, "end": 50}, {"shot": 1, "start": 50, "end": 62}],
                  "frames": 62, "shards": ["frames/a/part-00000.parquet", "frames/a/part-00001.parquet"]},
            "b": {"status": "failed", "source": "b.mp4", "sha256": None, "reason": "truncated",
                  "shots": [], "frames": 0, "shards": ["frames/b/part-00000.parquet"]},
        },
    }  # fmt: skip
    (root / MANIFEST_NAME).write_text(json.dumps(manifest))
    return root


def test_load_frames_reads_only_manifest_listed_committed_shards(dataset):
    shots = load_frames(str(dataset))
    assert shots.films == ["a"]
    assert [s.shot_id for s in shots] == ["a/0000", "a/0001"]
    assert [len(s) for s in shots] == [50, 12] and shots.num_frames == 62  # not 67: stray shard unread
    s0 = shots["a/0000"]
    assert s0.frames.tolist() == list(range(50))  # sorted although the rows were shuffled
    assert s0.color(7)[0, 10, 0] == 28 and s0.lineart(7)[7, 0] == 0
    assert not s0.holds[0] and s0.holds[3] and not s0.holds[4]
    assert shots["a/0001"].holds[0] is np.False_  # first frame of a shot is never a hold
    assert s0.unchanged(2, 3) and not s0.unchanged(3, 4) and not s0.unchanged(3, 3)
    assert shots.manifest["films"]["b"]["status"] == "failed"


def test_folder_without_manifest_is_read_whole(dataset):
    (dataset / MANIFEST_NAME).unlink()
    shots = load_frames(str(dataset))
    assert shots.films == ["a", "b"]
    assert load_frames(str(dataset), films=["b"]).num_frames == 20


def test_missing_dataset_and_corrupt_shard(tmp_path, dataset):
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        load_frames(str(tmp_path / "nothing"))
    (dataset / FRAMES_DIR / "a" / "part-00001.parquet").write_bytes(b"not parquet")
    with pytest.raises(OSError, match="part-00001.parquet"):
        load_frames(str(dataset))


def test_corrupt_manifest_is_named_not_read_as_no_manifest(dataset):
    # A truncated manifest must not fall back to "read every shard" (uncommitted ones too).
    (dataset / MANIFEST_NAME).write_text('{"films": {"a": ')
    with pytest.raises(ValueError, match=r"manifest\.json: not valid JSON"):
        load_frames(str(dataset))
    (dataset / MANIFEST_NAME).write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        load_frames(str(dataset))


def test_window_pair_dataset_items_and_augmentation(dataset):
    shots = load_frames(str(dataset))
    ds = WindowPairDataset(shots, WindowConfig(width_frames=40, stride_frames=5), image_size_px=16, seed=1)
    # shot 0 (50 frames): windows start 0, 5, 10; shot 1 (12 frames): one pair (0, 11)
    assert [(ds.pair_info(i)["frame_p"], ds.pair_info(i)["frame_n"]) for i in range(len(ds))] == [
        (0, 39), (5, 44), (10, 49), (50, 61)]  # fmt: skip
    item = ds[0]
    assert {k: tuple(v.shape) for k, v in item.items()} == {
        "s_p": (1, 16, 16), "c_p": (3, 16, 16), "s_n": (1, 16, 16), "c_n": (3, 16, 16)}  # fmt: skip
    assert all(v.dtype == torch.float32 and 0 <= v.min() and v.max() <= 1 for v in item.values())
    assert torch.equal(ds[2]["c_p"], ds[2]["c_p"])  # deterministic per (seed, epoch, index)
    flips = set()
    for epoch in range(8):  # crops/flips change with the epoch and are shared by all 4 images
        ds.set_epoch(epoch)
        it = ds[0]
        for key in ("c_p", "c_n"):
            left, right = it[key][2, :, 0].mean() > 0.9, it[key][2, :, -1].mean() > 0.9
            assert left != right
        assert (it["c_p"][2, :, 0] == it["c_n"][2, :, 0]).all()
        flips.add(bool(it["c_p"][2, :, 0].mean() < 0.1))
    assert flips == {True, False}
    plain = WindowPairDataset(shots, WindowConfig(40, 5), image_size_px=16, augment=False)
    c = plain[3]["c_n"]  # frame 61, centre crop, no flip
    assert abs(float(c[0].mean()) - 61 * 4 / 255) < 0.02 and abs(float(c[1].mean()) - 100 / 255) < 0.02


def test_unchanged_pairs_are_skipped(dataset):
    shots = load_frames(str(dataset))
    ds = WindowPairDataset(shots, WindowConfig(width_frames=2, stride_frames=1), image_size_px=16)
    pairs = {(ds.pair_info(i)["frame_p"], ds.pair_info(i)["frame_n"]) for i in range(len(ds))}
    assert (2, 3) not in pairs and (3, 4) in pairs  # frame 3 holds frame 2
    assert len(pairs) == (49 - 25) + (11 - 6)  # consecutive pairs minus the held ones


def test_eval_sequences_and_dataset(dataset):
    shots = load_frames(str(dataset))
    seqs = eval_sequences(shots, strides=(1, 5, 10), seed=0)
    by = {(s.shot_id, s.stride) for s in seqs}
    # shot 1 (12 frames) is too short for stride 5 (needs 21) and 10 (needs 41)
    assert ("a/0001", 5) not in by and ("a/0001", 10) not in by and ("a/0000", 10) in by
    for s in seqs:
        assert [b - a for a, b in zip(s.positions, s.positions[1:], strict=False)] == [s.stride] * 4
    assert eval_sequences(shots, seed=0) == seqs  # seeded, stable across runs
    ds = EvalSequenceDataset(shots, image_size_px=16, seed=0)
    item = ds[0]
    assert item["color"].shape == (5, 3, 16, 16) and item["lineart"].shape == (5, 1, 16, 16)
    assert item["frames"].tolist() == list(ds.sequences[0].frames)
    reds = item["color"][:, 0].mean(dim=(1, 2)) * 255 / 4
    assert torch.allclose(reds, item["frames"].float(), atol=0.5)


def test_split_shots_holds_out_whole_shots(dataset):
    shots = load_frames(str(dataset))
    train, val = split_shots(shots, 0.3, seed=0)
    assert len(train) == 1 and len(val) == 1
    assert {s.shot_id for s in train} | {s.shot_id for s in val} == {"a/0000", "a/0001"}
    assert split_shots(shots, 0.3, seed=0)[1][0].shot_id == val[0].shot_id
    with pytest.raises(ValueError):
        split_shots(shots, 1.0)
