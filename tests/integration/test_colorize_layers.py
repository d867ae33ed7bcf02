"""``workflows.colorize`` on a cel layer's line art (transparent paper): the paper stays paper
(issue 11.3). In-process (``--local``), 96x64 px, a tiny untrained LCMFTN: it paints the paper,
the job must not let it."""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch

from lcmftn.checkpoint import save_checkpoint
from lcmftn.data.synth import FilmConfigV2
from lcmftn.data.synth.layers import write_cel_layers
from lcmftn.data.video import read_image, to_rgb
from lcmftn.models.registry import build_generator, generator_config
from lcmftn.paper import paper_mask
from workflows import colorize as job

pytestmark = pytest.mark.integration


def test_layer_lineart_keeps_paper(tmp_path):
    cfg = FilmConfigV2(seed=4, size=64, aspect=1.5, num_shots=1, shot_frames=6, effects=0.0, close_up_prob=0.0)
    layers = tmp_path / "f.layers"
    meta = write_cel_layers(layers, cfg)
    keys = tmp_path / "keys"
    keys.mkdir()
    key = read_image(layers / "cels/color/00000.png")  # RGBA: the keyframe is a coloured cel too
    cv2.imwrite(str(keys / "000000.png"), key[..., [2, 1, 0, 3]])
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "ckpt", build_generator("lcmftn", "tiny"), "lcmftn",
                           dataclasses.asdict(generator_config("lcmftn", "tiny")))
    base = ["--lineart", str(layers / "cels/lines"), "--refs", str(keys), "--model", str(ckpt), "--size", "64",
            "--local", "--shots", json.dumps([[0, meta["frames"]]]), "--fps", "24", "--no-holds"]
    assert job.main([*base, "--out", str(tmp_path / "keep")]) == 0
    assert job.main([*base, "--out", str(tmp_path / "off"), "--paper", "off"]) == 0
    painted = 0
    for t in range(meta["frames"]):
        lines = read_image(layers / "cels/lines" / f"{t:05d}.png")
        la = 255 - lines[..., 3]
        bare = paper_mask(la) & (la == 255)
        out = read_image(tmp_path / "keep/frames" / f"{t:06d}.png")
        assert out.shape == (64, 96, 4), "RGBA line art in -> RGBA frames out"
        assert (out[bare][:, 3] == 0).all() and (out[~paper_mask(la)][:, 3] == 255).all()
        off = read_image(tmp_path / "off/frames" / f"{t:06d}.png")
        assert off.shape == (64, 96, 3)
        painted += int((off[bare] != 255).any(axis=1).sum())
        assert np.array_equal(to_rgb(out)[~paper_mask(la)], off[~paper_mask(la)])  # same colours on the drawing
    assert painted > 0  # without --paper the untrained model does paint the paper
    assert (tmp_path / "keep/episode.mp4").exists()
