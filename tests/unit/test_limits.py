"""Bounded configuration before any allocation (lcmftn.limits) and the checkpoint/colorize/
recipe paths that use it; bad meta.json / truncated safetensors errors name the user's file."""

from __future__ import annotations

import dataclasses
import json

import pytest

from lcmftn import checkpoint, limits, recipes
from lcmftn.colorize import model_size
from lcmftn.models import registry


def _tiny_files(tmp_path):
    G = registry.build_generator("lcmftn", "tiny")
    d = checkpoint.save_checkpoint(tmp_path / "ckpt", G, "lcmftn", dataclasses.asdict(G.config))
    return d, {p.name: p.read_bytes() for p in d.iterdir()}


def test_env_overrides_and_validation(monkeypatch):
    monkeypatch.setenv("LCMFTN_LIMIT_MAX_ASPECT", "12.5")
    monkeypatch.setenv("LCMFTN_LIMIT_MAX_CHANNELS", "64")
    lim = limits.current()
    assert lim.max_aspect == 12.5 and lim.max_channels == 64
    monkeypatch.setenv("LCMFTN_LIMIT_MAX_BATCH", "lots")
    with pytest.raises(limits.LimitError, match="LCMFTN_LIMIT_MAX_BATCH='lots'"):
        limits.current()


@pytest.mark.parametrize("h,w,what", [(10, 4000, "aspect ratio"), (64, 1, "short side"),
                                      (4000, 10, "aspect ratio"), (20000, 20000, "long side")])
def test_extreme_frame_shapes_are_refused(h, w, what):
    with pytest.raises(limits.LimitError) as err:
        model_size(h, w, 256, 8, source="ep07/lineart.mp4")
    msg = str(err.value)
    assert "ep07/lineart.mp4" in msg and what in msg and "LCMFTN_LIMIT_" in msg and f"{w}x{h}" in msg


def test_model_resolution_bounds(monkeypatch):
    assert model_size(240, 320, 256, 8) == (256, 344)  # ordinary shapes unchanged
    with pytest.raises(limits.LimitError, match="--size.*100000.*max_image_side_px=4096"):
        model_size(240, 320, 100000, 8, source="--size")
    monkeypatch.setenv("LCMFTN_LIMIT_MAX_MODEL_PIXELS", "10000")
    with pytest.raises(limits.LimitError, match="max_model_pixels=10000"):
        model_size(240, 320, 256, 8)


def test_huge_widths_in_meta_json_are_refused_before_allocation(tmp_path):
    d, _ = _tiny_files(tmp_path)
    meta = json.loads((d / "meta.json").read_text())
    meta["config"]["enc_channels"] = [8, 16, 32, 10**6]
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(checkpoint.CheckpointError) as err:
        checkpoint.load_checkpoint(d)
    msg = str(err.value)
    assert str(d / "meta.json") in msg and "enc_channels" in msg and "max_channels=4096" in msg


def test_parameter_count_limit_counts_on_meta_device(monkeypatch):
    cfg = registry.generator_config("lcmftn", "paper")  # ~tens of M parameters
    monkeypatch.setenv("LCMFTN_LIMIT_MAX_PARAMETERS", "1000")
    with pytest.raises(limits.LimitError, match="parameter count"):
        limits.check_generator_config("lcmftn", cfg, "x/meta.json")


def test_bad_types_in_config_are_named(tmp_path):
    with pytest.raises(ValueError, match="m.json.*ru_blocks"):
        registry.config_from_dict("lcmftn", dict(dataclasses.asdict(registry.generator_config("lcmftn", "tiny")),
                                                 ru_blocks=["a", 1, 1]), "m.json")


@pytest.mark.parametrize("content,what", [(b"\xff\xfe\x00garbage", "not UTF-8"), (b"{not json", "not valid JSON"),
                                          (b"[1, 2]", "expected a JSON object")])
def test_garbage_meta_json_names_the_file(tmp_path, content, what):
    d, files = _tiny_files(tmp_path)
    (d / "meta.json").write_bytes(content)
    with pytest.raises(checkpoint.CheckpointError, match=what) as err:
        checkpoint.load_checkpoint(d)
    assert str(d / "meta.json") in str(err.value)
    with pytest.raises(checkpoint.CheckpointError, match=what) as err:
        checkpoint.validate_files(dict(files, **{"meta.json": content}), "s3://b/models/v3")
    assert "s3://b/models/v3/meta.json" in str(err.value)


def test_truncated_safetensors_names_the_users_path(tmp_path):
    d, files = _tiny_files(tmp_path)
    assert checkpoint.validate_files(files, "s3://b/models/v3")["system"] == "lcmftn"
    cut = dict(files, **{"model.safetensors": files["model.safetensors"][: len(files["model.safetensors"]) // 2]})
    with pytest.raises(checkpoint.CheckpointError, match="truncated") as err:
        checkpoint.validate_files(cut, "s3://b/models/v3")
    assert "s3://b/models/v3/model.safetensors" in str(err.value)
    other = registry.build_generator("lcmftn-nocmft", "tiny")  # tensors of another config
    d2 = checkpoint.save_checkpoint(tmp_path / "other", other, "lcmftn-nocmft", dataclasses.asdict(other.config))
    mixed = dict(files, **{"model.safetensors": (d2 / "model.safetensors").read_bytes()})
    with pytest.raises(checkpoint.CheckpointError, match="do not fit"):
        checkpoint.validate_files(mixed, "ckpt-dir")


def test_set_override_beyond_limit_names_the_key():
    with pytest.raises(limits.LimitError, match="--set image_size_px.*max_image_side_px"):
        recipes.apply_overrides(recipes.recipe("smoke"), ["image_size_px=999999"])
    with pytest.raises(limits.LimitError, match="--set batch_size_per_worker"):
        recipes.apply_overrides(recipes.recipe("smoke"), ["batch_size_per_worker=100000"])
