"""LCMFTN: line-art correlation matching feature transfer for animation colorization.

The pure library (PyTorch/NumPy/OpenCV/pyarrow). It never imports ``ray``, ``mlflow`` or
``boto3`` at import time; those live in ``lcmftn.integrations`` (imported lazily) and in the
``workflows`` package (one Ray job per file).

Conventions shared by every module (so the pieces fit without adapters):

* Colour images as tensors: float32 ``[B, 3, H, W]`` RGB in ``[0, 1]``.
* Line art as tensors: float32 ``[B, 1, H, W]`` in ``[0, 1]``, black lines (0) on white paper (1).
* As NumPy arrays: colour ``uint8 [H, W, 3]`` RGB; line art ``uint8 [H, W]``, 255 = paper.
* A system (model or no-training reference) is called as ``G(s_p, c_p, s_n) -> c_e``.
"""

__version__ = "0.1.0"
