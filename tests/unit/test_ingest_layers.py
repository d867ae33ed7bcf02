"""Ingest of cel layers (issue 11.3): a layer folder is one film per layer, and a layer film's
frames are its RGBA colour over white paper (paper stays paper)."""

from __future__ import annotations

import cv2
import numpy as np

from lcmftn.data.dataset_format import decode_color_png
from lcmftn.data.synth import FilmConfigV2
from lcmftn.data.synth.layers import write_cel_layers
from lcmftn.data.video import iter_frames, read_image
from lcmftn.ingest import IngestConfig, discover_films, process_frames, spilled_rows

CFG = FilmConfigV2(seed=5, size=64, aspect=1.5, num_shots=2, shot_frames=6, effects=1.0)


def test_layer_folder_is_one_film_per_layer_with_white_paper(tmp_path):
    meta = write_cel_layers(tmp_path / "ep1.layers", CFG)
    films, empty = discover_films([str(tmp_path / "ep1.layers")])
    assert not empty and set(films) == {f"ep1-{ly['name']}" for ly in meta["layers"]} == {"ep1-cels", "ep1-fx"}
    src = films["ep1-cels"]
    ff = process_frames(iter_frames(src, size_px=64), "ep1-cels", IngestConfig(size_px=64), None,
                        tmp_path / "spill.arrow")
    assert ff.frames == meta["frames"] == 12 and ff.shots[-1][1] == 12
    rows = list(spilled_rows(ff.spill))
    pngs = [c for c, _ in rows]
    paper_px = 0
    for t in range(meta["frames"]):
        rgba = read_image(tmp_path / "ep1.layers/cels/color" / f"{t:05d}.png")
        got = decode_color_png(pngs[t])
        paper = rgba[..., 3] == 0
        assert (got[paper] == 255).all(), f"frame {t}: paper is not white in the dataset"
        solid = rgba[..., 3] == 255
        assert np.array_equal(got[solid], rgba[..., :3][solid])  # the cels keep their colours
        paper_px += int(paper.sum())
    assert paper_px > 0.3 * 12 * 64 * 96
    line = cv2.imdecode(np.frombuffer(rows[0][1], np.uint8), cv2.IMREAD_GRAYSCALE)
    assert line.shape == (64, 96) and (line == 255).mean() > 0.5  # line art of a layer: mostly paper


def test_one_layer_of_a_folder_keeps_its_layer_name(tmp_path):
    write_cel_layers(tmp_path / "ep2.layers", CFG)
    films, _ = discover_films([str(tmp_path / "ep2.layers/cels/color")])
    assert list(films) == ["ep2-cels"]
