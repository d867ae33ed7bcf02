"""The product's ceiling on an episode: a "perfect model" through the real colorize path.

    python -m workflows.benchmark ceiling --episode demo-out/episode --size 64 80
    python -m workflows.benchmark ceiling --episode demo-out/episode --size 80 --halo 0 1 2

An oracle generator returns the true colour of S_n at model resolution (looked up by its line
art, so it needs the episode's ``color.mp4`` truth); everything after the model is the product's
own code (``lcmftn.colorize.colorize_shot``, chain mode, holds copied, the line-guided output
stage ``lcmftn.upsample``). The PSNR of non-keyframe frames against the truth is therefore the
best any model can score on that episode through that output stage, beside the score of
repeating each shot's keyframe. ``--halo 0`` = the upsampler's automatic band. Torch/NumPy only.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() / 255


def ceiling(episode: str, size: int, halo_px: int = 0, ink: str = "multiply") -> dict:
    """``{"perfect": dB, "keyframe": dB, "frames": n}`` over the episode's non-keyframe frames."""
    from lcmftn.colorize import (
        ColorizeConfig,
        color_at_size,
        colorize_shot,
        lineart_at_size,
        shot_sizes,
    )
    from lcmftn.data.holds import detect_holds
    from lcmftn.data.video import read_frames
    from lcmftn.metrics import psnr
    from lcmftn.upsample import UpsampleConfig

    color = read_frames(f"{episode}/color.mp4")
    line = [f[..., 0] if f.ndim == 3 else f for f in read_frames(f"{episode}/lineart.mp4")]
    shots = json.loads(open(f"{episode}/shots.json").read())["shots"]
    # the oracle needs no multiple: multiple_of=1 (a system's padding is cropped away anyway)
    cfg = ColorizeConfig(mode="chain", image_size_px=size, multiple_of=1,
                         upsample=UpsampleConfig(halo_px=halo_px, ink=ink))
    hw = shot_sizes(*line[0].shape, cfg)[0]
    truth = {}
    for la, c in zip(line, color, strict=True):
        truth.setdefault(lineart_at_size(la, hw).numpy().tobytes(), color_at_size(c, hw))

    class Oracle(torch.nn.Module):
        def forward_with_confidence(self, s_p, c_p, s_n):
            return torch.stack([truth[x.numpy().tobytes()] for x in s_n]), None

    perfect, key = [], []
    for s, e in shots:
        frames, _, _ = colorize_shot(Oracle(), line[s:e], {0: color[s]}, cfg, holds=detect_holds(line[s:e]))
        for i in range(s + 1, e):
            perfect.append(float(psnr(_tensor(frames[i - s]), _tensor(color[i]))))
            key.append(float(psnr(_tensor(color[s]), _tensor(color[i]))))
    return {"perfect": float(np.mean(perfect)), "keyframe": float(np.mean(key)), "frames": len(perfect)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workflows.benchmark ceiling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episode", required=True, help="folder with color.mp4, lineart.mp4, shots.json")
    p.add_argument("--size", type=int, nargs="+", default=[64], help="model resolution(s), px")
    p.add_argument("--halo", type=int, nargs="+", default=[0], help="upsampler halo px (0 = auto)")
    p.add_argument("--ink", default="multiply", choices=["multiply", "none"])
    a = p.parse_args(argv)
    print("| model px | halo px | perfect model dB | repeat keyframe dB | frames |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for size in a.size:
        for halo in a.halo:
            r = ceiling(a.episode, size, halo, a.ink)
            print(f"| {size} | {halo or 'auto'} | {r['perfect']:.2f} | {r['keyframe']:.2f} | {r['frames']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
