"""Ray-free evaluation harness: film-level split, per-seed training, the paper's protocol and
the whole-shot measures beyond it (LCMFTN paper §4.1-4.3; DESIGN §6).

* Film-level split (paper §4.1: 3 training films, 7 test films; DESIGN §6: "never shots of the
  training films"). :func:`make_split` generates training films and test films with the v2
  generator (:mod:`lcmftn.data.synth`) from DISJOINT seed ranges; with v2 the cast and its
  palettes are a function of the film seed, so test films have other characters and colours.
  :func:`check_split` asserts that no film, seed, cast id or palette is on both sides.
  Ingested datasets carry the split per film in their manifest (``split``: "train" | "test",
  ``ingest --split``); :func:`split_from_manifest` reads it.
* Line art is extracted from the colour frames with the product's extractor
  (:func:`lcmftn.data.lineart.extract_lineart`, as ``workflows.ingest`` and ``colorize
  --from-color`` do); hold flags are the truth of those pixels (line art equal to the previous
  frame's).
* :func:`train_system` trains one system for one seed on the training films only
  (``lcmftn.training.train_single_process``, the Ray worker's step code) and reads the
  generator back from the checkpoint it wrote (the files colorize loads).
* :func:`score_protocol` is :func:`lcmftn.evaluation.evaluate_sequences` (Tables 1-3);
  :func:`score_whole_shots` colours whole test shots from ONE keyframe (their first frame) in
  chain / anchor / auto mode through :func:`lcmftn.colorize.colorize_shot` (the product's
  library code) and returns PSNR per frame offset (drift) and flicker
  (:func:`lcmftn.metrics.flicker` against the truth); :func:`time_system` is Table 4 (seconds per
  frame at batch 1 and the best batch's throughput on one device).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lcmftn import metrics
from lcmftn.data.dataset import ShotClip
from lcmftn.data.dataset_format import encode_color_png, encode_lineart_png

SPLITS = ("train", "test")


@dataclass(frozen=True)
class SplitConfig:
    """Synthetic film-level split (v2 films, square frames).

    train_films / test_films: films per side. shots_per_film / shot_frames: shots of each film
    and their length in frames (>= 41 so stride 10 fits: frames t0..t0+40). size_px: frame side.
    train_seed0 / test_seed0: film seeds are ``seed0 + i``; the two ranges must not overlap.
    still_prob: probability of a still shot (a still gives no evaluation sequence).
    """

    train_films: int = 3
    test_films: int = 2
    shots_per_film: int = 6
    shot_frames: int = 48
    size_px: int = 64
    train_seed0: int = 1000
    test_seed0: int = 9000
    still_prob: float = 0.1


@dataclass
class Film:
    """One generated film: its shots and the facts the split is checked on."""

    film: str
    split: str
    seed: int
    cast_ids: list[str]
    palettes: list[str]  # one fingerprint per cast member (sha1 of its colour chart)
    shots: list[ShotClip] = field(default_factory=list)


@dataclass
class FilmSplit:
    """Training and test films; ``train_shots`` / ``test_shots`` flatten them."""

    train: list[Film]
    test: list[Film]

    @property
    def train_shots(self) -> list[ShotClip]:
        return [s for f in self.train for s in f.shots]

    @property
    def test_shots(self) -> list[ShotClip]:
        return [s for f in self.test for s in f.shots]

    def manifest_films(self) -> dict[str, dict]:
        """Manifest-style per-film entries (``split``, ``cast``) for the record."""
        return {f.film: {"split": f.split, "seed": f.seed, "cast": f.cast_ids, "palettes": f.palettes,
                         "shots": len(f.shots)} for f in [*self.train, *self.test]}


def palette_fingerprint(palette: dict) -> str:
    """sha1 (12 hex) of a cast member's colour chart (``{part: (base, shadow, highlight)}``)."""
    items = sorted((p, tuple(tuple(int(v) for v in c) for c in cs)) for p, cs in palette.items())
    return hashlib.sha1(repr(items).encode()).hexdigest()[:12]


def shots_from_frames(film: str, color: Sequence[np.ndarray], cuts: Sequence[tuple[int, int]],
                      lineart: Sequence[np.ndarray]) -> list[ShotClip]:
    """ShotClips of one film from its frames, shots ``[(start, end)]`` and line art."""
    out = []
    for k, (a, b) in enumerate(cuts):
        la = list(lineart[a:b])
        holds = np.array([i > 0 and np.array_equal(la[i], la[i - 1]) for i in range(len(la))], bool)
        h, w = la[0].shape[:2]
        out.append(ShotClip(film, k, np.arange(a, b, dtype=np.int32),
                            [encode_color_png(c) for c in color[a:b]],
                            [encode_lineart_png(x) for x in la], holds, h, w))
    return out


def generate_film(seed: int, split: str, cfg: SplitConfig) -> Film:
    """One v2 film (cast and palettes seeded by ``seed``), line art extracted like ingest."""
    from lcmftn.data.lineart import extract_lineart
    from lcmftn.data.synth import FilmConfigV2
    from lcmftn.data.synth import generate_film as gen

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    fcfg = FilmConfigV2(seed=seed, size=cfg.size_px, num_shots=cfg.shots_per_film,
                        shot_frames=cfg.shot_frames, still_prob=cfg.still_prob)
    synth = gen(fcfg)
    color = list(synth.frames)
    truth = synth.truth
    lineart = [extract_lineart(c) for c in color]
    name = f"{split}-{seed:05d}"
    cast = truth["cast"]
    palettes = [palette_fingerprint({p: tuple(v.values()) for p, v in d["palette"].items()}) for d in cast]
    return Film(name, split, seed, [f"v2:{seed}:{d['id']}" for d in cast], palettes,
                shots_from_frames(name, color, [(s["start"], s["end"]) for s in truth["shots"]], lineart))


def make_split(cfg: SplitConfig) -> FilmSplit:
    """Training films from ``train_seed0 + i``, test films from ``test_seed0 + i``; checked."""
    tr = range(cfg.train_seed0, cfg.train_seed0 + cfg.train_films)
    te = range(cfg.test_seed0, cfg.test_seed0 + cfg.test_films)
    if set(tr) & set(te):
        raise ValueError(f"train seeds {tr} and test seeds {te} overlap")
    split = FilmSplit([generate_film(s, "train", cfg) for s in tr],
                      [generate_film(s, "test", cfg) for s in te])
    check_split(split)
    return split


def check_split(split: FilmSplit) -> None:
    """``ValueError`` when a film, shot, seed, cast id or palette is on both sides of the split,
    or a side is empty, or a film is tagged with the other side's name."""
    if not split.train or not split.test:
        raise ValueError(f"film split: {len(split.train)} training and {len(split.test)} test films; "
                         "both sides need at least one")
    for side, films in (("train", split.train), ("test", split.test)):
        bad = [f.film for f in films if f.split != side]
        if bad:
            raise ValueError(f"film split: films {bad} are tagged for the other side than {side!r}")
    checks = {
        "film": (lambda f: {f.film}),
        "seed": (lambda f: {f.seed}),
        "cast id": (lambda f: set(f.cast_ids)),
        "palette": (lambda f: set(f.palettes)),
        "shot": (lambda f: {s.shot_id for s in f.shots} | {s.film for s in f.shots}),
    }
    for what, fn in checks.items():
        a = set().union(*(fn(f) for f in split.train))
        b = set().union(*(fn(f) for f in split.test))
        if a & b:
            raise ValueError(f"film split: {what} {sorted(map(str, a & b))[:5]} on both sides")


def split_from_manifest(shots: Sequence[ShotClip], manifest: dict, where: str = "dataset") -> FilmSplit:
    """The film-level split of an ingested dataset: every film's manifest entry must carry
    ``split`` ("train" | "test", ``ingest --split``); ``ValueError`` naming the films otherwise."""
    films = manifest.get("films", {})
    untagged = sorted(f for f in {s.film for s in shots} if films.get(f, {}).get("split") not in SPLITS)
    if untagged:
        raise ValueError(f"{where}: films {untagged[:5]} have no split (re-ingest with --split train|test)")
    out: dict[str, list[Film]] = {"train": [], "test": []}
    for name in sorted({s.film for s in shots}):
        e = films[name]
        cast = [str(c) for c in e.get("cast", [])] or [f"{name}:?"]
        out[e["split"]].append(Film(name, e["split"], -1 - len(out["train"]) - len(out["test"]), cast,
                                    [f"{name}:{c}" for c in cast], [s for s in shots if s.film == name]))
    split = FilmSplit(out["train"], out["test"])
    check_split(split)
    return split


# ---------------------------------------------------------------------------------------------
# Train, score, time
# ---------------------------------------------------------------------------------------------
def train_system(cfg: Any, train_shots: Sequence[ShotClip], device: torch.device,
                 workdir: str | Path) -> tuple[torch.nn.Module, dict]:
    """Train ``cfg.system`` with ``cfg.seed`` on ``train_shots``; (generator, facts)."""
    from lcmftn import checkpoint as ckpt_io
    from lcmftn import training
    from lcmftn.data.dataset import WindowPairDataset

    pairs = WindowPairDataset(train_shots, cfg.window, cfg.image_size_px, augment=cfg.augment, seed=cfg.seed)
    if len(pairs) == 0:
        raise ValueError(f"no training pair in {len(train_shots)} shots with window {cfg.window}")
    ck = Path(workdir) / f"{cfg.system}-seed{cfg.seed}"
    t0 = time.perf_counter()
    summary = training.train_single_process(cfg, pairs, None, device=device, checkpoint_dir=ck)
    seconds = time.perf_counter() - t0
    model, _ = ckpt_io.load_checkpoint(ck / training.MODEL_SUBDIR)
    facts = {"train_seconds": seconds, "steps": summary.steps, "pairs": len(pairs),
             "final_loss": summary.history[-1].get("loss") if summary.history else None}
    return model.to(device).eval(), facts


def score_protocol(model: Any, clips: list, device: torch.device, batch_size: int = 8) -> dict[str, float]:
    """Paper Tables 1-3: PSNR/SSIM per (stride, position) and pooled (``evaluate_sequences``)."""
    from lcmftn.evaluation import evaluate_sequences

    return evaluate_sequences(model, clips, device, batch_size=batch_size).metrics()


HEADROOM_ROWS = ("out", "base", "t_open", "oracle_gate", "oracle_candidate")
_GATED_PARTS = ("out", "base", "target", "gate", "change", "warped_c")


@torch.no_grad()
def protocol_parts(model: Any, clips: list, device: torch.device) -> list[tuple[Any, dict[str, torch.Tensor]]] | None:
    """A gated model's intermediates (``parts``: out, base, target, gate, change, warped_c; CPU
    fp32) on the protocol's pairs (frame 0 -> frame k of every clip), one entry per clip; None
    for systems without a gate. Computed once and shared by :func:`gate_stats` and
    :func:`correction_headroom` (each forward runs the optical flow)."""
    parts_fn = getattr(model, "parts", None)
    if parts_fn is None:
        return None
    out = []
    for c in clips:
        k = c.color.shape[0] - 1
        s_p = c.lineart[:1].expand(k, -1, -1, -1).to(device)
        c_p = c.color[:1].expand(k, -1, -1, -1).to(device)
        p = parts_fn(s_p, c_p, c.lineart[1:].to(device))
        if not set(_GATED_PARTS) - {"warped_c"} <= set(p):
            return None
        out.append((c, {name: p[name].float().cpu() for name in _GATED_PARTS if name in p}))
    return out


@torch.no_grad()
def correction_headroom(model: Any, clips: list, device: torch.device,
                        parts: list[tuple[Any, dict[str, torch.Tensor]]] | None = None) -> dict[str, dict[str, float]]:
    """Where a gated model (``parts`` with "base", "target", "gate", "change", e.g. ``lcmftn-ours``)
    could go with a perfect gate, on the protocol's pairs (frame 0 -> frame k); {} for other systems.

    Per stride ``s{S}``: mean PSNR of ``out`` (the model), ``base`` (gate closed: the warp / exact
    copies), ``t_open`` (T wherever the gate may open: change > 0), ``oracle_gate`` (per pixel the
    better of base and T, only where change > 0: a perfect gate with this T), ``oracle_candidate``
    (resampling models only: per pixel the best of the K candidates where change > 0: a perfect
    selection), ``changed`` (fraction of pixels with change > 0) and ``gate_changed`` (mean gate
    there). "Better" = lower mean absolute error over RGB. Uses the truth: a diagnostic, never a
    product path. ``parts``: :func:`protocol_parts` of the same model and clips, when already
    computed."""
    parts = protocol_parts(model, clips, device) if parts is None else parts
    if parts is None:
        return {}
    cfg = getattr(model, "cfg", None)
    resample = getattr(cfg, "correction", "") == "resample"
    rows: dict[str, dict[str, list[float]]] = {}
    gate_sums: dict[str, list] = {}
    for c, p in parts:
        truth = c.color[1:].float()
        base, target = p["base"], p["target"]
        changed = p["change"] > 0

        def err(x: torch.Tensor, truth: torch.Tensor = truth) -> torch.Tensor:
            return (x - truth).abs().mean(1, keepdim=True)

        images = {"out": p["out"], "base": base, "t_open": torch.where(changed, target, base),
                  "oracle_gate": torch.where(changed & (err(target) < err(base)), target, base)}
        if resample:
            from lcmftn.models.ours import resample_candidates

            cands = resample_candidates(p["warped_c"], cfg.resample_radius_px,
                                        tuple(cfg.resample_dilations))  # [B,3,K,H,W]
            pick = (cands - truth.unsqueeze(2)).abs().mean(1).argmin(1, keepdim=True)  # [B,1,H,W]
            best = torch.gather(cands, 2, pick.unsqueeze(1).expand(-1, 3, -1, -1, -1)).squeeze(2)
            images["oracle_candidate"] = torch.where(changed & (err(best) < err(base)), best, base)
        row = rows.setdefault(f"s{c.stride}", {})
        for name, img in images.items():
            row.setdefault(name, []).extend(metrics.psnr(img.clamp(0, 1), truth).tolist())
        row.setdefault("changed", []).extend(changed.float().flatten(1).mean(1).tolist())
        gate = p["gate"]
        sums = gate_sums.setdefault(f"s{c.stride}", [0.0, 0])
        sums[0] += float(gate[changed].sum())
        sums[1] += int(changed.sum())
    out = {s: {name: float(np.mean(v)) for name, v in r.items()} for s, r in rows.items()}
    for s, (total, n) in gate_sums.items():  # pixel-weighted, as gate_stats' "changed"
        if n:
            out[s]["gate_changed"] = total / n
    return out


@torch.no_grad()
def gate_stats(model: Any, clips: list, device: torch.device, tau: float = 0.1,
               parts: list[tuple[Any, dict[str, torch.Tensor]]] | None = None) -> dict[str, float]:
    """Mean gate of a gated model (one with ``parts`` returning "gate", e.g. ``lcmftn-ours``) on
    the protocol's pairs (frame 0 -> frame k of every sequence); {} for other systems.

    ``mean`` over all pixels, ``changed`` over the changed region (min(m_raw, m_warp)
    > 0), ``warp_right`` / ``warp_wrong`` over the changed pixels where the warp
    (``base``) is / is not within ``tau`` of the truth in every channel, ``open_frac`` the
    fraction of pixels with gate > 0.5, ``warp_wrong_frac`` the changed pixels' share the
    warp gets wrong. ``parts``: :func:`protocol_parts` of the same model and clips, when already
    computed."""
    parts = protocol_parts(model, clips, device) if parts is None else parts
    if parts is None:
        return {}
    sums = {k: 0.0 for k in ("all", "n_all", "changed", "n_changed", "right", "n_right", "wrong", "n_wrong", "open")}
    for c, p in parts:
        gate, truth = p["gate"], c.color[1:].float()
        changed = p["change"] > 0
        wrong = (p["base"] - truth).abs().amax(1, keepdim=True) >= tau
        sums["all"] += float(gate.sum())
        sums["n_all"] += gate.numel()
        sums["open"] += float((gate > 0.5).sum())
        for key, m in (("changed", changed), ("right", changed & ~wrong), ("wrong", changed & wrong)):
            sums[key] += float(gate[m].sum())
            sums[f"n_{key}"] += int(m.sum())
    div = lambda a, b: sums[a] / sums[b] if sums[b] else float("nan")  # noqa: E731
    return {"mean": div("all", "n_all"), "changed": div("changed", "n_changed"),
            "warp_right": div("right", "n_right"), "warp_wrong": div("wrong", "n_wrong"),
            "open_frac": div("open", "n_all"), "warp_wrong_frac": div("n_wrong", "n_changed")}


def _tensor(imgs: Sequence[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0


def score_whole_shots(model: Any, shots: Sequence[ShotClip], modes: Sequence[str], image_size_px: int,
                      multiple_of: int, device: str = "cpu", max_frames: int = 0) -> dict[str, dict]:
    """Colour each shot from its first frame alone (``colorize_shot``) in every mode; per mode:
    mean PSNR/SSIM, ``per_offset`` PSNR (drift over the shot) and flicker vs the truth (over
    every frame). Frames still showing the keyframe's drawing (holds) are not scored."""
    from lcmftn.colorize import ColorizeConfig, colorize_shot

    out: dict[str, dict] = {}
    for mode in modes:
        cfg = ColorizeConfig(mode=mode, image_size_px=image_size_px, multiple_of=multiple_of)
        per_offset: dict[int, list[float]] = {}
        psnrs, ssims, flick = [], [], []
        for shot in shots:
            n = len(shot) if not max_frames else min(len(shot), max_frames)
            truth = [shot.color(i) for i in range(n)]
            frames, _, _ = colorize_shot(model, [shot.lineart(i) for i in range(n)], {0: truth[0]}, cfg,
                                         shot.holds[:n], device=device)
            # frames still showing the keyframe's drawing are exact copies (100 dB cap): not
            # scored, as the protocol drops targets unchanged from the reference
            scored = [i for i in range(1, n) if not shot.unchanged(0, i)]
            if not scored:
                continue
            pred, true = _tensor([frames[i] for i in scored]), _tensor([truth[i] for i in scored])
            p = metrics.psnr(pred, true).tolist()
            psnrs += p
            ssims += metrics.ssim(pred, true).tolist()
            for off, v in zip(scored, p, strict=True):
                per_offset.setdefault(off, []).append(v)
            flick.append(metrics.flicker(_tensor(frames), _tensor(truth)))
        out[mode] = {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)),
                     "flicker": float(np.nanmean(flick)), "frames": len(psnrs), "shots": len(shots),
                     "per_offset": {str(k): float(np.mean(v)) for k, v in sorted(per_offset.items())}}
    return out


@torch.no_grad()
def time_system(model: Any, image_size_px: int, device: torch.device, batches: Sequence[int] = (1, 8),
                repeats: int = 3) -> dict[str, float]:
    """Paper Table 4 on one device: seconds per frame at batch 1 (median of ``repeats``) and
    frames per second at the best of ``batches``."""
    s = image_size_px
    best_fps, per_frame = 0.0, float("nan")
    for b in batches:
        g = torch.Generator().manual_seed(0)
        s_p = (torch.rand(b, 1, s, s, generator=g) > 0.1).float().to(device)
        c_p = torch.rand(b, 3, s, s, generator=g).to(device)
        s_n = torch.roll(s_p, 2, dims=3)
        model(s_p, c_p, s_n)  # warm-up
        times = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(s_p, c_p, s_n)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        med = float(np.median(times))
        if b == 1:
            per_frame = med
        best_fps = max(best_fps, b / med)
    return {"seconds_per_frame_b1": per_frame, "best_frames_per_s": best_fps}


def tmpdir(prefix: str = "lcmftn-eval-") -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix=prefix)
