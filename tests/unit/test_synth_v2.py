"""Generator v2: determinism, truth (cuts, holds, cast palettes, motion) vs the rendered pixels,
one colour per closed cel region, layers, H.264 writing."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from lcmftn.data.synth import (
    FilmConfigV2,
    composite,
    generate_film,
    iter_layers,
    write_film,
    write_layers,
)
from lcmftn.data.synthetic import sidecar_path

TINY = FilmConfigV2(seed=3, size=64, aspect=1.5, num_shots=3, shot_frames=12)


def _layers(cfg):
    return list(iter_layers(cfg))


def test_same_seed_same_bytes_other_seed_other_film(tmp_path):
    a = write_film(tmp_path / "a.mp4", TINY)
    b = write_film(tmp_path / "b.mp4", TINY)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    assert sidecar_path(tmp_path / "a.mp4").read_bytes() == sidecar_path(tmp_path / "b.mp4").read_bytes()
    assert a == b == json.loads(sidecar_path(tmp_path / "a.mp4").read_text())
    c = write_film(tmp_path / "c.mp4", FilmConfigV2(seed=4, size=64, aspect=1.5, num_shots=3, shot_frames=12))
    assert (tmp_path / "c.mp4").read_bytes() != (tmp_path / "a.mp4").read_bytes() and c["cast"] != a["cast"]
    for key in ("frames", "fps", "width", "height", "cuts", "shots", "holds", "config", "cast", "motion"):
        assert key in a
    assert a["frames"] == 36 and len(a["motion"]) == 36 and (a["width"], a["height"]) == (96, 64)


@pytest.mark.parametrize("seed", [0, 5])
def test_holds_and_cuts_match_the_pixels(seed):
    cfg = FilmConfigV2(seed=seed, size=64, num_shots=6, shot_frames=12, still_prob=0.2, hold_prob=0.6)
    film = generate_film(cfg)
    frames, truth = list(film.frames), film.truth
    holds, cuts = set(truth["holds"]), set(truth["cuts"])
    assert holds and not holds & cuts
    diffs = {}
    for t in range(1, len(frames)):
        same = np.array_equal(frames[t], frames[t - 1])
        assert same == (t in holds), f"frame {t}: identical={same}, truth hold={t in holds}"
        diffs[t] = np.abs(frames[t].astype(np.int16) - frames[t - 1]).mean()
    within = np.median([d for t, d in diffs.items() if t not in cuts])
    assert all(diffs[t] > 3 * within for t in cuts)


def _paper_components(layers):
    """4-connected components of cel pixels that are paper in the artist line art."""
    paper = ((layers.lineart >= 128) & (layers.cels[..., 3] > 0)).astype(np.uint8)
    return cv2.connectedComponents(paper, connectivity=4)


@pytest.mark.parametrize("seed", [1, 2])
def test_every_closed_region_has_one_colour(seed):
    cfg = FilmConfigV2(seed=seed, size=160, num_shots=3, shot_frames=6, effects=0.0, num_characters=3)
    checked = 0
    for layers, held in _layers(cfg):
        if held:
            continue
        frame = composite(layers)
        n, lab = _paper_components(layers)
        codes = frame.reshape(-1, 3).astype(np.int64) @ (1 << 16, 1 << 8, 1)
        lab = lab.ravel()
        keep = (lab > 0) & (layers.lineart.ravel() == 255)  # faint anti-aliased ink belongs to the line
        pairs = np.unique(np.stack([lab[keep], codes[keep]]), axis=1)
        per_region = np.bincount(pairs[0], minlength=n)[1:]
        assert per_region.max() == 1, f"a closed region has {per_region.max()} colours"
        checked += n - 1
    assert checked > 200  # many regions: heads, eyes, shirts, shadow and highlight bands


def test_cast_palettes_are_the_cel_colours():
    cfg = FilmConfigV2(seed=7, size=128, num_shots=4, shot_frames=6, effects=0.0, prop_prob=0, occluder_prob=0)
    film = generate_film(cfg)
    truth = film.truth
    chart = {tuple(c) for d in truth["cast"] for p in d["palette"].values() for c in p.values()}
    by_id = {d["id"]: {tuple(c) for p in d["palette"].values() for c in p.values()} for d in truth["cast"]}
    for t, (layers, _held) in enumerate(iter_layers(cfg)):
        paper = (layers.lineart == 255) & (layers.cels[..., 3] > 0)
        colours = {tuple(c) for c in np.unique(layers.cels[..., :3][paper], axis=0)}
        shot = next(s for s in truth["shots"] if s["start"] <= t < s["end"])
        allowed = set().union(*(by_id[c] for c in shot["characters"])) if shot["characters"] else set()
        assert colours <= allowed <= chart, f"frame {t}: colours outside the shot's cast palettes"
    assert len(truth["cast"]) == cfg.cast_count


def test_motion_truth_matches_the_layers():
    cfg = FilmConfigV2(seed=11, size=128, num_shots=3, shot_frames=10, num_characters=1, occluder_prob=0,
                       prop_prob=0, effects=0, pan_prob=1.0, zoom=0.0, rotation_deg=0.0, hold_prob=0, still_prob=0)
    prev, compared = None, 0
    for layers, _ in _layers(cfg):
        mo = layers.motion
        (ch,) = mo["characters"]
        ys, xs = np.nonzero(layers.cels[..., 3])
        if ch["bbox"] is None:
            assert len(ys) == 0
        else:
            x0, y0, x1, y1 = ch["bbox"]
            assert len(ys) and (xs.min(), ys.min(), xs.max(), ys.max()) == (x0, y0, x1, y1)  # one character: exact
        if prev is not None and prev.motion["shot"] == mo["shot"]:
            dx = mo["camera"][0] - prev.motion["camera"][0]
            if 3 < abs(dx) < 20:  # the painted background moves by -dx on screen
                a, b = (x.background.astype(np.float32) for x in (prev, layers))
                err = {s: np.abs(b[:, 24:104] - a[:, 24 + s : 104 + s]).mean() for s in range(-20, 21)}
                sx = min(err, key=err.get)  # b(x) = a(x + dx): the background moves by -dx on screen
                assert abs(sx - dx) <= 1, f"background shifted {sx}, camera moved {dx:.2f}"
                compared += 1
        prev = layers
    assert compared >= 5


def test_layers_composite_and_write(tmp_path):
    truth = write_layers(tmp_path / "layers", TINY)
    assert len(list((tmp_path / "layers").glob("cels_*.png"))) == truth["frames"] == 36
    film = generate_film(TINY)
    frames = list(film.frames)
    cels = cv2.imread(str(tmp_path / "layers" / "cels_00005.png"), cv2.IMREAD_UNCHANGED)
    assert cels.shape == (64, 96, 4)
    layers = [ly for ly, _ in iter_layers(TINY)]
    assert np.array_equal(composite(layers[5]), frames[5])
    with pytest.raises(FileExistsError):
        write_layers(tmp_path / "layers", TINY)


def test_bad_config_raises():
    with pytest.raises(ValueError):
        FilmConfigV2(size=8)
    with pytest.raises(ValueError):
        FilmConfigV2(effects=2.0)
