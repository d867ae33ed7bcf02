"""Spearman / AUROC of lcmftn.evaluation (NumPy, no scipy/sklearn) on hand-checked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lcmftn.evaluation import ConfidenceScore, auroc, rankdata, spearman


def test_rankdata_averages_ties():
    assert rankdata([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]


def test_spearman_known_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [9, 1, 0, -5]) == pytest.approx(-1.0)
    # d = rank differences (0, -1, 1, 0, 0): rho = 1 - 6*2 / (5*24) = 0.9
    assert spearman([1, 2, 3, 4, 5], [1, 3, 2, 4, 5]) == pytest.approx(0.9)
    # a monotone but non-linear relation is still 1 (ranks, not values)
    x = np.linspace(0, 3, 50)
    assert spearman(x, np.exp(x)) == pytest.approx(1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_auroc_known_values():
    assert auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    # pos {0.5, 0.9}, neg {0.5, 0.1}: pairs (0.5>0.5 tie=.5, 0.5>0.1, 0.9>0.5, 0.9>0.1) -> 3.5/4
    assert auroc([0.5, 0.9, 0.5, 0.1], [1, 1, 0, 0]) == pytest.approx(0.875)
    rng = np.random.default_rng(0)
    assert auroc(rng.random(20000), rng.random(20000) < 0.3) == pytest.approx(0.5, abs=0.02)
    assert math.isnan(auroc([1, 2], [1, 1]))


def test_confidence_score_finds_low_confidence_errors():
    rng = np.random.default_rng(1)
    score = ConfidenceScore()
    truth = np.full((16, 16, 3), 128, np.uint8)
    for k in range(10):
        pred = truth.copy()
        conf = np.full((16, 16), 255, np.uint8)
        pred[: k + 1] = 255  # the first k+1 rows are wrong...
        conf[: k + 1] = 20  # ...and flagged low-confidence
        score.add_frame(float(conf.mean()) / 255, psnr=40.0 - 2 * k + rng.random(), conf_map=conf,
                        pred=pred, truth=truth)
    res = score.result()
    assert res["spearman_conf_psnr"] > 0.9 and res["pixel_auroc_low_conf_vs_large_error"] == 1.0
    assert res["frames"] == 10 and 0 < res["large_error_fraction"] < 1


def test_isotonic_fit_and_flag_rule():
    from lcmftn.calibration import Calibration, fit_calibration, isotonic_fit

    kx, ky = isotonic_fit(np.array([1.0, 2, 3, 4]), np.array([1.0, 3, 2, 4]))
    assert kx.tolist() == [1.0, 2.5, 4.0] and ky.tolist() == [1.0, 2.5, 4.0]  # 3,2 pooled
    rng = np.random.default_rng(0)
    change = rng.random(500)  # more line-art change -> lower PSNR
    psnr = 30 - 10 * change + rng.normal(0, 0.5, 500)
    cal = fit_calibration("change", change, psnr, sign=-1.0, flag_quantile=0.1)
    assert cal.expected_psnr(0.0) > cal.expected_psnr(1.0) + 8
    flags = cal.flag(change)
    assert 0.05 < flags.mean() < 0.15 and change[flags].min() > np.quantile(change, 0.8)
    assert Calibration.from_json(cal.to_json()) == cal


def test_bad_calibration_is_named():
    from lcmftn.calibration import Calibration

    with pytest.raises(ValueError, match="cal.json: not a confidence calibration"):
        Calibration.from_json("{}", "cal.json")
    with pytest.raises(ValueError, match="cal.json: bad calibration"):
        Calibration.from_json('{"feature": "nope", "sign": 1, "knots_x": [0], "knots_psnr_db": [1],'
                              ' "flag_psnr_db": 1, "flag_quantile": 0.1}', "cal.json")
