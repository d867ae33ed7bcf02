"""The QC report (lcmftn.report) and the colorize job's pure helpers: lcmftn.episode, lcmftn.jobs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from lcmftn import episode
from lcmftn import jobs as job
from lcmftn import report as rpt


def _shot(start, end, status="done", **kw):
    base = {"id": job.shot_id(start, end), "start": start, "end": end, "status": status}
    if status == "done":
        base |= {"colorized": 4, "copied": end - start - 5, "key": 1, "time_s": 0.5, "confidence": 0.8,
                 "flagged": [start + 2], "keyframes": [start]}
    return base | kw


def test_summarize_totals_and_weighted_confidence():
    shots = [_shot(0, 10), _shot(10, 20, confidence=0.4), _shot(20, 25, "skipped", reason="no keyframe in frames 20..24")]
    rep = rpt.summarize({"mode": "chain"}, shots, warnings=["w"], errors=["e"])
    t = rep["totals"]
    assert (t["shots"], t["shots_done"], t["shots_skipped"], t["shots_failed"]) == (3, 2, 1, 0)
    assert (t["frames"], t["frames_written"], t["colorized"], t["copied"], t["key"]) == (25, 20, 8, 10, 2)
    assert t["confidence"] == pytest.approx(0.6) and t["flagged"] == 2 and t["time_s"] == 1.0
    assert rep["warnings"] == ["w"] and rep["errors"] == ["e"]
    json.loads(rpt.to_json(rep))
    with pytest.raises(ValueError, match="status"):
        rpt.summarize({}, [_shot(0, 3, "weird")])


def test_html_lists_shots_flags_and_escapes():
    shots = [_shot(0, 10), _shot(10, 20, "failed", reason="frame <b>12</b> unreadable")]
    rep = rpt.summarize({"model": "models:/x@champion", "mode": "auto"}, shots, errors=["<script>"])
    page = rpt.render_html(rep)
    assert "000000-000010" in page and "frames/000002.png" in page and "confidence/000002.png" in page
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;12" in page
    assert "1 frames flagged" in page


def test_aggregate_by_offset_and_plot():
    rows = [{"offset": 1, "psnr": 30.0, "ssim": 0.9}, {"offset": 1, "psnr": 20.0, "ssim": 0.7},
            {"offset": 3, "psnr": 10.0, "ssim": 0.5}]
    agg = rpt.aggregate_by_offset(rows)
    assert agg == {"count": [2, 0, 1], "psnr": [25.0, None, 10.0], "ssim": [0.8, None, 0.5]}
    with pytest.raises(ValueError, match="offset"):
        rpt.aggregate_by_offset([{"offset": 0, "psnr": 1, "ssim": 1}])
    png = rpt.plot_curves({"chain": agg, "anchor": {"psnr": [26, 24, 20], "ssim": [0.8, 0.7, 0.6]}})
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[1] > img.shape[0] > 100


def test_read_keyframes_resize_reject_and_names(tmp_path):
    def put(name, h, w):
        cv2.imwrite(str(tmp_path / name), np.full((h, w, 3), 100, np.uint8))

    put("000003.png", 40, 60)  # exact size
    put("key_7.png", 80, 120)  # same aspect: resized with a warning
    put("9.png", 40, 40)  # other aspect: rejected
    put("nokey.png", 40, 60)
    put("000050.png", 40, 60)  # beyond the episode
    (tmp_path / "000004.png").write_bytes(b"garbage")
    keys, warnings, errors = episode.read_keyframes(tmp_path, 20, (40, 60))
    assert sorted(keys) == [3, 7] and keys[7].shape == (40, 60, 3)
    assert len(warnings) == 1 and "key_7.png" in warnings[0] and "resized" in warnings[0]
    text = "\n".join(errors)
    for name in ("9.png", "nokey.png", "000050.png", "000004.png"):
        assert name in text
    keys, _, errors = episode.read_keyframes(tmp_path, 20, (40, 60), policy="reject")
    assert sorted(keys) == [3] and any("key_7.png" in e and "reject" in e for e in errors)


def test_load_shots_validates():
    assert episode.load_shots("[[0, 3], [3, 5]]", 5, []) == [(0, 3), (3, 5)]
    assert episode.load_shots('{"shots": [[0, 5]], "fps": 24}', 5, []) == [(0, 5)]
    for bad in ("[[0, 3], [4, 5]]", "[[0, 3]]", "[[1, 5]]", "[]"):
        with pytest.raises(ValueError, match="contiguous"):
            episode.load_shots(bad, 5, [])
    with pytest.raises(ValueError, match="JSON"):
        episode.load_shots("{nope", 5, [])


def test_plan_jobs_keys_borrow_and_fingerprints():
    la = [np.full((8, 8), 255, np.uint8) for _ in range(9)]
    ep = episode.Episode(la, 24.0, "x", unreadable={7: "frame 7 (f.png): broken"})
    keys = {0: np.zeros((8, 8, 3), np.uint8)}
    shots = [(0, 3), (3, 6), (6, 9)]
    jobs, left = job.plan_jobs(ep, keys, shots, job.RunSettings(), "fp")
    assert [j["id"] for j in jobs] == ["000000-000003"]
    assert [(r["status"], r["start"]) for r in left] == [("skipped", 3), ("failed", 6)]
    assert "--borrow-keyframes" in left[0]["reason"] and "f.png" in left[1]["reason"]
    jobs2, _ = job.plan_jobs(ep, keys, shots, job.RunSettings(borrow_keyframes=True), "fp")
    borrowed = jobs2[1]
    assert borrowed["borrowed_from"] == 0 and borrowed["offset"] == 1 and len(borrowed["lineart"]) == 4
    assert jobs2[0]["fingerprint"] == jobs[0]["fingerprint"]
    jobs3, _ = job.plan_jobs(ep, keys, shots, job.RunSettings(), "other-model")
    assert jobs3[0]["fingerprint"] != jobs[0]["fingerprint"]


def test_episode_stats_drops_the_borrowed_frame():
    stats = {"frames": 4, "key": 1, "keyframes": [0], "flagged": [2],
             "per_frame": [{"i": 0, "kind": "key", "ref": 0}, {"i": 1, "kind": "model", "ref": 0},
                           {"i": 2, "kind": "model", "ref": 1}, {"i": 3, "kind": "copy", "ref": 2}]}
    got = job.episode_stats(stats, start=10, off=1, borrowed=30)
    assert got["frames"] == 3 and got["key"] == 0 and got["keyframes"] == [] and got["flagged"] == [11]
    assert [(f["i"], f["ref"]) for f in got["per_frame"]] == [(10, 30), (11, 10), (12, 11)]


def test_load_shots_accepts_lcmftn_shots_json(tmp_path):
    # What `lcmftn shots VIDEO --json` prints must be usable as --shots as is.
    printed = {"frames": 10, "fps": 24.0, "shots": [{"start": 0, "end": 4}, {"start": 4, "end": 10}]}
    path = tmp_path / "shots.json"
    path.write_text(json.dumps(printed))
    assert episode.load_shots(str(path), 10, []) == [(0, 4), (4, 10)]
    assert episode.load_shots("[[0, 4], [4, 10]]", 10, []) == [(0, 4), (4, 10)]
    with pytest.raises(ValueError, match="entries must be"):
        episode.load_shots('{"shots": [{"begin": 0}]}', 10, [])
    with pytest.raises(ValueError, match="entries must be"):
        episode.load_shots('{"cuts": [4]}', 10, [])
