"""Shot detection: generator truth, PySceneDetect's reference cut lists, the anime clip."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from lcmftn.data.shots import DETECTORS, _downscale, cuts_to_shots, detect_shots, match_cuts
from lcmftn.data.synthetic import FilmConfig, generate_film, write_film
from lcmftn.data.video import VideoReadError, iter_frames, probe_video


def test_cuts_to_shots_tiles_the_film():
    assert cuts_to_shots([30, 10, 10, 0, 50], 40) == [(0, 10), (10, 30), (30, 40)]
    assert cuts_to_shots([], 5) == [(0, 5)]


def test_match_cuts_precision_recall():
    m = match_cuts([10, 21, 50], [10, 20, 30], tolerance_frames=1)
    assert (m["precision"], m["recall"], m["missed"]) == (2 / 3, 2 / 3, [30])
    assert match_cuts([10, 21], [10, 20])["recall"] == 0.5  # exact by default
    assert match_cuts([], [])["precision"] == 1.0


@pytest.mark.parametrize("detector", ["content", "adaptive"])
def test_generator_cuts_found_exactly(tmp_path, detector):
    """Every true cut of 3 generated films (jittered shot lengths, twos/threes, stills) is found
    at the exact frame and nothing else is (precision = recall = 1)."""
    found, truth = [], []
    for seed in range(3):
        cfg = FilmConfig(seed=seed, size=96, num_shots=6, shot_frames=16, shot_frames_jitter=0.4)
        t = write_film(tmp_path / f"f{seed}.mp4", cfg)
        shots = detect_shots(tmp_path / f"f{seed}.mp4", detector=detector)
        assert shots.frames == t["frames"] and shots.fps == 24.0
        assert shots.shots == [(s["start"], s["end"]) for s in t["shots"]]
        found += [c + 10_000 * seed for c in shots.cuts]
        truth += [c + 10_000 * seed for c in t["cuts"]]
    m = match_cuts(found, truth)
    assert m["precision"] == 1.0 and m["recall"] == 1.0, m


def test_frame_list_image_folder_and_file_agree(tmp_path):
    cfg = FilmConfig(seed=4, size=64, num_shots=3, shot_frames=12)
    truth = write_film(tmp_path / "f.mp4", cfg)
    frames, _ = generate_film(cfg)
    frames = list(frames)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    from_file = detect_shots(tmp_path / "f.mp4")
    from_list = detect_shots(iter(frames), fps=12.0)
    from_folder = detect_shots(folder)
    assert from_file.cuts == from_list.cuts == from_folder.cuts == truth["cuts"]
    assert from_list.fps == 12.0 and from_folder.fps == 24.0
    assert from_file.to_json() == {
        "frames": 36, "fps": 24.0, "shots": [{"start": 0, "end": 12}, {"start": 12, "end": 24}, {"start": 24, "end": 36}],
        "detector": "content", "threshold": None,
    }  # fmt: skip
    assert json.loads(from_file.dumps())["shots"][1] == {"start": 12, "end": 24}


def test_min_shot_frames_and_threshold_are_applied():
    frames, truth = generate_film(FilmConfig(seed=1, size=48, num_shots=5, shot_frames=4))
    frames = list(frames)
    assert detect_shots(frames, min_shot_frames=1).cuts == truth["cuts"] == [4, 8, 12, 16]
    merged = detect_shots(frames, min_shot_frames=6).cuts  # 4-frame shots are merged away
    assert len(merged) < 4 and set(merged) <= set(truth["cuts"])
    assert detect_shots(frames, threshold=255.0, min_shot_frames=1).cuts == []


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="unknown shot detector"):
        detect_shots([np.zeros((8, 8, 3), np.uint8)], detector="magic")
    with pytest.raises(ValueError, match="no frames"):
        detect_shots([])
    with pytest.raises(VideoReadError, match="nope.mp4"):
        detect_shots(tmp_path / "nope.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(VideoReadError, match="bad.mp4"):
        detect_shots(tmp_path / "bad.mp4")


# ---------------------------------------------------------------------------------------------
# Real data (../shared/data/real; skipped when absent)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def testvideo(real_data):
    """PySceneDetect's test video decoded once, at the detectors' working width (256 px)."""
    path = real_data / "shot-detection" / "testvideo.mp4"
    return [_downscale(f) for f in iter_frames(path)], probe_video(path).fps, path


# reference file -> (detector, threshold)
REFERENCES = {
    "ContentDetector.default": ("content", None),
    "ContentDetector.t30": ("content", 30.0),
    "AdaptiveDetector.default": ("adaptive", None),
    "AdaptiveDetector.t5": ("adaptive", 5.0),
    "HashDetector.default": ("hash", None),
    "ThresholdDetector.default": ("threshold", None),
}


@pytest.mark.real_data
@pytest.mark.parametrize("ref", sorted(REFERENCES))
def test_reference_cut_lists_reproduced(testvideo, ref):
    frames, fps, path = testvideo
    expected = json.loads((path.parent / f"testvideo.mp4.{ref}.json").read_text())["cuts"]
    detector, threshold = REFERENCES[ref]
    # PySceneDetect's reference lists were made with its default min_scene_len of 15 frames.
    shots = detect_shots(frames, detector=detector, threshold=threshold, min_shot_frames=15, fps=fps)
    assert shots.frames == 720
    assert shots.cuts == expected


@pytest.mark.real_data
def test_histogram_detector_close_to_reference(testvideo):
    """Stated gap: HistogramDetector is sensitive to the YUV->RGB conversion (PyAV here, OpenCV in
    the reference run): 4 of its 8 reference cuts are reproduced exactly, 2 extra are found."""
    frames, fps, path = testvideo
    expected = json.loads((path.parent / "testvideo.mp4.HistogramDetector.default.json").read_text())["cuts"]
    m = match_cuts(detect_shots(frames, detector="histogram", min_shot_frames=15, fps=fps).cuts, expected)
    assert m["recall"] >= 0.5 and m["precision"] >= 0.6, m


@pytest.mark.real_data
def test_anime_clip_has_one_cut_at_frame_100(real_data):
    shots = detect_shots(real_data / "anime" / "onepiece_demo.mp4")
    assert shots.frames == 181 and shots.shots == [(0, 100), (100, 181)]


def test_every_detector_name_builds():
    frames = [np.full((16, 16, 3), v, np.uint8) for v in (0, 0, 255, 255)]
    for name in DETECTORS:
        assert detect_shots(frames, detector=name, min_shot_frames=1).frames == 4
