"""Sweep λ1, λ2, window width/stride and lr with Ray Tune (ASHA on validation PSNR).

    python -m workflows.tune --data ./demo-out/dataset --recipe smoke --num-samples 2
    python -m workflows.tune --data s3://studio/datasets/v1 --recipe paper-256 --num-samples 32 \\
        --workers-per-trial 2 --gpus-per-trial 1 --storage s3://studio/runs --name sweep-v1
    python -m workflows.tune ... --name sweep-v1 --resume      # continue an interrupted sweep

Each trial is a full ``workflows.train`` job (a ``TorchTrainer`` with DDP workers) built inside a
function trainable, the Ray Train V2 pattern: ``TuneReportCallback`` forwards every epoch's
report (with ``val_psnr``) to Tune, and ASHA stops weak trials at its rungs (epochs
``grace_period``, ``2*grace_period``, ...). Validation therefore runs every epoch in a sweep; make
the interval large with ``--set steps_per_epoch=N``.

MLflow: one parent run (named like the sweep) and one nested run per trial
(``mlflow.parentRunId``), each logging what a training run logs. At the end the best trials are
printed as a table and the best trial's last checkpoint is registered (``--register-as``).

Resume: ``--resume`` restores the sweep from ``<storage>/<name>`` (``Tuner.restore``); unfinished
and errored trials continue from their last Ray Train checkpoint.

Search space (around the recipe's values): λ1 log-uniform in [1, 100]; λ2 log-uniform in
[2e-3, 2e-1] when the recipe has a VGG source (else held at 0 and said so); window width in
{w/2, w, 2w}, stride in {s, 2s}; lr log-uniform in [lr/3, 3 lr].
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from typing import Any

from lcmftn.train_plan import SEARCH_KEYS, best_table, trial_spec  # noqa: F401 - re-exported
from workflows import args as cli_args
from workflows.train import (
    EXIT_BAD_INPUT,
    BadInput,
    JobSpec,
    build_trainer,
    loop_config,
    make_spec,
    register_final,
    run_params,
)

log = logging.getLogger("workflows.tune")

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workflows.tune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cli_args.add_training_inputs(p, recipe_help="base recipe (smoke, cpu-small, paper-256)",
                                 model_help="system to train (default: the recipe's)")
    p.add_argument("--num-samples", type=int, required=True, help="number of trials")
    p.add_argument("--workers-per-trial", type=int, default=1, help="DDP workers per trial")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial worker")
    p.add_argument("--cpus-per-trial", type=float, default=None,
                   help="CPUs per trial worker (default 1 with GPUs, else 0.5)")
    p.add_argument("--max-concurrent", type=int, default=0,
                   help="trials at once (default: as many as the cluster's CPUs/GPUs fit)")
    p.add_argument("--grace-period", type=int, default=1,
                   help="ASHA: epochs every trial runs before it can be stopped")
    p.add_argument("--name", default=None, help="sweep name (storage folder, parent MLflow run)")
    cli_args.add_run_outputs(p, experiment="lcmftn-tune", storage_help="storage path (folder or s3://...)",
                             register_help="registered model name for the best trial (default: the "
                                           "system name; 'none' skips)")
    p.add_argument("--resume", action="store_true", help="continue the sweep of this --name")
    p.add_argument("--seed", type=int, default=0, help="search seed")
    cli_args.add_overrides(p, help="base config override (as in workflows.train)")
    cli_args.add_verbose(p)  # quiet hook
    return p


def search_space(spec: JobSpec, seed: int) -> dict[str, Any]:
    from ray import tune

    cfg = spec.cfg
    w, s = cfg.window.width_frames, cfg.window.stride_frames
    space: dict[str, Any] = {
        "lambda_l1": tune.loguniform(1.0, 100.0),
        "lambda_vgg": (tune.loguniform(2e-3, 2e-1) if cfg.loss.vgg_weights != "none" else 0.0),
        "window_width": tune.choice(sorted({max(2, w // 2), w, 2 * w})),
        "window_stride": tune.choice(sorted({s, 2 * s})),
        "lr": tune.loguniform(cfg.optim.lr / 3, cfg.optim.lr * 3),
    }
    return space


def run_trial(params: dict[str, Any], base: JobSpec, parent_run_id: str, tracking_uri: str,
              train_storage: str) -> None:
    """Function trainable: one nested MLflow run + one TorchTrainer reporting to Tune."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from lcmftn.integrations import tracking

    name = f"trial_{tune.get_context().get_trial_id()}"
    spec = trial_spec(base, params, name, train_storage)
    run_id = tracking.start_run(spec.experiment, name, tracking_uri, parent_run_id=parent_run_id,
                                tags={"system": spec.cfg.system, "recipe": spec.cfg.recipe})
    tracking.log_params(run_id, {**run_params(spec), **{f"tune.{k}": v for k, v in
                                                      params.items()}}, tracking_uri)
    trainer = build_trainer(spec, loop_config(spec, tracking_uri, run_id),
                            callbacks=[TuneReportCallback()])
    try:
        trainer.fit()
    except BaseException:
        tracking.end_run(run_id, "FAILED", tracking_uri)
        raise
    tracking.end_run(run_id, "FINISHED", tracking_uri)


def main(argv: list[str] | None = None) -> int:
    from workflows.common import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)  # quiet hook (workflows.common)
    try:
        if args.num_samples < 1:
            raise BadInput(f"--num-samples must be >= 1, got {args.num_samples}")
        base = make_spec(data=args.data, recipe_name=args.recipe, model=args.model,
                         overrides=args.overrides, workers=args.workers_per_trial,
                         gpus_per_worker=args.gpus_per_trial, cpus_per_worker=args.cpus_per_trial,
                         run_name=args.name, storage=args.storage, experiment=args.experiment,
                         register_as=args.register_as, max_failures=1)
        name = (args.name
                or f"tune-{base.cfg.system}-{base.cfg.recipe}-{time.strftime('%Y%m%d-%H%M%S')}")
        check_sweep_name(base, name, args.resume)  # before Ray starts
    except BadInput as e:
        print(f"tune: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    summary = sweep(base, args, name)
    print(json.dumps(summary), flush=True)
    return 0


def _sweep_location(base: JobSpec, name: str) -> tuple[str, str, Any]:
    """(sweep URI, Tune's storage path, pyarrow filesystem or None for local)."""
    from lcmftn.integrations import storage

    sweep_uri = storage.join(base.storage_uri, name)
    fs, sweep_path = None, base.storage_uri
    if storage.is_s3(base.storage_uri):
        fs = base.storage_fs or storage.filesystem_for(base.storage_uri)[0]
        sweep_path = storage.filesystem_for(base.storage_uri)[1]
    return sweep_uri, sweep_path, fs


def check_sweep_name(base: JobSpec, name: str, resume: bool) -> bool:
    """Pre-flight (no Ray needed): whether ``<storage>/<name>`` holds a restorable Tune
    experiment (its ``tuner.pkl``, as ``Tuner.can_restore`` checks). An existing sweep
    without ``resume`` is :class:`BadInput` naming it, so a re-used name never overwrites
    or mixes into an old sweep."""
    from ray.tune import Tuner  # NOTE: importing Tune does not start Ray

    from lcmftn.integrations import storage

    sweep_uri, sweep_path, fs = _sweep_location(base, name)
    try:
        restorable = Tuner.can_restore(storage.join(sweep_path, name) if fs else sweep_uri,
                                       storage_filesystem=fs)
    except OSError as exc:
        raise BadInput(f"cannot check sweep storage {sweep_uri}: {exc}") from exc
    if restorable and not resume:
        raise BadInput(f"sweep {sweep_uri} exists; pass --resume to continue it "
                       "or choose another --name")
    return restorable


def sweep(base: JobSpec, args: argparse.Namespace, name: str) -> dict[str, Any]:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from lcmftn.integrations import storage, tracking
    from workflows.common import ensure_ray
    from workflows.progress import trials_bar  # progress hook

    t0 = time.perf_counter()
    sweep_uri, sweep_path, fs = _sweep_location(base, name)
    restorable = check_sweep_name(base, name, args.resume)
    ensure_ray()
    tracking_uri = tracking.default_tracking_uri()
    parent = tracking.start_run(base.experiment, name, tracking_uri,
                                tags={"tune.sweep": name, "system": base.cfg.system})
    metric = "val_psnr"
    from lcmftn.recipes import flatten_config

    tracking.log_params(parent, {**{f"base.{k}": v for k, v in flatten_config(base.cfg).items()},
                                 "data.uri": base.data_uri, "num_samples": args.num_samples,
                                 "scheduler": f"ASHA(metric={metric}, grace={args.grace_period})",
                                 "search.lambda_vgg": "swept" if base.cfg.loss.vgg_weights != "none"
                                 else "held at 0 (no VGG source in the recipe)"}, tracking_uri)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=base, parent_run_id=parent, tracking_uri=tracking_uri,
                             train_storage=storage.join(sweep_uri, "train")),
        {"cpu": 0.1})  # the trial's driver function; its Train workers request their own
    if restorable:
        tuner = tune.Tuner.restore(storage.join(sweep_path, name) if fs else sweep_uri, trainable,
                                   resume_unfinished=True, resume_errored=True,
                                   storage_filesystem=fs)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=search_space(base, args.seed),
            tune_config=tune.TuneConfig(
                num_samples=args.num_samples,
                scheduler=ASHAScheduler(time_attr="epoch", metric=metric, mode="max",
                                        max_t=base.cfg.epochs, grace_period=args.grace_period,
                                        reduction_factor=2),
                max_concurrent_trials=args.max_concurrent or None,
                search_alg=tune.search.BasicVariantGenerator(random_state=args.seed),
            ),
            run_config=tune.RunConfig(name=name, storage_path=sweep_path if fs else base.storage_uri,
                                      storage_filesystem=fs, verbose=0,
                                      callbacks=[bar := trials_bar(args.num_samples)]),  # progress hook
        )
    results = tuner.fit()
    if not restorable:
        bar.close()  # progress hook
    rows = []
    for r in results:
        m = dict(r.metrics or {})
        rows.append({"trial": m.get("trial_id"), "epoch": m.get("epoch"),
                     metric: m.get(metric), "copyref_psnr": m.get("copyref_psnr"),
                     "checkpoint_path": m.get("checkpoint_path"), "error": str(r.error or ""),
                     **{k: (r.config or {}).get(k) for k in SEARCH_KEYS}})
    finish_trial_runs(base.experiment, parent, rows, base.cfg.epochs, tracking_uri)
    print(best_table(rows, metric), flush=True)
    scored = [r for r in rows if isinstance(r.get(metric), (int, float))]
    best = max(scored, key=lambda r: r[metric]) if scored else None
    model_uri = version = None
    if best is not None:
        tracking.log_metrics(parent, {f"best_{metric}": best[metric]}, 0, tracking_uri)
        tracking.set_tags(parent, {"best_trial": best["trial"]}, tracking_uri)
        if base.register_as and best.get("checkpoint_path"):
            from ray.train import Checkpoint

            child = tracking.find_run(base.experiment, f"trial_{best['trial']}", tracking_uri,
                                      parent_run_id=parent)
            ckpt = Checkpoint(best["checkpoint_path"], filesystem=fs)
            spec = replace(base, run_name=f"trial_{best['trial']}")
            model_uri, version = register_final(spec, ckpt, child, tracking_uri,
                                                {metric: best[metric]})
            tracking.set_tags(parent, {"model_uri": model_uri}, tracking_uri)
    tracking.end_run(parent, "FINISHED", tracking_uri)
    return {"parent_run_id": parent, "name": name, "storage": sweep_uri, "trials": len(rows),
            "best_trial": best and best["trial"], f"best_{metric}": best and best[metric],
            "best_config": best and {k: best[k] for k in SEARCH_KEYS}, "model_uri": model_uri,
            "model_version": version, "seconds": round(time.perf_counter() - t0, 1)}


def finish_trial_runs(experiment: str, parent: str, rows: list[dict[str, Any]], epochs: int,
                      tracking_uri: str, wait_s: float = 10.0) -> None:
    """Give the nested runs of the trials ASHA stopped their true status: Tune ends such a
    trial by interrupting its fit, which the trial itself can only see as a failure."""
    from lcmftn.integrations import tracking

    deadline = time.monotonic() + wait_s
    for r in rows:
        run_id = tracking.find_run(experiment, f"trial_{r['trial']}", tracking_uri,
                                   parent_run_id=parent)
        if run_id is None:
            continue
        # A stopped trial's own handler may still be writing its "FAILED" (it sees the stop as
        # an interruption, from its actor, possibly after Tuner.fit returned): let it land first,
        # so the status set here is the last word (the flaky FAILED in the tune test).
        while time.monotonic() < deadline and tracking.run_status(run_id, tracking_uri) == "RUNNING":
            time.sleep(0.25)
        stopped = isinstance(r.get("epoch"), int) and r["epoch"] < epochs and not r["error"]
        tracking.set_tags(run_id, {"tune.stopped_early": str(stopped)}, tracking_uri)
        if stopped:
            tracking.end_run(run_id, "KILLED", tracking_uri)
        elif not r["error"]:
            tracking.end_run(run_id, "FINISHED", tracking_uri)


if __name__ == "__main__":
    sys.exit(main())
