"""Reading a video by frame range (PyAV seek) and the windowed shot reader of streaming colorize."""

from __future__ import annotations

import numpy as np
import pytest

from lcmftn.data.video import VideoReadError, iter_frames, iter_video_range, write_video
from lcmftn.episode import ShotFrames, frame_digest, open_source
from tests.integration.stream_film import write_lineart_video


def _frames(n: int = 45) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        f = (rng.integers(0, 255, (32, 48, 3)) // 16 * 16).astype(np.uint8)
        f[:6, :6] = i * 5  # every frame distinct
        out.append(f)
    return out


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("seek")
    frames = _frames()
    write_lineart_video(root / "gop8.mp4", frames, 24.0, gop=8)  # a keyframe every 8 frames
    write_video(root / "bframes.mp4", frames, 24.0)  # x264 defaults: B-frames, edit list
    return root


@pytest.mark.parametrize("name", ["gop8.mp4", "bframes.mp4"])
def test_seek_returns_exactly_the_requested_frames(videos, name):
    seq = list(iter_frames(videos / name))
    assert len(seq) == 45
    for s, e in [(0, 3), (7, 9), (8, 16), (13, 40), (39, 45), (44, 45), (21, 22), (5, 5)]:
        got = list(iter_video_range(videos / name, s, e))
        assert len(got) == e - s, (s, e)
        for k, (a, b) in enumerate(zip(got, seq[s:e], strict=True)):
            assert np.array_equal(a, b), f"{name}: frame {s + k} differs from the sequential decode"


def test_range_past_the_end_is_an_error_naming_the_file(videos):
    with pytest.raises(VideoReadError, match="gop8.mp4.*missing"):
        list(iter_video_range(videos / "gop8.mp4", 40, 50))


def test_shot_frames_random_access_window_and_digests(videos):
    src = open_source(str(videos / "gop8.mp4"), videos / "gop8.mp4")
    seq = [f for f in (ShotFrames(src, 0, 45)[t] for t in range(45))]
    digests = b"".join(frame_digest(f) for f in seq[10:40])
    rd = ShotFrames(src, 10, 40, digests, window=4)
    order = [0, 29, 28, 27, 5, 6, 7, 20, 3, 29, 0]  # keys, backward chains, forward, jumps
    for t in order:
        assert np.array_equal(rd[t], seq[10 + t])
        assert len(rd._cache) <= 4  # a window, never the shot
    rd.close()
    bad = bytearray(digests)
    bad[16 * 3] ^= 1  # the planned digest of frame 13 no longer matches the file
    with pytest.raises(ValueError, match="frame 13 .* changed since the job was planned"):
        ShotFrames(src, 10, 40, bytes(bad))[3]
