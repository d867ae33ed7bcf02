"""Split ingest (issue 8 part 2): keyframe probing, frame ranges, stitched shot features, and
segmented staging byte-identical to the one-task ``stage_film`` (Ray-free)."""

from __future__ import annotations

from dataclasses import asdict
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pyarrow.fs as pafs
import pytest

from lcmftn.data.shots import (
    DETECTORS,
    FEATURE_CONTEXT_FRAMES,
    FrameScorer,
    cuts_from_features,
    detect_shots,
)
from lcmftn.data.synthetic import FilmConfig, generate_film
from lcmftn.data.video import FrameIndex, iter_frame_range, probe_keyframes, read_frames
from lcmftn.ingest import IngestConfig, stage_film
from lcmftn.ingest_segments import assemble_film, plan_film, split_ranges, stage_segment

SIZE = 64
GOP = 12  # a keyframe every 12 frames
SEGMENT = 24  # -> segment boundaries at 24, 48, 72
# Shot lengths putting cuts AT a boundary (24), 1 BEFORE one (47) and 1 AFTER one (73).
SHOT_LENGTHS = (24, 23, 26, 27)
CUTS = [24, 47, 73]
TIMINGS = ("seconds", "process_seconds", "cpu_seconds")


def _shot_frames() -> list[np.ndarray]:
    frames = []
    for seed, n in enumerate(SHOT_LENGTHS):
        cfg = FilmConfig(seed=10 + seed, size=SIZE, num_shots=1, shot_frames=n, num_characters=1,
                         hold_prob=0.7, still_prob=0.0)  # fmt: skip
        frames += list(generate_film(cfg).frames)[:n]
    return frames


def _write_gop_video(path: Path, frames: list[np.ndarray]) -> None:
    """H.264 with a keyframe every GOP frames and none at the cuts (scenecut off)."""
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("libx264", rate=Fraction(24))
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "18", "preset": "veryfast", "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0"}
        for img in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")))
        c.mux(s.encode(None))


@pytest.fixture(scope="module")
def film(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("seg") / "film.mp4"
    _write_gop_video(path, _shot_frames())
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("segdir") / "film"
    root.mkdir()
    for i, img in enumerate(_shot_frames()):
        cv2.imwrite(str(root / f"f{i}.png"), img[..., ::-1])
    return root


def test_probe_keyframes_returns_decodable_positions(film):
    idx = probe_keyframes(film)
    allf = read_frames(film)
    assert idx.frames == len(allf) == sum(SHOT_LENGTHS)
    assert list(idx.keyframes) == list(range(0, idx.frames, GOP))
    assert list(idx.pts) == sorted(idx.pts) and len(set(idx.pts)) == idx.frames
    for k in idx.keyframes:  # decoding can start at every keyframe and gives frame k itself
        first = next(iter_frame_range(film, k, k + 1, index=idx.window(k, k + 1)))
        assert np.array_equal(first, allf[k]), k


@pytest.mark.parametrize("suffix", [".mkv", ".mov"])
def test_keyframes_decodable_in_other_containers(tmp_path, suffix):
    path = tmp_path / f"film{suffix}"
    frames = [cv2.resize(f, (32, 32)) for f in _shot_frames()]
    _write_gop_video(path, frames)
    idx, allf = probe_keyframes(path), read_frames(path)
    assert list(idx.keyframes) == list(range(0, len(frames), GOP))
    got = list(iter_frame_range(path, 47, 74, index=idx.window(47, 74)))
    assert all(np.array_equal(a, b) for a, b in zip(got, allf[47:74], strict=True))


def test_avi_is_not_split(tmp_path):
    path = tmp_path / "film.avi"  # AVI has no pts: a seek could not place the frames
    _write_gop_video(path, [cv2.resize(f, (32, 32)) for f in _shot_frames()])
    units = plan_film({"film": "f", "source": str(path), "prev": ""}, str(tmp_path / "o"),
                      pafs.LocalFileSystem(), asdict(IngestConfig(size_px=32)), SEGMENT)  # fmt: skip
    assert [u["kind"] for u in units] == ["whole"]


@pytest.mark.parametrize("start,stop", [(0, 5), (11, 13), (23, 49), (47, 74), (72, 100), (99, 100)])
def test_segment_decodes_exactly_its_range(film, start, stop):
    allf = read_frames(film, size_px=32)
    idx = probe_keyframes(film)
    got = list(iter_frame_range(film, start, stop, size_px=32, index=idx.window(start, stop)))
    assert len(got) == stop - start
    assert all(np.array_equal(a, b) for a, b in zip(got, allf[start:stop], strict=True))


def test_frame_range_bad_input(film, folder):
    with pytest.raises(ValueError, match="outside"):
        list(iter_frame_range(film, 90, 101))
    assert probe_keyframes(folder).keyframes == tuple(range(sum(SHOT_LENGTHS)))
    got = list(iter_frame_range(folder, 40, 50))
    assert all(np.array_equal(a, b) for a, b in zip(got, read_frames(folder)[40:50], strict=True))
    # a window that does not cover the range cannot place the frames: a clear error
    w = probe_keyframes(film).window(30, 40)
    bad = FrameIndex(w.frames, w.pts[:3], w.keyframes, w.offset)
    with pytest.raises(ValueError, match="film.mp4"):
        list(iter_frame_range(film, 30, 40, index=bad))


def test_split_ranges_start_at_keyframes():
    idx = FrameIndex(100, (), tuple(range(0, 100, GOP)))
    assert split_ranges(idx, SEGMENT) == [(0, 24), (24, 48), (48, 72), (72, 96), (96, 100)]
    assert split_ranges(idx, 30) == [(0, 36), (36, 72), (72, 100)]
    assert split_ranges(idx, 0) == [(0, 100)]
    assert split_ranges(FrameIndex(100, (), (0,)), 10) == [(0, 100)]  # one GOP: no split


def _segmented_features(frames, detector, seg, context):
    feats = []
    for a in range(0, len(frames), seg):
        sc = FrameScorer(detector)
        for f in frames[max(0, a - context) : a]:
            sc.prime(f)
        feats += [sc.feature(f) for f in frames[a : a + seg]]
    return feats


@pytest.mark.parametrize("detector", sorted(DETECTORS))
def test_stitched_features_give_the_one_pass_cuts(detector):
    frames = [cv2.resize(f, (48, 48)) for f in _shot_frames()]
    ref = detect_shots(frames, detector=detector).cuts
    if detector != "threshold":  # no fades in the film
        assert ref == CUTS
    for seg in (SEGMENT, 23, 25, 1):
        feats = _segmented_features(frames, detector, seg, FEATURE_CONTEXT_FRAMES[detector])
        assert cuts_from_features(feats, detector) == ref, seg


def test_content_features_need_their_context_frame():
    frames = [cv2.resize(f, (48, 48)) for f in _shot_frames()]
    ok = _segmented_features(frames, "content", SEGMENT, 1)
    cut = _segmented_features(frames, "content", SEGMENT, 0)
    assert ok != cut and cut[SEGMENT] == 0.0 and ok[SEGMENT] > 0  # frame 24 is a cut


def _ingest_both(src: Path, tmp: Path, cfg: IngestConfig) -> tuple[dict, dict, Path, Path]:
    fs, cfg_dict = pafs.LocalFileSystem(), asdict(cfg)
    item = {"film": "film", "source": str(src), "prev": ""}
    one, split = tmp / "one", tmp / "split"
    whole = stage_film(item, str(one), fs, None, cfg_dict)
    units = plan_film(item, str(split), fs, cfg_dict, SEGMENT)
    assert [u["kind"] for u in units] == ["segment"] * 5
    results = [stage_segment(u, str(split), fs, cfg_dict) for u in reversed(units)]  # any order
    seg = assemble_film(units[0], results, str(split), fs, cfg_dict)
    return whole, seg, one, split


@pytest.mark.parametrize("source", ["film", "folder"])
@pytest.mark.parametrize("detector", ["content", "adaptive"])
def test_segmented_staging_is_byte_identical(film, folder, tmp_path, source, detector):
    cfg = IngestConfig(size_px=SIZE, detector=detector, rows_per_shard=40)
    whole, seg, one, split = _ingest_both(film if source == "film" else folder, tmp_path, cfg)
    assert whole["status"] == seg["status"] == "ok", (whole, seg)
    assert [s["start"] for s in whole["shots"][1:]] == CUTS
    assert 0 < whole["holds"] < whole["frames"]
    assert {k: v for k, v in seg.items() if k not in TIMINGS} == {
        k: v for k, v in whole.items() if k not in TIMINGS}
    a = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    b = sorted(p.relative_to(split) for p in split.rglob("*") if p.is_file())
    assert a == b and len(a) == 3  # 100 rows / 40 per shard; no segment file left behind
    for rel in a:
        assert (one / rel).read_bytes() == (split / rel).read_bytes(), rel


def test_a_bad_segment_fails_the_film_and_clears_staging(film, tmp_path):
    cfg_dict = asdict(IngestConfig(size_px=SIZE))
    fs, out = pafs.LocalFileSystem(), str(tmp_path / "ds")
    units = plan_film({"film": "film", "source": str(film), "prev": ""}, out, fs, cfg_dict, SEGMENT)
    results = [stage_segment(u, out, fs, cfg_dict) for u in units]
    broken = {**units[2], "index": {**units[2]["index"], "pts": units[2]["index"]["pts"][:2]}}
    results[2] = stage_segment(broken, out, fs, cfg_dict)
    assert "error" in results[2] and str(film) in results[2]["error"]
    entry = assemble_film(units[0], results, out, fs, cfg_dict)
    assert entry["status"] == "failed" and str(film) in entry["reason"]
    assert not list(Path(out).rglob("*.parquet"))


def test_assemble_writes_shards_while_reading_segments(tmp_path):
    """Issue 8: the assemble step holds one segment and one shard, not the film: shard k is on
    disk before the rows after it are pulled from the segment files; a count mismatch fails."""
    from lcmftn.data.dataset_format import frame_table, write_film_shards, write_shards

    fs, n, rps = pafs.LocalFileSystem(), 23, 5
    color = [bytes([i]) * 7 for i in range(n)]
    line = [bytes([200 - i]) * 3 for i in range(n)]
    shot_of, holds = np.repeat(np.arange(3), [9, 9, 5]).astype(np.int32), np.arange(n) % 4 == 1
    shards_seen = []

    def rows():
        for i in range(n):
            shards_seen.append(len(list((tmp_path / "s").glob("*.parquet"))) if (tmp_path / "s").exists() else 0)
            yield color[i], line[i]

    names = write_film_shards(rows(), "f", shot_of, holds, 8, 8, fs, str(tmp_path / "s"), rps)
    assert shards_seen == [i // rps for i in range(n)] and len(names) == 5
    ref = write_shards(frame_table("f", shot_of, color, line, holds, 8, 8), fs, str(tmp_path / "r"), rps)
    assert ref == names and all((tmp_path / "s" / m).read_bytes() == (tmp_path / "r" / m).read_bytes() for m in ref)
    with pytest.raises(ValueError, match="22"):
        write_film_shards(iter(list(zip(color, line, strict=True))[:22]), "f", shot_of, holds, 8, 8, fs,
                               str(tmp_path / "t"), rps)
