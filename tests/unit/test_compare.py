"""``python -m workflows.benchmark compare``: every system trained from one recipe and scored on
the same held-out clips with the paper protocol; copy-ref is the protocol's own copy baseline."""

from __future__ import annotations

import json
import math

import pytest

from tests.helpers.datasets import write_tiny_dataset
from workflows.benchmark import __main__ as bench_main
from workflows.benchmark import compare

SYSTEMS = ("lcmftn", "tcvc", "copy-ref")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    # 48-frame shots so stride 10 (frames t0 .. t0+40) fits in a held-out shot.
    data = write_tiny_dataset(tmp / "data", shots_per_film=4, frames_per_shot=48, size_px=32,
                              seed=3)
    out = tmp / "compare.json"
    rc = bench_main.main(["compare", "--data", str(data), "--recipe", "smoke", "--epochs", "1",
                          "--steps", "2", "--systems", ",".join(SYSTEMS), "--json", str(out)])
    assert rc == 0
    return json.loads(out.read_text())


def test_every_system_is_scored_on_the_paper_strides(result):
    assert list(result["systems"]) == list(SYSTEMS)
    assert result["strides"] == [1, 5, 10]
    assert result["counts"]["eval_sequences"] >= 3
    for name, e in result["systems"].items():
        m = e["metrics"]
        for s in (1, 5, 10):
            for k in (1, 2, 3, 4):
                assert math.isfinite(m[f"psnr/s{s}_k{k}"]) and 0 <= m[f"ssim/s{s}_k{k}"] <= 1
            assert math.isfinite(m[f"psnr/s{s}"]), name
            # equal counts per position: the pooled stride figure is the mean over k
            mean_k = sum(m[f"psnr/s{s}_k{k}"] for k in (1, 2, 3, 4)) / 4
            assert m[f"psnr/s{s}"] == pytest.approx(mean_k)
        assert math.isfinite(e["psnr"]) and math.isfinite(e["ssim"])


def test_trainable_systems_were_trained_with_the_same_recipe(result):
    for name in ("lcmftn", "tcvc"):
        e = result["systems"][name]
        assert e["trainable"] and e["steps"] == 2 and e["epochs"] == 1
        assert e["params"] > 0 and e["train_seconds"] > 0
        assert math.isfinite(e["final_loss"])
    assert result["systems"]["tcvc"]["discriminator_params"] > 0
    cr = result["systems"]["copy-ref"]
    assert not cr["trainable"] and cr["params"] == 0 and cr["steps"] == 0


def test_copy_ref_equals_the_protocol_copy_baseline_on_the_same_clips(result):
    cr = result["systems"]["copy-ref"]["metrics"]
    keys = [k for k in cr if k.startswith("psnr/s")]
    assert keys
    for k in keys:
        assert cr[k] == pytest.approx(cr[f"copyref_{k}"], abs=1e-6)
    assert cr["psnr"] == pytest.approx(result["copyref"]["copyref_psnr"], abs=1e-6)
    # every system saw the same clips: the same copy baseline everywhere
    for e in result["systems"].values():
        assert e["metrics"]["copyref_psnr"] == pytest.approx(cr["copyref_psnr"], abs=1e-9)
    # ...and a trained model is scored on its own output, not the reference
    assert result["systems"]["lcmftn"]["psnr"] != pytest.approx(cr["psnr"], abs=1e-3)


def test_table_and_bad_system(result, capsys, tmp_path):
    table = compare.format_table(result)
    for name in SYSTEMS:
        assert f"| {name} |" in table
    assert "S=10 PSNR/SSIM" in table
    rc = compare.main(["--data", str(tmp_path), "--systems", "lcmftn,nope"])
    assert rc == 2
    assert "nope" in capsys.readouterr().err
