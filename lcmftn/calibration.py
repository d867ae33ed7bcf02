"""Calibrated frame confidence: raw score -> expected PSNR, and the flag rule (pure NumPy).

Issue 10 part 2. A raw per-frame score (higher = more trustworthy; e.g. the CMFT attention
confidence, or minus the line-art change between the keyframe and the target) is mapped to the
*expected PSNR* of the frame by isotonic regression (pool-adjacent-violators, non-decreasing)
fitted on synthetic training films, where the truth is known (``python -m workflows.benchmark
confidence``). Flag rule: a frame is flagged for review when its expected PSNR is at or below
``flag_psnr_db``, the ``flag_quantile`` (default 10 %) worst tail of the training frames, so a
minority of frames is flagged and the flag means "this frame is expected to be among the worst".

``Calibration.pixel`` (optional; files written before it load with ``None``) holds the calibrated
per-pixel map, a :class:`lcmftn.pixel_confidence.PixelModel`: with it colorize writes
``1 - P(pixel error > 0.1)`` to ``confidence/`` and the frame's ``conf``/``low`` come from that map.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

CALIBRATION_FILE = "confidence_calibration.json"
"""Name of the calibration beside a checkpoint's ``model.safetensors`` / ``meta.json``."""


FEATURES = {
    "conf": lambda conf, low, change, dist: conf,  # CMFT attention confidence (frame mean)
    "low": lambda conf, low, change, dist: low,  # fraction of low-confidence pixels
    "change": lambda conf, low, change, dist: change,  # line-art change keyframe -> frame
    "distance": lambda conf, low, change, dist: float(dist),  # frames from the keyframe
    "change_x_distance": lambda conf, low, change, dist: change * np.log1p(dist),  # drift proxy
    "conf_x_stable": lambda conf, low, change, dist: conf * (1.0 - change),
}
"""Raw per-frame scores a calibration can use, from a frame's ``(conf, low, change, distance)``
(``lcmftn.colorize.FrameInfo``: ``conf_mean``, ``low_fraction``, ``change``, ``distance``).
Which one (and its direction, ``Calibration.sign``) is chosen on the training films."""


def frame_feature(name: str, conf: float, low: float, change: float, distance: int = 0) -> float:
    """The raw score ``name`` (:data:`FEATURES`) of one frame; ValueError for an unknown name."""
    if name not in FEATURES:
        raise ValueError(f"unknown confidence feature {name!r}; known: {sorted(FEATURES)}")
    return float(FEATURES[name](conf, low, change, distance))


def isotonic_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-decreasing least-squares fit of ``y`` on ``x`` (pool adjacent violators).

    Returns knots ``(xs, ys)``: block mean positions and values, for :func:`numpy.interp`."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    if x.shape != y.shape or len(x) == 0:
        raise ValueError(f"isotonic_fit: {x.shape} x vs {y.shape} y")
    order = np.argsort(x, kind="mergesort")
    xs, ys = x[order], y[order]
    vals: list[float] = []
    wts: list[float] = []
    xsum: list[float] = []
    for xi, yi in zip(xs, ys, strict=True):
        vals.append(yi)
        wts.append(1.0)
        xsum.append(xi)
        while len(vals) > 1 and vals[-2] > vals[-1]:  # merge violating neighbours
            w = wts[-2] + wts[-1]
            v = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / w
            xm = xsum[-2] + xsum[-1]
            del vals[-1], wts[-1], xsum[-1]
            vals[-1], wts[-1], xsum[-1] = v, w, xm
    knots_x = np.array(xsum) / np.array(wts)
    return knots_x, np.array(vals)


@dataclass(frozen=True)
class Calibration:
    """A fitted map from a raw frame score to expected PSNR (dB) plus the flag threshold.

    feature: which raw score (``lcmftn.colorize`` per-frame field, e.g. ``conf`` or ``change``
    with ``sign = -1``: higher change = worse); knots_x / knots_psnr_db: the isotonic knots;
    flag_psnr_db: flag a frame when its expected PSNR is at or below this; flag_quantile: the
    training-frame quantile it was set at; fitted_on: a description of the training films."""

    feature: str
    sign: float
    knots_x: tuple[float, ...]
    knots_psnr_db: tuple[float, ...]
    flag_psnr_db: float
    flag_quantile: float
    fitted_on: str = ""
    # lcmftn.pixel_confidence.PixelModel.to_dict(): the calibrated per-pixel map (None in files
    # written before it existed: the map stays the system's own / the line-change proxy)
    pixel: dict | None = None

    @property
    def pixel_model(self):
        """The :class:`lcmftn.pixel_confidence.PixelModel`, or None."""
        if self.pixel is None:
            return None
        from lcmftn.pixel_confidence import PixelModel

        return PixelModel.from_dict(self.pixel)

    def expected_psnr(self, raw: np.ndarray | float) -> np.ndarray:
        """Expected PSNR (dB) of frames with raw score(s) ``raw``."""
        return np.interp(self.sign * np.asarray(raw, np.float64), self.knots_x, self.knots_psnr_db)

    def flag(self, raw: np.ndarray | float) -> np.ndarray:
        """True where a frame is in the expected-worst tail (module docstring)."""
        return self.expected_psnr(raw) <= self.flag_psnr_db

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @staticmethod
    def from_json(text: str | bytes, source: str = "calibration") -> Calibration:
        """Parse :meth:`to_json` output; ValueError naming ``source`` when it is not one."""
        try:
            d = json.loads(text)
            d["knots_x"], d["knots_psnr_db"] = tuple(d["knots_x"]), tuple(d["knots_psnr_db"])
            cal = Calibration(**d)
        except (ValueError, TypeError, KeyError) as err:
            raise ValueError(f"{source}: not a confidence calibration ({type(err).__name__}: {err})") from None
        if cal.feature not in FEATURES or len(cal.knots_x) != len(cal.knots_psnr_db) or not cal.knots_x:
            raise ValueError(f"{source}: bad calibration (feature {cal.feature!r}, "
                             f"{len(cal.knots_x)}/{len(cal.knots_psnr_db)} knots)")
        try:
            cal.pixel_model  # noqa: B018 - validates the pixel model
        except (ValueError, TypeError, KeyError) as err:
            raise ValueError(f"{source}: bad pixel model ({type(err).__name__}: {err})") from None
        return cal


def fit_calibration(feature: str, raw: np.ndarray, psnr_db: np.ndarray, sign: float = 1.0,
                    flag_quantile: float = 0.1, fitted_on: str = "", pixel: dict | None = None) -> Calibration:
    """Fit :class:`Calibration` of ``psnr_db`` on ``sign * raw`` (isotonic) and set the flag
    threshold at the ``flag_quantile`` of the fitted expected PSNR of the training frames."""
    raw, psnr_db = np.asarray(raw, np.float64), np.asarray(psnr_db, np.float64)
    kx, ky = isotonic_fit(sign * raw, psnr_db)
    cal = Calibration(feature, float(sign), tuple(float(v) for v in kx), tuple(float(v) for v in ky),
                      0.0, float(flag_quantile), fitted_on)
    thr = float(np.quantile(cal.expected_psnr(raw), flag_quantile))
    return Calibration(feature, float(sign), cal.knots_x, cal.knots_psnr_db, thr, float(flag_quantile),
                       fitted_on, pixel)
