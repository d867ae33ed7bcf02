"""MLflow tracking and model registry: the only module of the project that imports ``mlflow``.

``mlflow`` is imported lazily inside functions, so importing this module is cheap and works
where MLflow is not installed (the GPU machine) as long as nothing is logged.

Where runs go: ``MLFLOW_TRACKING_URI`` when set (a team server: artifacts are proxied by the
server, clients need no S3 settings), else an embedded ``sqlite:///<cwd>/mlflow.db`` store
with artifacts in ``<cwd>/mlruns``. Everything takes an explicit ``run_id`` and goes through
``MlflowClient`` (no fluent "active run" global), so a Ray worker, a Tune trial and the
driver can log to the same run without sharing process state.

What a training run records (see the train job): flattened config params, git commit, dataset
manifest URI + version, VGG/E_I weight sources, per-step losses, validation metrics per
interval, samples/s, sample grids (S_p | C_p | S_n | prediction | GT) as PNG artifacts, and the
final checkpoint directory (``lcmftn.checkpoint`` format) registered in the Model Registry with
the tags needed to load it (``resolve_model_uri``).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CHECKPOINT_ARTIFACT_PATH = "checkpoint"
"""Artifact path of a bare checkpoint directory inside a run (``register_checkpoint(as_pyfunc=False)``)."""
MODEL_ARTIFACT_PATH = "model"
"""Artifact path of the pyfunc MLflow model (:mod:`lcmftn.integrations.pyfunc_model`) inside a run."""
_SECRET_KEY = re.compile(r"(secret|password|token|credential|access_key)", re.IGNORECASE)


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<cwd>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


_SQLITE_READY: set[Path] = set()


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (query string dropped, resolved), None for an
    in-memory store."""
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path).resolve()


def _init_sqlite_store(uri: str) -> None:
    """Create / migrate an embedded sqlite store under an exclusive file lock, once per process.

    MLflow creates and migrates a sqlite store's schema on its first use in each process; two
    processes doing that at the same time on a fresh file (two jobs started together, a sweep's
    trials) fail with "table ... already exists" / alembic "expected to match one row"
    (measured: 8 of 9 processes, 3 at a time). The lock file ``<db>.init-lock`` sits beside the
    database; once the schema is at head the others only read the version. Where no lock can be
    taken (a read-only folder, a file system without flock) the store is used as before: such a
    store cannot be migrated by this process anyway."""
    db = _sqlite_path(uri)
    if db is None or db in _SQLITE_READY:
        return
    import fcntl

    from mlflow import MlflowClient

    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        lock = open(db.with_name(db.name + ".init-lock"), "a+")  # noqa: SIM115 (closed below)
    except OSError as e:
        log.debug("no init lock for %s (%s): using the store unlocked", db, e)
        return
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
        except OSError as e:
            log.debug("no init lock for %s (%s): using the store unlocked", db, e)
            return
        try:
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            client.search_experiments(max_results=1)  # the tracking store: tables + migrations
            client.search_registered_models(max_results=1)  # the registry store (same file)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _SQLITE_READY.add(db)


def _client(tracking_uri: str | None = None):
    from mlflow import MlflowClient

    # The registry lives with the tracking store (one URI for both, also for a server).
    uri = tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///"):
        _init_sqlite_store(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _artifact_location_for(tracking_uri: str) -> str | None:
    # NOTE: with an embedded sqlite store MLflow's default artifact root is ./mlruns relative
    # to the *creating* process's cwd; pin it beside the database instead.
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        return (db.parent / "mlruns").resolve().as_uri()
    return None


def get_or_create_experiment(name: str, tracking_uri: str | None = None) -> str:
    """Experiment id for ``name`` (created when missing)."""
    uri = tracking_uri or default_tracking_uri()
    client = _client(uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_artifact_location_for(uri))
    except Exception:  # a concurrent creator won the race
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def find_run(experiment: str, run_name: str, tracking_uri: str | None = None,
             parent_run_id: str | None = None) -> str | None:
    """The newest run called ``run_name`` in ``experiment`` (used to resume a run), or None."""
    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    safe = run_name.replace("'", "")
    query = f"attributes.run_name = '{safe}'"
    if parent_run_id:
        query += f" and tags.`mlflow.parentRunId` = '{parent_run_id}'"
    runs = client.search_runs([exp.experiment_id], filter_string=query,
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


def start_run(experiment: str, run_name: str, tracking_uri: str | None = None,
              parent_run_id: str | None = None, tags: Mapping[str, str] | None = None,
              resume: bool = True) -> str:
    """Create (or, with ``resume``, reopen the newest same-named) run; returns its id."""
    uri = tracking_uri or default_tracking_uri()
    client = _client(uri)
    exp_id = get_or_create_experiment(experiment, uri)
    if resume:
        run_id = find_run(experiment, run_name, uri, parent_run_id)
        if run_id is not None:
            client.update_run(run_id, status="RUNNING")
            return run_id
    all_tags = dict(tags or {})
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    commit = git_commit()
    if commit:
        all_tags["mlflow.source.git.commit"] = commit
    run = client.create_run(exp_id, run_name=run_name, tags=all_tags)
    return run.info.run_id


def end_run(run_id: str, status: str = "FINISHED", tracking_uri: str | None = None) -> None:
    _client(tracking_uri).set_terminated(run_id, status=status)


def run_status(run_id: str, tracking_uri: str | None = None) -> str:
    """``RUNNING``, ``FINISHED``, ``FAILED``, ``KILLED`` or ``SCHEDULED``."""
    return _client(tracking_uri).get_run(run_id).info.status


def git_commit(repo_dir: str | Path | None = None) -> str | None:
    """HEAD commit of the project checkout (``+dirty`` when modified), or None outside git."""
    cwd = Path(repo_dir) if repo_dir else Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=cwd, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}+dirty" if dirty else sha


def _scrub(params: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in params.items():
        if _SECRET_KEY.search(key):
            continue  # never log anything that looks like a credential
        text = "None" if value is None else str(value)
        out[key] = text[:6000]
    return out


def log_params(run_id: str, params: Mapping[str, Any], tracking_uri: str | None = None) -> None:
    """Log params (batched; keys that look like secrets are dropped). Re-logging the same
    value on resume is fine; a changed value is kept as is and a warning is logged."""
    from mlflow.entities import Param

    client = _client(tracking_uri)
    existing = client.get_run(run_id).data.params
    items = [(k, v) for k, v in _scrub(params).items() if k not in existing]
    for k, v in _scrub(params).items():
        if k in existing and existing[k] != v:
            log.warning("param %s changed on resume (%s -> %s); keeping the first", k, existing[k], v)
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=[Param(k, v) for k, v in items[i:i + 100]])


def set_tags(run_id: str, tags: Mapping[str, Any], tracking_uri: str | None = None) -> None:
    client = _client(tracking_uri)
    for key, value in _scrub(tags).items():
        client.set_tag(run_id, key, value)


def log_metrics(run_id: str, metrics: Mapping[str, float], step: int,
                tracking_uri: str | None = None) -> None:
    """Log numeric metrics at ``step`` in one batch (non-finite values are skipped)."""
    import math
    import time

    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    batch = [Metric(k, float(v), ts, int(step)) for k, v in metrics.items()
             if isinstance(v, (int, float)) and math.isfinite(float(v))]
    if batch:
        _client(tracking_uri).log_batch(run_id, metrics=batch)


def log_image(run_id: str, image: Any, artifact_file: str, tracking_uri: str | None = None) -> None:
    """Log a uint8 ``[H, W, 3]`` RGB array as a PNG artifact (e.g. ``samples/epoch_0002.png``)."""
    _client(tracking_uri).log_image(run_id, image, artifact_file=artifact_file)


def log_dict(run_id: str, data: Any, artifact_file: str, tracking_uri: str | None = None) -> None:
    _client(tracking_uri).log_dict(run_id, data, artifact_file)


def log_artifacts(run_id: str, local_dir: str | Path, artifact_path: str | None = None,
                  tracking_uri: str | None = None) -> None:
    _client(tracking_uri).log_artifacts(run_id, str(local_dir), artifact_path)


def register_checkpoint(run_id: str, checkpoint_dir: str | Path, model_name: str,
                        tags: Mapping[str, Any] | None = None, alias: str | None = None,
                        tracking_uri: str | None = None, as_pyfunc: bool = True) -> str:
    """Log a checkpoint directory to the run and register it as a new version of
    ``model_name``; returns the version. ``alias`` (e.g. ``champion``) points at it.

    ``as_pyfunc`` (default): an MLflow ``python_function`` model at ``runs:/<id>/model`` with
    signature and input example (:mod:`lcmftn.integrations.pyfunc_model`), so
    ``mlflow.pyfunc.load_model("models:/<name>@<alias>").predict(...)`` colours frame pairs;
    else the bare checkpoint folder at ``runs:/<id>/checkpoint`` (the pre-issue-10 form).
    :func:`resolve_model_uri` takes the weights out of either."""
    client = _client(tracking_uri)
    checkpoint_dir = Path(checkpoint_dir)
    if not (checkpoint_dir / "meta.json").is_file():
        raise ValueError(f"{checkpoint_dir}: not a checkpoint directory (no meta.json)")
    if as_pyfunc:
        from lcmftn.integrations import pyfunc_model

        with tempfile.TemporaryDirectory(prefix="pyfunc-") as tmp:
            pyfunc_model.save(checkpoint_dir, Path(tmp) / MODEL_ARTIFACT_PATH)
            client.log_artifacts(run_id, str(Path(tmp) / MODEL_ARTIFACT_PATH), MODEL_ARTIFACT_PATH)
        artifact, fmt = MODEL_ARTIFACT_PATH, "mlflow-pyfunc+lcmftn-checkpoint-dir"
    else:
        client.log_artifacts(run_id, str(checkpoint_dir), CHECKPOINT_ARTIFACT_PATH)
        artifact, fmt = CHECKPOINT_ARTIFACT_PATH, "lcmftn-checkpoint-dir"
    try:
        client.create_registered_model(
            model_name, description="LCMFTN-family colorization model: an MLflow pyfunc model wrapping "
                                    "an lcmftn.checkpoint directory (model.safetensors + meta.json)")
    except Exception as e:  # already exists
        if "already exists" not in str(e).lower() and "RESOURCE_ALREADY_EXISTS" not in str(e):
            raise
    version_tags = {"format": fmt, **_scrub(tags or {})}
    mv = client.create_model_version(model_name, source=f"runs:/{run_id}/{artifact}",
                                     run_id=run_id, tags=version_tags)
    if alias:
        client.set_registered_model_alias(model_name, alias, mv.version)
    return str(mv.version)


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """Identity of a dataset: sha256 (32 hex chars) of its canonical ``manifest.json`` content."""
    import hashlib
    import json

    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def log_dataset(run_id: str, data_uri: str, manifest: Mapping[str, Any], context: str = "training",
                tracking_uri: str | None = None) -> str:
    """Link the dataset to the run (``log_inputs``: a MetaDataset named after ``data_uri`` whose
    digest is :func:`manifest_digest`); also tags the run ``data.digest``. Returns the digest."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    if not manifest:
        raise ValueError(f"{data_uri}: no manifest to link to the run")
    digest = manifest_digest(manifest)
    source_uri = data_uri.rstrip("/") + "/manifest.json"
    import warnings

    with warnings.catch_warnings():  # "can be interpreted in multiple ways": two local-path sources
        warnings.filterwarnings("ignore", message=".*interpreted in multiple ways.*")
        source = resolve_dataset_source(source_uri)
    ds = MetaDataset(source, name=Path(data_uri.rstrip("/")).name or data_uri, digest=digest)
    client = _client(tracking_uri)
    client.log_inputs(run_id, [DatasetInput(ds._to_mlflow_entity(), [InputTag("mlflow.data.context", context)])])
    client.set_tag(run_id, "data.digest", digest)
    return digest


def _find_checkpoint_dir(root: Path, uri: str) -> Path | None:
    """The one checkpoint directory at or under ``root``; several are ambiguous (e.g. a Ray
    run folder with one checkpoint per epoch) and raise instead of silently taking one."""
    if (root / "meta.json").is_file():
        return root
    if (root / "MLmodel").is_file():  # a pyfunc model (register_checkpoint(as_pyfunc=True))
        from lcmftn.integrations.pyfunc_model import checkpoint_in

        inner = checkpoint_in(root)
        if not (inner / "meta.json").is_file():
            raise ValueError(f"{uri}: its MLmodel names {inner.relative_to(root)}, which holds no meta.json")
        return inner
    hits = sorted({p.parent for p in root.rglob("meta.json")})
    if len(hits) > 1:
        names = ", ".join(str(h.relative_to(root)) for h in hits[:5])
        raise ValueError(f"{uri}: holds {len(hits)} checkpoints ({names}{' ...' if len(hits) > 5 else ''}); "
                         "pass the one to use")
    return hits[0] if hits else None


def _model_version_source(uri: str, tracking_uri: str) -> str:
    """``models:/name@alias`` or ``models:/name/version`` -> the version's source URI."""
    client = _client(tracking_uri)
    rest = uri[len("models:/"):]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        mv = client.get_model_version_by_alias(name, alias)
    elif "/" in rest:
        name, version = rest.split("/", 1)
        mv = client.get_model_version(name, version)
    else:
        raise ValueError(f"{uri}: expected models:/<name>@<alias> or models:/<name>/<version>")
    return mv.source


def resolve_model_uri(uri: str, local_dir: str | Path, tracking_uri: str | None = None) -> Path:
    """A local checkpoint directory for ``uri``.

    Accepts ``models:/name@alias``, ``models:/name/version``, ``runs:/<run_id>/<path>`` (a pyfunc
    model registered by :func:`register_checkpoint` or a bare checkpoint folder), an
    ``s3://`` checkpoint prefix (downloaded into ``local_dir``) or a local checkpoint path
    (returned as is). Raises ``ValueError`` naming the URI when it holds no checkpoint, or
    several (e.g. a Ray run folder: pass the checkpoint to use).
    """
    local_dir = Path(local_dir)
    if uri.startswith(("models:/", "runs:/")):
        import mlflow

        local_dir.mkdir(parents=True, exist_ok=True)
        turi = tracking_uri or default_tracking_uri()
        try:
            # NOTE: download_artifacts(tracking_uri=...) does not move the *registry* URI, so a
            # models:/ URI is resolved to its runs:/ source with a client bound to ``turi``.
            source = _model_version_source(uri, turi) if uri.startswith("models:/") else uri
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=str(local_dir), tracking_uri=turi)
        except Exception as e:
            raise ValueError(f"{uri}: cannot fetch the model from MLflow "
                             f"({type(e).__name__}: {str(e)[:300]})") from e
        found = _find_checkpoint_dir(Path(path), uri)
    elif uri.startswith("s3://"):
        from lcmftn.integrations import storage

        fs, base = storage.filesystem_for(uri)
        import pyarrow.fs as pafs

        # A fresh folder under local_dir per download: never mixes with an earlier copy.
        local_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="ckpt-", dir=local_dir))
        try:
            pafs.copy_files(base, str(tmp), source_filesystem=fs,
                            destination_filesystem=pafs.LocalFileSystem())
        except OSError as e:  # pyarrow raises OSError subclasses for S3 failures
            shutil.rmtree(tmp, ignore_errors=True)
            raise ValueError(f"{uri}: cannot download the checkpoint ({e})") from e
        try:
            found = _find_checkpoint_dir(tmp, uri)
        except ValueError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    else:
        path = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
        if not path.exists():
            raise ValueError(f"{uri}: no such checkpoint path")
        found = _find_checkpoint_dir(path, uri)
    if found is None:
        raise ValueError(f"{uri}: no checkpoint directory (meta.json + model.safetensors) found")
    return found
