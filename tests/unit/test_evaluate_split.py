"""Film-level split of the evaluation harness (``lcmftn.harness``, DESIGN §6) and the
DeepAnalogy baseline: no film, seed, cast or palette on both sides; DeepAnalogy on an
identical pair returns the reference exactly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lcmftn import harness, metrics
from lcmftn.models import registry
from tests.helpers.datasets import draw_shot

CFG = harness.SplitConfig(train_films=2, test_films=1, shots_per_film=2, shot_frames=12, size_px=32)


@pytest.fixture(scope="module")
def split():
    return harness.make_split(CFG)


def test_the_split_never_shares_a_film(split):
    train = {f.film for f in split.train}
    test = {f.film for f in split.test}
    assert len(train) == 2 and len(test) == 1 and not train & test
    assert {s.film for s in split.train_shots} == train and {s.film for s in split.test_shots} == test
    assert not {f.seed for f in split.train} & {f.seed for f in split.test}
    assert not set().union(*(f.palettes for f in split.train)) & set().union(*(f.palettes for f in split.test))
    assert not set().union(*(f.cast_ids for f in split.train)) & set().union(*(f.cast_ids for f in split.test))
    entries = split.manifest_films()
    assert {e["split"] for n, e in entries.items() if n in test} == {"test"}


def test_check_split_fails_when_a_film_is_on_both_sides(split):
    leaked = harness.FilmSplit(split.train, [*split.test, dataclasses.replace(split.train[0], split="test")])
    with pytest.raises(ValueError, match="on both sides"):
        harness.check_split(leaked)
    with pytest.raises(ValueError, match="other side"):
        harness.check_split(harness.FilmSplit(split.train, [dataclasses.replace(split.test[0], split="train")]))
    with pytest.raises(ValueError, match="overlap"):
        harness.make_split(dataclasses.replace(CFG, test_seed0=CFG.train_seed0 + 1))


def test_palettes_of_one_seed_are_shared_so_the_check_can_fail():
    # the same seed on both sides (other film name) shares its cast palettes: caught
    a = harness.generate_film(5, "train", dataclasses.replace(CFG, shots_per_film=1))
    b = dataclasses.replace(a, film="test-x", split="test", seed=6, cast_ids=["other"], shots=[])
    with pytest.raises(ValueError, match="palette"):
        harness.check_split(harness.FilmSplit([a], [b]))


def test_split_from_manifest(split):
    shots = [*split.train_shots, *split.test_shots]
    with pytest.raises(ValueError, match="no split"):
        harness.split_from_manifest(shots, {"films": {}}, "ds")
    films = {f.film: {"split": f.split, "cast": f.cast_ids} for f in [*split.train, *split.test]}
    got = harness.split_from_manifest(shots, {"films": films})
    assert {f.film for f in got.test} == {f.film for f in split.test}
    films[split.test[0].film]["cast"] = split.train[0].cast_ids
    with pytest.raises(ValueError, match="cast id"):
        harness.split_from_manifest(shots, {"films": films})


def _shot(frames=12, size=48):
    c, lineart, _ = draw_shot(np.random.default_rng(1), frames, size)
    color = torch.from_numpy(np.stack(c)).permute(0, 3, 1, 2).float() / 255
    return color, torch.from_numpy(np.stack(lineart))[:, None].float() / 255


def test_deep_analogy_reproduces_the_reference_on_an_identical_pair():
    G = registry.build_generator("deep-analogy", "small")
    color, line = _shot()
    out = G(line[:2], color[:2], line[:2])
    assert torch.equal(out, color[:2])
    # on a moved drawing it transfers colour better than copying the reference
    moved = G(line[:1], color[:1], line[4:5])
    assert metrics.psnr(moved, color[4:5]).item() > metrics.psnr(color[:1], color[4:5]).item() + 1.0
    field = G.match(line[:1], torch.roll(line[:1], 3, dims=3))
    assert (field[0, 1, 12:36, 12:36] == -3).float().mean() > 0.5  # the shift is found where ink is


def test_manifest_split_tags_and_ingest_option():
    from lcmftn.data.dataset_format import tag_film_entry
    from workflows import ingest

    e = tag_film_entry({"status": "ok"}, "test", ["a", "b"])
    assert e == {"status": "ok", "split": "test", "cast": ["a", "b"]}
    # no tag given: the previous entry's tags are kept (a re-ingest does not lose the split)
    assert tag_film_entry({"status": "ok"}, None, None, prev=e)["split"] == "test"
    with pytest.raises(ValueError, match="split must be one of"):
        tag_film_entry({}, "val", None)
    args = ingest.build_parser().parse_args(["--films", "x.mp4", "--out", "o", "--split", "train",
                                             "--cast", "hero,cat"])
    assert args.split == "train" and args.cast == "hero,cat"
    with pytest.raises(SystemExit):
        ingest.build_parser().parse_args(["--films", "x.mp4", "--out", "o", "--split", "val"])


def test_cpu_quality_recipe_trains_the_winner_over_the_evaluated_intervals():
    from lcmftn.recipes import recipe

    cfg = recipe("cpu-quality")
    assert cfg.system == "lcmftn-ours" and cfg.image_size_px == 64
    assert cfg.window.width_frames - 1 >= 10  # a pair spans at least the stride-10 step
    assert cfg.loss.lambda_vgg == 0 and cfg.loss.vgg_weights == "none"  # no VGG offline
    assert recipe("paper-256").window.width_frames == 40


class _FixedGate(torch.nn.Module):
    """A gated system whose parts are fixed: truth 0; base 0.2; T 0 on the left half, 0.5 on the
    right; the gate may open everywhere (change 1) and is 0.25 open."""

    def parts(self, s_p, c_p, s_n):
        B, _, H, W = s_n.shape
        base = torch.full((B, 3, H, W), 0.2)
        target = torch.zeros(B, 3, H, W)
        target[..., W // 2:] = 0.5
        gate = torch.full((B, 1, H, W), 0.25)
        return {"base": base, "target": target, "gate": gate, "change": torch.ones(B, 1, H, W),
                "out": base + gate * (target - base)}

    def forward(self, s_p, c_p, s_n):
        return self.parts(s_p, c_p, s_n)["out"]


def test_correction_headroom_scores_base_t_and_a_perfect_gate() -> None:
    from lcmftn.evaluation import EvalClip

    clip = EvalClip("x", 5, (0, 5, 10), torch.zeros(3, 3, 8, 8), torch.ones(3, 1, 8, 8))
    got = harness.correction_headroom(_FixedGate(), [clip], torch.device("cpu"))
    psnr = lambda mse: 10 * np.log10(1 / mse)  # noqa: E731
    row = got["s5"]
    assert row["base"] == pytest.approx(psnr(0.04))
    assert row["t_open"] == pytest.approx(psnr((0 + 0.25) / 2))
    assert row["oracle_gate"] == pytest.approx(psnr((0 + 0.04) / 2))  # T on the left, base on the right
    assert row["out"] == pytest.approx(psnr((0.15 ** 2 + 0.275 ** 2) / 2))
    assert row["changed"] == 1.0 and row["gate_changed"] == pytest.approx(0.25)
    assert "oracle_candidate" not in row  # no resampling model
    # systems without a gate: nothing
    assert harness.correction_headroom(registry.build_generator("copy-ref", "tiny"), [clip], torch.device("cpu")) == {}


def test_correction_headroom_of_the_resampling_model_has_the_candidate_oracle() -> None:
    from lcmftn.evaluation import EvalClip

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    color = torch.rand(1, 3, 32, 32, generator=g).repeat_interleave(4, 2).repeat_interleave(4, 3)[..., :32, :32]
    la = (torch.rand(1, 1, 32, 32, generator=g) > 0.9).float()
    frames = [torch.roll(t, (k, -k), dims=(2, 3)) for k in range(3) for t in (color, la)]
    clip = EvalClip("y", 1, (0, 1, 2), torch.cat(frames[0::2]), 1 - torch.cat(frames[1::2]))
    model = registry.build_generator("lcmftn-ours", "tiny").eval()
    row = harness.correction_headroom(model, [clip], torch.device("cpu"))["s1"]
    assert set(row) == {*harness.HEADROOM_ROWS, "changed", "gate_changed"}
    # a perfect pick of candidate within ±9 px finds a 1-2 px shift far better than any blend
    assert row["oracle_candidate"] > row["base"] + 3 and row["oracle_candidate"] > row["out"] + 3


def test_headroom_table_lists_gated_systems_only() -> None:
    from lcmftn import eval_tables as tab

    per_seed = {"lcmftn-ours": [{"headroom": {"s5": {"out": 20.0 + i, "base": 21.0, "t_open": 19.0,
                                                    "oracle_gate": 23.0, "oracle_candidate": 30.0,
                                                    "changed": 0.8, "gate_changed": 0.4}}} for i in (0, 1)],
                "flow-warp": [{"protocol": {"psnr": 21.0}}]}
    table = tab.headroom_table(tab.aggregate(per_seed), [5])
    assert "| lcmftn-ours | 5 | 20.50±0.50 | 21.00±0.00 | 19.00±0.00 | 23.00±0.00 | 30.00±0.00 | 0.80±0.00 | 0.40±0.00 |" in table
    assert "flow-warp" not in table
    assert tab.headroom_table(tab.aggregate({"flow-warp": per_seed["flow-warp"]}), [5]) == ""
