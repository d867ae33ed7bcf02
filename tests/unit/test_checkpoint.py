"""Checkpoint directories: round trip for every system, atomic overwrite, clear errors."""

from __future__ import annotations

import dataclasses
import json
import pickle

import pytest
import torch

from lcmftn.checkpoint import CheckpointError, load_checkpoint, read_meta, save_checkpoint
from lcmftn.models import registry
from lcmftn.models.lcmftn import SketchFeatureNet


def _inputs(S: int = 32):
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 1, S, S, generator=g), torch.rand(2, 3, S, S, generator=g), torch.rand(2, 1, S, S, generator=g)


def _save(tmp_path, system: str = "lcmftn", **overrides):
    torch.manual_seed(3)
    G = registry.build_generator(system, "tiny", **overrides).eval()
    path = save_checkpoint(tmp_path / "ckpt", G, system, dataclasses.asdict(G.config), extra={"epoch": 2})
    return G, path


@pytest.mark.parametrize("system", registry.SYSTEMS)
def test_round_trip(tmp_path, system: str) -> None:
    G, path = _save(tmp_path, system)
    assert sorted(p.name for p in path.iterdir()) == ["meta.json", "model.safetensors"]
    model, meta = load_checkpoint(path)
    assert meta["format"] == 1 and meta["system"] == system and meta["extra"] == {"epoch": 2}
    assert type(model) is type(G) and model.config == G.config and not model.training
    with torch.no_grad():
        torch.testing.assert_close(model(*_inputs()), G(*_inputs()), atol=0, rtol=0)
    for k, v in G.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, atol=0, rtol=0)


def test_e_i_weights_travel_inside_the_checkpoint(tmp_path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(4)
    ei_file = tmp_path / "i2v.safetensors"
    save_file({k: v.contiguous() for k, v in SketchFeatureNet().state_dict().items()}, str(ei_file))
    G, path = _save(tmp_path, "lcmftn", e_i_weights=str(ei_file))
    ei_file.unlink()  # the checkpoint must not need the original file
    model, _ = load_checkpoint(path)
    torch.testing.assert_close(model.e_i.conv4_2.weight, G.e_i.conv4_2.weight)
    with torch.no_grad():
        torch.testing.assert_close(model(*_inputs()), G(*_inputs()))


def test_overwrite_is_atomic_and_leaves_no_temporaries(tmp_path) -> None:
    _save(tmp_path, "lcmftn")
    G2 = registry.build_generator("tcvc", "tiny")
    save_checkpoint(tmp_path / "ckpt", G2, "tcvc", dataclasses.asdict(G2.config))
    assert read_meta(tmp_path / "ckpt")["system"] == "tcvc"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    with pytest.raises(ValueError, match="JSON-serialisable"):
        save_checkpoint(tmp_path / "other", G2, "tcvc", {"x": object()})
    assert not (tmp_path / "other").exists() and [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_a_swap_failing_half_way_puts_the_old_checkpoint_back(tmp_path, monkeypatch) -> None:
    import pathlib

    _save(tmp_path, "lcmftn")
    real_rename = pathlib.Path.rename

    def rename(self, target):  # the old checkpoint moves aside, then the new one cannot move in
        if self.name.startswith(".ckpt.tmp-"):
            raise OSError("disk gone")
        return real_rename(self, target)

    monkeypatch.setattr(pathlib.Path, "rename", rename)
    G2 = registry.build_generator("tcvc", "tiny")
    with pytest.raises(OSError, match="disk gone"):
        save_checkpoint(tmp_path / "ckpt", G2, "tcvc", dataclasses.asdict(G2.config))
    monkeypatch.undo()
    assert read_meta(tmp_path / "ckpt")["system"] == "lcmftn"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_missing_and_corrupt_files(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no such directory"):
        load_checkpoint(tmp_path / "nope")
    _, path = _save(tmp_path)
    (path / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="model.safetensors: corrupt"):
        load_checkpoint(path)
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors: missing"):
        load_checkpoint(path)
    (path / "meta.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="meta.json: not valid JSON"):
        load_checkpoint(path)
    (path / "meta.json").unlink()
    with pytest.raises(CheckpointError, match="meta.json: missing"):
        load_checkpoint(path)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(CheckpointError, match="file.txt: not a directory"):
        load_checkpoint(tmp_path / "file.txt")


def test_meta_problems(tmp_path) -> None:
    _, path = _save(tmp_path)
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "format": 7}))
    with pytest.raises(CheckpointError, match="unsupported format 7"):
        load_checkpoint(path)
    (path / "meta.json").write_text(json.dumps({**meta, "system": "nope"}))
    with pytest.raises(CheckpointError, match="cannot build the model.*unknown system"):
        load_checkpoint(path)
    small = dataclasses.asdict(registry.generator_config("lcmftn", "small"))
    (path / "meta.json").write_text(json.dumps({**meta, "config": small}))
    with pytest.raises(CheckpointError, match="tensors do not fit the lcmftn config.*wrong shape"):
        load_checkpoint(path)


def test_never_unpickles(tmp_path) -> None:
    _, path = _save(tmp_path)

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    (path / "model.safetensors").write_bytes(pickle.dumps({"w": Boom()}))
    with pytest.raises(CheckpointError, match="corrupt or not a safetensors"):
        load_checkpoint(path)
