"""The procedural cel-animation film generator: determinism, truth vs pixels, H.264 output."""

from __future__ import annotations

import json
import time
from itertools import pairwise

import av
import numpy as np
import pytest

from lcmftn.data.synthetic import FilmConfig, generate_film, plan_film, sidecar_path, write_film
from lcmftn.data.video import read_frames

TINY = FilmConfig(seed=3, size=64, num_shots=3, shot_frames=12)


def _frames(cfg: FilmConfig) -> tuple[list[np.ndarray], dict]:
    frames, truth = generate_film(cfg)
    return list(frames), truth


def test_same_seed_same_film_other_seed_other_film():
    a, ta = _frames(TINY)
    b, tb = _frames(TINY)
    c, tc = _frames(FilmConfig(seed=4, size=64, num_shots=3, shot_frames=12))
    assert ta == tb
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(np.stack(a), np.stack(c))


def test_frame_count_size_and_shot_table():
    cfg = FilmConfig(seed=1, size=48, aspect=16 / 9, num_shots=5, shot_frames=10, shot_frames_jitter=0.5)
    frames, truth = _frames(cfg)
    assert len(frames) == truth["frames"] == sum(s["end"] - s["start"] for s in truth["shots"])
    assert {f.shape for f in frames} == {(48, 86, 3)} and frames[0].dtype == np.uint8
    assert (truth["width"], truth["height"]) == (86, 48)
    lengths = [s["end"] - s["start"] for s in truth["shots"]]
    assert len(set(lengths)) > 1 and all(5 <= n <= 15 for n in lengths)  # jitter 0.5 around 10
    starts = [s["start"] for s in truth["shots"]]
    assert starts[0] == 0 and truth["cuts"] == starts[1:]
    assert all(a["end"] == b["start"] for a, b in pairwise(truth["shots"]))


@pytest.mark.parametrize("seed", [0, 7, 11])
def test_truth_holds_and_cuts_match_the_pixels(seed):
    frames, truth = _frames(FilmConfig(seed=seed, size=64, num_shots=6, shot_frames=12, still_prob=0.2))
    holds, cuts = set(truth["holds"]), set(truth["cuts"])
    assert not holds & cuts
    diffs = {}
    for t in range(1, len(frames)):
        same = np.array_equal(frames[t], frames[t - 1])
        assert same == (t in holds), f"frame {t}: identical={same}, truth hold={t in holds}"
        diffs[t] = np.abs(frames[t].astype(np.int16) - frames[t - 1]).mean()
    # A cut (new background, palette and cast) changes far more than any step inside a shot.
    within = max(d for t, d in diffs.items() if t not in cuts)
    for t in cuts:
        assert diffs[t] > 25 and diffs[t] > 1.5 * within, f"cut {t}: {diffs[t]:.1f} vs {within:.1f}"


def test_timing_knobs_ones_twos_threes_and_stills():
    _, ones = _frames(FilmConfig(seed=2, size=32, num_shots=4, shot_frames=9, hold_prob=0, still_prob=0))
    assert ones["holds"] == [] and {s["step"] for s in ones["shots"]} == {1}
    _, held = _frames(FilmConfig(seed=2, size=32, num_shots=6, shot_frames=12, hold_prob=1, still_prob=0))
    for s in held["shots"]:
        assert s["step"] in (2, 3)
        inside = [t for t in held["holds"] if s["start"] <= t < s["end"]]
        assert inside == [t for t in range(s["start"] + 1, s["end"]) if (t - s["start"]) % s["step"]]
    frames, still = _frames(FilmConfig(seed=2, size=32, num_shots=2, shot_frames=8, motion=0))
    assert all(s["still"] for s in still["shots"])
    assert still["holds"] == [t for t in range(16) if t not in (0, 8)]
    assert np.array_equal(frames[0], frames[7]) and not np.array_equal(frames[7], frames[8])


def test_characters_are_drawn_with_outlines_and_motion_grows_with_the_knob():
    def mean_step(motion: float, chars: int) -> float:
        frames, _ = _frames(
            FilmConfig(seed=5, size=64, num_shots=1, shot_frames=8, num_characters=chars, motion=motion,
                       hold_prob=0, still_prob=0, pan_prob=0, occluder_prob=0, prop_prob=0)
        )  # fmt: skip
        f = np.stack(frames).astype(np.int16)
        return float(np.abs(np.diff(f, axis=0)).mean())

    assert mean_step(1.0, 0) < 0.5 * mean_step(0.5, 3)  # the characters are what moves here
    assert 0 < mean_step(0.5, 3) < mean_step(2.0, 3)
    frames, _ = _frames(FilmConfig(seed=5, size=128, num_shots=1, shot_frames=2, num_characters=3))
    dark = (frames[0].max(axis=2) < 60).mean()  # outline ink
    assert dark > 0.002, f"only {dark:.4f} of the pixels are outline ink"


def test_write_film_is_h264_with_sidecar_truth(tmp_path):
    path = tmp_path / "film.mp4"
    t0 = time.perf_counter()
    truth = write_film(path, TINY)
    elapsed = time.perf_counter() - t0
    assert elapsed < 5.0, f"tiny film took {elapsed:.1f}s"
    assert json.loads(sidecar_path(path).read_text()) == truth
    assert sidecar_path(path).name == "film.mp4.json"
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (64, 64)
        assert abs(float(stream.average_rate) - 24.0) < 1e-6
    decoded = read_frames(path)
    rendered, _ = _frames(TINY)
    assert len(decoded) == truth["frames"] == 36
    mse = np.mean([(d.astype(np.float64) - r) ** 2 for d, r in zip(decoded, rendered, strict=True)])
    assert 10 * np.log10(255**2 / mse) > 28  # crf 18: close to the rendered pixels
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_same_config_writes_the_same_video(tmp_path):
    write_film(tmp_path / "a.mp4", TINY)
    write_film(tmp_path / "b.mp4", TINY)
    a, b = read_frames(tmp_path / "a.mp4"), read_frames(tmp_path / "b.mp4")
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_adjacent_shots_get_distant_palettes():
    shots = plan_film(FilmConfig(seed=9, num_shots=12))
    for a, b in pairwise(shots):
        d = abs(a["hue"] - b["hue"]) % 360
        assert min(d, 360 - d) >= 99


@pytest.mark.parametrize(
    "kwargs", [{"size": 8}, {"num_shots": 0}, {"shot_frames": 1}, {"motion": -1}, {"shot_frames_jitter": 1.0}]
)
def test_bad_config_is_rejected(kwargs):
    with pytest.raises(ValueError):
        FilmConfig(**kwargs)


def test_seconds_knob_and_config_round_trip(tmp_path):
    cfg = FilmConfig(seed=1, size=32, seconds=3, shot_frames=12)
    assert cfg.num_shots == 6
    truth = write_film(tmp_path / "f.mkv", cfg)
    assert truth["frames"] == 72 and len(read_frames(tmp_path / "f.mkv")) == 72
    assert FilmConfig(**truth["config"]) == cfg  # the sidecar rebuilds the same film
