"""Tiny shot datasets written straight in the ingest layout (FRAME_SCHEMA shards + manifest).

Training tests must not depend on the ingest job, so this draws simple cel-style shots in NumPy
(flat background, two outlined shapes moving across it, a new palette per shot, some frames held
on twos) and writes them with ``lcmftn.data.dataset_format`` (the writer ingest uses), as ``lcmftn.data.dataset.load_frames`` reads them.
The line art is drawn, not extracted: black outlines (0) on white paper (255).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lcmftn.data.dataset_format import (
    encode_color_png,
    encode_lineart_png,
    frame_table,
    write_film,
    write_manifest,
)


def _bounce(v: float, hi: int) -> int:
    period = 2 * hi
    v = abs(v) % period
    return int(period - v if v > hi else v)


def draw_shot(rng: np.random.Generator, frames: int, size_px: int,
              hold_every: int = 0) -> tuple[list[np.ndarray], list[np.ndarray], list[bool]]:
    """One shot: colour ``uint8 [H,W,3]`` frames, line art ``uint8 [H,W]``, hold flags.

    ``hold_every`` > 1 holds each drawing for that many frames (animation on twos/threes)."""
    s = size_px
    bg = rng.integers(120, 256, 3)
    shapes = []
    for _ in range(2):
        shapes.append({
            "fill": rng.integers(0, 200, 3), "shade": None,
            "r": int(rng.integers(s // 8, s // 4)),
            "xy": rng.uniform(0.25 * s, 0.75 * s, 2),
            "v": rng.uniform(-0.04 * s, 0.04 * s, 2),
            "rect": bool(rng.random() < 0.5),
        })
    colors, lines, holds = [], [], []
    for t in range(frames):
        held = hold_every > 1 and t % hold_every != 0
        if not held:
            color = np.empty((s, s, 3), np.uint8)
            color[:] = bg
            line = np.full((s, s), 255, np.uint8)
            for sh in shapes:
                # bounce inside the frame so the drawing keeps changing
                x, y = (_bounce(c, s - 1) for c in sh["xy"] + sh["v"] * t)
                r = sh["r"]
                fill = tuple(int(c) for c in sh["fill"])
                if sh["rect"]:
                    cv2.rectangle(color, (x - r, y - r), (x + r, y + r), fill, -1)
                    cv2.rectangle(color, (x - r, y - r), (x + r, y + r), (20, 20, 20), 1)
                    cv2.rectangle(line, (x - r, y - r), (x + r, y + r), 0, 1)
                else:
                    cv2.circle(color, (x, y), r, fill, -1)
                    cv2.circle(color, (x, y), r, (20, 20, 20), 1)
                    cv2.circle(line, (x, y), r, 0, 1)
        # the hold flag is the truth of the pixels: this drawing equals the previous one
        holds.append(t > 0 and np.array_equal(line, lines[-1]))
        colors.append(color.copy())
        lines.append(line.copy())
    return colors, lines, holds


def write_tiny_dataset(root: str | Path, films: int = 1, shots_per_film: int = 4,
                       frames_per_shot: int = 24, size_px: int = 32, seed: int = 0,
                       hold_every: int = 2, version: str = "test-v1") -> Path:
    """Write ``root/manifest.json`` + ``root/frames/<film>/part-00000.parquet``; returns root."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    manifest: dict = {"version": version, "config": {"size": size_px, "generator": "tests.helpers"},
                      "films": {}}
    for f in range(films):
        film = f"film{f:02d}"
        shot_of, color_pngs, line_pngs, hold_flags = [], [], [], []
        shots_meta, frame_index = [], 0
        for shot in range(shots_per_film):
            colors, lines, holds = draw_shot(rng, frames_per_shot, size_px, hold_every)
            shots_meta.append({"shot": shot, "start": frame_index,
                               "end": frame_index + frames_per_shot})
            for c, ln, h in zip(colors, lines, holds, strict=True):
                shot_of.append(shot)
                color_pngs.append(encode_color_png(c))
                line_pngs.append(encode_lineart_png(ln))
                hold_flags.append(h)
                frame_index += 1
        table = frame_table(film, shot_of, color_pngs, line_pngs, hold_flags, size_px, size_px)
        rels, shas = write_film(root, film, table)
        manifest["films"][film] = {
            "status": "ok", "source": f"generated://{film}",
            "sha256": shas[0], "reason": None,
            "shots": shots_meta, "frames": frame_index, "shards": rels,
        }
    write_manifest(str(root), manifest)
    return root


def upload_dir(local: str | Path, uri: str) -> None:
    """Copy a local folder to an ``s3://`` prefix with pyarrow (env-configured endpoint)."""
    import pyarrow.fs as pafs

    from lcmftn.integrations.storage import filesystem_for

    fs, base = filesystem_for(uri)
    fs.create_dir(base, recursive=True)
    pafs.copy_files(str(Path(local).resolve()), base, source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=fs)
