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


# ---------------------------------------------------------------------------------------------
# Does confidence find the bad frames? (issue 10 part 2): rank statistics in plain NumPy
# ---------------------------------------------------------------------------------------------
LARGE_ERROR = 0.1
"""A pixel's error is "large" above this mean |RGB| error in [0, 1] (~25 of 255 levels)."""


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``x`` (ties get their average rank), like ``scipy.stats.rankdata``."""
    x = np.asarray(x, np.float64).ravel()
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x), np.float64)
    # run boundaries of equal values: each run gets the mean of its positions (1-based)
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(x)]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation of ``x`` and ``y`` (Pearson of average ranks); NaN when fewer
    than 3 pairs or one side is constant."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"spearman: {x.shape} vs {y.shape} values")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3:
        return float("nan")
    rx, ry = rankdata(x) - (len(x) + 1) / 2, rankdata(y) - (len(y) + 1) / 2
    den = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / den) if den > 0 else float("nan")


def auroc(scores: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` separating ``labels`` True from False (the
    Mann-Whitney U statistic / (n_pos * n_neg), ties counted half); NaN with one class only."""
    s = np.asarray(scores, np.float64).ravel()
    pos = np.asarray(labels, bool).ravel()
    if s.shape != pos.shape:
        raise ValueError(f"auroc: {s.shape} scores vs {pos.shape} labels")
    n_pos = int(pos.sum())
    n_neg = len(pos) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass
class ConfidenceScore:
    """Accumulates per-frame (confidence, PSNR) and per-pixel (low confidence, large error)
    pairs of a coloured episode; ``result()`` -> Spearman / AUROC (module functions above)."""

    large_error: float = LARGE_ERROR
    max_pixels_per_frame: int = 4096  # pixels sampled per frame (deterministic stride)
    frame_conf: list[float] = field(default_factory=list)
    frame_psnr: list[float] = field(default_factory=list)
    pixel_low: list[np.ndarray] = field(default_factory=list)
    pixel_bad: list[np.ndarray] = field(default_factory=list)

    def add_frame(self, conf: float, psnr: float, conf_map: np.ndarray | None = None,
                  pred: np.ndarray | None = None, truth: np.ndarray | None = None) -> None:
        """``conf_map``: uint8 [h, w] (255 = sure) or float in [0, 1]; ``pred``/``truth``: RGB
        uint8 frames, resized (area) to the map's size to score its pixels."""
        self.frame_conf.append(float(conf))
        self.frame_psnr.append(float(psnr))
        if conf_map is None or pred is None or truth is None:
            return
        import cv2

        h, w = conf_map.shape[:2]
        c = conf_map.astype(np.float64) / (255.0 if conf_map.dtype == np.uint8 else 1.0)

        def small(img: np.ndarray) -> np.ndarray:
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA) if img.shape[:2] != (h, w) else img
            return img.astype(np.float64) / 255.0

        err = np.abs(small(pred) - small(truth)).mean(axis=2)
        step = max(1, (h * w) // self.max_pixels_per_frame)
        self.pixel_low.append((1.0 - c).ravel()[::step])
        self.pixel_bad.append((err > self.large_error).ravel()[::step])

    def result(self) -> dict:
        """``{"frames", "spearman_conf_psnr", "pixels", "large_error_fraction",
        "pixel_auroc_low_conf_vs_large_error", "large_error"}`` (NaN -> None)."""
        def clean(v: float) -> float | None:
            return None if not np.isfinite(v) else round(float(v), 4)

        out = {"frames": len(self.frame_conf),
               "spearman_conf_psnr": clean(spearman(self.frame_conf, self.frame_psnr)),
               "large_error": self.large_error}
        if self.pixel_low:
            low, bad = np.concatenate(self.pixel_low), np.concatenate(self.pixel_bad)
            out.update(pixels=int(len(low)), large_error_fraction=clean(float(bad.mean())),
                       pixel_auroc_low_conf_vs_large_error=clean(auroc(low, bad)))
        return out


def score_confidence(out, color: list[np.ndarray], report: dict, rows: list[dict],
                     large_error: float = LARGE_ERROR) -> dict:
    """How well the run's confidence predicts its error (evaluation mode, issue 10): Spearman
    of per-frame confidence (report ``per_frame[].conf``) vs PSNR over the model-coloured frames
    (``rows`` from :func:`score_frames`), and pixel AUROC of low confidence (``OUT/confidence/``
    maps) vs error above ``large_error``. Copies (holds) inherit their source's figures, so only
    ``kind == "model"`` frames count."""
    import cv2

    from lcmftn import report as rpt
    from lcmftn.data.dataset_format import decode_color_png

    conf = {f["i"]: f for s in report["shots"] if s.get("status") == "done" for f in s.get("per_frame", [])}
    flagged = {i for s in report["shots"] if s.get("status") == "done" for i in s.get("flagged", [])}
    score = ConfidenceScore(large_error=large_error)
    extra: dict[str, list[float]] = {"psnr": [], "change": [], "distance": [], "expected_psnr": [], "flag": []}
    for r in rows:
        f = conf.get(r["i"])
        if f is None or f.get("kind") != "model":
            continue
        name = rpt.frame_name(r["i"])
        cmap_png, pred_png = out.read(f"confidence/{name}"), out.read(f"frames/{name}")
        cmap = None
        if cmap_png is not None:
            cmap = cv2.imdecode(np.frombuffer(cmap_png, np.uint8), cv2.IMREAD_GRAYSCALE)
        pred = decode_color_png(pred_png) if pred_png is not None else None
        score.add_frame(f["conf"], r["psnr"], cmap, pred, color[r["i"]])
        extra["psnr"].append(r["psnr"])
        extra["change"].append(f.get("change", np.nan))
        extra["distance"].append(f.get("distance", np.nan))
        extra["expected_psnr"].append(f.get("expected_psnr", np.nan))
        extra["flag"].append(r["i"] in flagged)
    out = score.result()
    psnr = np.array(extra["psnr"])
    for name in ("change", "distance", "expected_psnr"):  # other scores vs PSNR (negative:
        rho = spearman(extra[name], psnr) if len(psnr) else float("nan")  # higher = worse)
        if np.isfinite(rho):
            out[f"spearman_{name}_psnr"] = round(float(rho), 4)
    flags = np.array(extra["flag"], bool)
    if len(flags):
        out["flagged_fraction"] = round(float(flags.mean()), 4)
        out["psnr_flagged"] = round(float(psnr[flags].mean()), 3) if flags.any() else None
        out["psnr_unflagged"] = round(float(psnr[~flags].mean()), 3) if (~flags).any() else None
    return out
