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
from collections.abc import Callable, Iterator, Mapping, Sequence
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


# ---------------------------------------------------------------------------------------------
# Review files: what the review page shows besides frames/ and confidence/
# ---------------------------------------------------------------------------------------------
LINEART_DIR, TRUTH_DIR, ERROR_DIR = "lineart", "truth", "error"
ERROR_FULL_SCALE = 64
"""Error map: mean |prediction - truth| over RGB, 0 (black) .. this many levels or more (yellow)."""


def _png(img: Any) -> bytes:
    import numpy as np

    from lcmftn.data.dataset_format import encode_png

    return encode_png(np.asarray(img))


def lineart_files(lineart: Sequence[Any], start: int, end: int) -> Iterator[tuple[str, bytes]]:
    """``(lineart/NNNNNN.png, PNG)`` for episode frames ``start..end-1`` (uint8 [H, W] each): the
    review page's line-art toggle. The colorize job writes them with the shot's frames."""
    for i in range(int(start), int(end)):
        yield f"{LINEART_DIR}/{frame_name(i)}", _png(lineart[i])


def error_map(pred: Any, truth: Any) -> Any:
    """RGB uint8 heat map (inferno) of the mean absolute RGB error, full scale
    :data:`ERROR_FULL_SCALE` levels; same size as the frames."""
    import cv2
    import numpy as np

    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"error map: prediction {pred.shape} and truth {truth.shape} differ in size")
    err = np.abs(pred.astype(np.int16) - truth.astype(np.int16)).mean(axis=2)
    level = np.clip(err * (255.0 / ERROR_FULL_SCALE), 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(level, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def add_evaluation(report: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], truth: Sequence[Any],
                   read: Callable[[str], bytes | None], write: Callable[[str, bytes], None],
                   mode_summary: Mapping[str, Any] | None = None) -> dict:
    """Evaluation mode: for every scored frame (``rows`` from the colorize job's scoring, with
    ``i, psnr, ssim``) write ``truth/`` and ``error/`` PNGs via ``write``, put the per-frame and
    per-shot PSNR/SSIM into the report, then rewrite ``report.json`` + ``report.html``.
    ``read(rel)`` returns a written frame's PNG; ``truth[i]`` is episode frame i (RGB uint8)."""
    import cv2
    import numpy as np

    by_frame = {int(r["i"]): r for r in rows}
    for i in sorted(by_frame):
        data = read(f"frames/{frame_name(i)}")
        if data is None:
            raise ValueError(f"frames/{frame_name(i)}: missing, cannot draw its error map")
        pred = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        write(f"{TRUTH_DIR}/{frame_name(i)}", _png(truth[i]))
        write(f"{ERROR_DIR}/{frame_name(i)}", _png(error_map(pred, truth[i])))
    rep = dict(report)
    shots = []
    for s in rep["shots"]:
        s = dict(s)
        if s.get("status") == "done":
            s["per_frame"] = [dict(f, psnr=by_frame[f["i"]]["psnr"], ssim=by_frame[f["i"]]["ssim"])
                              if f["i"] in by_frame else dict(f) for f in s.get("per_frame", [])]
            scored = [by_frame[f["i"]] for f in s["per_frame"] if f["i"] in by_frame]
            if scored:
                s["psnr"] = round(sum(float(r["psnr"]) for r in scored) / len(scored), 4)
                s["ssim"] = round(sum(float(r["ssim"]) for r in scored) / len(scored), 5)
        shots.append(s)
    rep["shots"] = shots
    vals = list(by_frame.values())
    rep["evaluation"] = {
        **dict(mode_summary or {}),
        "frames": len(vals),
        "psnr": round(sum(float(r["psnr"]) for r in vals) / len(vals), 4) if vals else None,
        "ssim": round(sum(float(r["ssim"]) for r in vals) / len(vals), 5) if vals else None,
        "truth": f"{TRUTH_DIR}/", "error": f"{ERROR_DIR}/", "error_full_scale": ERROR_FULL_SCALE,
    }
    write("report.json", to_json(rep))
    write("report.html", render_html(rep).encode())
    return rep


# ---------------------------------------------------------------------------------------------
# The review page
# ---------------------------------------------------------------------------------------------
def _frame_score(f: Mapping[str, Any]) -> float:
    """Lower = worse: PSNR (dB) when scored, else confidence; keyframes last."""
    if f.get("kind") == "key":
        return float("inf")
    return float(f["psnr"]) if f.get("psnr") is not None else float(f.get("conf", 1.0))


def review_data(report: Mapping[str, Any]) -> dict:
    """What the page's script shows: done shots worst first (mean PSNR in evaluation mode, else
    confidence; then more flagged frames first), each with its frames worst first."""
    evaluated = "evaluation" in report and "truth" in report["evaluation"]
    shots = []
    for s in report["shots"]:
        if s.get("status") != "done":
            continue
        flagged = {int(i) for i in s.get("flagged", [])}
        frames = [{"i": int(f["i"]), "kind": f.get("kind"), "ref": f.get("ref"), "conf": f.get("conf"),
                   "low": f.get("low"), "psnr": f.get("psnr"), "ssim": f.get("ssim"),
                   "flagged": int(f["i"]) in flagged} for f in s.get("per_frame", [])]
        frames.sort(key=lambda f: (_frame_score(f), f["i"]))
        score = s.get("psnr") if evaluated and s.get("psnr") is not None else s.get("confidence", 1.0)
        shots.append({"id": str(s["id"]), "start": int(s["start"]), "end": int(s["end"]),
                      "keyframes": [int(k) for k in s.get("keyframes", [])], "confidence": s.get("confidence"),
                      "psnr": s.get("psnr"), "ssim": s.get("ssim"), "flagged": len(flagged),
                      "score": score, "frames": frames,
                      "borrowed_from": s.get("borrowed_from")})
    shots.sort(key=lambda s: (float(s["score"]), -s["flagged"], s["start"]))
    review = report.get("review", {})
    return {"evaluated": evaluated, "fps": float(report.get("job", {}).get("fps") or 24.0),
            "video": report.get("video"), "lineart": bool(review.get("lineart")),
            "error_full_scale": report.get("evaluation", {}).get("error_full_scale", ERROR_FULL_SCALE),
            "shots": shots}


def _json_for_script(data: Any) -> str:
    # NOTE: inside <script> only "</script" / "<!--" can break out; escaping <, > and & as \u
    # sequences keeps every string inert (and valid JSON).
    return json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(report: Mapping[str, Any], max_flagged_shown: int = 60) -> str:
    """The review page for ``report`` (links frames/, confidence/, lineart/, truth/, error/ and
    the video relatively; no network). A static summary and shot table, then the viewer built by
    the embedded script (:mod:`lcmftn.review_page`) from the report's data."""
    from lcmftn import review_page

    t = report["totals"]
    job = report.get("job", {})
    esc = html.escape
    data = review_data(report)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>colorize review — {esc(str(job.get('mode', '?')))}</title>",
        f"<style>{review_page.CSS}</style></head><body>",
        "<header><h1>Colorize report</h1>",
        f"<p class='meta'>model <code>{esc(str(job.get('model', '?')))}</code> · mode <b>{esc(str(job.get('mode', '?')))}</b>"
        f" · line art <code>{esc(str(job.get('lineart', '?')))}</code></p>",
        f"<p class='meta' id='totals'>{t['frames_written']}/{t['frames']} frames written in {t['shots_done']}/{t['shots']} shots: "
        f"{t['colorized']} colorized by the model, {t['copied']} copied (holds), {t['key']} keyframes; "
        f"confidence {t['confidence']:.3f}; {t['flagged']} frames flagged for review; "
        f"model+finalize time {t['time_s']:.1f} s.</p><p class='meta'>",
    ]
    if report.get("video"):
        parts.append(f"<a id='video-link' href='{esc(str(report['video']))}'>▶ {esc(str(report['video']))}</a> · ")
    parts.append("<a href='report.json'>report.json</a></p>")
    if "evaluation" in report:
        ev = report["evaluation"]
        parts.append(f"<p class='meta'>evaluation: PSNR <b>{esc(str(ev.get('psnr')))}</b> dB, SSIM "
                     f"<b>{esc(str(ev.get('ssim')))}</b> over {esc(str(ev.get('frames', '?')))} frames"
                     + (f" · <a href='{esc(str(ev['plot']))}'>drift plot</a>" if ev.get("plot") else "") + "</p>")
    parts.append("</header>")
    for cls, title, items in (("err", "Errors", report.get("errors", [])), ("warn", "Warnings", report.get("warnings", []))):
        if items:
            parts.append(f"<details open class='{cls}'><summary>{title} ({len(items)})</summary><ul>"
                         + "".join(f"<li>{esc(str(x))}</li>" for x in items) + "</ul></details>")
    parts.append(review_page.VIEWER)
    parts.append(_shot_table(report, data, max_flagged_shown))
    parts.append(f"<script type='application/json' id='review-data'>{_json_for_script(data)}</script>")
    parts.append(f"<script>{review_page.JS}</script></body></html>\n")
    return "\n".join(parts)


def _shot_table(report: Mapping[str, Any], data: Mapping[str, Any], max_flagged_shown: int) -> str:
    """Every shot (worst first, then the ones left out), escaped, with links to flagged frames."""
    order = {s["id"]: k for k, s in enumerate(data["shots"])}
    shots = sorted(report["shots"], key=lambda s: (order.get(str(s["id"]), -1 if s["status"] != "done" else 1e9),
                                                  int(s["start"])))
    evaluated = data["evaluated"]
    head = "".join(f"<th>{h}</th>" for h in ("shot", "frames", "status", "keyframes", "colorized", "copied",
                                             "time s", "confidence", *(("PSNR", "SSIM") if evaluated else ()),
                                             "flagged", "note"))
    rows = [f"<details open id='shot-table'><summary>All shots ({len(shots)}), worst first</summary>"
            f"<table><tr>{head}</tr>"]
    shown = 0
    for s in shots:
        flagged = s.get("flagged", []) if s["status"] == "done" else []
        links = []
        for i in flagged:
            if shown >= max_flagged_shown:
                break
            shown += 1
            name = frame_name(i)
            links.append(f"<a href='frames/{name}'>{int(i)}</a> (<a href='confidence/{name}'>map</a>)")
        note = s.get("reason", "") or (f"keyframe borrowed from frame {s['borrowed_from']}"
                                       if s.get("borrowed_from") is not None else "")
        span = f"{s['start']}–{int(s['end']) - 1}"
        rows.append(
            f"<tr class='{html.escape(str(s['status']))}'>{_cell(s['id'])}{_cell(span)}"
            f"{_cell(s['status'])}{_cell(', '.join(map(str, s.get('keyframes', []))))}{_cell(s.get('colorized', ''))}"
            f"{_cell(s.get('copied', ''))}{_cell(s.get('time_s', ''))}{_cell(s.get('confidence', ''))}"
            + (f"{_cell(s.get('psnr', ''))}{_cell(s.get('ssim', ''))}" if evaluated else "")
            + f"<td>{len(flagged) if s['status'] == 'done' else ''} {' '.join(links)}</td>{_cell(note)}</tr>")
    rows.append("</table>")
    total_flagged = sum(len(s.get("flagged", [])) for s in shots if s["status"] == "done")
    if total_flagged > shown:
        rows.append(f"<p>… and {total_flagged - shown} more flagged frames (see report.json)</p>")
    rows.append("</details>")
    return "".join(rows)


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
