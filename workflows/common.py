"""Small glue shared by the Ray jobs: connecting to Ray, logging set-up, quiet/verbose output.

Quiet by default (issue 10, "quiet runs, visible progress"): a job's output is its progress bars
(:mod:`lcmftn.progress`) and its summary; ``-v`` brings back everything below. The knobs (Ray
2.60 / MLflow 3.17, checked in the installed sources):

- ``ray.init(log_to_driver=False)``: worker / actor stdout+stderr (Ray Train's ``Reporting
  training result N: TrainingReport(...)`` from every rank, the controller's worker-group lines,
  MLflow's prints inside workers) stays in the session's log files (``/tmp/ray/session_*/logs``)
  instead of the driver's console. Failures still reach the driver as exceptions.
- ``RAY_DATA_DISABLE_PROGRESS_BARS=1`` + ``DataContext.enable_progress_bars = False`` and the
  ``ray.data`` logger at WARNING: no Ray Data progress blocks / "Running Dataset" lines.
- ``ray.train.LoggingConfig(log_level="WARNING")`` (:func:`train_logging_config`): Ray Train's
  own INFO lines off on its console handler. NOTE: not enough alone: the workers' ``ray``
  logger handler still prints ``Reporting training result ...`` (seen with a caller's
  ``ray.init(log_to_driver=True)``, e.g. the test fixture); ``log_to_driver=False`` is what
  keeps it off the driver's console.
- ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false``: no artifact download/upload bars;
  ``MLFLOW_LOGGING_LEVEL=ERROR``: no "Creating initial MLflow database tables..." lines nor
  pyfunc-logging notices; mlflow's UserWarnings filtered.
- the ``ray`` / ``mlflow`` / ``alembic`` loggers at WARNING on the driver.
"""

from __future__ import annotations

import logging
import os
import warnings

QUIET_ENV = {
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # mlflow sets its own logger's level at import; ERROR: its pyfunc-logging notices (CloudPickle,
    # "Validating input example") are for whoever writes the model class, not for a job's user
    "MLFLOW_LOGGING_LEVEL": "ERROR",
}
"""Environment set (``setdefault``: a value the user exported wins) by quiet runs, before Ray
and MLflow are imported/initialised."""

NOISY_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune", "mlflow", "alembic", "urllib3",
                 "botocore", "filelock")

_VERBOSE = False


def is_verbose() -> bool:
    """Whether this process was set up with ``-v`` (:func:`setup_logging`)."""
    return _VERBOSE


def ensure_ray(address: str | None = None) -> None:
    """Connect to Ray once: the running cluster (``RAY_ADDRESS`` / ``ray start``) if there is one,
    else a local instance. A no-op when the caller (a test, a parent job) already did ``ray.init``.
    Worker output reaches this console only with ``-v`` (module docstring)."""
    import ray  # NOTE: imported lazily so `import workflows` works on machines without Ray.

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    ray.init(address=address, configure_logging=False, log_to_driver=_VERBOSE)
    quiet_ray_data()
    if not address:  # reliability hook: a local instance ends with this driver, even on SIGKILL
        from lcmftn.integrations import ray_watchdog

        ray_watchdog.start()


def quiet_ray_data() -> None:
    """Ray Data progress bars off in this process unless ``-v`` (the env var covers workers)."""
    if _VERBOSE:
        return
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # "Starting execution of Dataset ..."
    # ERROR: "Progress bars disabled. To enable, ..." is a WARNING we caused ourselves.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


def train_logging_config():
    """``ray.train.LoggingConfig`` for ``RunConfig(logging_config=...)``: Ray Train's INFO
    chatter on the console only with ``-v``."""
    from ray.train import LoggingConfig

    return LoggingConfig(log_level="INFO" if _VERBOSE else "WARNING")


def map_with_retries(ds, fn, max_retries: int, **kwargs):
    """``ds.map(fn, **kwargs)`` whose tasks are retried at most ``max_retries`` times.

    NOTE: Ray 2.60 has no named ``map()`` parameter for ``max_retries`` (``ray_remote_args_fn``
    and ``**ray_remote_args`` both warn "deprecated, removed in Ray 2.64"; the named ones are
    label_selector/fallback_strategy/max_calls/resources/accelerator_type/runtime_env), and Ray
    Data's own default is -1 (retry forever). So the one call goes through ``ray_remote_args_fn``
    with exactly that deprecation warning silenced here; revisit when Ray 2.64 lands."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args_fn.*deprecated.*")
        return ds.map(fn, ray_remote_args_fn=lambda: {"max_retries": max_retries}, **kwargs)


def setup_logging(verbose: bool = False) -> None:
    """Logging for a job's driver: INFO lines of our own ``workflows.*`` loggers (DEBUG with
    ``verbose``); third-party INFO chatter and the quiet env (module docstring) unless ``verbose``.
    A later call with ``verbose=True`` (a stage inside ``workflows.demo -v``) turns it up."""
    global _VERBOSE
    _VERBOSE = _VERBOSE or verbose
    logging.basicConfig(
        level=logging.DEBUG if _VERBOSE else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if _VERBOSE
        else "%(levelname)s %(name)s: %(message)s",
    )
    if _VERBOSE:
        logging.getLogger().setLevel(logging.DEBUG)
        for name in NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    # Our own INFO lines are the per-item chatter the bars replace: warnings and errors only.
    logging.getLogger("workflows").setLevel(logging.WARNING)
    logging.getLogger("lcmftn").setLevel(logging.WARNING)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR if name == "mlflow" else logging.WARNING)
    # mlflow.pyfunc's "Add type hints to the `predict` method ..." UserWarning at registration
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\.")


def limit_threads(n: int | None = None) -> int:
    """Make this Ray task/actor use the CPUs it holds (``n``, default: its assigned CPUs, at
    least 1) for OpenCV's pool and the video decoder (:func:`lcmftn.data.video.set_decode_threads`):
    Ray's ``num_cpus`` only counts slots, and with their defaults each task sharing a node used
    every core (measured on ingest with 2 tasks on 2 cores: +54 % CPU seconds). Returns ``n``."""
    import cv2

    from lcmftn.data.video import set_decode_threads

    if n is None:
        import ray

        n = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1) or 1)
    n = max(1, int(n))
    cv2.setNumThreads(n)
    set_decode_threads(n)
    return n
