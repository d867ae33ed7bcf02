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
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path}: expected a JSON object")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: unsupported format {meta.get('format')!r} (expected {FORMAT})")
    for key, tp in (("system", str), ("config", dict)):
        if not isinstance(meta.get(key), tp):
            raise CheckpointError(f"checkpoint {path}: field {key!r} missing or not a {tp.__name__}")
    meta.setdefault("extra", {})
    return meta


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
        model = registry.build_generator_from_config(meta["system"], meta["config"], load_pretrained=False)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {directory / META_FILE}: cannot build the model ({exc})") from exc
    path = directory / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: missing")
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: corrupt or not a safetensors file ({exc})") from exc
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shapes = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or bad_shapes:
        raise CheckpointError(
            f"checkpoint {path}: tensors do not fit the {meta['system']} config in {META_FILE} "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {bad_shapes[:3]})"
        )
    model.load_state_dict(state)
    return model.to(map_location).eval(), meta
