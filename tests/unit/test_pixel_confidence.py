"""The calibrated per-pixel confidence map (lcmftn.pixel_confidence; issue 10 part 2)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from lcmftn.calibration import Calibration, fit_calibration
from lcmftn.evaluation import auroc
from lcmftn.pixel_confidence import (
    PIXEL_FEATURES,
    PixelModel,
    fit_logistic,
    fit_pixel_model,
    pixel_features,
)

H = W = 64


def _scene(disc_xy: tuple[int, int], radius: int, colors: dict[str, tuple[float, float, float]]):
    """(line art [H, W] in [0, 1], colour [H, W, 3]): a static square (left) and a disc."""
    line = np.full((H, W), 255, np.uint8)
    color = np.empty((H, W, 3), np.float32)
    color[:] = colors["bg"]
    cv2.rectangle(color, (4, 40), (20, 58), colors["square"], -1)
    cv2.rectangle(line, (4, 40), (20, 58), 0, 1)
    cv2.circle(color, disc_xy, radius, colors["disc"], -1)
    cv2.circle(line, disc_xy, radius, 0, 1)
    return line.astype(np.float32) / 255, color


def _case(key_xy, ref_xy, new_xy, radius, colors):
    """Features and true error of a 'model' that copies the reference's colour while the disc
    moves (a region that moved/appeared: large error) and the square stays (static: no error)."""
    s_key, c_key = _scene(key_xy, radius, colors)
    s_ref, c_ref = _scene(ref_xy, radius, colors)
    s_n, truth = _scene(new_xy, radius, colors)
    out = c_ref.copy()  # the colour did not follow the drawing
    feats = pixel_features(s_ref, c_ref, s_n, out, s_key, c_key, distance=3)
    err = np.abs(out - truth).mean(2)
    return feats, err


def test_fitted_pixel_map_ranks_moved_region_above_static_one():
    train_colors = {"bg": (0.2, 0.7, 0.3), "square": (0.9, 0.1, 0.1), "disc": (0.1, 0.2, 0.9)}
    test_colors = {"bg": (0.8, 0.8, 0.3), "square": (0.3, 0.1, 0.6), "disc": (0.9, 0.5, 0.1)}
    feats, err = _case((36, 20), (40, 20), (46, 22), 9, train_colors)
    model = fit_pixel_model({k: v.ravel() for k, v in feats.items()}, err.ravel() > 0.1)
    # another scene: other colours, other size, vertical motion
    feats_t, err_t = _case((44, 16), (44, 20), (42, 27), 7, test_colors)
    bad = err_t > 0.1
    assert 0.02 < bad.mean() < 0.5
    p = model.error_probability(feats_t)
    assert p.shape == (H, W) and p.dtype == np.float32
    assert auroc(p.ravel(), bad.ravel()) > 0.9
    conf = model.confidence(feats_t)
    static = np.zeros((H, W), bool)
    static[42:57, 6:19] = True  # inside the square, which did not move
    assert conf[bad].mean() < conf[static].mean() - 0.1


def test_pixel_features_are_zero_where_nothing_changed():
    colors = {"bg": (0.2, 0.7, 0.3), "square": (0.9, 0.1, 0.1), "disc": (0.1, 0.2, 0.9)}
    s, c = _scene((40, 20), 8, colors)
    feats = pixel_features(s, c, s, c, s, c, distance=0)
    assert set(feats) == set(PIXEL_FEATURES)
    for name in ("drift", "change_key", "change_ref", "warp_residual", "out_vs_key", "palette", "attn"):
        assert float(np.abs(feats[name]).max()) < 1e-3, name


def test_interaction_model_logit_and_round_trip():
    rng = np.random.default_rng(1)
    feats = {k: rng.normal(size=(8, 8)).astype(np.float32) for k in PIXEL_FEATURES}
    bad = (feats["palette"] * feats["line_dist"] > 0.3).ravel()
    model = fit_pixel_model({k: v.ravel() for k, v in feats.items()}, bad, interaction="line_dist", l2=1e-2)
    assert len(model.weights) == 2 * len(PIXEL_FEATURES)
    assert PixelModel.from_dict(json.loads(json.dumps(model.to_dict()))) == model
    z = {k: (feats[k].astype(np.float64) - m) / s for k, m, s in zip(model.features, model.mean, model.std, strict=True)}
    n = len(PIXEL_FEATURES)
    logit = model.bias + sum(w * z[k] for k, w in zip(model.features, model.weights[:n], strict=True))
    logit = logit + sum(w * z[k] * z["line_dist"] for k, w in zip(model.features, model.weights[n:], strict=True))
    assert np.allclose(model.error_probability(feats), 1 / (1 + np.exp(-logit)), atol=1e-6)
    assert auroc(model.error_probability(feats).ravel(), bad) > 0.9  # only the product separates them
    with pytest.raises(ValueError, match="bad pixel model"):
        PixelModel.from_dict({**model.to_dict(), "weights": model.weights[:n]})


def test_palette_distance_finds_colours_the_keyframe_does_not_have():
    from lcmftn.pixel_confidence import palette_distance

    key = np.zeros((16, 16, 3), np.float32)
    key[:, :8] = (0.9, 0.1, 0.1)
    key[:, 8:] = (0.1, 0.2, 0.9)
    out = key.copy()
    out[:4, :4] = (0.1, 0.9, 0.1)  # a green the keyframe has nowhere
    out[12:, 12:] = (0.15, 0.2, 0.85)  # close to the keyframe's blue
    d = palette_distance(out, key)
    assert d[:4, :4].min() > 0.9 and d[12:, 12:].max() < 0.1
    assert float(np.abs(d[4:12]).max()) < 1e-3  # the keyframe's own colours


def test_fit_logistic_recovers_known_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 2))
    y = rng.random(20000) < 1 / (1 + np.exp(-(1.5 * x[:, 0] - 0.5 * x[:, 1] + 0.3)))
    w, b = fit_logistic(x, y, l2=0.0)
    assert np.allclose(w, [1.5, -0.5], atol=0.1) and abs(b - 0.3) < 0.1


def _pixel_model() -> PixelModel:
    n = len(PIXEL_FEATURES)
    w = [0.0] * n
    w[PIXEL_FEATURES.index("change_ref")] = 2.0
    return PixelModel(PIXEL_FEATURES, (0.0,) * n, (0.05,) * n, tuple(w), -1.0)


def test_calibration_without_pixel_model_still_loads():
    """A confidence_calibration.json written before the pixel map (no "pixel" key)."""
    old = {"feature": "distance", "sign": -1.0, "knots_x": [-20.0, -1.0], "knots_psnr_db": [11.0, 14.0],
           "flag_psnr_db": 11.2, "flag_quantile": 0.1, "fitted_on": "3 synthetic films"}
    cal = Calibration.from_json(json.dumps(old), "old.json")
    assert cal.pixel is None and cal.pixel_model is None
    assert float(cal.expected_psnr(5)) == pytest.approx(14.0 - 3.0 * 4 / 19)
    new = fit_calibration("distance", np.arange(10.0), np.arange(10.0)[::-1], sign=-1.0,
                          pixel=_pixel_model().to_dict())
    back = Calibration.from_json(new.to_json())
    assert back == new and back.pixel_model == _pixel_model()
    bad = json.loads(new.to_json())
    bad["pixel"]["features"][0] = "nope"
    with pytest.raises(ValueError, match="cal.json: bad pixel model"):
        Calibration.from_json(json.dumps(bad), "cal.json")


def test_colorize_writes_the_calibrated_map():
    """With a calibration holding a pixel model the confidence maps are 1 - P(large error) over
    the frame's features; without one they stay the line-change proxy."""

    from lcmftn.colorize import (
        ColorizeConfig,
        colorize_shot,
        line_change_confidence,
        lineart_at_size,
    )
    from lcmftn.models.baselines import CopyRef

    colors = {"bg": (0.2, 0.7, 0.3), "square": (0.9, 0.1, 0.1), "disc": (0.1, 0.2, 0.9)}
    scenes = [_scene((20 + 4 * t, 20), 8, colors) for t in range(5)]
    line = [np.rint(s * 255).astype(np.uint8) for s, _ in scenes]
    key = np.rint(scenes[0][1] * 255).astype(np.uint8)
    cal = fit_calibration("distance", np.arange(4.0), np.arange(4.0)[::-1], sign=-1.0,
                          pixel=_pixel_model().to_dict())
    cfg = ColorizeConfig(mode="chain", image_size_px=64, calibration_json=cal.to_json())
    feats: dict[int, dict] = {}
    _, stats, maps = colorize_shot(CopyRef(), line, {0: key}, cfg, feature_sink=feats.__setitem__)
    assert sorted(maps) == sorted(feats) == [1, 2, 3, 4]
    for t, m in maps.items():
        want = np.rint(_pixel_model().confidence(feats[t]) * 255).astype(np.uint8)
        assert np.array_equal(m, want)
        assert m.min() < 100 and m.max() > 150  # low on the moving disc, high elsewhere
    info = {f["i"]: f for f in stats["per_frame"]}
    assert info[2]["conf"] == pytest.approx(float(_pixel_model().confidence(feats[2]).mean()), abs=1e-4)
    _, _, plain = colorize_shot(CopyRef(), line, {0: key}, ColorizeConfig(mode="chain", image_size_px=64))
    proxy = line_change_confidence(lineart_at_size(line[0], (64, 64)), lineart_at_size(line[1], (64, 64)), 2.0)
    assert np.array_equal(plain[1], np.rint(proxy[0].numpy() * 255).astype(np.uint8))
    assert not np.array_equal(plain[1], maps[1])
    old_cal = fit_calibration("distance", np.arange(4.0), np.arange(4.0)[::-1], sign=-1.0)  # no "pixel"
    _, old_stats, old_maps = colorize_shot(CopyRef(), line, {0: key},
                                           ColorizeConfig(mode="chain", image_size_px=64, calibration_json=old_cal.to_json()))
    assert all(np.array_equal(old_maps[t], plain[t]) for t in plain)  # the map stays the system's own
    assert all("expected_psnr" in f for f in old_stats["per_frame"] if f["kind"] == "model")
