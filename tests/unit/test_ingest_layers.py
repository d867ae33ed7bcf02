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


def _shard_lineart(root, entry) -> list[np.ndarray]:
    import pyarrow.fs as pafs

    from lcmftn.data.dataset_format import decode_lineart_png, read_shard

    out = []
    for rel in entry["staged"]:
        t = read_shard(str(root / rel), pafs.LocalFileSystem())
        out += [decode_lineart_png(b) for b in t.column("lineart_png").to_pylist()]
    return out


def test_a_layer_film_is_ingested_with_its_own_line_art_in_both_paths(tmp_path):
    """The cels' artist line art (``cels/lines``, RGBA ink on transparent paper) is the dataset's
    line art, not XDoG of the colour; one task and segments give the same bytes; the lines are
    part of the film's content hash; a lines folder with a missing frame fails the film."""
    from dataclasses import asdict

    import pyarrow.fs as pafs

    from lcmftn.data.lineart import extract_lineart, lineart_to_working, normalize_lineart
    from lcmftn.ingest import fetch_and_hash, layer_lines_folder, stage_film
    from lcmftn.ingest_segments import assemble_film, plan_film, stage_segment

    cfg_film = FilmConfigV2(seed=6, size=96, aspect=1.5, num_shots=4, shot_frames=16, thin_lines=True)
    write_cel_layers(tmp_path / "ep.layers", cfg_film)
    src = str(tmp_path / "ep.layers/cels/color")
    assert layer_lines_folder(src) == tmp_path / "ep.layers/cels/lines"
    assert layer_lines_folder(str(tmp_path / "ep.layers/fx/color")) is None  # effects have no lines
    cfg = IngestConfig(size_px=48, rows_per_shard=40)
    fs, cfg_dict = pafs.LocalFileSystem(), asdict(cfg)
    item = {"film": "ep-cels", "source": src, "prev": ""}
    whole = stage_film(item, str(tmp_path / "one"), fs, None, cfg_dict)
    units = plan_film(item, str(tmp_path / "split"), fs, cfg_dict, 20)
    assert [u["kind"] for u in units] == ["segment"] * 4
    seg = assemble_film(units[0], [stage_segment(u, str(tmp_path / "split"), fs, cfg_dict) for u in units],
                        str(tmp_path / "split"), fs, cfg_dict)
    assert whole["status"] == seg["status"] == "ok", (whole, seg)
    got = _shard_lineart(tmp_path / "one", whole)
    assert len(got) == whole["frames"] == 64
    assert all(np.array_equal(a, b) for a, b in zip(got, _shard_lineart(tmp_path / "split", seg), strict=True))
    files = sorted((tmp_path / "ep.layers/cels/lines").iterdir())
    colour = list(iter_frames(src, size_px=48))
    for t in (0, 17, 63):
        want = lineart_to_working(normalize_lineart(read_image(files[t])), 48)
        assert np.array_equal(got[t], want)
        assert not np.array_equal(got[t], extract_lineart(colour[t]))  # not XDoG of the colour
    assert min(float((la < 128).mean()) for la in got) > 0.002  # thin 1-px strokes stay ink at 48 px
    # the lines are part of the film's content
    sha = fetch_and_hash(src, None, tmp_path)[1]
    img = read_image(files[5])
    img[0, 0, 3] = 255 - img[0, 0, 3]
    cv2.imwrite(str(files[5]), cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA))
    assert fetch_and_hash(src, None, tmp_path)[1] != sha
    # a lines folder one frame short fails the film, naming it
    files[-1].unlink()
    bad = stage_film({**item, "film": "ep-bad"}, str(tmp_path / "bad"), fs, None, cfg_dict)
    assert bad["status"] == "failed" and "line art has fewer frames" in bad["reason"] and src in bad["reason"]


def test_extra_line_art_frames_fail_the_film_in_both_paths(tmp_path):
    import shutil
    from dataclasses import asdict

    import pyarrow.fs as pafs

    from lcmftn.ingest import stage_film
    from lcmftn.ingest_segments import assemble_film, plan_film, stage_segment

    write_cel_layers(tmp_path / "ep.layers", FilmConfigV2(seed=6, size=64, aspect=1.5, num_shots=4, shot_frames=16))
    lines = tmp_path / "ep.layers/cels/lines"
    shutil.copy(sorted(lines.iterdir())[-1], lines / "99999.png")  # one drawing more than colour frames
    src = str(tmp_path / "ep.layers/cels/color")
    fs, cfg_dict = pafs.LocalFileSystem(), asdict(IngestConfig(size_px=48))
    item = {"film": "ep-cels", "source": src, "prev": ""}
    whole = stage_film(item, str(tmp_path / "one"), fs, None, cfg_dict)
    units = plan_film(item, str(tmp_path / "split"), fs, cfg_dict, 20)
    assert len(units) == 4
    seg = assemble_film(units[0], [stage_segment(u, str(tmp_path / "split"), fs, cfg_dict) for u in units],
                        str(tmp_path / "split"), fs, cfg_dict)
    for entry in (whole, seg):
        assert entry["status"] == "failed" and "more frames than its colour" in entry["reason"], entry
