"""Cel layers (issue 11 part 3): the layer folder recomposes the film, is deterministic, says
which layers exist; the CLI writes it next to the film."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lcmftn.data.synth import FilmConfigV2, generate_film
from lcmftn.data.synth.layers import (
    LAYERS_JSON,
    composite_layers,
    layers_path,
    read_layer_frame,
    write_cel_layers,
)
from lcmftn.data.video import read_image

FX = FilmConfigV2(seed=5, size=64, aspect=1.5, num_shots=3, shot_frames=8, effects=1.0, num_characters=2)


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_layers_recompose_the_film_exactly(tmp_path):
    meta = write_cel_layers(tmp_path / "f.layers", FX)
    assert meta["order"] == ["bg", "cels", "fx"] and [ly["name"] for ly in meta["layers"]] == ["cels", "fx"]
    assert json.loads((tmp_path / "f.layers" / LAYERS_JSON).read_text()) == meta
    frames = list(generate_film(FX).frames)
    assert meta["frames"] == len(frames) == 24
    worst, painted, fx_px = 0, 0, 0
    for t, frame in enumerate(frames):
        bg, layers = read_layer_frame(tmp_path / "f.layers", t)
        assert bg.shape == (64, 96, 3) and all(ly.shape == (64, 96, 4) for ly in layers)
        worst = max(worst, int(np.abs(composite_layers(bg, layers).astype(np.int16) - frame).max()))
        painted += int((layers[0][..., 3] == 255).sum())
        fx_px += int((layers[1][..., 3] > 0).sum())
        lines = read_image(tmp_path / "f.layers" / "cels/lines" / f"{t:05d}.png")
        assert lines.shape == (64, 96, 4)
        assert not np.any(lines[..., 3][layers[0][..., 3] == 0])  # no ink where the cel has no colour
    assert worst <= 1, f"recomposed frame differs by {worst} levels"  # uint8 rounding at most
    assert painted > 1000 and fx_px > 100  # the layers are not empty


def test_layers_deterministic_and_no_fx_layer_without_effects(tmp_path):
    write_cel_layers(tmp_path / "a", FX)
    write_cel_layers(tmp_path / "b", FX)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    other = FilmConfigV2(seed=6, size=64, aspect=1.5, num_shots=3, shot_frames=8, effects=0.0)
    meta = write_cel_layers(tmp_path / "c", other)
    assert [ly["name"] for ly in meta["layers"]] == ["cels"] and not (tmp_path / "c" / "fx").exists()
    assert _files(tmp_path / "c") != _files(tmp_path / "a")
    with pytest.raises(FileExistsError):
        write_cel_layers(tmp_path / "a", FX)
    assert not list(tmp_path.glob(".*tmp*"))


def test_cli_writes_layers_next_to_the_film(tmp_path, capsys):
    from lcmftn.cli import main

    out = tmp_path / "film.mp4"
    rc = main(["synth", str(out), "--generator", "v2", "--size", "64", "--num-shots", "2", "--shot-frames", "6",
               "--layers"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["layers"] == str(layers_path(out)) and out.exists()
    assert len(list(layers_path(out).joinpath("cels/color").glob("*.png"))) == summary["frames"] == 12
    assert main(["synth", str(tmp_path / "v1.mp4"), "--size", "64", "--layers"]) == 2
    assert not (tmp_path / "v1.mp4").exists()
    again = tmp_path / "again.mp4"
    layers_path(again).mkdir()
    assert main(["synth", str(again), "--generator", "v2", "--size", "64", "--num-shots", "1", "--layers"]) == 2
    assert not again.exists()  # refused before the film is written
