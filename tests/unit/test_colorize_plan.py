"""Shot planning (chain / anchor / auto, holds) and the lockstep scheduler (pure, seconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lcmftn.colorize import (
    ColorizeConfig,
    LockstepScheduler,
    ShotColorizer,
    Step,
    colorize_shot,
    model_size,
    plan_shot,
    shot_sizes,
)
from lcmftn.models.base import ColorizationSystem


def steps(plan: list[Step]) -> list[tuple[int, int, str]]:
    return [(s.target, s.ref, s.kind) for s in plan]


def test_chain_forward_from_first_frame():
    assert steps(plan_shot(4, [0], "chain")) == [(0, 0, "key"), (1, 0, "model"), (2, 1, "model"), (3, 2, "model")]


def test_chain_backward_before_first_key_and_resets_at_keys():
    got = steps(plan_shot(6, [2, 4], "chain"))
    assert got == [
        (2, 2, "key"), (4, 4, "key"),
        (3, 2, "model"), (5, 4, "model"),
        (1, 2, "model"), (0, 1, "model"),
    ]


def test_anchor_nearest_key_ties_earlier():
    got = steps(plan_shot(7, [1, 5], "anchor"))
    assert got == [
        (1, 1, "key"), (5, 5, "key"),
        (0, 1, "model"), (2, 1, "model"), (3, 1, "model"), (4, 5, "model"), (6, 5, "model"),
    ]


def test_auto_both_directions_meet_in_middle():
    got = steps(plan_shot(8, [1, 6], "auto"))
    assert got == [
        (1, 1, "key"), (6, 6, "key"),
        (2, 1, "model"), (3, 2, "model"), (7, 6, "model"),  # 3 is a tie (2 vs 3): forward
        (5, 6, "model"), (4, 5, "model"), (0, 1, "model"),
    ]


def test_holds_become_copies_in_the_direction_of_travel():
    holds = [False, False, True, False, False, True]
    assert steps(plan_shot(6, [0], "chain", holds)) == [
        (0, 0, "key"), (1, 0, "model"), (2, 1, "copy"), (3, 2, "model"), (4, 3, "model"), (5, 4, "copy"),
    ]
    # backwards from key 5: frame 4 is coloured from 5 ("copy" iff holds[5]), 1 from 2 iff holds[2]
    assert steps(plan_shot(6, [5], "auto", holds)) == [
        (5, 5, "key"), (4, 5, "copy"), (3, 4, "model"), (2, 3, "model"), (1, 2, "copy"), (0, 1, "model"),
    ]
    assert steps(plan_shot(4, [0], "anchor", [False, True, True, False])) == [
        (0, 0, "key"), (1, 0, "copy"), (2, 1, "copy"), (3, 0, "model"),
    ]


def test_every_ref_precedes_its_target():
    rng = np.random.default_rng(0)
    for mode in ("chain", "anchor", "auto"):
        for _ in range(20):
            n = int(rng.integers(1, 30))
            keys = sorted(set(rng.integers(0, n, size=int(rng.integers(1, 4))).tolist()))
            plan = plan_shot(n, keys, mode, rng.random(n) < 0.3)
            done: set[int] = set()
            for s in plan:
                assert s.kind == "key" or s.ref in done, (mode, keys, s)
                done.add(s.target)
            assert done == set(range(n))


def test_plan_errors():
    with pytest.raises(ValueError, match="mode"):
        plan_shot(3, [0], "sideways")
    with pytest.raises(ValueError, match="at least one keyframe"):
        plan_shot(3, [], "chain")
    with pytest.raises(ValueError, match="outside"):
        plan_shot(3, [3], "chain")


def test_model_size_keeps_aspect_and_multiple():
    assert model_size(480, 640, 256, 8) == (256, 344)
    assert model_size(64, 64, 64, 8) == (64, 64)
    h, w = model_size(1080, 1920, 256, 32)
    assert h % 32 == 0 and w % 32 == 0 and abs(w / h - 16 / 9) < 0.1


def test_shot_sizes_pad_keeps_the_aspect_round_squeezes_it():
    pad = ColorizeConfig(image_size_px=32, multiple_of=8)
    assert pad.fit == "pad"
    assert shot_sizes(480, 640, pad) == ((32, 43), (32, 48))  # 4:3 kept to the pixel, input padded
    assert shot_sizes(64, 64, ColorizeConfig(image_size_px=64)) == ((64, 64), (64, 64))  # nothing to pad
    rnd = ColorizeConfig(image_size_px=32, multiple_of=8, fit="round")
    assert shot_sizes(480, 640, rnd) == ((32, 40), (32, 40))  # the former behaviour
    with pytest.raises(ValueError, match="fit must be one of"):
        shot_sizes(480, 640, ColorizeConfig(fit="crop"))


class CornerSystem(ColorizationSystem):
    """Test system: needs multiples of 8 (as every LCMFTN), returns C_p with the padded margin
    painted red — so an output that is not cropped back at the right place shows red."""

    system = "test-corner"
    trainable = False

    def __init__(self, h: int, w: int) -> None:
        super().__init__()
        self.h, self.w = h, w
        self.shapes: list[tuple[int, int]] = []

    def forward(self, s_p, c_p, s_n):
        H, W = s_n.shape[-2:]
        assert H % 8 == 0 and W % 8 == 0, (H, W)
        self.shapes.append((H, W))
        out = c_p.clone()
        out[:, 0, self.h:, :] = 1.0
        out[:, 1:, self.h:, :] = 0.0
        out[:, 0, :, self.w:] = 1.0
        out[:, 1:, :, self.w:] = 0.0
        return out


def test_padded_model_input_is_cropped_back_at_the_frame_aspect():
    # 30 x 41 frames at 30 px: model resolution 30 x 41 exactly, the system sees 32 x 48
    lineart = [np.full((30, 41), 255, np.uint8) for _ in range(3)]
    for i, img in enumerate(lineart):
        img[:, 5 + 3 * i] = 0
    key = np.zeros((30, 41, 3), np.uint8)
    key[:, :20] = (40, 160, 90)
    key[:, 20:] = (200, 200, 60)
    system = CornerSystem(30, 41)
    cfg = ColorizeConfig(mode="chain", image_size_px=30, multiple_of=8)
    frames, stats, _ = colorize_shot(system, lineart, {0: key}, cfg)
    assert system.shapes == [(32, 48), (32, 48)]
    assert stats["model_size_hw"] == [30, 41] and stats["model_input_hw"] == [32, 48]
    for f in frames[1:]:
        assert f.shape == (30, 41, 3)
        red = (f[..., 0] > 150) & (f[..., 1] < 60) & (f[..., 2] < 60)
        assert not red.any()  # the padded margin never reaches the output
        away = np.ones((30, 41), bool)  # away from the colour edge (x = 20) and every line (x = 5, 8, 11)
        for x in (5, 8, 11, 20):
            away[:, max(0, x - 3):x + 4] = False
        assert np.abs(f[away].astype(int) - key[away].astype(int)).max() <= 2  # same place, same colour
    # the former behaviour: the model resolution itself rounded to 32 x 40 (aspect squeezed)
    system = CornerSystem(32, 40)
    _, stats, _ = colorize_shot(system, lineart, {0: key}, ColorizeConfig(mode="chain", image_size_px=30,
                                                                        multiple_of=8, fit="round"))
    assert stats["model_size_hw"] == stats["model_input_hw"] == [32, 40]
    assert system.shapes == [(32, 40), (32, 40)]


class ShiftSystem(ColorizationSystem):
    """Test system: the reference colour, darkened a little (so chains are visible)."""

    system = "test-shift"
    trainable = False

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def forward(self, s_p, c_p, s_n):
        self.calls.append(c_p.shape[0])
        return c_p * 0.9


def _shot(n: int, size: int = 32, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = np.full((size, size), 255, np.uint8)
        x = int(rng.integers(2, size - 2))
        img[:, x] = 0
        out.append(img)
    return out


def test_colorize_shot_chain_holds_and_keys():
    lineart = _shot(5)
    lineart[3] = lineart[2].copy()
    key = np.full((32, 32, 3), 200, np.uint8)
    cfg = ColorizeConfig(mode="chain", image_size_px=32, multiple_of=8)
    frames, stats, conf = colorize_shot(ShiftSystem(), lineart, {0: key}, cfg, holds=[False, False, False, True, False])
    assert len(frames) == 5
    np.testing.assert_array_equal(frames[0], key)
    assert frames[3] is frames[2] or np.array_equal(frames[3], frames[2])
    assert (stats["colorized"], stats["copied"], stats["key"]) == (3, 1, 1)
    # chained darkening on paper pixels: 200 -> 180 -> 162 ; frame 4 from copied frame 3 -> 146
    paper = lineart[4] == 255
    assert abs(int(frames[4][paper][:, 0].max()) - 146) <= 1
    assert set(conf) == {1, 2, 3, 4}  # proxy confidence for model frames + the copy


def test_lockstep_batches_one_frame_per_shot_and_matches_single_runs():
    cfg = ColorizeConfig(mode="chain", image_size_px=32, multiple_of=8)
    key = np.full((32, 32, 3), 120, np.uint8)
    lens = [4, 6, 3]
    sys_ = ShiftSystem()
    shots = [ShotColorizer(_shot(n, seed=i), {0: key}, cfg, name=f"s{i}") for i, n in enumerate(lens)]
    done: list[str] = []
    stats = LockstepScheduler(sys_, batch_size=3, pad_batches=False).run(shots, lambda s: done.append(s.name))
    assert sorted(done) == ["s0", "s1", "s2"]
    assert stats.model_frames == sum(n - 1 for n in lens)
    assert sys_.calls[0] == 3 and max(sys_.calls) <= 3  # first call: one frame of each shot
    assert stats.model_calls == max(lens) - 1
    for i, n in enumerate(lens):
        single, _, _ = colorize_shot(ShiftSystem(), _shot(n, seed=i), {0: key}, cfg)
        for a, b in zip(single, [shots[i].frames[t] for t in range(n)], strict=True):
            np.testing.assert_array_equal(a, b)


def test_lockstep_pads_and_refills_with_threads():
    cfg = ColorizeConfig(mode="anchor", image_size_px=32, multiple_of=8)
    key = np.full((32, 32, 3), 90, np.uint8)
    shots = [ShotColorizer(_shot(5, seed=i), {0: key}, cfg) for i in range(5)]
    sys_ = ShiftSystem()
    st = LockstepScheduler(sys_, batch_size=4, max_active_shots=2, finalize_threads=2).run(iter(shots))
    assert set(sys_.calls) == {4}  # always padded to B
    assert st.model_frames == 5 * 4 and st.shots == 5
    assert all(len(s.frames) == 5 for s in shots)


def test_model_confidence_is_used_when_given():
    class Conf(ShiftSystem):
        def forward_with_confidence(self, s_p, c_p, s_n):
            return self(s_p, c_p, s_n), torch.full_like(s_n, 0.25)

    frames, stats, conf = colorize_shot(Conf(), _shot(3), {0: np.zeros((32, 32, 3), np.uint8)}, ColorizeConfig(image_size_px=32))
    assert stats["confidence"] == pytest.approx(0.25, abs=1e-3)
    assert stats["flagged"] == [1, 2]
    assert int(conf[1].max()) == 64


def test_lockstep_benchmark_runs_without_ray_or_pyav():
    """The GPU box has torch/numpy/opencv only: the lockstep benchmark must not import Ray/PyAV."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, json\n"
        "from workflows.benchmark.colorize import main\n"
        "main(['lockstep', '--size', '32', '--model-size', 'tiny', '--batch-size', '2', '--frames', '3',"
        " '--shots', '2', '--iters', '2'])\n"
        "bad = [m for m in ('ray', 'av', 'mlflow', 'boto3', 'scenedetect') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    row = json.loads(res.stdout.strip().splitlines()[-1])["rows"][0]
    assert row["batch_size"] == 2 and row["frames"] == 4 and row["lockstep_fps"] > 0 and row["model_only_fps"] > 0


def test_keyframe_index_uses_the_image_folder_rule(tmp_path):
    """read_keyframes takes a key's frame index from the same rule that orders image folders
    (lcmftn.data.video.frame_index_from_name): '²' is not a decimal digit, so 'key_3²' is 3."""
    import cv2

    from lcmftn.data.video import frame_index_from_name, list_image_files
    from lcmftn.episode import read_keyframes

    img = np.full((8, 8, 3), 200, np.uint8)
    for name in ("key_3².png", "000005.png", "ref.png"):
        ok, buf = cv2.imencode(".png", img)
        buf.tofile(str(tmp_path / name))
    keys, warnings, errors = read_keyframes(tmp_path, 10, (8, 8))
    assert sorted(keys) == [3, 5] and not warnings
    assert sorted(keys) == sorted(i for f in list_image_files(tmp_path)
                                  if (i := frame_index_from_name(f.stem)) >= 0)
    assert len(errors) == 1 and "ref.png" in errors[0] and "no frame index" in errors[0]


def test_output_write_is_atomic_and_names_the_file(tmp_path):
    from lcmftn.integrations.storage import StorageError
    from lcmftn.jobs import Output

    out = Output(str(tmp_path))
    out.write("frames/000001.png", b"png")
    assert (tmp_path / "frames" / "000001.png").read_bytes() == b"png"
    (tmp_path / "frames" / "000002.png").mkdir()  # cannot be replaced by a file
    with pytest.raises(StorageError, match="000002.png"):
        out.write("frames/000002.png", b"png")
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["000001.png",
                                                                        "000002.png"]


def test_calibrated_flag_rule_flags_the_expected_worst_tail():
    """With a calibration (lcmftn.calibration) a frame is flagged when its expected PSNR is at or
    below the threshold: here expected PSNR falls with the distance from the keyframe."""
    from lcmftn.calibration import fit_calibration

    dist = np.arange(1, 11)
    cal = fit_calibration("distance", dist, 30.0 - dist, sign=-1.0, flag_quantile=0.2)
    cfg = ColorizeConfig(mode="chain", image_size_px=32, multiple_of=8, calibration_json=cal.to_json())
    _, stats, _ = colorize_shot(ShiftSystem(), _shot(12), {0: np.full((32, 32, 3), 200, np.uint8)}, cfg)
    frames = {f["i"]: f for f in stats["per_frame"]}
    assert [frames[i]["distance"] for i in range(12)] == list(range(12))
    assert frames[9]["expected_psnr"] == pytest.approx(21.0) and frames[11]["expected_psnr"] == 20.0  # clamped and "expected_psnr" not in frames[0]
    assert cal.flag_psnr_db == pytest.approx(21.8)  # 20 % quantile of the training 29..20 dB
    assert stats["flagged"] == [9, 10, 11]  # expected 21, 20, 20 (clamped) dB <= 21.8
    # without a calibration the fraction rule still applies
    _, plain, _ = colorize_shot(ShiftSystem(), _shot(12), {0: np.full((32, 32, 3), 200, np.uint8)},
                                ColorizeConfig(mode="chain", image_size_px=32, multiple_of=8))
    assert "expected_psnr" not in plain["per_frame"][5]
