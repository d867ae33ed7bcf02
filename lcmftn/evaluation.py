"""The paper's evaluation protocol (LCMFTN §4.2; DESIGN §6), shared by validation and evaluate.

From each test shot and for each stride S in {1, 5, 10}: take 5 frames t0, t0+S, ..., t0+4S
(seeded t0, ``lcmftn.data.pairs.sample_eval_sequences``); frame 0 is the colour reference and
frames 1-4 are each predicted from it: ``c_k = G(S_0, C_0, S_k)``. PSNR and SSIM (RGB in [0, 1],
``lcmftn.metrics``) are reported per stride and position (interval iv = k*S). Sequences with a
target frame unchanged from the reference are dropped by the sampler. The copy-reference
baseline (predict C_0 for every target) is accumulated alongside, so every table carries the
figure a model must beat.

Frames are centre-cropped to a square and resized to ``image_size_px`` (a multiple of the
model's divisor), the same geometry as the training crops.

Shapes: T = frames in a shot, K = frames per sequence (5), S = image_size_px.
Totals are plain sums + counts so data-parallel workers can add them (``EvalTotals.add``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from lcmftn import metrics
from lcmftn.data.pairs import sample_eval_sequences

NUM_FRAMES = 5
"""Frames per evaluation sequence: the reference + 4 targets."""


@dataclass(frozen=True)
class EvalShot:
    """One held-out shot in memory: colour ``uint8 [T, H, W, 3]``, line art ``uint8 [T, H, W]``."""

    shot_id: str
    color: np.ndarray
    lineart: np.ndarray


@dataclass(frozen=True)
class EvalSequence:
    """K frames of one shot at one stride, already cropped/resized and as float tensors."""

    shot_id: str
    stride: int
    frames: tuple[int, ...]
    color: torch.Tensor  # [K, 3, S, S] in [0, 1]
    lineart: torch.Tensor  # [K, 1, S, S] in [0, 1]


def square_resize(img: np.ndarray, size_px: int) -> np.ndarray:
    """Centre-crop to a square (short side) and resize to ``size_px`` (area filter)."""
    h, w = img.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    crop = img[y0:y0 + side, x0:x0 + side]
    if side == size_px:
        return np.ascontiguousarray(crop)
    interp = cv2.INTER_AREA if side > size_px else cv2.INTER_LINEAR
    return cv2.resize(crop, (size_px, size_px), interpolation=interp)


def _unchanged_fn(lineart: np.ndarray, threshold: float = 0.5) -> Callable[[int, int], bool]:
    """``unchanged(a, b)``: the two line-art frames differ by less than ``threshold`` grey levels."""

    def unchanged(a: int, b: int) -> bool:
        diff = np.abs(lineart[a].astype(np.int16) - lineart[b].astype(np.int16))
        return float(diff.mean()) < threshold

    return unchanged


def build_eval_sequences(shots: Iterable[EvalShot], strides_frames: Sequence[int],
                         image_size_px: int, seed: int = 1234,
                         max_sequences_per_stride: int = 0) -> list[EvalSequence]:
    """One seeded sequence per (shot, stride) where the shot is long enough (DESIGN §6)."""
    per_stride: dict[int, list[EvalSequence]] = {s: [] for s in strides_frames}
    for shot_index, shot in enumerate(shots):
        n = int(shot.color.shape[0])
        if shot.lineart.shape[0] != n:
            raise ValueError(f"{shot.shot_id}: {n} colour frames but {shot.lineart.shape[0]} line-art frames")
        for stride in strides_frames:
            cap = max_sequences_per_stride
            if cap and len(per_stride[stride]) >= cap:
                continue
            idx = sample_eval_sequences(n, stride, num_frames=NUM_FRAMES,
                                        seed=seed + 7919 * shot_index + stride,
                                        unchanged=_unchanged_fn(shot.lineart))
            if not idx:
                continue
            color = np.stack([square_resize(shot.color[i], image_size_px) for i in idx])
            line = np.stack([square_resize(shot.lineart[i], image_size_px) for i in idx])
            per_stride[stride].append(EvalSequence(
                shot_id=shot.shot_id, stride=stride, frames=tuple(int(i) for i in idx),
                color=torch.from_numpy(color).permute(0, 3, 1, 2).float().div(255.0),  # [K,3,S,S]
                lineart=torch.from_numpy(line)[:, None].float().div(255.0),  # [K,1,S,S]
            ))
    return [seq for s in strides_frames for seq in per_stride[s]]


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


def _batches(seqs: Sequence[EvalSequence], batch_size: int) -> Iterable[Sequence[EvalSequence]]:
    for i in range(0, len(seqs), batch_size):
        yield seqs[i:i + batch_size]


@torch.no_grad()
def evaluate_sequences(system: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                       sequences: Sequence[EvalSequence], device: torch.device | str = "cpu",
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
