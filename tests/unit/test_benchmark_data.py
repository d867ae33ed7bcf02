"""workflows.benchmark data: the measures on known frames, the table, a tiny end-to-end run."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from workflows.benchmark import data


def test_frame_stats_on_a_known_drawing():
    img = np.full((128, 128, 3), 200, np.uint8)
    img[:, 64:] = (40, 90, 200)  # two flat halves: one boundary, two big regions, ~2 colours
    s = data.frame_stats(img)
    assert s["colours_90"] <= 2
    assert -0.45 < s["region_log10_frac"] < -0.25  # the median region is about half the frame
    assert 0.005 < s["line_density"] < 0.05 and 1.0 <= s["line_thickness_px"] <= 3.0


def test_film_stats_changes_and_holds():
    a = np.full((64, 64, 3), 255, np.uint8)
    b = a.copy()
    cv2.circle(b, (32, 32), 12, (0, 0, 0), 2)
    frames = [a, a, a, b, b, b, a, a, a, b, b, b]
    st = data.film_stats(frames, cuts=[6], sample_every=1)
    assert st["hold_ratio"] == [pytest.approx(8 / 10)]  # in-shot pairs 1..5, 7..11; changes at 3 and 9
    assert max(st["changed_s1"]) > 0.01 and min(st["changed_s1"]) == 0.0


def test_compare_distances():
    sets = {k: {m: [v] * 3 for m in data.MEASURES} for k, v in (("v1", 0.0), ("v2", 0.5), ("real", 1.0))}
    table = data.compare(sets)
    assert all(r["dist_v1"] == 1.0 and r["dist_v2"] == 0.5 and r["v2_closer"] for r in table.values())


def test_tiny_run_without_the_real_clip(tmp_path, capsys):
    rc = data.main(["--out", str(tmp_path), "--films", "1", "--seconds", "2", "--size", "64",
                    "--no-speed", "--hold-size", "0", "--real", str(tmp_path / "absent.mp4")])
    assert rc == 0 and "absent" in capsys.readouterr().out
    report = json.loads((tmp_path / "data_stats.json").read_text())
    assert set(report["table"]["hold_ratio"]) == {"v1", "v2"}
    assert (tmp_path / "contact_v1.png").is_file() and (tmp_path / "contact_v2.png").is_file()
    with pytest.raises(SystemExit):
        data.main(["--out", str(data.Path(data.__file__).resolve().parents[2] / "tmp_out")])
