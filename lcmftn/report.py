"""The colorize job's QC report: ``report.json`` + a small static ``report.html`` (pure).

What an artist / pipeline engineer needs after an episode ran (DESIGN §2 "per-shot QC report"):
per shot the keyframes used, frames colorized by the model vs copied (holds) vs given
(keyframes), wall time, a confidence score (mean of the per-frame confidence maps derived from
CMFT attention, see :mod:`lcmftn.colorize`) and the frames flagged for review (too many
low-confidence pixels: new characters entering are the known failure). Shots left out (no
keyframe, unreadable frames) carry their reason; warnings (resized keyframes, borrowed
keyframes) and errors (rejected keyframes, unreadable frames) are listed at the top.

Design decisions
- The JSON is the source of truth; the HTML is rendered from it alone (no template engine,
  ``html.escape`` everywhere) and links the frame PNGs and the low-confidence maps by relative
  path, so the folder can be browsed as is (or served from S3).
- Confidence maps are stored as gray PNGs at model resolution (255 = sure). The HTML shows
  each flagged frame next to its map.
- :func:`plot_curves` draws the evaluation mode's drift curves (PSNR/SSIM per frame offset
  from the keyframe, one line per mode) with matplotlib's Agg backend, imported lazily.
"""

from __future__ import annotations

import html
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

REPORT_VERSION = 1
SHOT_STATUSES = ("done", "skipped", "failed")


def frame_name(index: int) -> str:
    """File name of episode frame ``index`` (``frames/000042.png``, ``confidence/000042.png``)."""
    return f"{int(index):06d}.png"


def summarize(job: Mapping[str, Any], shots: Sequence[Mapping[str, Any]],
              warnings: Sequence[str] = (), errors: Sequence[str] = (),
              extra: Mapping[str, Any] | None = None) -> dict:
    """The report dict: job settings, totals over shots, per-shot records, warnings/errors.

    Each shot record has at least ``id, start, end, status`` (``done|skipped|failed``) and, when
    done, ``colorized, copied, key, time_s, confidence, flagged`` (episode frame indices) as made
    by :meth:`lcmftn.colorize.ShotColorizer.stats` (converted to episode indices)."""
    for s in shots:
        if s.get("status") not in SHOT_STATUSES:
            raise ValueError(f"shot {s.get('id')!r}: status must be one of {SHOT_STATUSES}, got {s.get('status')!r}")
    done = [s for s in shots if s["status"] == "done"]
    colorized = sum(int(s.get("colorized", 0)) for s in done)
    conf_weighted = sum(float(s.get("confidence", 1.0)) * int(s.get("colorized", 0)) for s in done)
    totals = {
        "shots": len(shots),
        "shots_done": len(done),
        "shots_skipped": sum(s["status"] == "skipped" for s in shots),
        "shots_failed": sum(s["status"] == "failed" for s in shots),
        "frames": sum(int(s["end"]) - int(s["start"]) for s in shots),
        "frames_written": sum(int(s["end"]) - int(s["start"]) for s in done),
        "colorized": colorized,
        "copied": sum(int(s.get("copied", 0)) for s in done),
        "key": sum(int(s.get("key", 0)) for s in done),
        "flagged": sum(len(s.get("flagged", [])) for s in done),
        "time_s": round(sum(float(s.get("time_s", 0.0)) for s in done), 4),
        "confidence": round(conf_weighted / colorized, 4) if colorized else 1.0,
    }
    return {
        "version": REPORT_VERSION,
        "job": dict(job),
        "totals": totals,
        "warnings": list(warnings),
        "errors": list(errors),
        "shots": [dict(s) for s in shots],
        **(dict(extra) if extra else {}),
    }


def to_json(report: Mapping[str, Any]) -> bytes:
    return (json.dumps(report, indent=1, sort_keys=False) + "\n").encode()


def _cell(value: Any) -> str:
    return f"<td>{html.escape(str(value))}</td>"


def render_html(report: Mapping[str, Any], max_flagged_shown: int = 60) -> str:
    """A self-contained HTML page for ``report`` (links frames/ and confidence/ relatively)."""
    t = report["totals"]
    job = report.get("job", {})
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>colorize report</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:2px 6px;font-size:13px}.skipped,.failed{background:#fdd}"
        ".warn{color:#a60}.err{color:#c00}img{max-width:320px;margin:2px;border:1px solid #ccc}</style>",
        "</head><body><h1>Colorize report</h1>",
        f"<p>model <code>{esc(str(job.get('model', '?')))}</code>, mode <b>{esc(str(job.get('mode', '?')))}</b>, "
        f"line art <code>{esc(str(job.get('lineart', '?')))}</code></p>",
        f"<p>{t['frames_written']}/{t['frames']} frames written in {t['shots_done']}/{t['shots']} shots: "
        f"{t['colorized']} colorized by the model, {t['copied']} copied (holds), {t['key']} keyframes; "
        f"confidence {t['confidence']:.3f}; {t['flagged']} frames flagged for review; "
        f"model+finalize time {t['time_s']:.1f} s.</p>",
    ]
    if "video" in report:
        parts.append(f"<p>video: <a href='{esc(report['video'])}'>{esc(report['video'])}</a></p>")
    for cls, title, items in (("err", "Errors", report.get("errors", [])), ("warn", "Warnings", report.get("warnings", []))):
        if items:
            parts.append(f"<h2>{title}</h2><ul class='{cls}'>" + "".join(f"<li>{esc(str(x))}</li>" for x in items) + "</ul>")
    if "evaluation" in report:
        ev = report["evaluation"]
        parts.append("<h2>Evaluation</h2><table><tr><th>mode</th><th>PSNR</th><th>SSIM</th></tr>")
        for mode, m in ev.get("modes", {}).items():
            parts.append(f"<tr>{_cell(mode)}{_cell(m.get('psnr'))}{_cell(m.get('ssim'))}</tr>")
        parts.append("</table>")
        if ev.get("plot"):
            parts.append(f"<p><img src='{esc(ev['plot'])}' style='max-width:800px'></p>")
    parts.append("<h2>Shots</h2><table><tr><th>shot</th><th>frames</th><th>status</th><th>keyframes</th>"
                 "<th>colorized</th><th>copied</th><th>time s</th><th>confidence</th><th>flagged</th><th>note</th></tr>")
    for s in report["shots"]:
        flagged = s.get("flagged", [])
        span = f"{s['start']}–{int(s['end']) - 1}"
        note = s.get("reason", "") or (f"keyframe borrowed from frame {s['borrowed_from']}" if s.get("borrowed_from") is not None else "")
        parts.append(
            f"<tr class='{esc(s['status'])}'>{_cell(s['id'])}{_cell(span)}{_cell(s['status'])}"
            f"{_cell(', '.join(map(str, s.get('keyframes', []))))}{_cell(s.get('colorized', ''))}{_cell(s.get('copied', ''))}"
            f"{_cell(s.get('time_s', ''))}{_cell(s.get('confidence', ''))}{_cell(len(flagged) if s['status'] == 'done' else '')}"
            f"{_cell(note)}</tr>"
        )
    parts.append("</table>")
    flagged_all = [(s["id"], i) for s in report["shots"] if s["status"] == "done" for i in s.get("flagged", [])]
    if flagged_all:
        parts.append(f"<h2>Flagged frames ({len(flagged_all)})</h2><p>frame | low-confidence map (dark = unsure)</p>")
        for shot_id, i in flagged_all[:max_flagged_shown]:
            name = frame_name(i)
            parts.append(f"<div><b>frame {i}</b> (shot {esc(str(shot_id))})<br>"
                         f"<img src='frames/{name}'><img src='confidence/{name}'></div>")
        if len(flagged_all) > max_flagged_shown:
            parts.append(f"<p>… and {len(flagged_all) - max_flagged_shown} more (see report.json)</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def aggregate_by_offset(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str] = ("psnr", "ssim")) -> dict:
    """Mean of each metric per frame offset from the keyframe (offset 1, 2, ...): the drift curve.
    ``rows``: per-frame records with ``offset`` (>= 1) and the metric values. Offsets no shot
    reaches are left out at the end; ``count[k]`` says how many frames the mean at offset k+1 has."""
    if not rows:
        return {"count": [], **{m: [] for m in metrics}}
    n = max(int(r["offset"]) for r in rows)
    sums = {m: [0.0] * n for m in metrics}
    count = [0] * n
    for r in rows:
        k = int(r["offset"]) - 1
        if k < 0:
            raise ValueError(f"offset must be >= 1 (the keyframe is not scored), got {r['offset']}")
        count[k] += 1
        for m in metrics:
            sums[m][k] += float(r[m])
    return {"count": count, **{m: [round(s / c, 5) if c else None for s, c in zip(sums[m], count, strict=True)]
                                for m in metrics}}


def plot_curves(curves: Mapping[str, Mapping[str, Sequence[float]]], title: str = "drift") -> bytes:
    """PNG bytes: one panel per metric (``psnr``, ``ssim``, ...), one line per mode, x = frame
    offset from the shot's keyframe (offset 1 first). ``curves[mode][metric] = [value per offset]``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = sorted({m for c in curves.values() for m in c})
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(5 * max(1, len(metrics)), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=False):
        for mode, c in curves.items():
            ys = [float("nan") if y is None else y for y in c.get(metric, [])]
            ax.plot(range(1, len(ys) + 1), ys, label=mode, marker="." if len(ys) < 40 else None)
        ax.set_xlabel("frames after the keyframe")
        ax.set_ylabel(metric.upper())
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()
