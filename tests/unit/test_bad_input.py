"""Bad input named precisely: renamed containers, undecodable images, unwritable outputs."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from lcmftn.data import video
from lcmftn.integrations import storage


def test_png_renamed_mkv_is_not_a_film(tmp_path):
    ok, buf = cv2.imencode(".png", np.zeros((64, 64, 3), np.uint8))
    (tmp_path / "film.mkv").write_bytes(buf.tobytes())
    with pytest.raises(video.VideoReadError, match=r"film\.mkv: content is a still image.*not the \.mkv container"):
        video.probe_video(tmp_path / "film.mkv")
    with pytest.raises(video.VideoReadError, match="still image"):
        list(video.iter_frames(tmp_path / "film.mkv"))


def test_matching_containers_still_read(tmp_path):
    for suffix in video.WRITE_EXTENSIONS:
        path = tmp_path / f"v{suffix}"
        video.write_video(path, [np.full((32, 32, 3), 9, np.uint8)] * 3, 24)
        assert video.probe_video(path).frames == 3
    (tmp_path / "v.mkv").rename(tmp_path / "w.mp4")  # matroska content named .mp4
    with pytest.raises(video.VideoReadError, match="not the .mp4 container"):
        video.probe_video(tmp_path / "w.mp4")


def test_corrupt_png_is_an_undecodable_image_not_a_video(tmp_path):
    ok, buf = cv2.imencode(".png", np.zeros((64, 64, 3), np.uint8))
    (tmp_path / "000120.png").write_bytes(buf.tobytes()[:40])
    with pytest.raises(video.VideoReadError) as err:
        video.read_image(tmp_path / "000120.png")
    assert str(err.value).startswith(f"cannot read image {tmp_path / '000120.png'}: undecodable image")


def test_check_writable_local(tmp_path):
    storage.check_writable(tmp_path / "new" / "deeper")  # creatable: fine, nothing created
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(storage.NotWritableError, match="is a file, not a folder"):
        storage.check_writable(tmp_path / "file" / "out")
    with pytest.raises(storage.NotWritableError, match="exists and is not a folder"):
        storage.check_writable(tmp_path / "file")


def test_check_writable_refuses_read_only_parent(tmp_path, monkeypatch):
    """Mode 555 parent. Root ignores mode bits, so as root the probe's failure is simulated."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.getuid() == 0:
        def denied(*a, **k):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(storage.tempfile, "mkstemp", denied)
    with pytest.raises(storage.NotWritableError) as err:
        storage.check_writable(ro / "out")
    assert str(err.value) == f"{ro / 'out'}: not writable (its nearest existing parent {ro}): Permission denied"
