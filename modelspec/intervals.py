"""Prediction intervals: normalised split conformal, the contract shared by training and serving.

The network's scale head predicts, for each row, the log of the typical size of its error in
dollars, ``b(x)`` (a Laplace scale: fitted to the absolute residuals of the rows trained on,
with the point estimate's weights frozen, so the point never changes). Calibration then uses
rows the model never trained on -- the early-stopping holdout of the training split, never the
validation split, which only measures:

* each calibration row's score is its normalised residual ``|y - y_hat| / b(x)``;
* for a coverage ``c``, the quantile ``q_c`` is the ``ceil((n + 1) c)``-th smallest of the
  ``n`` scores (split conformal's finite-sample rule);
* a row's interval is ``[max(0, y_hat - q_c b(x)), y_hat + q_c b(x)]`` (both ends clipped at
  $0), with ``b(x)`` clamped to the scales seen on the calibration rows.

If calibration rows and new rows are exchangeable, the interval holds a new row's true value
with probability at least ``c``; the report measures it on the validation split. ``b(x)`` makes
the width adapt to the row: narrow where the model has been accurate, wide where it has not.
The manifest records ``q_c`` for each coverage in ``COVERAGES``, so a request can choose its
coverage without a recompile.

Why this method rather than conformalised quantile regression: one extra output of the last
layer (Linear only, so the device graph keeps the operators the NeuronCore is known to take),
a point estimate left exactly as it was, and one table of numbers for every coverage, where
quantile regression needs two outputs per coverage.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

# The coverages a request may ask for: the manifest holds a quantile for each.
COVERAGES: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99)
METHOD = "split conformal, residuals normalised by the scale head"
# Largest |compiled - eager| allowed for a row's log-scale, at compile and again at the server's
# warm-up: interval widths within 0.01%.
LOG_SCALE_TOLERANCE = 1e-4


class IntervalCalibration(BaseModel):
    """The manifest's ``intervals``: each coverage's conformal quantile of normalised residuals."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = METHOD
    calibration_rows: int = Field(ge=1)
    # The power training raised the head's scales to before calibrating (already in its
    # weights: a record, not something serving applies).
    scale_exponent: float = Field(default=1.0, gt=0)
    # The smallest and largest scale (dollars) on the calibration rows. Serving clamps every
    # row's scale to it: beyond, the head extrapolates where nothing measured it (a row far
    # outside the data could otherwise get an infinite range).
    scale_range: tuple[float, float]
    coverages: list[float] = Field(min_length=1)
    quantiles: list[float] = Field(min_length=1)

    @model_validator(mode="after")
    def _aligned(self) -> IntervalCalibration:
        if len(self.coverages) != len(self.quantiles):
            raise ValueError("coverages and quantiles must have the same length")
        if sorted(self.coverages) != self.coverages or not all(0 < c < 1 for c in self.coverages):
            raise ValueError("coverages must be ascending, each in (0, 1)")
        if sorted(self.quantiles) != self.quantiles or not all(
            math.isfinite(q) and q > 0 for q in self.quantiles
        ):
            raise ValueError("quantiles must be finite, positive and ascending")
        low, high = self.scale_range
        if not (0 < low <= high and math.isfinite(high)):
            raise ValueError("scale_range must be finite and positive, low <= high")
        return self

    def quantile(self, coverage: float) -> float:
        """``q_c`` of a coverage in the table (KeyError naming the table otherwise)."""
        for c, q in zip(self.coverages, self.quantiles, strict=True):
            if c == coverage:
                return q
        raise KeyError(f"coverage {coverage} is not one of {self.coverages}")


def conformal_quantile(scores: np.ndarray, coverage: float) -> float:
    """The ``ceil((n + 1) coverage)``-th smallest score; ValueError when there are too few
    scores for that coverage (the rank would pass ``n``)."""
    n = len(scores)
    rank = math.ceil((n + 1) * coverage)
    if not 1 <= rank <= n:
        raise ValueError(f"{n} calibration scores are too few for coverage {coverage}")
    return float(np.partition(np.asarray(scores, dtype=np.float64), rank - 1)[rank - 1])


def calibrate(
    actual: np.ndarray,
    point: np.ndarray,
    scale: np.ndarray,
    coverages: tuple[float, ...],
    scale_exponent: float = 1.0,
) -> IntervalCalibration:
    """The table for ``coverages`` from calibration rows: true values, points and scales, all
    in dollars."""
    scores = normalised_residuals(actual, point, scale)
    return IntervalCalibration(
        calibration_rows=len(scores),
        scale_exponent=scale_exponent,
        scale_range=(float(np.min(scale)), float(np.max(scale))),
        coverages=list(coverages),
        quantiles=[conformal_quantile(scores, c) for c in coverages],
    )


def normalised_residuals(actual: np.ndarray, point: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(actual, np.float64) - point) / np.asarray(scale, np.float64)


def bounds(point: np.ndarray, scale: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray]:
    """Each row's interval, ``(low, high)`` in dollars; neither is below $0."""
    half = q * np.asarray(scale, np.float64)
    return np.maximum(point - half, 0.0), np.maximum(point + half, 0.0)
