"""Colorize keeps the paper of a cel layer (issue 11.3): lcmftn.paper on drawn and generated line
art, and through the colorize path (ShotColorizer with cfg.paper)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from lcmftn.colorize import ColorizeConfig, colorize_shot
from lcmftn.data.lineart import normalize_lineart
from lcmftn.data.synth import FilmConfigV2, iter_layers
from lcmftn.data.synth.layers import cel_color, lines_rgba
from lcmftn.models.base import ColorizationSystem
from lcmftn.paper import (
    PaperConfig,
    has_transparent_paper,
    keep_paper,
    paper_mask,
    resolve_paper_mode,
)

GREEN = (40, 220, 90)


def _ring(gap_px: int = 0, size: int = 64) -> np.ndarray:
    """A 1-px anti-aliased circle (255 = paper) with a gap of ``gap_px`` pixels at the right."""
    img = np.full((size, size), 255, np.uint8)
    cv2.circle(img, (size // 2, size // 2), size // 4, 0, 1, cv2.LINE_AA)
    if gap_px:
        c = size // 2 + size // 4
        img[size // 2 - gap_px // 2: size // 2 - gap_px // 2 + gap_px, c - 2: c + 3] = 255
    return img


def test_closed_drawing_keeps_its_inside_gaps_up_to_two_px_are_bridged():
    for gap in (0, 1, 2):
        m = paper_mask(_ring(gap))
        assert m[0, 0] and not m[32, 32], f"gap {gap}: the inside leaked"
    assert paper_mask(_ring(5))[32, 32]  # a wider gap lets the paper in (documented)
    assert paper_mask(_ring(2), PaperConfig(close_px=0))[32, 32]  # without the closing, 2 px leak
    assert not paper_mask(np.zeros((8, 8), np.uint8)).any()  # all ink: no paper
    assert paper_mask(np.full((8, 8), 255, np.uint8)).all()  # blank: all paper


def test_keep_paper_white_and_alpha():
    la = _ring()
    model = np.empty((64, 64, 3), np.uint8)
    model[:] = GREEN
    white = keep_paper(model, la, "white")
    m = paper_mask(la)
    assert white.shape == (64, 64, 3)
    assert np.array_equal(white[m], np.repeat(la[m][:, None], 3, 1))
    assert (white[m & (la == 255)] == 255).all() and (white[~m] == GREEN).all()
    rgba = keep_paper(model, la, "alpha")
    assert rgba.shape == (64, 64, 4) and rgba.dtype == white.dtype == np.uint8
    assert (rgba[m & (la == 255)] == (255, 255, 255, 0)).all()
    assert (rgba[~m][:, :3] == GREEN).all() and (rgba[~m][:, 3] == 255).all()
    assert np.array_equal(rgba[m][:, 3], 255 - la[m])  # the outer anti-aliasing keeps its coverage
    assert keep_paper(model, la, "off") is model
    with pytest.raises(ValueError):
        keep_paper(model, la, "green")


def test_paper_mode_resolution():
    rgba = lines_rgba(_ring())
    assert has_transparent_paper(rgba) and not has_transparent_paper(_ring())
    assert has_transparent_paper(rgba.astype(np.uint16) * 257) and has_transparent_paper(rgba / 255.0)
    assert not has_transparent_paper(np.dstack([rgba[..., :3], np.full((64, 64), 255, np.uint8)]))
    assert resolve_paper_mode("auto", rgba) == "alpha" and resolve_paper_mode("keep", rgba) == "alpha"
    assert resolve_paper_mode("auto", _ring()) == "off"  # white paper may be an open sky: not by default
    assert resolve_paper_mode("keep", _ring()) == "white" and resolve_paper_mode("off", rgba) == "off"
    with pytest.raises(ValueError):
        resolve_paper_mode("always", rgba)


LAYER = FilmConfigV2(seed=4, size=96, aspect=1.5, num_shots=3, shot_frames=4, effects=0.0, close_up_prob=0.0,
                     num_characters=2, hold_prob=0.0)


def _layer_frames():
    return [ly for ly, held in iter_layers(LAYER) if not held]


def _inner_drawn(alpha: np.ndarray) -> np.ndarray:
    """Cel pixels of drawings that do not touch the frame border (fully closed on screen)."""
    n, lab = cv2.connectedComponents((alpha > 0).astype(np.uint8), connectivity=8)
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    return (alpha == 255) & ~np.isin(lab, border)


def test_generated_layer_paper_is_exact_and_drawing_keeps_the_model_colours():
    kept, paper_px, inner_px = 0, 0, 0
    model = np.empty((96, 144, 3), np.uint8)
    model[:] = GREEN
    for ly in _layer_frames():
        raw = lines_rgba(ly.lineart)  # the layer's line art on transparent paper, as written to disk
        la = normalize_lineart(raw)
        assert np.array_equal(la, ly.lineart)
        out = keep_paper(model, la, resolve_paper_mode("auto", raw))
        truth_paper = cel_color(ly)[..., 3] == 0
        kept += int((out[truth_paper] == (255, 255, 255, 0)).all(axis=1).sum())
        paper_px += int(truth_paper.sum())
        inner = _inner_drawn(cel_color(ly)[..., 3])
        inner_px += int(inner.sum())
        assert (out[inner] == (*GREEN, 255)).all(), "a closed drawn region lost the model's colours"
        cut = (cel_color(ly)[..., 3] > 0) & ~inner  # drawings cut open by the frame border may
        assert not (out[..., 3] == 0)[~truth_paper & ~cut].any()  # turn paper (documented), no other
    assert inner_px > 2000 and paper_px > 10000
    assert kept / paper_px >= 0.97, f"only {kept / paper_px:.4f} of the paper kept exact"


class GreenSystem(ColorizationSystem):
    """Paints everything green, paper included (what the cpu-small model did to the smoke layer)."""

    system = "test-green"
    trainable = False

    def forward(self, s_p, c_p, s_n):
        out = torch.zeros_like(c_p)
        out[:, 0], out[:, 1], out[:, 2] = (v / 255 for v in GREEN)
        return out


def test_colorize_path_rgba_in_rgba_out_paper_transparent():
    frames = _layer_frames()[:4]
    lineart = [ly.lineart for ly in frames]
    key = np.ascontiguousarray(cel_color(frames[0])[..., :3])
    cfg = ColorizeConfig(mode="chain", image_size_px=96, multiple_of=8, paper="alpha")
    out, stats, _ = colorize_shot(GreenSystem(), lineart, {0: key}, cfg)
    assert stats["colorized"] == 3
    for ly, img in zip(frames, out, strict=True):
        assert img.shape == (96, 144, 4)
        m = paper_mask(ly.lineart)
        assert (img[m & (ly.lineart == 255)] == (255, 255, 255, 0)).all()
        assert (img[~m][:, 3] == 255).all()
    inner = _inner_drawn(cel_color(frames[2])[..., 3]) & (frames[2].lineart == 255)  # (upsampling inks lines)
    assert inner.any() and (np.abs(out[2][inner][:, :3].astype(int) - GREEN) <= 2).all()
    off, _, _ = colorize_shot(GreenSystem(), lineart, {0: key}, ColorizeConfig(image_size_px=96, multiple_of=8))
    assert off[2].shape == (96, 144, 3) and (off[2][paper_mask(lineart[2])] != 255).any()  # the bug it fixes


def test_source_mode_and_rgba_frames_on_disk(tmp_path):
    from lcmftn.data.dataset_format import decode_color_png, encode_png
    from lcmftn.episode import open_source
    from lcmftn.paper import paper_of_source

    layer, white = tmp_path / "layer", tmp_path / "white"
    layer.mkdir(), white.mkdir()
    for t in range(2):
        cv2.imwrite(str(layer / f"{t:05d}.png"), lines_rgba(_ring()))
        cv2.imwrite(str(white / f"{t:05d}.png"), _ring())
    assert paper_of_source(open_source(str(layer), layer), "auto") == "alpha"
    assert paper_of_source(open_source(str(white), white), "auto") == "off"
    assert paper_of_source(open_source(str(white), white), "keep") == "white"
    rgba = keep_paper(np.full((64, 64, 3), 100, np.uint8), _ring(), "alpha")
    back = cv2.imdecode(np.frombuffer(encode_png(rgba), np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(back[..., [2, 1, 0, 3]], rgba)  # RGBA frames are written with their alpha
    seen = decode_color_png(encode_png(rgba))  # the episode video / scoring see it over white paper
    assert seen.shape == (64, 64, 3) and (seen[paper_mask(_ring()) & (_ring() == 255)] == 255).all()
    assert (seen[32, 32] == 100).all()
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert np.array_equal(decode_color_png(encode_png(rgb)), rgb)
    assert decode_color_png(encode_png(rgb[..., 0])).shape == (8, 8, 3)  # grey PNG as before
