"""A calibrated per-pixel confidence map: which pixels of a coloured frame are likely wrong.

Issue 10 part 2. The CMFT attention map does not find the large-error pixels (pixel AUROC < 0.5
on the demo model), so the map written to ``confidence/`` when a calibration exists is a small
logistic model of *P(pixel error > large_error)* over features that colorize has at run time and
that are causally tied to error:

- ``drift``: log(1 + frames from the keyframe the colour chain starts at) (drift; per frame),
- ``change_key``: the line-art change keyframe -> frame (blurred |S_key - S_n|): where the drawing
  is no longer the keyframe's, the colour there came through many model steps,
- ``change_ref``: the line-art change reference -> frame (blurred |S_ref - S_n|),
- ``warp_residual``: |S_n - S_ref warped by the optical flow S_n -> S_ref| (blurred): what the
  flow does not explain (new/occluded drawing),
- ``flow_mag``: the flow's length (px; fast motion),
- ``out_vs_warp``: |output - C_ref warped by that flow| (blurred, mean over RGB): the model
  departs from the motion-compensated reference,
- ``out_vs_key``: |output - keyframe colour at the same pixel|,
- ``palette``: distance of the output colour to the nearest colour of the keyframe (quantised
  palette): in cel animation a colour the keyframe does not have is a wrong colour,
- ``out_std``: local std of the output colour (blur / mixed colours),
- ``line_dist``: log(1 + distance to the nearest line of S_n) (px),
- ``attn``: 1 - CMFT attention confidence where the system has one (else 0).

Every feature is a float32 ``[h, w]`` map at model resolution. :class:`PixelModel` stores the
feature names, their training means/stds and the logistic weights (fitted in NumPy on a pixel
subsample of the synthetic *training* films, ``python -m workflows.benchmark confidence``);
``confidence = 1 - P(large error)``. Pure NumPy / OpenCV (no Ray, no MLflow).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lcmftn.models.baselines import _to_u8, dense_flow, warp_with_flow

PIXEL_FEATURES = ("drift", "change_key", "change_ref", "warp_residual", "flow_mag",
                  "out_vs_warp", "out_vs_key", "palette", "out_std", "line_dist", "attn")
"""Names of the per-pixel features :func:`pixel_features` computes (module docstring)."""

FLOW_BLUR_PX = 1.5  # blur of the line arts before the flow (as lcmftn-ours)
PALETTE_LEVELS = 8  # quantisation levels per RGB channel of the keyframe palette


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(x.astype(np.float32), (0, 0), sigma) if sigma > 0 else x.astype(np.float32)


def _palette(key_rgb: np.ndarray, min_share: float = 0.002) -> np.ndarray:
    """Centres [P, 3] (in [0, 1]) of the quantised colours covering ≥ ``min_share`` of the keyframe."""
    q = np.clip((key_rgb * PALETTE_LEVELS).astype(np.int64), 0, PALETTE_LEVELS - 1).reshape(-1, 3)
    codes = (q[:, 0] * PALETTE_LEVELS + q[:, 1]) * PALETTE_LEVELS + q[:, 2]
    counts = np.bincount(codes, minlength=PALETTE_LEVELS ** 3)
    used = np.flatnonzero(counts >= max(1, min_share * len(codes)))
    # the mean keyframe colour of each used bin (not the bin centre): exact for flat colours
    flat = key_rgb.reshape(-1, 3).astype(np.float64)
    sums = np.stack([np.bincount(codes, flat[:, ch], PALETTE_LEVELS ** 3) for ch in range(3)], 1)
    return (sums[used] / counts[used, None]).astype(np.float32)


def palette_distance(out_rgb: np.ndarray, key_rgb: np.ndarray) -> np.ndarray:
    """[h, w]: L2 distance (RGB in [0, 1]) of each output colour to the keyframe's palette."""
    pal = _palette(key_rgb)
    px = out_rgb.reshape(-1, 3).astype(np.float32)
    # |p - c|^2 = |p|^2 + |c|^2 - 2 p.c: one [N, P] matrix product
    d2 = (px * px).sum(1, keepdims=True) + (pal * pal).sum(1)[None] - 2.0 * (px @ pal.T)
    return np.sqrt(np.maximum(d2.min(1), 0.0)).reshape(out_rgb.shape[:2])


def pixel_features(s_ref: np.ndarray, c_ref: np.ndarray, s_n: np.ndarray, out: np.ndarray,
                   s_key: np.ndarray, c_key: np.ndarray, distance: int,
                   attention: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every :data:`PIXEL_FEATURES` map ``[h, w]`` float32 of one model frame.

    ``s_*``: line art [h, w] in [0, 1] (1 = paper) of the reference, the target and the keyframe
    its chain starts from; ``c_ref``, ``c_key``, ``out``: RGB [h, w, 3] in [0, 1]; ``distance``:
    frames from that keyframe; ``attention``: the system's confidence map [h, w] or None."""
    h, w = s_n.shape
    f32 = np.float32
    s_ref, s_n, s_key = (np.asarray(a, f32) for a in (s_ref, s_n, s_key))
    c_ref, c_key, out = (np.asarray(a, f32) for a in (c_ref, c_key, out))
    a_n, a_r = _to_u8(s_n, FLOW_BLUR_PX), _to_u8(s_ref, FLOW_BLUR_PX)
    flow = dense_flow(a_n, a_r)  # s_n(p) ≈ s_ref(p + flow(p))
    warped = warp_with_flow(np.ascontiguousarray(np.dstack([c_ref, s_ref])), flow)
    w_c, w_s = warped[..., :3], warped[..., 3]
    gray = out.mean(2)
    var = _blur(gray * gray, 1.0) - _blur(gray, 1.0) ** 2
    lines = (s_n < 0.5).astype(np.uint8)
    if lines.any():
        line_dist = cv2.distanceTransform(1 - lines, cv2.DIST_L2, 3)
    else:
        line_dist = np.full((h, w), float(max(h, w)), f32)
    feats = {
        "drift": np.full((h, w), np.log1p(max(0, int(distance))), f32),
        "change_key": _blur(np.abs(s_key - s_n), 2.0),
        "change_ref": _blur(np.abs(s_ref - s_n), 2.0),
        "warp_residual": _blur(np.abs(s_n - w_s), 2.0),
        "flow_mag": np.linalg.norm(flow, axis=2),
        "out_vs_warp": _blur(np.abs(out - w_c).mean(2), 1.0),
        "out_vs_key": _blur(np.abs(out - c_key).mean(2), 1.0),
        "palette": _blur(palette_distance(out, c_key), 1.0),
        "out_std": np.sqrt(np.maximum(var, 0.0)),
        "line_dist": np.log1p(line_dist),
        "attn": (np.zeros((h, w), f32) if attention is None
                      else 1.0 - np.asarray(attention, f32)),
    }
    return {k: feats[k].astype(f32) for k in PIXEL_FEATURES}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 50) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method: ``(weights [F], bias)`` of
    ``P(y) = sigmoid(x @ w + b)`` for ``x`` [N, F] (standardised) and ``y`` [N] bool."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64).ravel()
    n, f = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    theta = np.zeros(f + 1)
    reg = np.full(f + 1, l2 * n)
    reg[-1] = 0.0  # no penalty on the bias
    for _ in range(iters):
        p = _sigmoid(xb @ theta)
        grad = xb.T @ (p - y) + reg * theta
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(reg) + 1e-9 * np.eye(f + 1)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return theta[:-1], float(theta[-1])


@dataclass(frozen=True)
class PixelModel:
    """Logistic P(large error) over standardised :data:`PIXEL_FEATURES` z (module docstring):
    ``logit = bias + sum_i w_i z_i [+ sum_i v_i z_i z_int]``; with ``interaction`` (a feature
    name, e.g. ``line_dist``) ``weights`` holds the F linear weights then the F weights of the
    products with that feature (near a line and away from lines the features mean different things)."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    large_error: float = 0.1
    interaction: str | None = None

    def __post_init__(self) -> None:
        unknown = [f for f in self.features if f not in PIXEL_FEATURES]
        n = len(self.features)
        nw = 2 * n if self.interaction else n
        if self.interaction is not None and self.interaction not in self.features:
            unknown.append(self.interaction)
        if unknown or not n or not (len(self.mean) == len(self.std) == n) or len(self.weights) != nw:
            raise ValueError(f"bad pixel model: unknown features {unknown} or {n} features with "
                             f"{len(self.mean)}/{len(self.std)}/{len(self.weights)} mean/std/weights")

    def error_probability(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        """P(error > large_error) per pixel, same shape as the feature maps."""
        z = [(np.asarray(feats[name], np.float64) - m) / s
             for name, m, s in zip(self.features, self.mean, self.std, strict=True)]
        n = len(z)
        logit = np.full(z[0].shape, self.bias, np.float64)
        for zi, wt in zip(z, self.weights[:n], strict=True):
            logit += wt * zi
        if self.interaction:
            zint = z[self.features.index(self.interaction)]
            for zi, wt in zip(z, self.weights[n:], strict=True):
                logit += wt * zi * zint
        return _sigmoid(logit).astype(np.float32)

    def confidence(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        """``1 - P(large error)`` [h, w] float32 in [0, 1] (1 = sure)."""
        return 1.0 - self.error_probability(feats)

    def to_dict(self) -> dict:
        return {"features": list(self.features), "mean": list(self.mean), "std": list(self.std),
                "weights": list(self.weights), "bias": self.bias, "large_error": self.large_error,
                "interaction": self.interaction}

    @staticmethod
    def from_dict(d: dict) -> PixelModel:
        return PixelModel(tuple(d["features"]), tuple(float(v) for v in d["mean"]),
                          tuple(float(v) for v in d["std"]), tuple(float(v) for v in d["weights"]),
                          float(d["bias"]), float(d.get("large_error", 0.1)), d.get("interaction"))


def fit_pixel_model(feats: dict[str, np.ndarray], bad: np.ndarray, features: tuple[str, ...] | None = None,
                    large_error: float = 0.1, l2: float = 1e-3, interaction: str | None = None) -> PixelModel:
    """Fit :class:`PixelModel` on sampled pixels: ``feats[name]`` [N] and labels ``bad`` [N]
    (``interaction``: also the products of every standardised feature with that one)."""
    names = tuple(features or PIXEL_FEATURES)
    if interaction is not None and interaction not in names:
        raise ValueError(f"interaction feature {interaction!r} is not among {names}")
    x = np.stack([np.asarray(feats[n], np.float64).ravel() for n in names], 1)
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-9, std, 1.0)
    z = (x - mean) / std
    if interaction is not None:
        z = np.hstack([z, z * z[:, [names.index(interaction)]]])
    wts, bias = fit_logistic(z, np.asarray(bad, bool), l2=l2)
    return PixelModel(names, tuple(float(v) for v in mean), tuple(float(v) for v in std),
                      tuple(float(v) for v in wts), bias, float(large_error), interaction)
