"""v2 films: plan (timing, cast, camera, actions), per-frame layers, composite, truth, writing.

Rendering a drawing gives :class:`FrameLayers` — the painted background seen through the camera,
the cel layer (characters and props: flat colours with shadow and highlight bands), the artist
line art of the cels (clean closed anti-aliased strokes) and the effects layer (smoke, sparks;
no line art). :func:`composite` stacks them into the frame; the video is the composite.
Timing, holds and determinism follow v1 (:mod:`lcmftn.data.synthetic`): a held frame is the
previous frame repeated, and a new drawing that renders identically is nudged by a pixel.

Truth (``<video>.json``): v1's fields plus the cast and per-frame motion::

    {"version": 2, "generator": "lcmftn.data.synth", "frames", "fps", "width", "height",
     "cuts": [...], "holds": [...],                 # as v1
     "lineart_holds": [...],                        # frames whose artist line art equals the previous
     "shots": [{"start", "end", "step", "still", "close_up", "framing", "effects", "characters": [cast ids],
                "camera": {"from": [cx, cy, zoom, roll_deg], "to": [...]}}],
     "cast": [{"id", "palette": {part: {"base", "shadow", "highlight"}}}],   # the colour chart
     "motion": [{"shot", "drawing", "camera": [cx, cy, zoom, roll_deg],
                 "characters": [{"cast", "bbox": [x0, y0, x1, y1] | null, "x", "y", "turn_deg", "act"}]}],
     "config": {...}}                               # dataclasses.asdict(FilmConfigV2)

``bbox`` is the screen box (inclusive px) of the character's painted pixels, ``x, y`` its feet.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from lcmftn.data.synth.canvas import CelCanvas
from lcmftn.data.synth.character import Pose, cast_chart, draw_character, make_cast
from lcmftn.data.synth.config import (
    INK_RGB,
    FilmConfigV2,
    ellipse_poly,
    highlight_of,
    rgb,
    shadow_of,
)
from lcmftn.data.synth.scene import paint_background, smoke_layer, spark_layer
from lcmftn.data.video import write_video

__all__ = ["FrameLayers", "plan_shots", "film_truth", "iter_layers", "composite", "generate_film", "write_film", "write_layers"]


class FrameLayers(NamedTuple):
    """One frame's layers (all [H,W]): ``background`` uint8 RGB; ``cels`` uint8 RGBA (alpha 255 on
    painted cels); ``lineart`` uint8 (255 = paper); ``effects`` uint8 RGBA (straight alpha);
    ``region`` int32 cel region ids (0 = none); ``motion``: this frame's truth entry."""

    background: np.ndarray
    cels: np.ndarray
    lineart: np.ndarray
    effects: np.ndarray
    region: np.ndarray
    motion: dict


def _ease(t: float) -> float:
    return 0.5 - 0.5 * math.cos(math.pi * min(max(t, 0.0), 1.0))


def _shot_lengths(cfg: FilmConfigV2) -> list[int]:
    if cfg.shot_frames_jitter == 0:
        return [cfg.shot_frames] * cfg.num_shots
    rng = np.random.default_rng([cfg.seed, 104729, 2])
    j = cfg.shot_frames_jitter
    return [max(2, round(cfg.shot_frames * rng.uniform(1 - j, 1 + j))) for _ in range(cfg.num_shots)]


_FRAMING = {"close": (1.9, 1.45), "medium": (1.3, 0.85)}  # character height, feet below centre (x frame h)


def _plan_actors(rng, cfg: FilmConfigV2, n: int, framing: str, w: float, h: float, x_c: float, ground: float,
                 cam_y: float):
    actors = []
    picks = rng.choice(cfg.cast_count, size=min(n, cfg.cast_count), replace=False)
    acts, p = ["walk", "enter", "leave", "turn", "gesture", "talk"], [0.12, 0.1, 0.06, 0.17, 0.25, 0.3]
    for j, c in enumerate(picks):
        depth = 1.0 if framing != "wide" else rng.uniform(0.55, 1.0)
        act = str(rng.choice(acts, p=p))
        d = float(rng.choice([-1.0, 1.0]))
        spread = (j - (len(picks) - 1) / 2) * (0.8 * w / max(1, len(picks)))
        x0 = x_c + spread + rng.uniform(-0.08, 0.08) * w
        if act == "enter":
            x0 = x_c - d * 0.6 * w
        speed = rng.uniform(0.004, 0.01) * h * cfg.motion * (2.0 if act in ("enter", "leave") else 1.0)
        height, below = _FRAMING.get(framing, (depth * 0.72, 0.0))
        y = cam_y + below * h if framing != "wide" else ground + (depth - 0.55) * 0.45 * h
        actors.append({
            "cast": int(c), "act": act, "dir": d, "x0": float(x0), "depth": float(depth),
            "y": float(y + rng.uniform(-0.03, 0.03) * h * (framing != "wide")), "height": float(h * height),
            "speed": float(speed),
            "turn0": float(rng.uniform(-0.5, 0.5) + (d * math.pi / 2 if act in ("walk", "enter", "leave") else 0.0)),
            "turn_rate": float(rng.choice([-1, 1]) * rng.uniform(0.05, 0.15) * cfg.motion),
            "phase0": float(rng.uniform(0, 2 * math.pi)), "cycle": float(rng.uniform(0.3, 0.5)),
            "blink": int(rng.integers(20, 60)), "order": j,
        })  # fmt: skip
    actors.sort(key=lambda a: a["depth"])
    return actors


def plan_shots(cfg: FilmConfigV2) -> list[dict]:
    """Per-shot parameters (timing, palette, camera path, actors, effects), deterministic."""
    shots, start = [], 0
    hue = float(np.random.default_rng([cfg.seed, 1, 2]).uniform(0, 360))
    h, w, m = cfg.height, cfg.width, cfg.motion
    for k, n in enumerate(_shot_lengths(cfg)):
        rng = np.random.default_rng([cfg.seed, 2000 + k])
        if k:
            hue = (hue + rng.uniform(100, 260)) % 360
        still = m == 0 or rng.random() < cfg.still_prob
        step = 1 if still else (int(rng.choice([2, 3, 3])) if rng.random() < cfg.hold_prob else 1)
        drawings = 1 if still else -(-n // step)
        u = rng.random()
        framing = "close" if u < cfg.close_up_prob else ("medium" if u < cfg.close_up_prob + cfg.medium_prob else "wide")
        close_up = cfg.num_characters > 0 and framing == "close"
        pan = float(rng.choice([-1, 1]) * rng.uniform(0.15, 0.4) * w * m) if rng.random() < cfg.pan_prob else 0.0
        z0 = 1.0
        z1 = 1.0 + cfg.zoom * rng.uniform(0.4, 1.0) if cfg.zoom > 0 and rng.random() < cfg.zoom_prob else 1.0
        if rng.random() < 0.5:
            z0, z1 = z1, z0
        rot = float(rng.choice([-1, 1]) * rng.uniform(0.3, 1) * cfg.rotation_deg) if rng.random() < cfg.zoom_prob else 0.0
        margin = int(0.25 * max(h, w)) + 4
        world = (h + 2 * margin, w + int(abs(pan)) + 2 * margin)
        cam0 = (margin + w / 2 + (abs(pan) if pan < 0 else 0.0), margin + h / 2)
        horizon = int(margin + rng.uniform(0.4, 0.6) * h)
        fx = []
        if not still and rng.random() < cfg.effects:
            fx = [str(rng.choice(["smoke", "sparks", "both"]))]
        shots.append({
            "start": start, "end": start + n, "step": step, "still": bool(still), "drawings": drawings,
            "hue": hue, "seed": [cfg.seed, 2000 + k], "close_up": bool(close_up), "world": world,
            "camera": {"from": [cam0[0], cam0[1], z0, 0.0], "to": [cam0[0] + pan, cam0[1], z1, rot]},
            "horizon": horizon, "effects": fx,
            "framing": framing,
            "actors": _plan_actors(rng, cfg, 1 if close_up else cfg.num_characters, framing, w, h,
                                   cam0[0] + pan / 2, horizon + 0.12 * h, cam0[1]),
            "prop": bool(not still and rng.random() < cfg.prop_prob),
            "occluder": bool(not still and rng.random() < cfg.occluder_prob),
        })  # fmt: skip
        start += n
    return shots


def film_truth(cfg: FilmConfigV2, shots: list[dict], cast: list[dict]) -> dict:
    """The sidecar without per-frame motion (filled while rendering): v1's fields + cast."""
    holds: list[int] = []
    for s in shots:
        step = s["end"] - s["start"] if s["still"] else s["step"]
        holds += [t for t in range(s["start"] + 1, s["end"]) if (t - s["start"]) % step != 0]
    return {
        "version": 2, "generator": "lcmftn.data.synth", "frames": shots[-1]["end"], "fps": float(cfg.fps),
        "width": cfg.width, "height": cfg.height, "cuts": [s["start"] for s in shots[1:]],
        "shots": [{"start": s["start"], "end": s["end"], "step": s["step"], "still": s["still"],
                   "close_up": s["close_up"], "framing": s["framing"], "effects": s["effects"],
                   "characters": [a["cast"] for a in s["actors"]], "camera": s["camera"]} for s in shots],
        "holds": holds, "cast": cast_chart(cast), "config": asdict(cfg),
    }  # fmt: skip


class _Shot:
    """Renders drawing ``i`` of one shot as :class:`FrameLayers`."""

    def __init__(self, cfg: FilmConfigV2, shot: dict, cast: list[dict]):
        rng = np.random.default_rng([*shot["seed"], 1])
        self.cfg, self.shot, self.cast, self.h, self.w = cfg, shot, cast, cfg.height, cfg.width
        wh, ww = shot["world"]
        self.bg = paint_background(rng, wh, ww, shot["hue"], shot["horizon"])
        a = rng.uniform(-0.8, 0.8) + (math.pi if rng.random() < 0.5 else 0.0)
        self.light = (math.sin(a) * 0.8, -0.6)
        self.line_px = 1.0 if cfg.thin_lines else cfg.line_px * self.h / 256
        self.n = max(1, shot["drawings"] - 1)
        x_c, g = shot["camera"]["from"][0], shot["horizon"]
        self.ball = {"x0": x_c - 0.7 * self.w, "y0": g - 0.3 * self.h, "vx": 0.04 * self.w * shot["step"],
                     "vy": -0.03 * self.h * shot["step"], "g": 0.003 * self.h * shot["step"] ** 2,
                     "r": rng.uniform(0.03, 0.05) * self.h, "color": rgb(shot["hue"] + 200, 0.8, 0.95)}  # fmt: skip
        self.crate = {"x": rng.uniform(0.1, 0.9) * self.w, "w": rng.uniform(0.15, 0.3) * self.h,
                      "color": rgb(shot["hue"] + 30, 0.5, 0.6)}  # fmt: skip
        self.puffs, self.sparks = [], []
        kind = shot["effects"][0] if shot["effects"] else ""
        dens = max(1, int(round(6 * cfg.effects)))
        if kind in ("smoke", "both"):
            sx = x_c + rng.uniform(-0.3, 0.3) * self.w
            self.puffs = [{"t0": int(rng.integers(0, max(1, self.n))), "life": int(rng.integers(6, 16)),
                           "x": sx + rng.uniform(-0.05, 0.05) * self.w, "y": g + rng.uniform(0, 0.2) * self.h,
                           "vx": rng.uniform(-0.003, 0.003) * self.w, "vy": -rng.uniform(0.004, 0.012) * self.h,
                           "r": rng.uniform(0.03, 0.07) * self.h, "color": rgb(shot["hue"], 0.05, 0.92)}
                          for _ in range(4 * dens)]  # fmt: skip
        if kind in ("sparks", "both"):
            ox, oy = x_c + rng.uniform(-0.3, 0.3) * self.w, g - rng.uniform(0, 0.3) * self.h
            self.sparks = [{"t0": int(rng.integers(0, max(1, self.n))), "life": int(rng.integers(3, 9)), "x": ox, "y": oy,
                            "vx": rng.uniform(-1, 1) * 0.02 * self.w, "vy": -rng.uniform(0.0, 0.03) * self.h,
                            "g": 0.003 * self.h, "r": max(1.0, rng.uniform(0.004, 0.01) * self.h)}
                           for _ in range(10 * dens)]  # fmt: skip
        self.spark_rgb = np.asarray(rgb(rng.uniform(30, 60), 0.5, 1.0), np.float32)

    def camera(self, i: int, nudge: int = 0) -> tuple[list[float], np.ndarray]:
        a, b = self.shot["camera"]["from"], self.shot["camera"]["to"]
        t = _ease(i / self.n)
        cx, cy, z, r = (a[j] + (b[j] - a[j]) * t for j in range(4))
        cx += nudge
        m = cv2.getRotationMatrix2D((cx, cy), r, z)
        m[:, 2] += (self.w / 2 - cx, self.h / 2 - cy)
        return [round(cx, 2), round(cy, 2), round(z, 4), round(r, 3)], m

    def pose(self, a: dict, i: int) -> Pose:
        act, s = a["act"], self.shot["step"]
        walking = act in ("walk", "enter", "leave")
        x = a["x0"] + (a["dir"] * a["speed"] * s * i if walking else 0.0)
        turn = a["turn0"] + (a["turn_rate"] * s * i if act == "turn" else 0.0)
        gest = max(0.0, math.sin(0.15 * s * i + a["phase0"])) * 1.8 if act == "gesture" else 0.0
        talk = act in ("talk", "gesture")
        mouth = (0.5 + 0.5 * math.sin(0.9 * s * i + a["phase0"])) if talk else 0.0
        return Pose(x=x, y=a["y"], height=a["height"], turn=turn, phase=a["phase0"] + a["cycle"] * s * i,
                    swing=0.5 if walking else 0.05 * self.cfg.motion, gesture=gest, mouth=mouth,
                    blink=(i * s + a["blink"] // 2) % a["blink"] < s)  # fmt: skip

    def render(self, i: int, nudge: int = 0) -> FrameLayers:
        h, w = self.h, self.w
        cam, m = self.camera(i, nudge)
        bg = cv2.warpAffine(self.bg, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        cv = CelCanvas(h, w, self.line_px * (1.0 if self.cfg.thin_lines else cam[2]))
        chars = []
        for a in self.shot["actors"]:
            p = self.pose(a, i)
            bbox = draw_character(cv, self.cast[a["cast"]], p, m, self.light)
            fx, fy = m @ (p.x, p.y, 1.0)
            chars.append({"cast": a["cast"], "bbox": bbox, "x": round(float(fx), 1), "y": round(float(fy), 1),
                          "turn_deg": round(math.degrees(p.turn), 1), "act": a["act"]})  # fmt: skip
        if self.shot["prop"]:
            b = self.ball
            x, y = b["x0"] + b["vx"] * i, b["y0"] + b["vy"] * i + b["g"] * i * i
            poly = np.asarray(ellipse_poly(x, y, b["r"], b["r"], 0, 24))
            poly = poly @ m[:, :2].T + m[:, 2]
            r = b["r"] * cam[2]
            hl = np.asarray(ellipse_poly(*(m @ (x - b["r"] * 0.4, y - b["r"] * 0.4, 1)), r * 0.25, r * 0.18, -0.6, 10))
            cv.part(poly, (b["color"], shadow_of(b["color"]), highlight_of(b["color"])), (self.light[0] * r * 0.4, self.light[1] * r * 0.4), hl)
        if self.shot["occluder"]:  # a foreground crate with parallax (moves 1.5x the camera)
            c = self.crate
            ox = c["x"] - 1.5 * (cam[0] - self.shot["camera"]["from"][0])
            cw = c["w"]
            poly = [(ox, h - cw * 1.1), (ox + cw, h - cw * 1.1), (ox + cw, h + 2), (ox, h + 2)]
            cv.part(poly, (c["color"], shadow_of(c["color"]), highlight_of(c["color"])), (self.light[0] * cw * 0.25, 0.0), weight=1.3)
        cv.seal()
        fx = np.zeros((h, w, 4), np.uint8)
        if self.puffs or self.sparks:
            fx = self._effects(i, m)
        motion = {"camera": cam, "characters": chars}
        return FrameLayers(bg, cv.rgba(), cv.lineart(), fx, cv.region, motion)

    def _effects(self, i: int, m: np.ndarray) -> np.ndarray:
        h, w = self.h, self.w
        c1, a1 = np.zeros((h, w, 3), np.float32), np.zeros((h, w), np.float32)
        if self.puffs:
            col, a1 = smoke_layer(self.puffs, i, h, w, m, 0.6)
            c1 = col
        c2, a2 = np.broadcast_to(self.spark_rgb, (h, w, 3)), np.zeros((h, w), np.float32)
        if self.sparks:
            glow, core = spark_layer(self.sparks, i, h, w, m)
            a2 = np.clip(glow * 0.8 + core, 0, 1)
            c2 = c2 * (1 - core[..., None]) + 255.0 * core[..., None]
        a = a2 + a1 * (1 - a2)
        c = (c2 * a2[..., None] + c1 * (a1 * (1 - a2))[..., None]) / np.maximum(a, 1e-6)[..., None]
        return np.dstack([np.clip(c + 0.5, 0, 255), np.clip(a * 255 + 0.5, 0, 255)]).astype(np.uint8)


def composite(layers: FrameLayers) -> np.ndarray:
    """The frame: background, cels over it, line art ink over the cels, effects over all."""
    out = layers.background.copy()
    cel = layers.cels[..., 3] > 0
    np.copyto(out, layers.cels[..., :3], where=cel[..., None])
    ys, xs = np.nonzero(layers.lineart < 255)  # ink is sparse: blend only there
    ink = (255 - layers.lineart[ys, xs]).astype(np.float32)[:, None] * (1 / 255)
    px = out[ys, xs].astype(np.float32)
    out[ys, xs] = (px * (1 - ink) + np.asarray(INK_RGB, np.float32) * ink + 0.5).astype(np.uint8)
    ys, xs = np.nonzero(layers.effects[..., 3])
    if len(ys):
        a = layers.effects[ys, xs, 3:].astype(np.float32) * (1 / 255)
        px = out[ys, xs].astype(np.float32) * (1 - a) + layers.effects[ys, xs, :3].astype(np.float32) * a
        out[ys, xs] = np.clip(px + 0.5, 0, 255).astype(np.uint8)
    return out


def iter_layers(cfg: FilmConfigV2, shots: list[dict] | None = None) -> Iterator[tuple[FrameLayers, bool]]:
    """``(layers, held)`` per frame in order; a held frame's layers are the previous frame's."""
    shots = shots or plan_shots(cfg)
    cast = make_cast(cfg.seed, cfg.cast_count)
    for k, shot in enumerate(shots):
        r = _Shot(cfg, shot, cast)
        prev, prev_idx = None, -1
        for t in range(shot["end"] - shot["start"]):
            idx = 0 if shot["still"] else t // shot["step"]
            if idx == prev_idx:
                yield prev, True
                continue
            layers, nudge = r.render(idx), 0
            while prev is not None and nudge < 4 and np.array_equal(layers.lineart, prev.lineart) \
                    and np.array_equal(layers.background, prev.background) and np.array_equal(layers.effects, prev.effects):
                nudge += 1  # NOTE: keeps the truth exact: a new drawing always differs
                layers = r.render(idx, nudge)
            layers.motion.update(shot=k, drawing=idx)
            prev, prev_idx = layers, idx
            yield layers, False


class SyntheticFilmV2(NamedTuple):
    """``frames``: one-shot iterator of uint8 RGB; ``truth``: the sidecar dict (its ``motion``
    list fills up as the frames are iterated)."""

    frames: Iterator[np.ndarray]
    truth: dict


def generate_film(cfg: FilmConfigV2, lineart_out: list | None = None) -> SyntheticFilmV2:
    """Lazy composited frames + truth. ``lineart_out``: if given, each frame's artist line art
    is appended to it as the frames are iterated."""
    shots = plan_shots(cfg)
    truth = film_truth(cfg, shots, make_cast(cfg.seed, cfg.cast_count))
    truth["motion"], truth["lineart_holds"] = [], []
    starts = {s["start"] for s in shots}

    def frames() -> Iterator[np.ndarray]:
        frame = prev = None
        for t, (layers, held) in enumerate(iter_layers(cfg, shots)):
            if not held:
                frame = composite(layers)
            if t not in starts and (held or np.array_equal(layers.lineart, prev)):
                truth["lineart_holds"].append(t)  # the line art alone cannot tell (effects, pans)
            prev = layers.lineart
            truth["motion"].append(layers.motion)
            if lineart_out is not None:
                lineart_out.append(layers.lineart)
            yield frame.copy()

    return SyntheticFilmV2(frames(), truth)


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, separators=(",", ":")))
    os.replace(tmp, path)


def write_film(path: str | os.PathLike, cfg: FilmConfigV2, crf: int = 18) -> dict:
    """H.264 video to ``path`` and the truth to ``<path>.json`` (video first; each tmp + rename)."""
    from lcmftn.data.synthetic import sidecar_path

    film = generate_film(cfg)
    n = write_video(path, film.frames, cfg.fps, crf=crf)
    if n != film.truth["frames"]:
        raise RuntimeError(f"wrote {n} frames to {path}, truth says {film.truth['frames']}")
    _write_json(sidecar_path(path), film.truth)
    return film.truth


def write_layers(folder: str | os.PathLike, cfg: FilmConfigV2) -> dict:
    """Per-frame layer PNGs ``{bg,cels,lines,fx}_%05d.png`` (RGB, RGBA, gray, RGBA) + ``truth.json``
    in ``folder`` (written to a temp folder, renamed when complete). Returns the truth."""
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder} exists; not overwriting layers")
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True)
    shots = plan_shots(cfg)
    truth = film_truth(cfg, shots, make_cast(cfg.seed, cfg.cast_count))
    truth["motion"] = []
    for t, (ly, _) in enumerate(iter_layers(cfg, shots)):
        truth["motion"].append(ly.motion)
        cv2.imwrite(str(tmp / f"bg_{t:05d}.png"), ly.background[..., ::-1])
        cv2.imwrite(str(tmp / f"cels_{t:05d}.png"), ly.cels[..., [2, 1, 0, 3]])
        cv2.imwrite(str(tmp / f"lines_{t:05d}.png"), ly.lineart)
        cv2.imwrite(str(tmp / f"fx_{t:05d}.png"), ly.effects[..., [2, 1, 0, 3]])
    _write_json(tmp / "truth.json", truth)
    os.replace(tmp, folder)
    return truth
