"""Move a registered model's ``@champion`` alias to a candidate version only when it is better.

    python -m workflows.promote lcmftn --candidate 7
    python -m workflows.promote lcmftn --candidate 7 --eval s3://out/ep1-eval   # + evaluation

The decision (:func:`decide`), on metrics logged on each version's training run:

* ``--metric`` (default ``val/psnr``: validation PSNR in dB that the train job logs, the last
  value of the run), higher is better; the candidate must beat the champion by more than
  ``--min-delta`` (default 0 dB).
* No ``@champion`` yet: the candidate becomes champion.
* The two runs were validated on different data (their ``data.digest`` tags, the dataset's
  manifest digest logged by :func:`tracking.log_dataset`, differ): the scores are not comparable
  and the champion stays, unless ``--allow-data-change``.
* The candidate lacks the metric: error (exit 2). The champion lacks it: error unless ``--force``.

The decision and its reason are recorded as ``promotion.*`` tags on the candidate version (and
``promotion.replaced_by`` on the former champion). ``--eval OUT`` (a ``workflows.colorize
--from-color`` output folder or ``s3://`` prefix) first logs its ``eval.json``, per-frame table
and drift plot into the candidate's run under ``evaluation/`` with ``eval/psnr/<mode>`` /
``eval/ssim/<mode>`` metrics (usable as ``--metric``). Exit 0: promoted; 3: champion kept; 2: error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

ALIAS = "champion"


def decide(candidate: dict[str, Any], champion: dict[str, Any] | None, metric: str = "val/psnr",
           min_delta: float = 0.0, allow_data_change: bool = False, force: bool = False) -> tuple[bool, str]:
    """(promote?, reason). Each side: ``{"version", "metrics": {...}, "data_digest"}``."""
    cand_v = candidate.get("metrics", {}).get(metric)
    if cand_v is None:
        raise ValueError(f"candidate version {candidate['version']}: its run has no {metric!r} metric")
    if champion is None:
        return True, f"no @{ALIAS} yet; candidate v{candidate['version']} {metric}={cand_v:.4f}"
    if str(champion["version"]) == str(candidate["version"]):
        return False, f"v{candidate['version']} is already @{ALIAS}"
    a, b = candidate.get("data_digest"), champion.get("data_digest")
    if a and b and a != b and not allow_data_change:
        return False, (f"not comparable: candidate validated on data {a}, champion v{champion['version']} on {b} "
                       "(--allow-data-change to compare anyway)")
    champ_v = champion.get("metrics", {}).get(metric)
    if champ_v is None:
        if not force:
            raise ValueError(f"champion version {champion['version']}: its run has no {metric!r} metric "
                             "(--force to promote the candidate anyway)")
        return True, f"champion v{champion['version']} has no {metric}; promoted with --force"
    if cand_v > champ_v + min_delta:
        return True, (f"{metric} {cand_v:.4f} > champion v{champion['version']}'s {champ_v:.4f}"
                      f"{f' + {min_delta}' if min_delta else ''}")
    return False, (f"{metric} {cand_v:.4f} does not beat champion v{champion['version']}'s {champ_v:.4f}"
                   f"{f' + {min_delta}' if min_delta else ''}")


def _side(client, name: str, mv) -> dict[str, Any]:
    run = client.get_run(mv.run_id) if mv.run_id else None
    return {"version": str(mv.version), "run_id": mv.run_id,
            "metrics": dict(run.data.metrics) if run else {},
            "data_digest": run.data.tags.get("data.digest") if run else None}


def log_evaluation(client, run_id: str, eval_uri: str, tracking_uri: str | None = None) -> dict[str, float]:
    """Log a colorize evaluation output (``eval.json``, ``drift.png``) into ``run_id``."""
    from lcmftn.integrations import storage

    try:
        ev = json.loads(storage.read_bytes(storage.join(eval_uri, "eval.json")))
    except (OSError, ValueError) as e:
        raise ValueError(f"--eval {eval_uri}: cannot read eval.json ({e})") from e
    client.log_dict(run_id, ev, "evaluation/eval.json")
    try:
        png = storage.read_bytes(storage.join(eval_uri, ev.get("plot") or "drift.png"))
    except OSError:
        png = None  # a plot is optional in eval.json's producer; the table is not
    if png:
        import cv2
        import numpy as np

        img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        if img is not None:
            client.log_image(run_id, cv2.cvtColor(img, cv2.COLOR_BGR2RGB), artifact_file="evaluation/drift.png")
    metrics: dict[str, float] = {}
    for mode, m in ev.get("modes", {}).items():
        rows = m.get("per_frame") or []
        if rows:
            cols = {k: [r.get(k) for r in rows] for k in ("i", "shot", "offset", "kind", "psnr", "ssim")}
            client.log_table(run_id, data=cols, artifact_file=f"evaluation/per_frame_{mode}.json")
        for k in ("psnr", "ssim"):
            if m.get(k) is not None:
                metrics[f"eval/{k}/{mode}"] = float(m[k])
    from lcmftn.integrations import tracking

    tracking.log_metrics(run_id, metrics, step=0, tracking_uri=tracking_uri)
    return metrics


def promote(name: str, candidate: str, metric: str = "val/psnr", min_delta: float = 0.0,
            allow_data_change: bool = False, force: bool = False, eval_uri: str | None = None,
            tracking_uri: str | None = None) -> dict[str, Any]:
    """Decide, move ``@champion`` if the candidate wins, tag the versions; returns the record."""
    from lcmftn.integrations import tracking

    client = tracking._client(tracking_uri)
    try:
        cand_mv = client.get_model_version(name, str(candidate))
    except Exception as e:
        raise ValueError(f"models:/{name}/{candidate}: no such model version ({str(e)[:200]})") from e
    if eval_uri:
        if not cand_mv.run_id:
            raise ValueError(f"models:/{name}/{candidate}: no run to log the evaluation into")
        log_evaluation(client, cand_mv.run_id, eval_uri, tracking_uri)
    try:
        champ_mv = client.get_model_version_by_alias(name, ALIAS)
    except Exception as e:  # MlflowException RESOURCE_DOES_NOT_EXIST: no champion yet
        if "RESOURCE_DOES_NOT_EXIST" not in str(getattr(e, "error_code", "")) and "not found" not in str(e).lower():
            raise
        champ_mv = None
    cand = _side(client, name, cand_mv)
    champ = _side(client, name, champ_mv) if champ_mv is not None else None
    ok, reason = decide(cand, champ, metric, min_delta, allow_data_change, force)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    tags = {"promotion.decision": "promoted" if ok else "rejected", "promotion.reason": reason,
            "promotion.metric": metric, "promotion.candidate_value": str(cand["metrics"].get(metric)),
            "promotion.champion_version": champ["version"] if champ else "none",
            "promotion.champion_value": str(champ["metrics"].get(metric)) if champ else "none",
            "promotion.at": stamp}
    for k, v in tags.items():
        client.set_model_version_tag(name, cand["version"], k, v)
    if ok:
        client.set_registered_model_alias(name, ALIAS, cand["version"])
        if champ:
            client.set_model_version_tag(name, champ["version"], "promotion.replaced_by", cand["version"])
    return {"model": name, "candidate": cand["version"], "champion_before": champ["version"] if champ else None,
            "champion": cand["version"] if ok else (champ["version"] if champ else None),
            "promoted": ok, "reason": reason, "metric": metric}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workflows.promote", description=__doc__.split("\n")[0])
    p.add_argument("name", help="registered model name (e.g. lcmftn)")
    p.add_argument("--candidate", required=True, help="model version to consider for @champion")
    p.add_argument("--metric", default="val/psnr", help="run metric to compare, higher is better")
    p.add_argument("--min-delta", type=float, default=0.0, help="margin the candidate must beat the champion by")
    p.add_argument("--allow-data-change", action="store_true", help="compare runs validated on different data")
    p.add_argument("--force", action="store_true", help="promote when the champion has no such metric")
    p.add_argument("--eval", dest="eval_uri", help="colorize --from-color output to log into the candidate's run")
    a = p.parse_args(argv)
    try:
        rec = promote(a.name, a.candidate, a.metric, a.min_delta, a.allow_data_change, a.force, a.eval_uri)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(rec))
    return 0 if rec["promoted"] else 3


if __name__ == "__main__":
    sys.exit(main())
