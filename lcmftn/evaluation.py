"""The paper's evaluation protocol (LCMFTN §4.2; DESIGN §6), shared by validation and evaluate.

From each test shot and for each stride S in {1, 5, 10}: take 5 frames t0, t0+S, ..., t0+4S
(seeded t0; chosen by ``lcmftn.data.dataset.eval_sequences``, the one rule shared with the
data side and the evaluate job); frame 0 is the colour reference and
frames 1-4 are each predicted from it: ``c_k = G(S_0, C_0, S_k)``. PSNR and SSIM (RGB in [0, 1],
``lcmftn.metrics``) are reported per stride and position (interval iv = k*S). Sequences with a
target frame unchanged from the reference are dropped by the sampler. The copy-reference
baseline (predict C_0 for every target) is accumulated alongside, so every table carries the
figure a model must beat.

Frames are resized (short side) to ``image_size_px`` and centre-cropped to a square
(``lcmftn.data.dataset.fit_and_crop``), the same geometry as the training crops.

Shapes: T = frames in a shot, K = frames per sequence (5), S = image_size_px.
Totals are plain sums + counts so data-parallel workers can add them (``EvalTotals.add``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from lcmftn import metrics
from lcmftn.data.dataset import EvalSequenceDataset, ShotClip

NUM_FRAMES = 5
"""Frames per evaluation sequence: the reference + 4 targets."""


@dataclass(frozen=True)
class EvalClip:
    """K frames of one evaluation sequence, centre-cropped to ``S`` px, as float tensors."""

    shot_id: str
    stride: int
    frames: tuple[int, ...]  # frame indices in the film
    color: torch.Tensor  # [K, 3, S, S] in [0, 1]
    lineart: torch.Tensor  # [K, 1, S, S] in [0, 1]


def load_eval_clips(shots: Sequence[ShotClip], strides_frames: Sequence[int], image_size_px: int,
                    seed: int = 1234, max_sequences_per_stride: int = 0) -> list[EvalClip]:
    """The protocol's sequences of ``shots`` (held-out shots of a dataset) loaded as tensors.

    Which frames form a sequence is decided in ONE place, ``lcmftn.data.dataset.eval_sequences``
    (seeded per shot and stride; sequences with a held target are dropped); this reads them
    through ``EvalSequenceDataset`` (centre crop, no augmentation) and caps each stride at
    ``max_sequences_per_stride`` (0 = all) in shot order."""
    data = EvalSequenceDataset(shots, image_size_px, strides=tuple(strides_frames),
                               num_frames=NUM_FRAMES, seed=seed)
    taken: dict[int, int] = {}
    out: list[EvalClip] = []
    for i, seq in enumerate(data.sequences):
        if max_sequences_per_stride and taken.get(seq.stride, 0) >= max_sequences_per_stride:
            continue
        taken[seq.stride] = taken.get(seq.stride, 0) + 1
        item = data[i]
        out.append(EvalClip(seq.shot_id, seq.stride, seq.frames, item["color"], item["lineart"]))
    return out


@dataclass
class EvalTotals:
    """Sums and counts per (metric, stride, position); add across workers, then ``metrics()``."""

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def update(self, key: str, values: torch.Tensor) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + float(values.double().sum())
        self.counts[key] = self.counts.get(key, 0) + int(values.numel())

    def add(self, other: EvalTotals) -> EvalTotals:
        out = EvalTotals(dict(self.sums), dict(self.counts))
        for k, v in other.sums.items():
            out.sums[k] = out.sums.get(k, 0.0) + v
            out.counts[k] = out.counts.get(k, 0) + other.counts[k]
        return out

    def metrics(self) -> dict[str, float]:
        """``{"psnr/s5_k2": ..., "ssim/s5_k2": ..., "copyref_psnr/s5_k2": ..., "psnr": mean, ...}``."""
        out = {k: self.sums[k] / self.counts[k] for k in sorted(self.sums) if self.counts[k]}
        for name in ("psnr", "ssim", "copyref_psnr", "copyref_ssim"):
            keys = [k for k in self.sums if k.startswith(f"{name}/")]
            n = sum(self.counts[k] for k in keys)
            if n:
                out[name] = sum(self.sums[k] for k in keys) / n
        return out


def _batches(seqs: Sequence[EvalClip], batch_size: int) -> Iterable[Sequence[EvalClip]]:
    for i in range(0, len(seqs), batch_size):
        yield seqs[i:i + batch_size]


@torch.no_grad()
def evaluate_sequences(system: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                       sequences: Sequence[EvalClip], device: torch.device | str = "cpu",
                       batch_size: int = 8, autocast_dtype: torch.dtype | None = None) -> EvalTotals:
    """Predict frames 1..K-1 of every sequence from frame 0 and accumulate PSNR/SSIM per
    (stride, position), with the copy-reference baseline alongside."""
    device = torch.device(device)
    totals = EvalTotals()
    # Group by stride so each batch has one key per position.
    for stride in sorted({s.stride for s in sequences}):
        group = [s for s in sequences if s.stride == stride]
        for chunk in _batches(group, batch_size):
            color = torch.stack([s.color for s in chunk]).to(device)  # [B,K,3,S,S]
            line = torch.stack([s.lineart for s in chunk]).to(device)  # [B,K,1,S,S]
            c_ref, s_ref = color[:, 0], line[:, 0]
            for k in range(1, color.shape[1]):
                target = color[:, k]
                with torch.autocast(device.type, dtype=autocast_dtype,
                                    enabled=autocast_dtype is not None):
                    pred = system(s_ref, c_ref, line[:, k])
                pred = pred.float().clamp(0, 1)
                key = f"s{stride}_k{k}"
                totals.update(f"psnr/{key}", metrics.psnr(pred, target))
                totals.update(f"ssim/{key}", metrics.ssim(pred, target))
                totals.update(f"copyref_psnr/{key}", metrics.psnr(c_ref, target))
                totals.update(f"copyref_ssim/{key}", metrics.ssim(c_ref, target))
    return totals


def format_table(result: dict[str, float], name: str = "model") -> str:
    """Markdown table: rows = stride, columns = positions k (PSNR / SSIM, copy-ref in brackets)."""
    strides = sorted({int(k.split("/s")[1].split("_")[0]) for k in result if k.startswith("psnr/s")})
    positions = sorted({int(k.rsplit("_k", 1)[1]) for k in result if k.startswith("psnr/s")})
    head = "| stride | " + " | ".join(f"k={k} PSNR/SSIM ({name}; copy-ref)" for k in positions) + " |"
    lines = [head, "|" + "---|" * (len(positions) + 1)]
    for s in strides:
        cells = []
        for k in positions:
            key = f"s{s}_k{k}"
            if f"psnr/{key}" not in result:
                cells.append("-")
                continue
            cells.append(f"{result[f'psnr/{key}']:.2f}/{result[f'ssim/{key}']:.3f} "
                         f"({result[f'copyref_psnr/{key}']:.2f}/{result[f'copyref_ssim/{key}']:.3f})")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sample_grid(s_p: torch.Tensor, c_p: torch.Tensor, s_n: torch.Tensor, pred: torch.Tensor,
                target: torch.Tensor, max_rows: int = 4) -> np.ndarray:
    """RGB uint8 ``[rows*S, 5*S, 3]`` grid, one pair per row: S_p | C_p | S_n | prediction | GT."""
    rows = []
    for i in range(min(max_rows, s_p.shape[0])):
        tiles = [s_p[i].expand(3, -1, -1), c_p[i], s_n[i].expand(3, -1, -1), pred[i], target[i]]
        rows.append(torch.cat([t.detach().float().cpu().clamp(0, 1) for t in tiles], dim=2))  # [3,S,5S]
    grid = torch.cat(rows, dim=1)  # [3, rows*S, 5S]
    return (grid.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Whole-episode evaluation (``workflows.colorize --from-color``): coloured frames vs the truth
# ---------------------------------------------------------------------------------------------
def parse_eval_modes(spec: str) -> list[str]:
    """``"chain,anchor"`` -> modes; ``ValueError`` naming ``--eval-modes`` when bad."""
    from lcmftn.colorize import MODES

    modes = [m.strip() for m in spec.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        raise ValueError(f"--eval-modes {spec!r}: choose from {MODES}")
    return modes


def score_frames(out, color: list[np.ndarray], report: dict, size_px: int = 0, chunk: int = 16) -> list[dict]:
    """PSNR/SSIM (DESIGN §6, :mod:`lcmftn.metrics`) of every coloured non-key frame vs the truth,
    both area-resized to a short side of ``size_px`` first (0 = full resolution). ``out`` is the
    run's :class:`lcmftn.jobs.Output`; ``report`` its report (``lcmftn.report.summarize``).

    NOTE: SSIM's float64 11x11 convolution costs seconds per frame at 240x320 on CPU, hence
    the option to score a whole episode at a reduced size."""
    from lcmftn import report as rpt
    from lcmftn.data.dataset_format import decode_color_png
    from lcmftn.data.video import resize_image

    def t(imgs: list[np.ndarray]) -> torch.Tensor:
        imgs = [resize_image(i, size_px) if size_px and min(i.shape[:2]) > size_px else i for i in imgs]
        return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0

    rows = []
    for shot in report["shots"]:
        if shot["status"] != "done":
            continue
        kinds = {f["i"]: f["kind"] for f in shot["per_frame"]}
        idx = [i for i in range(shot["start"], shot["end"]) if kinds.get(i) != "key"]
        for k in range(0, len(idx), chunk):
            part = idx[k:k + chunk]
            pred = t([decode_color_png(out.read(f"frames/{rpt.frame_name(i)}")) for i in part])
            true = t([color[i] for i in part])
            for i, p_, s_ in zip(part, metrics.psnr(pred, true).tolist(), metrics.ssim(pred, true).tolist(), strict=True):
                rows.append({"i": i, "shot": shot["id"], "offset": i - shot["start"], "kind": kinds[i],
                             "psnr": round(float(p_), 4), "ssim": round(float(s_), 5)})
    return rows


def summarize_scores(rows: list[dict]) -> dict:
    """Per-frame scores (:func:`score_frames`) -> the mode's ``eval.json`` entry: mean PSNR/SSIM,
    frames, ``per_shot`` means, ``per_offset`` curve (``lcmftn.report.aggregate_by_offset``),
    ``per_frame`` rows."""
    from lcmftn import report as rpt

    per_shot: dict[str, list[dict]] = {}
    for r in rows:
        per_shot.setdefault(r["shot"], []).append(r)
    curve = rpt.aggregate_by_offset(rows)
    return {
        "psnr": round(float(np.mean([r["psnr"] for r in rows])), 4) if rows else None,
        "ssim": round(float(np.mean([r["ssim"] for r in rows])), 5) if rows else None,
        "frames": len(rows),
        "per_shot": {k: {"psnr": round(float(np.mean([r["psnr"] for r in v])), 4),
                         "ssim": round(float(np.mean([r["ssim"] for r in v])), 5), "frames": len(v)}
                     for k, v in per_shot.items()},
        "per_offset": curve,
        "per_frame": rows,
    }
