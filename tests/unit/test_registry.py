"""The system registry: one SystemSpec record per system, read by every user."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from lcmftn import losses, recipes
from lcmftn.models import registry

ROOT = Path(__file__).resolve().parents[2]


def test_records_hold_the_per_system_facts():
    assert registry.SYSTEMS == ("lcmftn", "lcmftn-nocmft", "pix2pix-ref", "tcvc", "lcmftn-cosine",
                                "lcmftn-ours", "copy-ref", "flow-warp", "deep-analogy")
    assert registry.TRAINABLE == recipes.SYSTEMS_TRAINABLE == (
        "lcmftn", "lcmftn-nocmft", "pix2pix-ref", "tcvc", "lcmftn-cosine", "lcmftn-ours")
    assert registry.GAN_SYSTEMS == ("pix2pix-ref", "tcvc")
    assert {s: registry.multiple_of(s) for s in registry.SYSTEMS} == {
        "lcmftn": 8, "lcmftn-nocmft": 8, "pix2pix-ref": 1, "tcvc": 4, "lcmftn-cosine": 8,
        "lcmftn-ours": 8, "copy-ref": 1, "flow-warp": 1, "deep-analogy": 1}
    assert {s: registry.spec(s).d_lr_ratio for s in registry.GAN_SYSTEMS} == {"pix2pix-ref": 1.0, "tcvc": 0.1}
    assert {s: registry.spec(s).d_condition_channels for s in registry.GAN_SYSTEMS} == {"pix2pix-ref": 5, "tcvc": 4}
    assert [s for s in registry.SYSTEMS if registry.spec(s).blank_reference] == ["tcvc"]
    with pytest.raises(ValueError, match="unknown system 'nope'"):
        registry.spec("nope")
    with pytest.raises(dataclasses.FrozenInstanceError):
        registry.spec("tcvc").multiple_of = 2  # type: ignore[misc]


@pytest.mark.parametrize("system", registry.GAN_SYSTEMS)
def test_discriminator_sees_the_registered_condition(system):
    s = torch.zeros(2, 1, 32, 32)
    c = torch.ones(2, 3, 32, 32)
    cond = losses.discriminator_condition(system, s, c, s)
    assert cond.shape[1] == registry.spec(system).d_condition_channels
    d = registry.build_discriminator(system, "tiny")
    assert d is not None and d(cond, c).dim() == 4


def test_no_system_facts_outside_the_registry():
    """System names compared in code (``== "tcvc"``, ``in ("pix2pix-ref", ...)``) mean a fact
    lives outside its SystemSpec record."""
    pat = re.compile(r"""(==|!=|\bin)\s*\(?\s*["'](lcmftn-nocmft|pix2pix-ref|tcvc|copy-ref|flow-warp)["']""")
    hits = []
    for d in ("lcmftn", "workflows"):
        for f in sorted((ROOT / d).rglob("*.py")):
            if f.name == "registry.py":
                continue
            for i, line in enumerate(f.read_text().splitlines(), 1):
                if pat.search(line):
                    hits.append(f"{f.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not hits, "read the fact from lcmftn.models.registry.spec(system) instead:\n" + "\n".join(hits)
