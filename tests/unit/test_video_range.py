"""Reading a video by frame range (the one reader, ``iter_frame_range``: seek to a keyframe, frames
placed by pts) and the windowed shot reader of streaming colorize built on it."""

from __future__ import annotations

import pickle
from dataclasses import replace
from fractions import Fraction

import av
import numpy as np
import pytest

from lcmftn.data.video import (
    VideoReadError,
    iter_frame_range,
    iter_frames,
    probe_keyframes,
    write_video,
)
from lcmftn.episode import ShotFrames, frame_digest, iter_raw, open_source
from lcmftn.jobs import add_index_windows
from tests.integration.stream_film import write_lineart_video

RANGES = [(0, 3), (7, 9), (8, 16), (13, 40), (39, 45), (44, 45), (21, 22), (5, 5)]


def _frames(n: int = 45) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        f = (rng.integers(0, 255, (32, 48, 3)) // 16 * 16).astype(np.uint8)
        f[:6, :6] = i * 5  # every frame distinct
        out.append(f)
    return out


def _write_vfr(path, frames: list[np.ndarray]) -> None:
    """Variable frame rate: frame i lasts 1, 2 or 3 ticks of 1/48 s (a keyframe every 8)."""
    with av.open(str(path), "w") as c:
        st = c.add_stream("libx264", rate=24)
        st.height, st.width = frames[0].shape[:2]
        st.pix_fmt = "yuv444p"
        st.codec_context.time_base = Fraction(1, 48)
        st.options = {"qp": "0", "g": "8", "keyint_min": "8", "sc_threshold": "0"}
        pts = 0
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            vf.pts, vf.time_base = pts, Fraction(1, 48)
            pts += 1 + i % 3
            c.mux(st.encode(vf))
        c.mux(st.encode(None))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("seek")
    frames = _frames()
    write_lineart_video(root / "gop8.mp4", frames, 24.0, gop=8)  # a keyframe every 8 frames
    write_lineart_video(root / "gop8.mkv", frames, 24.0, gop=8)
    write_video(root / "bframes.mp4", frames, 24.0)  # x264 defaults: B-frames, edit list
    _write_vfr(root / "vfr.mkv", frames)
    return root


@pytest.mark.parametrize("name", ["gop8.mp4", "gop8.mkv", "bframes.mp4", "vfr.mkv"])
def test_range_returns_exactly_the_requested_frames(videos, name):
    seq = list(iter_frames(videos / name))
    assert len(seq) == 45
    idx = probe_keyframes(videos / name)
    if name.startswith("gop8"):
        assert idx.keyframes == tuple(range(0, 45, 8))  # so ranges cross keyframes
    for s, e in RANGES:
        for index in (idx, idx.window(s, e), None):  # whole index, a window, probed
            got = list(iter_frame_range(videos / name, s, e, index=index))
            assert len(got) == e - s, (s, e)
            for k, (a, b) in enumerate(zip(got, seq[s:e], strict=True)):
                assert np.array_equal(a, b), f"{name}: frame {s + k} differs from the sequential decode"


def test_window_is_small_and_covers_only_its_range(videos):
    path = videos / "gop8.mp4"
    idx = probe_keyframes(path)
    w = idx.window(10, 40)
    assert (w.offset, w.keyframes, w.pts) == (8, (8, 16, 24, 32), idx.pts[8:40])
    assert len(pickle.dumps(w)) < len(pickle.dumps(idx))
    seq = list(iter_frames(path))
    got = list(iter_frame_range(path, 26, 31, index=w))  # a range inside the window: from keyframe 24
    assert all(np.array_equal(a, b) for a, b in zip(got, seq[26:31], strict=True))
    for s, e in [(5, 12), (30, 41)]:  # before the window's keyframe / past its end
        with pytest.raises(ValueError, match=r"gop8\.mp4.*covers frames \[8, 40\)"):
            list(iter_frame_range(path, s, e, index=w))


def test_range_past_the_end_is_an_error_naming_the_file(videos):
    with pytest.raises(ValueError, match=r"gop8\.mp4.*outside \[0, 45\)"):
        list(iter_frame_range(videos / "gop8.mp4", 40, 50))


def test_truncated_file_is_an_error_naming_the_file(videos, tmp_path):
    full = videos / "gop8.mkv"
    idx, seq = probe_keyframes(full), list(iter_frames(full))
    cut = tmp_path / "cut.mkv"  # planned on the whole file, read after it lost its end
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    got = []
    with pytest.raises(VideoReadError, match=r"cut\.mkv: truncated: frames \d+\.\.44") as err:
        for img in iter_frame_range(cut, 13, 45, index=idx.window(13, 45)):
            got.append(img)
    assert err.value.path == str(cut) and 0 < len(got) < 32
    assert all(np.array_equal(a, b) for a, b in zip(got, seq[13 : 13 + len(got)], strict=True))
    # streaming colorize: the frames that are gone are named unreadable, the others read
    src = replace(open_source(str(full), full), local=str(cut))
    rows = list(iter_raw(src, 13, 45))
    assert [i for i, _, _ in rows] == list(range(13, 45))
    assert [i for i, img, _ in rows if img is not None] == list(range(13, 13 + len(got)))
    assert all(f"line-art frame {i} of {cut}: unreadable (truncated" in e for i, img, e in rows if img is None)


def test_frames_announced_but_not_in_the_file_are_named(videos):
    src = open_source(str(videos / "gop8.mp4"), videos / "gop8.mp4")
    assert src.index.frames == src.n_frames == 45
    rows = list(iter_raw(replace(src, n_frames=48), 40, 48))  # the container claims 48 frames
    assert [img is not None for _, img, _ in rows] == [True] * 5 + [False] * 3
    assert "frame 46 of" in rows[6][2] and "announces 48 frames, 45 were found" in rows[6][2]


def test_shot_frames_random_access_window_and_digests(videos):
    src = open_source(str(videos / "gop8.mp4"), videos / "gop8.mp4")
    seq = [f for f in (ShotFrames(src, 0, 45)[t] for t in range(45))]
    digests = b"".join(frame_digest(f) for f in seq[10:40])
    order = [0, 29, 28, 27, 5, 6, 7, 20, 3, 29, 0]  # keys, backward chains, forward, jumps
    # the driver's whole index, a job's window (what an actor gets), none (probed where read)
    for s in (src, src.without_index().with_index(src.window(10, 40)), src.without_index()):
        rd = ShotFrames(s, 10, 40, digests, window=4)
        for t in order:
            assert np.array_equal(rd[t], seq[10 + t])
            assert len(rd._cache) <= 4  # a window, never the shot
        rd.close()
    bad = bytearray(digests)
    bad[16 * 3] ^= 1  # the planned digest of frame 13 no longer matches the file
    with pytest.raises(ValueError, match="frame 13 .* changed since the job was planned"):
        ShotFrames(src, 10, 40, bytes(bad))[3]


def test_jobs_carry_only_their_windows(videos):
    src = open_source(str(videos / "gop8.mp4"), videos / "gop8.mp4")
    jobs = add_index_windows([{"start": 10, "end": 20, "borrowed_from": None},
                              {"start": 20, "end": 45, "borrowed_from": 3}], src)
    assert jobs[0]["index"] == src.index.window(10, 20) and jobs[0]["borrowed_index"] is None
    assert jobs[1]["index"].offset == 16 and jobs[1]["borrowed_index"] == src.index.window(3, 4)
    assert src.without_index().index is None and src.without_index().n_frames == 45
