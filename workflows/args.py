"""Argument groups shared by the Ray jobs (same flags, defaults and meaning everywhere).

    p = argparse.ArgumentParser(...)
    add_training_inputs(p, recipe_help=..., model_help=...)   # --data --recipe --model
    add_run_outputs(p, experiment="lcmftn", ...)               # --storage --experiment --register-as
    add_overrides(p)                                           # --set KEY=VALUE (repeatable)
    add_verbose(p)                                             # -v / --verbose
"""

from __future__ import annotations

import argparse


def add_training_inputs(p: argparse.ArgumentParser, *, recipe_help: str, model_help: str) -> None:
    """``--data`` (dataset root), ``--recipe`` (base config), ``--model`` (system override)."""
    p.add_argument("--data", required=True, help="dataset root (local folder or s3://...)")
    p.add_argument("--recipe", required=True, help=recipe_help)
    p.add_argument("--model", default=None, help=model_help)


def add_run_outputs(p: argparse.ArgumentParser, *, experiment: str, storage_help: str,
                    register_help: str) -> None:
    """``--storage`` (run folders / checkpoints), ``--experiment`` (MLflow), ``--register-as``."""
    p.add_argument("--storage", default="./runs", help=storage_help)
    p.add_argument("--experiment", default=experiment, help="MLflow experiment")
    p.add_argument("--register-as", default=None, help=register_help)


def add_overrides(p: argparse.ArgumentParser, help: str = "config override, e.g. --set "
                  "optim.lr=2e-4 --set window.width_frames=20") -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides`` (``lcmftn.recipes.apply_overrides``)."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def add_verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="store_true")
