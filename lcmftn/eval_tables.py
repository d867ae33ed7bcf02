"""Tables, plots and the contact sheet of ``workflows.evaluate`` (LCMFTN paper Tables 1-4,
Figures 5-7; DESIGN §6). Pure: NumPy + matplotlib (Agg), no Ray / MLflow.

Per-seed results are ``{system: [per-seed dict, ...]}``; each per-seed dict holds
``protocol`` (``EvalTotals.metrics()`` keys such as ``psnr/s5_k2``), ``whole`` (per mode:
``psnr``, ``ssim``, ``flicker``, ``per_offset``), ``timing`` and ``train``. :func:`aggregate`
turns them into mean and std over seeds (std with ddof=0 shown as ``±``; one seed: ±0).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _stats(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if not len(v):
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "n": int(len(v))}


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat(v, key + "/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def aggregate(per_seed: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, dict[str, dict]]:
    """``{system: {flat metric key: {"mean", "std", "n"}}}`` over the seeds of each system."""
    out: dict[str, dict[str, dict]] = {}
    for system, runs in per_seed.items():
        flats = [_flat(r) for r in runs]
        keys = sorted(set().union(*flats)) if flats else []
        out[system] = {k: _stats([f.get(k) for f in flats]) for k in keys}
    return out


def _cell(agg: Mapping[str, dict], key: str, digits: int) -> str:
    s = agg.get(key)
    if not s or not s["n"]:
        return "–"
    return f"{s['mean']:.{digits}f}±{s['std']:.{digits}f}"


def protocol_table(agg: Mapping[str, Mapping[str, dict]], stride: int, positions: Sequence[int] = (1, 2, 3, 4)) -> str:
    """Paper Tables 1-3 layout: rows = systems, columns = frame k (iv = k·S), PSNR/SSIM mean±std."""
    head = "| method | " + " | ".join(f"frame{k} (iv:{k * stride})" for k in positions) + " | pooled |"
    lines = [head, "|---" * (len(positions) + 2) + "|"]
    for system, a in agg.items():
        cells = [f"{_cell(a, f'protocol/psnr/s{stride}_k{k}', 2)} / {_cell(a, f'protocol/ssim/s{stride}_k{k}', 4)}"
                 for k in positions]
        pooled = f"{_cell(a, f'pooled/psnr/s{stride}', 2)} / {_cell(a, f'pooled/ssim/s{stride}', 4)}"
        lines.append(f"| {system} | " + " | ".join(cells) + f" | {pooled} |")
    return "\n".join(lines)


def timing_table(agg: Mapping[str, Mapping[str, dict]], device: str) -> str:
    """Paper Table 4 layout (one device): seconds per frame at batch 1, best throughput, training."""
    lines = [f"| method | time/frame b=1 (s, {device}) | best frames/s | train s | params |", "|---|---|---|---|---|"]
    for system, a in agg.items():
        lines.append(f"| {system} | {_cell(a, 'timing/seconds_per_frame_b1', 4)} | "
                     f"{_cell(a, 'timing/best_frames_per_s', 1)} | {_cell(a, 'train/train_seconds', 0)} | "
                     f"{int(a['params']['mean']) if 'params' in a else '–':,} |")
    return "\n".join(lines)


def whole_shot_table(agg: Mapping[str, Mapping[str, dict]], modes: Sequence[str]) -> str:
    """Beyond the paper: whole shots from one keyframe; PSNR / SSIM / flicker per mode."""
    head = "| method | " + " | ".join(f"{m} PSNR / SSIM / flicker" for m in modes) + " |"
    lines = [head, "|---" * (len(modes) + 1) + "|"]
    for system, a in agg.items():
        cells = [f"{_cell(a, f'whole/{m}/psnr', 2)} / {_cell(a, f'whole/{m}/ssim', 3)} / "
                 f"{_cell(a, f'whole/{m}/flicker', 4)}" for m in modes]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_table(agg: Mapping[str, Mapping[str, dict]], strides: Sequence[int]) -> str:
    """One row per system: PSNR/SSIM over all sequences and per stride, with copy-ref's."""
    lines = ["| method | PSNR | SSIM | " + " | ".join(f"S={s}" for s in strides) + " |",
             "|---" * (len(strides) + 3) + "|"]
    for system, a in agg.items():
        lines.append(f"| {system} | {_cell(a, 'protocol/psnr', 2)} | {_cell(a, 'protocol/ssim', 4)} | "
                     + " | ".join(f"{_cell(a, f'pooled/psnr/s{s}', 2)}" for s in strides) + " |")
    return "\n".join(lines)


HEADROOM_COLUMNS = (("out", "output"), ("base", "gate closed (base)"), ("t_open", "T wherever allowed"),
                    ("oracle_gate", "oracle gate"), ("oracle_candidate", "oracle candidate"))


def headroom_table(agg: Mapping[str, Mapping[str, dict]], strides: Sequence[int]) -> str:
    """Gated systems only (``headroom/...`` keys, ``lcmftn.harness.correction_headroom``): PSNR per
    stride of the output, the base, T, a perfect gate and a perfect candidate; "" when none has them."""
    lines = []
    for system, a in agg.items():
        if not any(k.startswith("headroom/") for k in a):
            continue
        for s in strides:
            if f"headroom/s{s}/out" not in a:  # no sequence at this stride
                continue
            cells = [_cell(a, f"headroom/s{s}/{key}", 2) for key, _ in HEADROOM_COLUMNS]
            lines.append(f"| {system} | {s} | " + " | ".join(cells) +
                         f" | {_cell(a, f'headroom/s{s}/changed', 2)} | {_cell(a, f'headroom/s{s}/gate_changed', 2)} |")
    if not lines:
        return ""
    head = ("| method | S | " + " | ".join(name for _, name in HEADROOM_COLUMNS) +
            " | changed fraction | gate where changed |")
    return "\n".join([head, "|---" * (len(HEADROOM_COLUMNS) + 4) + "|", *lines])


def pooled_per_stride(protocol: Mapping[str, float]) -> dict[str, float]:
    """Pooled PSNR/SSIM per stride (equal counts per position: the mean over positions)."""
    out: dict[str, float] = {}
    for name in ("psnr", "ssim"):
        by: dict[int, list[float]] = {}
        for k, v in protocol.items():
            if k.startswith(f"{name}/s"):
                by.setdefault(int(k.split("/s")[1].split("_")[0]), []).append(v)
        out.update({f"{name}/s{s}": float(np.mean(v)) for s, v in by.items()})
    return out


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_psnr_vs_interval(agg: Mapping[str, Mapping[str, dict]], strides: Sequence[int]) -> bytes:
    """PNG: PSNR (mean ± std over seeds) vs interval iv = k·S, one line per system."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for system, a in agg.items():
        pts: dict[int, list[tuple[float, float]]] = {}
        for s in strides:
            for k in (1, 2, 3, 4):
                st = a.get(f"protocol/psnr/s{s}_k{k}")
                if st and st["n"]:
                    pts.setdefault(k * s, []).append((st["mean"], st["std"]))
        if not pts:
            continue
        xs = sorted(pts)
        ys = [np.mean([m for m, _ in pts[x]]) for x in xs]
        es = [np.mean([e for _, e in pts[x]]) for x in xs]
        ax.errorbar(xs, ys, yerr=es, marker="o", ms=3, capsize=2, label=system)
    ax.set_xlabel("interval iv = k·S (frames)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("PSNR vs interval (film-level test split)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def plot_drift(agg: Mapping[str, Mapping[str, dict]], mode: str = "chain") -> bytes:
    """PNG: PSNR per frame offset from the single keyframe over whole test shots (one line per system)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    prefix = f"whole/{mode}/per_offset/"
    for system, a in agg.items():
        offs = sorted(int(k[len(prefix):]) for k in a if k.startswith(prefix))
        if offs:
            ax.plot(offs, [a[f"{prefix}{o}"]["mean"] for o in offs], label=system)
    ax.set_xlabel("frame offset from the keyframe")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"drift over a shot ({mode} from one keyframe)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def contact_sheet(rows: Mapping[str, np.ndarray], label_px: int = 0) -> np.ndarray:
    """Figures 5-7 layout: one row per entry (``"line art"``, ``"ground truth"``, each system),
    each a uint8 ``[S, K·S, 3]`` strip (reference, then the targets); name written on the left."""
    import cv2

    strips = list(rows.values())
    h, w = strips[0].shape[:2]
    label_px = label_px or max(90, h * 2)
    out = []
    for name, strip in rows.items():
        if strip.shape[:2] != (h, w):
            raise ValueError(f"contact sheet: row {name!r} is {strip.shape[:2]}, expected {(h, w)}")
        lab = np.full((h, label_px, 3), 255, np.uint8)
        cv2.putText(lab, name[:18], (2, h // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
        out.append(np.concatenate([lab, strip], 1))
    return np.concatenate(out, 0)


def strip(frames) -> np.ndarray:
    """``[K, C, S, S]`` float tensor in [0, 1] (C = 1 or 3) -> uint8 ``[S, K·S, 3]``."""
    x = frames.detach().float().cpu().clamp(0, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return (x.permute(2, 0, 3, 1).reshape(x.shape[2], -1, 3).numpy() * 255 + 0.5).astype(np.uint8)
