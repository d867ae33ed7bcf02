"""Issue 10: the generator as an MLflow pyfunc model (log -> register -> alias -> load_model ->
predict), the dataset linked to the run, and workflows.promote's decision both ways — against a
real sqlite MLflow store."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from lcmftn import checkpoint as ckpt_io
from lcmftn.integrations import tracking
from lcmftn.models import registry
from workflows import promote

pytestmark = pytest.mark.integration


@pytest.fixture
def ckpt_dir(tmp_path):
    model = registry.build_generator("lcmftn", "tiny")
    cfg = registry.generator_config("lcmftn", "tiny")
    return ckpt_io.save_checkpoint(tmp_path / "ckpt", model, "lcmftn", asdict(cfg),
                                   extra={"train_config": {"image_size_px": 32}})


def test_pyfunc_round_trip_and_colorize_resolution(mlflow_tracking, ckpt_dir, tmp_path):
    import mlflow

    from lcmftn.colorize import ColorizeConfig, colorize_shot
    from lcmftn.integrations import pyfunc_model

    run = tracking.start_run("exp", "pyfunc")
    digest = tracking.log_dataset(run, str(tmp_path / "data"), {"version": 1, "films": {"f": {"version": "v1"}}},
                                  tracking_uri=mlflow_tracking)
    version = tracking.register_checkpoint(run, ckpt_dir, "lcmftn-p", alias="champion")
    client = mlflow.MlflowClient(tracking_uri=mlflow_tracking)
    inputs = client.get_run(run).inputs.dataset_inputs
    assert [d.dataset.digest for d in inputs] == [digest] and len(digest) == 32
    assert client.get_run(run).data.tags["data.digest"] == digest
    assert client.get_model_version("lcmftn-p", version).tags["format"].startswith("mlflow-pyfunc")

    # MLFLOW_TRACKING_URI (the fixture) is also the registry: no global set_*_uri that would leak
    m = mlflow.pyfunc.load_model("models:/lcmftn-p@champion")
    sig = m.metadata.signature
    assert sig is not None and sig.inputs.input_names() == list(pyfunc_model.INPUT_NAMES)
    ex = pyfunc_model.input_example((32, 48))
    batch = {k: np.concatenate([v, v[:, ::-1]]) for k, v in ex.items()}  # two different pairs
    out = m.predict(batch, params={"image_size_px": 32})
    assert out["color"].shape == (2, 32, 48, 3) and out["color"].dtype == np.uint8
    assert out["confidence"].shape[0] == 2 and 0 <= out["confidence"].min() <= out["confidence"].max() <= 1
    # the same numbers as the colorize job's model step with the checkpoint itself
    system, _ = ckpt_io.load_checkpoint(ckpt_dir)
    frames, _, _ = colorize_shot(system, [batch["lineart_prev"][1], batch["lineart_cur"][1]],
                                 {0: batch["color_prev"][1]},
                                 ColorizeConfig(mode="chain", image_size_px=32,
                                                multiple_of=registry.multiple_of("lcmftn")), holds=[False, False])
    np.testing.assert_array_equal(out["color"][1], frames[1])
    with pytest.raises(Exception, match="lineart_cur|color_prev"):
        m.predict({"lineart_prev": ex["lineart_prev"]})
    # colorize --model models:/... takes the weights out of the pyfunc model
    path = tracking.resolve_model_uri("models:/lcmftn-p@champion", tmp_path / "dl")
    assert path.name == "checkpoint" and (path / "model.safetensors").is_file()
    from workflows.colorize import load_model_files

    files = load_model_files("models:/lcmftn-p@champion", tmp_path / "w")
    assert json.loads(files["meta.json"])["system"] == "lcmftn"


def _version_with(client, name, ckpt_dir, val_psnr, digest="d1"):
    run = tracking.start_run("exp", f"train-{val_psnr}", resume=False)
    tracking.log_metrics(run, {"val/psnr": val_psnr - 3.0}, step=1)
    tracking.log_metrics(run, {"val/psnr": val_psnr}, step=2)  # the last value counts
    tracking.set_tags(run, {"data.digest": digest})
    return tracking.register_checkpoint(run, ckpt_dir, name, as_pyfunc=False)


def test_promote_moves_champion_only_when_better(mlflow_tracking, mlflow_client, ckpt_dir, tmp_path, capsys):
    name = "lcmftn-promo"
    v1 = _version_with(mlflow_client, name, ckpt_dir, 20.0)
    assert promote.main([name, "--candidate", v1]) == 0  # no champion: the candidate becomes it
    assert str(mlflow_client.get_model_version_by_alias(name, "champion").version) == v1
    assert "no @champion" in mlflow_client.get_model_version(name, v1).tags["promotion.reason"]

    v2 = _version_with(mlflow_client, name, ckpt_dir, 19.5)  # worse: champion stays
    assert promote.main([name, "--candidate", v2]) == 3
    assert str(mlflow_client.get_model_version_by_alias(name, "champion").version) == v1
    tags = mlflow_client.get_model_version(name, v2).tags
    assert tags["promotion.decision"] == "rejected" and "does not beat" in tags["promotion.reason"]
    assert tags["promotion.champion_version"] == v1 and float(tags["promotion.candidate_value"]) == 19.5

    v3 = _version_with(mlflow_client, name, ckpt_dir, 21.0)  # better, within the margin: stays
    assert promote.main([name, "--candidate", v3, "--min-delta", "2"]) == 3
    ev = tmp_path / "eval"
    ev.mkdir()
    (ev / "eval.json").write_text(json.dumps({"modes": {"chain": {"psnr": 22.5, "ssim": 0.8, "per_frame": [
        {"i": 1, "shot": "s", "offset": 1, "kind": "model", "psnr": 22.5, "ssim": 0.8}]}}}))
    assert promote.main([name, "--candidate", v3, "--eval", str(ev)]) == 0  # better: promoted
    assert str(mlflow_client.get_model_version_by_alias(name, "champion").version) == v3
    assert mlflow_client.get_model_version(name, v1).tags["promotion.replaced_by"] == v3
    run3 = mlflow_client.get_model_version(name, v3).run_id
    assert mlflow_client.get_run(run3).data.metrics["eval/psnr/chain"] == 22.5
    assert "evaluation/per_frame_chain.json" in {f.path for f in mlflow_client.list_artifacts(run3, "evaluation")}

    v4 = _version_with(mlflow_client, name, ckpt_dir, 30.0, digest="other")  # other val data
    assert promote.main([name, "--candidate", v4]) == 3
    assert "not comparable" in mlflow_client.get_model_version(name, v4).tags["promotion.reason"]
    assert promote.main([name, "--candidate", "99"]) == 2
    capsys.readouterr()


def test_decide_rules():
    c = {"version": "2", "metrics": {"val/psnr": 25.0}}
    assert promote.decide(c, None)[0]
    assert promote.decide(c, {"version": "1", "metrics": {"val/psnr": 24.0}}) [0]
    assert not promote.decide(c, {"version": "1", "metrics": {"val/psnr": 25.0}})[0]  # ties keep the champion
    assert not promote.decide(c, {"version": "2", "metrics": {"val/psnr": 1.0}})[0]
    with pytest.raises(ValueError, match="candidate"):
        promote.decide({"version": "2", "metrics": {}}, None)
    with pytest.raises(ValueError, match="--force"):
        promote.decide(c, {"version": "1", "metrics": {}})
    assert promote.decide(c, {"version": "1", "metrics": {}}, force=True)[0]
