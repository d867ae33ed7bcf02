"""The generator as an MLflow ``python_function`` model (issue 10; imports ``mlflow``).

    m = mlflow.pyfunc.load_model("models:/lcmftn@champion")
    out = m.predict({"lineart_prev": s_p, "lineart_cur": s_n, "color_prev": c_p})
    out["color"]        # uint8 [N, H, W, 3] RGB: C_n = G(S_p, C_p, S_n)
    out["confidence"]   # float32 [N, h, w] in [0, 1] at model resolution (1 = sure)

Input (one frame pair per row, N >= 1, all at the same H x W):

* ``lineart_prev``: uint8 ``[N, H, W]`` line art of the reference frame (``S_p``; dark lines on
  white paper, as the colorize job reads line-art frames);
* ``lineart_cur``:  uint8 ``[N, H, W]`` line art of the frame to colour (``S_n``);
* ``color_prev``:   uint8 ``[N, H, W, 3]`` RGB colour of the reference frame (``C_p``).

Param ``image_size_px`` (int, 0 = the checkpoint's training size): the model resolution's short
side. Each pair is coloured exactly as the colorize job colours a model step (paper §3 inference;
resized to model resolution, then :func:`lcmftn.upsample.guided_upsample` back to H x W), with
:func:`lcmftn.colorize.colorize_shot` on a two-frame shot.

The model directory holds ``artifacts/checkpoint/`` — an :mod:`lcmftn.checkpoint` directory
(``model.safetensors`` + ``meta.json``), so :func:`tracking.resolve_model_uri` also takes the
weights out of it without MLflow's loader. Loading needs ``lcmftn`` importable (the class below
is pickled by reference).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

CHECKPOINT_KEY = "checkpoint"
"""Key of the checkpoint directory in the pyfunc model's ``artifacts``."""
INPUT_NAMES = ("lineart_prev", "lineart_cur", "color_prev")


def signature():
    """Tensor input/output schema + the ``image_size_px`` param."""
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

    u8 = np.dtype(np.uint8)
    inputs = Schema([TensorSpec(u8, (-1, -1, -1), "lineart_prev"), TensorSpec(u8, (-1, -1, -1), "lineart_cur"),
                     TensorSpec(u8, (-1, -1, -1, 3), "color_prev")])
    outputs = Schema([TensorSpec(u8, (-1, -1, -1, 3), "color"),
                      TensorSpec(np.dtype(np.float32), (-1, -1, -1), "confidence")])
    return ModelSignature(inputs=inputs, outputs=outputs,
                          params=ParamSchema([ParamSpec("image_size_px", "integer", 0)]))


def input_example(size_hw: tuple[int, int] = (32, 48)) -> dict[str, np.ndarray]:
    """A one-pair example: a white page with a square moving one pixel, coloured red."""
    h, w = size_hw
    s_p = np.full((1, h, w), 255, np.uint8)
    s_n = s_p.copy()
    s_p[0, 8:20, 8:20] = 0
    s_p[0, 10:18, 10:18] = 255
    s_n[0, 8:20, 9:21] = 0
    s_n[0, 10:18, 11:19] = 255
    c_p = np.full((1, h, w, 3), 240, np.uint8)
    c_p[0, 10:18, 10:18] = (220, 30, 30)
    return {"lineart_prev": s_p, "lineart_cur": s_n, "color_prev": c_p}


def _validate(model_input: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(model_input, dict) or set(INPUT_NAMES) - set(model_input):
        got = sorted(model_input) if isinstance(model_input, dict) else type(model_input).__name__
        raise ValueError(f"lcmftn pyfunc: input must be a dict with {list(INPUT_NAMES)}, got {got}")
    s_p, s_n, c_p = (np.asarray(model_input[k]) for k in INPUT_NAMES)
    if s_p.ndim != 3 or s_p.shape != s_n.shape or c_p.shape != (*s_p.shape, 3):
        raise ValueError(f"lcmftn pyfunc: want lineart_prev/lineart_cur [N, H, W] and color_prev [N, H, W, 3]; "
                         f"got {s_p.shape}, {s_n.shape}, {c_p.shape}")
    if s_p.shape[0] == 0:
        raise ValueError("lcmftn pyfunc: empty batch")
    return s_p.astype(np.uint8), s_n.astype(np.uint8), c_p.astype(np.uint8)


class LcmftnPyfunc(mlflow.pyfunc.PythonModel):
    """Colours frame pairs with the checkpoint in ``artifacts/checkpoint`` (CPU, or CUDA when
    available)."""

    # The signature is explicit (a dict of TensorSpecs, signature()), which type hints cannot
    # express: skip MLflow 3's type-hint wrapping of predict (PythonModel.__init_subclass__,
    # mlflow/pyfunc/model.py), which would only warn "Add type hints to the `predict` method".
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:  # MLflow callback
        import torch

        from lcmftn.checkpoint import load_checkpoint

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.system, self.meta = load_checkpoint(context.artifacts[CHECKPOINT_KEY], map_location=self.device)

    def predict(self, context, model_input, params=None):  # MLflow callback (untyped on purpose)
        from lcmftn.colorize import ColorizeConfig, colorize_shot
        from lcmftn.models.registry import multiple_of

        s_p, s_n, c_p = _validate(model_input)
        size = int((params or {}).get("image_size_px") or 0) or training_size_px(self.meta)
        cfg = ColorizeConfig(mode="chain", image_size_px=size, multiple_of=multiple_of(self.meta["system"]))
        colors, confs = [], []
        for i in range(s_p.shape[0]):
            frames, _stats, conf = colorize_shot(self.system, [s_p[i], s_n[i]], {0: c_p[i]}, cfg,
                                                 holds=[False, False], device=self.device)
            colors.append(frames[1])
            confs.append(conf[1].astype(np.float32) / 255.0)
        return {"color": np.stack(colors), "confidence": np.stack(confs)}


def training_size_px(meta: dict, default: int = 256) -> int:
    """The checkpoint's training resolution (``extra.train_config.image_size_px``) or ``default``."""
    return int(((meta.get("extra") or {}).get("train_config") or {}).get("image_size_px") or default)


def save(checkpoint_dir: str | Path, path: str | Path, pip_requirements: list[str] | None = None) -> Path:
    """Write the pyfunc model directory for ``checkpoint_dir`` at ``path`` (must not exist)."""
    import lcmftn

    checkpoint_dir = Path(checkpoint_dir)
    meta = json.loads((checkpoint_dir / "meta.json").read_text())
    if pip_requirements is None:  # explicit: MLflow's inference would import-trace the model
        import torch

        pip_requirements = [f"lcmftn=={lcmftn.__version__}", f"torch=={torch.__version__.split('+')[0]}",
                            f"mlflow=={mlflow.__version__}", "numpy", "safetensors", "opencv-python-headless"]
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pyfunc-ckpt-") as tmp:
        # MLflow keeps an artifact folder's base name: stage it as ``checkpoint`` for a stable path.
        staged = shutil.copytree(checkpoint_dir, Path(tmp) / CHECKPOINT_KEY)
        mlflow.pyfunc.save_model(
            path=str(path), python_model=LcmftnPyfunc(), artifacts={CHECKPOINT_KEY: str(staged)},
            signature=signature(), input_example=(input_example(), {"image_size_px": 32}),
            pip_requirements=pip_requirements,
            metadata={"system": meta.get("system"), "lcmftn_format": "checkpoint-dir"})
    return Path(path)


def checkpoint_in(model_dir: str | Path) -> Path:
    """The checkpoint directory inside a downloaded pyfunc model directory (from ``MLmodel``)."""
    import yaml

    model_dir = Path(model_dir)
    try:
        spec = yaml.safe_load((model_dir / "MLmodel").read_text())
        rel = spec["flavors"]["python_function"]["artifacts"][CHECKPOINT_KEY]["path"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        raise ValueError(f"{model_dir / 'MLmodel'}: not an lcmftn pyfunc model (no python_function "
                         f"artifact {CHECKPOINT_KEY!r}: {type(e).__name__} {e})") from e
    return model_dir / rel
