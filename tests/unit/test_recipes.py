"""Recipes, --set overrides and the dict round trip used at the Ray boundary."""

from __future__ import annotations

import dataclasses

import pytest

from lcmftn.recipes import (
    RECIPES,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    flatten_config,
    recipe,
)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipes_are_valid_and_round_trip(name):
    cfg = recipe(name)
    assert cfg.recipe == name
    assert config_from_dict(dataclasses.asdict(cfg)) == cfg


def test_paper_recipe_has_the_paper_settings():
    cfg = recipe("paper-256")
    assert cfg.image_size_px == 256 and cfg.batch_size_per_worker == 2 and cfg.epochs == 40
    assert (cfg.optim.lr, cfg.optim.beta1, cfg.optim.beta2) == (1e-4, 0.5, 0.9)
    assert (cfg.loss.lambda_l1, cfg.loss.lambda_vgg) == (10.0, 2e-2)
    assert (cfg.window.width_frames, cfg.window.stride_frames) == (40, 5)
    assert cfg.val.strides_frames == (1, 5, 10)


def test_unknown_recipe_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown recipe 'nope'.*smoke"):
        recipe("nope")


def test_overrides_are_typed_and_nested():
    cfg = apply_overrides(recipe("smoke"), [
        "optim.lr=3e-4", "window.width_frames=20", "augment=false", "val.strides_frames=1,5",
        "loss.vgg_weights=none", "loss.lambda_vgg=0", "system=tcvc",
    ])
    assert cfg.optim.lr == 3e-4 and isinstance(cfg.optim.lr, float)
    assert cfg.window.width_frames == 20 and cfg.augment is False
    assert cfg.val.strides_frames == (1, 5) and cfg.system == "tcvc"
    assert cfg.loss.vgg_weights == "none" and cfg.loss.lambda_vgg == 0.0


@pytest.mark.parametrize("item, message", [
    ("optim.lrr=1", "unknown config key 'optim.lrr'"),
    ("optim.lr=fast", "optim.lr: expected a float"),
    ("epochs=1.5", "epochs: expected an int"),
    ("augment=maybe", "expected a bool"),
    ("optim=1", "is a section"),
    ("noequals", "must look like key=value"),
    ("system=copy-ref", "non-trainable system 'copy-ref'"),
    ("epochs=0", "epochs must be >= 1"),
    ("window.width_frames=1", "width_frames must be >= 2"),
])
def test_bad_overrides_name_the_key(item, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(recipe("smoke"), [item])


def test_flatten_config_gives_dotted_scalar_params():
    flat = flatten_config(recipe("cpu-small"))
    assert flat["optim.lr"] == recipe("cpu-small").optim.lr
    assert flat["window.width_frames"] == 12
    assert flat["val.strides_frames"] == "1,5,10"
    assert all(isinstance(v, (bool, int, float, str)) or v is None for v in flat.values())
    # every leaf field appears once
    n_leaves = sum(len(dataclasses.fields(getattr(TrainConfig(), f.name)))
                   if dataclasses.is_dataclass(getattr(TrainConfig(), f.name)) else 1
                   for f in dataclasses.fields(TrainConfig))
    assert len(flat) == n_leaves


def test_config_from_dict_rejects_unknown_keys():
    data = dataclasses.asdict(recipe("smoke"))
    data["optim"]["momentum"] = 0.9
    with pytest.raises(ValueError, match="momentum"):
        config_from_dict(data)
