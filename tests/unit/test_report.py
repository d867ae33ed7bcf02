"""The QC report (lcmftn.report) and the colorize job's pure helpers: lcmftn.episode, lcmftn.jobs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from lcmftn import episode
from lcmftn import jobs as job
from lcmftn import report as rpt
from lcmftn.data.dataset_format import decode_color_png


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
    # the only <script> is the page's own; the error string is escaped in the HTML and in the data
    assert page.count("<script>") == 1 and "&lt;script&gt;" in page and "&lt;b&gt;12" in page
    data = page.split("id='review-data'>", 1)[1].split("</script>", 1)[0]
    assert "<" not in data and json.loads(data)["shots"][0]["id"] == "000000-000010"
    assert "1 frames flagged" in page


def _done(start, end, conf, frames, flagged=()):
    return _shot(start, end, confidence=conf, flagged=list(flagged), keyframes=[start],
                 per_frame=[{"i": i, "kind": k, "ref": max(start, i - 1), "conf": c, "low": 0.0}
                            for i, k, c in frames])


def test_review_data_sorts_shots_and_frames_worst_first():
    a = _done(0, 3, 0.9, [(0, "key", 1.0), (1, "model", 0.95), (2, "model", 0.85)])
    b = _done(3, 6, 0.5, [(3, "key", 1.0), (4, "model", 0.3), (5, "copy", 0.3)], flagged=[4])
    c = _done(6, 9, 0.5, [(6, "key", 1.0), (7, "model", 0.6), (8, "model", 0.4)])
    rep = rpt.summarize({"fps": 12}, [a, b, c, _shot(9, 12, "skipped", reason="no keyframe")])
    data = rpt.review_data(rep)
    assert [s["id"] for s in data["shots"]] == ["000003-000006", "000006-000009", "000000-000003"]  # tie: more flagged first
    assert [f["i"] for f in data["shots"][0]["frames"]] == [4, 5, 3]  # keyframe last; ties by time
    assert [f["i"] for f in data["shots"][2]["frames"]] == [2, 1, 0]
    assert data["shots"][0]["frames"][0]["flagged"] and not data["evaluated"] and data["fps"] == 12


def test_add_evaluation_writes_truth_and_error_maps_and_resorts(tmp_path):
    truth = [np.full((8, 10, 3), 100, np.uint8) for _ in range(6)]
    store: dict[str, bytes] = {}
    for i, t in enumerate(truth):  # frame 2 is far off, frame 4 a little
        pred = t.copy() + (60 if i == 2 else 5 if i == 4 else 0)
        store[f"frames/{rpt.frame_name(i)}"] = job.encode_png(pred.astype(np.uint8))
    a = _done(0, 3, 0.9, [(0, "key", 1.0), (1, "model", 0.5), (2, "model", 0.9)])
    b = _done(3, 6, 0.2, [(3, "key", 1.0), (4, "model", 0.2), (5, "model", 0.2)])
    rep = rpt.summarize({}, [a, b])
    rows = [{"i": 1, "psnr": 40.0, "ssim": 0.99}, {"i": 2, "psnr": 12.0, "ssim": 0.5},
            {"i": 4, "psnr": 30.0, "ssim": 0.9}, {"i": 5, "psnr": 35.0, "ssim": 0.95}]
    out = rpt.add_evaluation(rep, rows, truth, store.get, store.__setitem__, {"mode": "chain"})
    assert {f"truth/{rpt.frame_name(i)}" for i in (1, 2, 4, 5)} <= set(store)
    err2 = decode_color_png(store["error/000002.png"])
    err1 = decode_color_png(store["error/000001.png"])
    assert err2.shape == (8, 10, 3) and err2.mean() > err1.mean() + 50  # far off = bright
    assert json.loads(store["report.json"])["evaluation"]["frames"] == 4
    assert "truth/" in store["report.html"].decode() or "error map" in store["report.html"].decode()
    data = rpt.review_data(out)
    # by PSNR now, not confidence: shot a (mean 26 dB) is worse than b (32.5 dB)
    assert data["evaluated"] and [s["id"] for s in data["shots"]] == ["000000-000003", "000003-000006"]
    assert [f["i"] for f in data["shots"][0]["frames"]] == [2, 1, 0]
    with pytest.raises(ValueError, match="000009.png"):
        rpt.add_evaluation(rep, [{"i": 9, "psnr": 1, "ssim": 0}], truth * 2, store.get, store.__setitem__)


def test_lineart_files_names_and_decodes():
    la = [np.full((4, 6), v, np.uint8) for v in (0, 128, 255)]
    files = list(rpt.lineart_files(la, 1, 3))
    assert [f for f, _ in files] == ["lineart/000001.png", "lineart/000002.png"]
    img = cv2.imdecode(np.frombuffer(files[1][1], np.uint8), cv2.IMREAD_UNCHANGED)
    assert img.shape == (4, 6) and int(img[0, 0]) == 255


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


def test_keyframe_refs_hold_no_pixels_and_load_what_was_planned(tmp_path):
    """The streaming job keeps keyframes as references (issue 8: the driver's and actors' memory
    must not grow with the number of shots): no pixels in the jobs, the same RGB and the same
    fingerprints as in-memory keyframes, and a keyframe changed after planning is an error."""
    import pickle

    rng = np.random.default_rng(0)
    for name, (h, w) in (("000000.png", (40, 60)), ("000003.png", (80, 120))):  # one resized
        cv2.imwrite(str(tmp_path / name), rng.integers(0, 255, (h, w, 3), np.uint8))
    arrays, _, _ = episode.read_keyframes(tmp_path, 6, (40, 60))
    refs, warnings, errors = episode.read_keyframes(tmp_path, 6, (40, 60), uri=str(tmp_path))
    assert sorted(refs) == [0, 3] and len(warnings) == 1 and not errors
    assert all(isinstance(r, episode.KeyframeRef) for r in refs.values())
    for i in (0, 3):
        assert np.array_equal(refs[i].load(), arrays[i]) and refs[i].size_hw == (40, 60)
    la = [np.full((40, 60), 255, np.uint8)] * 6
    scan = episode.Scan(b"".join(episode.frame_digest(f) for f in la), {}, None)
    shots = [(0, 3), (3, 6)]
    by_ref, _ = job.plan_jobs(scan, refs, shots, job.RunSettings(), "fp")
    by_arr, _ = job.plan_jobs(scan, arrays, shots, job.RunSettings(), "fp")
    assert [j["fingerprint"] for j in by_ref] == [j["fingerprint"] for j in by_arr]
    assert len(pickle.dumps(by_ref)) < 2000 < len(pickle.dumps(by_arr))  # 2 x 7.2 KB of pixels
    cv2.imwrite(str(tmp_path / "000003.png"), np.zeros((80, 120, 3), np.uint8))
    with pytest.raises(ValueError, match="000003.png.*changed"):
        refs[3].load()


def test_load_shots_validates():
    assert episode.load_shots("[[0, 3], [3, 5]]", 5, []) == [(0, 3), (3, 5)]
    assert episode.load_shots('{"shots": [[0, 5]], "fps": 24}', 5, []) == [(0, 5)]
    for bad in ("[[0, 3], [4, 5]]", "[[0, 3]]", "[[1, 5]]", "[]"):
        with pytest.raises(ValueError, match="contiguous"):
            episode.load_shots(bad, 5, [])
    with pytest.raises(ValueError, match="JSON"):
        episode.load_shots("{nope", 5, [])


def test_plan_jobs_keys_borrow_and_fingerprints():
    la = [np.full((8, 8), 255 - i, np.uint8) for i in range(9)]
    ep = episode.Scan(b"".join(episode.frame_digest(f) for f in la), {7: "frame 7 (f.png): broken"}, None)
    keys = {0: np.zeros((8, 8, 3), np.uint8)}
    shots = [(0, 3), (3, 6), (6, 9)]
    jobs, left = job.plan_jobs(ep, keys, shots, job.RunSettings(), "fp")
    assert [j["id"] for j in jobs] == ["000000-000003"]
    assert [(r["status"], r["start"]) for r in left] == [("skipped", 3), ("failed", 6)]
    assert "--borrow-keyframes" in left[0]["reason"] and "f.png" in left[1]["reason"]
    jobs2, _ = job.plan_jobs(ep, keys, shots, job.RunSettings(borrow_keyframes=True), "fp")
    borrowed = jobs2[1]
    assert borrowed["borrowed_from"] == 0 and borrowed["offset"] == 1 and len(borrowed["digests"]) == 3 * 16
    assert borrowed["borrowed_digest"] == episode.frame_digest(la[0])
    assert jobs2[0]["fingerprint"] == jobs[0]["fingerprint"]
    jobs3, _ = job.plan_jobs(ep, keys, shots, job.RunSettings(), "other-model")
    assert jobs3[0]["fingerprint"] != jobs[0]["fingerprint"]
    la[1] = la[1].copy()
    la[1][0, 0] = 0  # one pixel of the shot's line art changed: the shot is coloured again
    ep2 = episode.Scan(b"".join(episode.frame_digest(f) for f in la), ep.unreadable, None)
    jobs4, _ = job.plan_jobs(ep2, keys, shots, job.RunSettings(), "fp")
    assert jobs4[0]["fingerprint"] != jobs[0]["fingerprint"]


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
