"""Model checkpoints: a directory with ``model.safetensors`` and ``meta.json``.

    save_checkpoint("runs/x/model", G, "lcmftn", dataclasses.asdict(G.config), extra={"epoch": 3})
    G, meta = load_checkpoint("runs/x/model")

``meta.json`` = ``{"format": 1, "system", "config", "extra", "lcmftn_version"}``; ``config`` is
what ``registry.build_generator_from_config`` takes. Design decisions:

* Weights are safetensors: loading never unpickles anything (no ``torch.load``).
* Frozen pretrained parts (LCMFTN's E_I) are inside ``model.safetensors``; loading does not need
  their original file.
* Atomic: everything is written to a temporary sibling directory, ``meta.json`` last, then the
  directory is renamed into place. An existing checkpoint at the same path is first renamed
  aside and deleted after the swap, so a crash leaves either the old or the new checkpoint (or,
  in the instant between the two renames, the old one under ``.<name>.old-*``).
* Every failure names the file and the problem (missing, not JSON, wrong format, tensors that do
  not fit the config).
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from torch import nn

import lcmftn

FORMAT = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "meta.json"


class CheckpointError(ValueError):
    """A checkpoint directory is missing, incomplete or corrupt (the message says which file)."""


def save_checkpoint(directory: str | Path, model: nn.Module, system: str, config: dict[str, Any],
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``directory/{model.safetensors, meta.json}`` atomically; returns ``directory``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    meta = {"format": FORMAT, "system": system, "config": config, "extra": dict(extra or {}),
            "lcmftn_version": lcmftn.__version__}
    try:
        meta_text = json.dumps(meta, indent=2, sort_keys=True)
    except TypeError as exc:
        raise ValueError(f"checkpoint {directory}: config/extra must be JSON-serialisable ({exc})") from exc
    # NOTE: clone() so tensors sharing storage (tied weights) do not trip safetensors.
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    old = None
    try:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"system": system, "format": str(FORMAT)})
        (tmp / META_FILE).write_text(meta_text)  # manifest last
        if directory.exists():
            old = directory.parent / f".{directory.name}.old-{uuid.uuid4().hex[:8]}"
            directory.rename(old)
        tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not directory.exists():
            old.rename(directory)  # the swap failed half way: put the previous checkpoint back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return directory


def read_meta(directory: str | Path) -> dict[str, Any]:
    """The validated ``meta.json`` of a checkpoint directory."""
    directory = Path(directory)
    if not directory.exists():
        raise CheckpointError(f"checkpoint {directory}: no such directory")
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint {directory}: not a directory (a checkpoint is a directory "
                              f"with {WEIGHTS_FILE} and {META_FILE})")
    path = directory / META_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: missing (incomplete or not a checkpoint directory)")
    return parse_meta(path.read_bytes(), str(path))


def parse_meta(data: bytes, source: str) -> dict[str, Any]:
    """The validated content of a ``meta.json`` whose bytes are ``data``; errors name ``source``
    (the user's path or URI, never a temporary copy)."""
    try:
        meta = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"checkpoint {source}: not UTF-8 text (byte {exc.start}: {exc.reason}); "
                              "is this really a meta.json?") from exc
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {source}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {source}: expected a JSON object")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {source}: unsupported format {meta.get('format')!r} (expected {FORMAT})")
    for key, tp in (("system", str), ("config", dict)):
        if not isinstance(meta.get(key), tp):
            raise CheckpointError(f"checkpoint {source}: field {key!r} missing or not a {tp.__name__}")
    meta.setdefault("extra", {})
    return meta


def validate_files(files: dict[str, bytes], source: str) -> dict[str, Any]:
    """Check a checkpoint held in memory (``{file name: bytes}``, e.g. staged from s3:// or the
    model registry) BEFORE any model is allocated: ``meta.json`` parses, its config is within
    :mod:`lcmftn.limits`, ``model.safetensors`` is complete and its tensors fit the config
    (checked on PyTorch's ``meta`` device). Errors name ``source/<file>``. Returns the meta."""
    from lcmftn.models import registry

    for name in (META_FILE, WEIGHTS_FILE):
        if name not in files:
            raise CheckpointError(f"checkpoint {source}: {name} missing")
    meta = parse_meta(files[META_FILE], f"{source}/{META_FILE}")
    try:
        cfg = registry.config_from_dict(meta["system"], meta["config"], f"{source}/{META_FILE}")
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {exc}") from exc
    shapes = safetensors_shapes(files[WEIGHTS_FILE], f"{source}/{WEIGHTS_FILE}")
    with torch.device("meta"):
        own = {k: tuple(v.shape) for k, v in registry._build(meta["system"], cfg, load_pretrained=False).state_dict().items()}
    _check_fit(own, shapes, f"{source}/{WEIGHTS_FILE}", meta["system"])
    return meta


def safetensors_shapes(data: bytes, source: str) -> dict[str, tuple[int, ...]]:
    """``{tensor name: shape}`` of a safetensors file's bytes, after checking the header parses
    and every tensor's byte range lies inside the file (a truncated copy fails here, named)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(data)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {source}: corrupt, truncated or not a safetensors file "
                              f"({len(data)} bytes; {exc})") from exc
    return {k: tuple(v.shape) for k, v in tensors.items()}


def _check_fit(own: dict[str, tuple], state: dict[str, tuple], path: str, system: str) -> None:
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shapes = [k for k in own if k in state and tuple(state[k]) != tuple(own[k])]
    if missing or unexpected or bad_shapes:
        raise CheckpointError(
            f"checkpoint {path}: tensors do not fit the {system} config in {META_FILE} "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {bad_shapes[:3]})"
        )


def load_checkpoint(directory: str | Path, map_location: str | torch.device = "cpu"
                    ) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the system from ``meta.json`` and load ``model.safetensors``; returns (model in
    eval mode on ``map_location``, meta)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from lcmftn.models import registry

    directory = Path(directory)
    meta = read_meta(directory)
    try:
        model = registry.build_generator_from_config(meta["system"], meta["config"], load_pretrained=False,
                                                     source=str(directory / META_FILE))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {directory / META_FILE}: cannot build the model ({exc})") from exc
    path = directory / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: missing")
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: corrupt or not a safetensors file ({exc})") from exc
    _check_fit({k: tuple(v.shape) for k, v in model.state_dict().items()},
               {k: tuple(v.shape) for k, v in state.items()}, str(path), meta["system"])
    model.load_state_dict(state)
    return model.to(map_location).eval(), meta
