"""The reliability hooks of the jobs, before any Ray/film/shot work: one writer per --out
(lease), writable --out, bounded frame shapes, a glob matching nothing (exit 2, nothing
written), a checkpoint with garbage meta.json. No Ray is started by any of these."""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest

from lcmftn.checkpoint import save_checkpoint
from lcmftn.data.video import write_video
from lcmftn.integrations import lease
from lcmftn.models.registry import build_generator
from workflows import colorize, ingest


@pytest.fixture
def inputs(tmp_path):
    G = build_generator("lcmftn", "tiny")
    ckpt = save_checkpoint(tmp_path / "ckpt", G, "lcmftn", dataclasses.asdict(G.config))
    (tmp_path / "keys").mkdir()
    cv2.imwrite(str(tmp_path / "keys" / "000000.png"), np.full((64, 64, 3), 200, np.uint8))
    write_video(tmp_path / "la.mp4", [np.full((64, 64, 3), 255, np.uint8)] * 4, 24)
    return tmp_path, ckpt


def _colorize(tmp, ckpt, out, lineart="la.mp4"):
    return colorize.main(["--lineart", str(tmp / lineart), "--refs", str(tmp / "keys"), "--model", str(ckpt),
                          "--out", str(out), "--size", "32", "--local"])


def test_colorize_second_writer_exits_2_naming_the_holder(inputs, capsys):
    tmp, ckpt = inputs
    out = tmp / "out"
    held = lease.acquire(str(out), owner="colorize")
    try:
        assert _colorize(tmp, ckpt, out) == 2
    finally:
        held.release()
    err = capsys.readouterr().err
    assert f"pid {held.record['pid']}" in err and held.record["host"] in err and held.record["created"] in err
    assert not (out / "frames").exists()


def test_colorize_unwritable_out_exits_2(inputs, capsys):
    tmp, ckpt = inputs
    (tmp / "afile").write_text("x")
    assert _colorize(tmp, ckpt, tmp / "afile" / "out") == 2
    assert f"{tmp / 'afile' / 'out'}: {tmp / 'afile'} is a file, not a folder" in capsys.readouterr().err


def test_colorize_extreme_frame_shape_exits_2_before_ray(inputs, capsys):
    tmp, ckpt = inputs
    write_video(tmp / "wide.mp4", [np.full((16, 640, 3), 255, np.uint8)] * 2, 24)
    assert _colorize(tmp, ckpt, tmp / "out", lineart="wide.mp4") == 2
    err = capsys.readouterr().err
    assert "wide.mp4" in err and "aspect ratio" in err and "max_aspect=8.0" in err
    assert not (tmp / "out").exists()  # lease released and the folder it made removed: nothing written


def test_colorize_garbage_meta_json_names_the_model(inputs, capsys):
    tmp, ckpt = inputs
    (ckpt / "meta.json").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert _colorize(tmp, ckpt, tmp / "out") == 2
    err = capsys.readouterr().err
    assert f"--model {ckpt}/meta.json: not UTF-8" in err


def test_colorize_huge_widths_exit_2_naming_the_field(inputs, capsys):
    tmp, ckpt = inputs
    meta = json.loads((ckpt / "meta.json").read_text())
    meta["config"]["ru_widths"] = [32, 32, 10**7]
    (ckpt / "meta.json").write_text(json.dumps(meta))
    assert _colorize(tmp, ckpt, tmp / "out") == 2
    assert "ru_widths" in capsys.readouterr().err


def test_ingest_glob_matching_nothing_exits_2_writing_nothing(tmp_path, capsys):
    out = tmp_path / "ds"
    assert ingest.main(["--films", str(tmp_path / "*.mkv"), "--out", str(out)]) == 2
    assert "no film matches" in capsys.readouterr().err
    assert not out.exists()


def test_ingest_second_writer_and_unwritable_out_exit_2(inputs, capsys):
    tmp, _ = inputs
    out = tmp / "ds"
    held = lease.acquire(str(out), owner="ingest")
    try:
        assert ingest.main(["--films", str(tmp / "la.mp4"), "--out", str(out)]) == 2
    finally:
        held.release()
    assert f"pid {held.record['pid']}" in capsys.readouterr().err
    (tmp / "afile").write_text("x")
    assert ingest.main(["--films", str(tmp / "la.mp4"), "--out", str(tmp / "afile" / "ds")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
