"""Side-by-side statistics of v1 films, v2 films and a real anime clip (issue 11).

    python -m workflows.benchmark data --out /tmp/data_bench            # default: 3 films each
    python -m workflows.benchmark data --out /tmp/db --films 1 --seconds 4 --no-speed --hold-size 0

All measures are taken on decoded H.264 frames at the working size (short side ``--size``):

* region_log10_frac: per frame, the area-weighted median of log10(region area / frame area) over
  the 4-connected paper regions of the XDoG line art (how large the closed regions are);
* colours_90: per frame, 4-bit-per-channel colour bins needed to cover 90 % of the pixels;
* line_density: per frame, fraction of ink pixels (XDoG < 128);
* line_thickness_px: per frame, ink pixels / skeleton pixels (mean stroke width);
* changed_s1/s5/s10: per pair (t, t+S) inside a shot, fraction of pixels whose RGB changes by
  more than 24 levels;
* hold_ratio: per film, fraction of consecutive in-shot pairs that ``detect_holds`` calls held.
Per measure: the median of each set, and the 1-D Wasserstein distance of v1 and v2 to the real
clip (``scipy.stats.wasserstein_distance``; hold_ratio: absolute difference of the means).
Also: a contact sheet PNG per set (in ``--out``), generation speed of a 2-minute film (v1, v2;
one thread, CPU seconds) and hold detection precision/recall of v2 thin line art at
``--hold-size`` (clean artist line art from the generator vs the sidecar's holds).
Figures print as JSON and go to ``<out>/data_stats.json``. The real clip is read in place, never
copied; when it is absent its column is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "anime" / "onepiece_demo.mp4"
MEASURES = ("region_log10_frac", "colours_90", "line_density", "line_thickness_px",
            "changed_s1", "changed_s5", "changed_s10", "hold_ratio")  # fmt: skip


def frame_stats(rgb: np.ndarray) -> dict:
    """Per-frame measures of one uint8 RGB frame (working size)."""
    from lcmftn.data.lineart import extract_lineart, skeletonize

    la = extract_lineart(rgb)
    ink = la < 128
    n, lab, st, _ = cv2.connectedComponentsWithStats((~ink).view(np.uint8), connectivity=4)
    areas = st[1:, cv2.CC_STAT_AREA].astype(np.float64)
    areas = areas[areas >= 4]
    if len(areas):
        order = np.argsort(areas)
        cum = np.cumsum(areas[order])
        region = float(np.log10(areas[order][np.searchsorted(cum, cum[-1] / 2)] / ink.size))
    else:
        region = 0.0
    q = (rgb >> 4).astype(np.int32)
    counts = np.sort(np.bincount((q[..., 0] << 8 | q[..., 1] << 4 | q[..., 2]).ravel(), minlength=4096))[::-1]
    colours = int(np.searchsorted(np.cumsum(counts), 0.9 * rgb.shape[0] * rgb.shape[1]) + 1)
    sk = int(skeletonize(ink).sum())
    return {"region_log10_frac": region, "colours_90": colours, "line_density": float(ink.mean()),
            "line_thickness_px": float(ink.sum() / sk) if sk else 0.0}  # fmt: skip


def film_stats(frames: list[np.ndarray], cuts: list[int], sample_every: int) -> dict[str, list[float]]:
    """All measures of one film (frames at the working size; ``cuts``: first frames of shots)."""
    from lcmftn.data.holds import detect_holds
    from lcmftn.data.lineart import extract_lineart

    out: dict[str, list[float]] = {m: [] for m in MEASURES}
    for f in frames[::sample_every]:
        for k, v in frame_stats(f).items():
            out[k].append(v)
    shot_of = np.searchsorted(np.asarray(sorted(cuts)), np.arange(len(frames)), side="right")
    for s in (1, 5, 10):
        for t in range(0, len(frames) - s, max(1, sample_every // 2)):
            if shot_of[t] == shot_of[t + s]:
                d = np.abs(frames[t].astype(np.int16) - frames[t + s]).max(axis=2)
                out[f"changed_s{s}"].append(float((d > 24).mean()))
    holds = detect_holds([extract_lineart(f) for f in frames])
    inside = [t for t in range(1, len(frames)) if shot_of[t] == shot_of[t - 1]]
    out["hold_ratio"].append(float(holds[inside].mean()) if inside else 0.0)
    return out


def _merge(parts: list[dict]) -> dict[str, list[float]]:
    return {m: [v for p in parts for v in p[m]] for m in MEASURES}


def contact_sheet(frames: list[np.ndarray], path: Path, cols: int = 4, rows: int = 3) -> None:
    """A grid of frames spread over the set, written as PNG (tmp + rename)."""
    picks = [frames[int(i)] for i in np.linspace(0, len(frames) - 1, cols * rows)]
    h = min(f.shape[0] for f in picks)
    picks = [cv2.resize(f, (round(f.shape[1] * h / f.shape[0]), h), interpolation=cv2.INTER_AREA) for f in picks]
    w = min(f.shape[1] for f in picks)
    grid = np.vstack([np.hstack([f[:, :w] for f in picks[r * cols:(r + 1) * cols]]) for r in range(rows)])
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    cv2.imwrite(str(tmp), grid[..., ::-1])
    os.replace(tmp, path)


def _films(gen: str, args, work: Path) -> tuple[list[dict], list[np.ndarray]]:
    from lcmftn.data.video import read_frames

    parts, sheet = [], []
    for seed in range(args.films):
        path = work / f"{gen}_{seed}.mp4"
        if gen == "v1":
            from lcmftn.data.synthetic import FilmConfig, write_film
            truth = write_film(path, FilmConfig(seed=seed, size=args.size, aspect=args.aspect, seconds=args.seconds,
                                                shot_frames=48, shot_frames_jitter=0.5))  # fmt: skip
        else:
            from lcmftn.data.synth import FilmConfigV2, write_film
            truth = write_film(path, FilmConfigV2(seed=seed, size=args.size, aspect=args.aspect, seconds=args.seconds,
                                                  shot_frames=48, shot_frames_jitter=0.5))  # fmt: skip
        frames = read_frames(path, size_px=args.size)
        parts.append(film_stats(frames, truth["cuts"], args.sample_every))
        sheet += frames[:: max(1, len(frames) // 6)]
    return parts, sheet


def _real(args) -> tuple[dict | None, list[np.ndarray]]:
    from lcmftn.data.shots import detect_shots
    from lcmftn.data.video import read_frames

    if not args.real.is_file():
        return None, []
    frames = read_frames(args.real, size_px=args.size)
    return film_stats(frames, detect_shots(frames).cuts, args.sample_every), frames


def compare(sets: dict[str, dict]) -> dict:
    """Medians per set and distances of v1/v2 to the real clip, per measure."""
    from scipy.stats import wasserstein_distance

    table = {}
    for m in MEASURES:
        row = {k: round(float(np.median(v[m])), 4) if v[m] else None for k, v in sets.items()}
        if "real" in sets:
            for k in ("v1", "v2"):
                a, b = sets[k][m], sets["real"][m]
                d = abs(np.mean(a) - np.mean(b)) if m == "hold_ratio" else wasserstein_distance(a, b)
                row[f"dist_{k}"] = round(float(d), 4)
            row["v2_closer"] = row["dist_v2"] < row["dist_v1"]
        table[m] = row
    return table


def speed(seconds: float, size: int) -> dict:
    """CPU seconds (one thread) to render and encode a ``seconds``-long film, v1 and v2."""
    import tempfile

    from lcmftn.data.synth import FilmConfigV2
    from lcmftn.data.synth import write_film as write_v2
    from lcmftn.data.synthetic import FilmConfig, write_film

    cv2.setNumThreads(1)
    res = {}
    with tempfile.TemporaryDirectory() as d:
        for name, fn, cfg in (("v1", write_film, FilmConfig(seed=0, size=size, seconds=seconds)),
                              ("v2", write_v2, FilmConfigV2(seed=0, size=size, seconds=seconds))):  # fmt: skip
            w0, c0 = time.perf_counter(), time.process_time()
            truth = fn(Path(d) / f"{name}.mp4", cfg)
            res[name] = {"frames": truth["frames"], "cpu_s": round(time.process_time() - c0, 2),
                         "wall_s": round(time.perf_counter() - w0, 2)}  # fmt: skip
    return res


def hold_accuracy(size: int, films: int, frames_per_shot: int) -> dict:
    """Precision/recall of hold detection on v2 thin artist line art at ``size`` px."""
    from lcmftn.data.holds import HoldConfig, detect_holds
    from lcmftn.data.synth import FilmConfigV2, generate_film

    counts = {}
    for seed in range(films):
        la: list[np.ndarray] = []
        film = generate_film(FilmConfigV2(seed=seed, size=size, aspect=16 / 9, num_shots=4,
                                          shot_frames=frames_per_shot, thin_lines=True), lineart_out=la)  # fmt: skip
        for _ in film.frames:
            pass
        tr = film.truth
        inside = np.ones(len(la), bool)
        inside[[0, *tr["cuts"]]] = False
        for cname, cfg in (("default", HoldConfig()), ("for_thin_lines", HoldConfig.for_thin_lines())):
            found = detect_holds(la, cfg)
            for tname in ("holds", "lineart_holds"):
                true = np.zeros(len(la), bool)
                true[tr[tname]] = True
                c = counts.setdefault(f"{cname} vs {tname}", [0, 0, 0])
                c[0] += int(np.sum(found & true & inside))
                c[1] += int(np.sum(found & ~true & inside))
                c[2] += int(np.sum(~found & true & inside))
    return {k: {"tp": tp, "fp": fp, "fn": fn, "precision": round(tp / max(1, tp + fp), 3),
                "recall": round(tp / max(1, tp + fn), 3)} for k, (tp, fp, fn) in counts.items()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workflows.benchmark data", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for contact sheets and data_stats.json (not the repo)")
    p.add_argument("--films", type=int, default=3, help="films per generator")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each generated film")
    p.add_argument("--size", type=int, default=256, help="working size (short side, px)")
    p.add_argument("--aspect", type=float, default=4 / 3, help="generated films' width / height (real clip: 4:3)")
    p.add_argument("--sample-every", type=int, default=3, help="per-frame measures on every Nth frame")
    p.add_argument("--real", type=Path, default=REAL, help="the real clip (default: ../shared/data/real/anime/...)")
    p.add_argument("--no-speed", action="store_true", help="skip the 2-minute film timing")
    p.add_argument("--speed-seconds", type=float, default=120.0)
    p.add_argument("--hold-size", type=int, default=1080, help="hold P/R on v2 thin lines at this size (0 = skip)")
    p.add_argument("--hold-films", type=int, default=2)
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    if (Path(__file__).resolve().parents[2] / ".git").exists() and out.is_relative_to(Path(__file__).resolve().parents[2]):
        p.error(f"--out {out} is inside the repository; pick a folder outside it")
    work = out / "films"
    work.mkdir(parents=True, exist_ok=True)
    cv2.setNumThreads(1)
    sets, sheets = {}, {}
    for gen in ("v1", "v2"):
        parts, sheets[gen] = _films(gen, args, work)
        sets[gen] = _merge(parts)
    real, sheets["real"] = _real(args)
    if real is None:
        print(f"real clip {args.real} absent: its column is skipped")
    else:
        sets["real"] = real
    for k, frames in sheets.items():
        if frames:
            contact_sheet(frames, out / f"contact_{k}.png")
    report = {"table": compare(sets), "contact_sheets": sorted(str(x) for x in out.glob("contact_*.png"))}
    if not args.no_speed:
        report["speed_2min"] = speed(args.speed_seconds, 256)
    if args.hold_size:
        report[f"holds_thin_{args.hold_size}px"] = hold_accuracy(args.hold_size, args.hold_films, 16)
    _print_table(report["table"])
    print(json.dumps({k: v for k, v in report.items() if k != "table"}, indent=1))
    (out / "data_stats.json").write_text(json.dumps(report, indent=1))
    return 0


def _print_table(table: dict) -> None:
    cols = ["v1", "v2", "real", "dist_v1", "dist_v2", "v2_closer"]
    print("| measure | " + " | ".join(cols) + " |")
    print("| --- |" + " --- |" * len(cols))
    for m, row in table.items():
        print(f"| {m} | " + " | ".join(str(row.get(c, "-")) for c in cols) + " |")
