"""Video / image-folder decoding: frame accuracy per container, size policy, bad inputs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lcmftn.data.video import (
    VideoReadError,
    iter_frames,
    list_image_files,
    probe_video,
    read_frames,
    resize_image,
    to_rgb,
    working_size,
    write_video,
)

N = 40


def _barcode(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Frame i shows i in binary as 6 black/white bars (robust to lossy coding)."""
    img = np.full((h, w, 3), 255, np.uint8)
    for b in range(6):
        if i >> b & 1:
            img[:, b * 10 : (b + 1) * 10] = 0
    img[:, 60:, 0] = 200  # a red-ish strip: colour channels must stay in RGB order
    img[:, 60:, 1:] = 30
    return img


def _read_id(img: np.ndarray) -> int:
    w = img.shape[1] / 64
    return sum(int(img[:, round(b * 10 * w) : round((b + 1) * 10 * w)].mean() < 128) << b for b in range(6))


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [_barcode(i) for i in range(N)]


@pytest.mark.parametrize("ext", ["mp4", "mkv", "avi", "mov"])
def test_containers_decode_every_frame_in_order(tmp_path, frames, ext):
    path = tmp_path / f"clip.{ext}"
    assert write_video(path, frames, fps=24, crf=0) == N
    decoded = read_frames(path)
    assert [_read_id(f) for f in decoded] == list(range(N))
    assert decoded[0].shape == (48, 64, 3) and decoded[0].dtype == np.uint8
    r, g, b = decoded[0][:, 62].mean(axis=0)
    assert r > 150 and g < 80 and b < 80, "channels must come back as RGB"
    info = probe_video(path)
    assert (info.frames, info.width, info.height) == (N, 64, 48) and abs(info.fps - 24) < 1e-6


def test_write_video_is_atomic_and_pads_odd_sizes(tmp_path):
    path = tmp_path / "odd.mp4"
    write_video(path, [np.zeros((33, 45, 3), np.uint8)] * 3, fps=12)
    assert [p.name for p in tmp_path.iterdir()] == ["odd.mp4"]
    assert read_frames(path)[0].shape == (34, 46, 3)
    with pytest.raises(ValueError, match="shape"):
        write_video(tmp_path / "mixed.mp4", [np.zeros((32, 32, 3), np.uint8), np.zeros((16, 16, 3), np.uint8)], 24)
    assert not (tmp_path / "mixed.mp4").exists() and len(list(tmp_path.iterdir())) == 1


def test_image_folder_sorted_by_number_with_alpha_over_white(tmp_path, frames):
    for i in (0, 1, 2, 10, 11):  # f10 must come after f2
        cv2.imwrite(str(tmp_path / f"f{i}.png"), cv2.cvtColor(frames[i], cv2.COLOR_RGB2BGR))
    rgba = np.zeros((48, 64, 4), np.uint8)  # fully transparent -> white paper
    cv2.imwrite(str(tmp_path / "f20.png"), rgba)
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.name for p in list_image_files(tmp_path)] == ["f0.png", "f1.png", "f2.png", "f10.png", "f11.png", "f20.png"]
    decoded = read_frames(tmp_path)
    assert [_read_id(f) for f in decoded[:5]] == [0, 1, 2, 10, 11]
    assert np.array_equal(decoded[5], np.full((48, 64, 3), 255, np.uint8))
    assert probe_video(tmp_path).frames == 6


def test_resize_policy_short_side_and_center_crop(frames):
    img = np.zeros((90, 160, 3), np.uint8)
    assert working_size(160, 90, 45) == (80, 45)
    assert resize_image(img, 45).shape == (45, 80, 3)
    assert resize_image(img, 45, crop="center").shape == (45, 45, 3)
    assert resize_image(img, None).shape == (90, 160, 3)
    assert resize_image(img, None, crop="center").shape == (90, 90, 3)
    assert resize_image(np.zeros((200, 100), np.uint8), 50).shape == (100, 50)
    tall = np.zeros((100, 40, 3), np.uint8)
    tall[:, :20] = 255  # left half white: a centre crop keeps the vertical middle
    out = resize_image(tall, 20, crop="center")
    assert out.shape == (20, 20, 3) and out[:, :10].min() == 255 and out[:, 10:].max() == 0
    with pytest.raises(ValueError):
        resize_image(img, 45, crop="random")


def test_iter_frames_resizes_and_crops_while_streaming(tmp_path, frames):
    path = tmp_path / "clip.mkv"
    write_video(path, frames, fps=25)
    out = list(iter_frames(path, size_px=24))
    assert len(out) == N and out[0].shape == (24, 32, 3)
    assert [_read_id(f) for f in out] == list(range(N))
    assert next(iter_frames(path, size_px=24, crop="center")).shape == (24, 24, 3)


def test_to_rgb_gray_and_rgba():
    assert to_rgb(np.full((2, 2), 7, np.uint8)).shape == (2, 2, 3)
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 1] = (0, 0, 0, 255)
    assert to_rgb(rgba).tolist() == [[[255, 255, 255], [0, 0, 0]]]


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_truncated_video_raises_naming_the_file(tmp_path, frames, ext):
    good = tmp_path / f"good.{ext}"
    write_video(good, frames, fps=24)
    bad = tmp_path / f"cut.{ext}"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(VideoReadError, match=f"cut.{ext}") as err:
        read_frames(bad)
    assert "truncated" in str(err.value) or "corrupt" in str(err.value)


@pytest.mark.parametrize(
    "name, content, reason",
    [("empty.mp4", b"", "empty file"), ("text.mp4", b"hello world " * 100, "not a video"),
     ("missing.mp4", None, "no such file")],
)  # fmt: skip
def test_bad_inputs_raise_video_read_error(tmp_path, name, content, reason):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    for fn in (read_frames, probe_video):
        with pytest.raises(VideoReadError, match=reason) as err:
            fn(path)
        assert name in str(err.value) and isinstance(err.value, ValueError)


def test_empty_image_folder_and_unreadable_image(tmp_path):
    with pytest.raises(VideoReadError, match="no images"):
        read_frames(tmp_path)
    (tmp_path / "f1.png").write_bytes(b"garbage")
    with pytest.raises(VideoReadError, match="f1.png"):
        read_frames(tmp_path)


def test_audio_only_file_has_no_video_stream(tmp_path):
    import av

    path = tmp_path / "sound.mka"
    with av.open(str(path), "w", format="matroska") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        c.mux(s.encode(frame))
        c.mux(s.encode(None))
    with pytest.raises(VideoReadError, match="no video stream"):
        read_frames(path)


@pytest.mark.parametrize("name", ["clip.webm", "clip.gif", "clip"])
def test_write_video_refuses_containers_without_h264_naming_the_file(tmp_path, name):
    path = tmp_path / "sub" / name
    pulled = []

    def frames():
        pulled.append(1)
        yield np.zeros((16, 16, 3), np.uint8)

    with pytest.raises(ValueError) as err:
        write_video(path, frames(), fps=24)
    msg = str(err.value)
    assert str(path) in msg and ".mp4" in msg and ".mkv" in msg
    assert not pulled, "the error must come before any frame is encoded"
    assert not path.exists() and not (tmp_path / "sub").exists()


def test_frame_index_from_name_is_the_image_folder_order():
    from lcmftn.data import video

    assert video.frame_index_from_name("shot3_f0010") == 10
    assert video.frame_index_from_name("f2") == 2 and video.frame_index_from_name("ref") == -1
    assert video._last_int is video.frame_index_from_name
