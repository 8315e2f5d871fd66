"""Prediction intervals in training: fit the scale head, calibrate it, and measure the result.

``fit_scale_head`` fits the network's scale head (``modelspec.intervals`` says what it means)
by the Laplace likelihood of the absolute residuals of the rows trained on, with every other
weight frozen: the point estimate is exactly what it was. ``calibrate_on`` tempers the head
(``temper_scale_head``) and computes the conformal table, both on the early-stopping holdout.
``interval_figures`` measures, on the validation split, what the report shows: coverage and
width at a few coverages, coverage by ``ocean_proximity`` and by predicted-price quintile, and
the same for constant-width split conformal (the same rule with every scale 1: what a generic
library gives).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from modelspec.features import OCEAN_CATEGORIES
from modelspec.intervals import COVERAGES, IntervalCalibration, bounds, calibrate
from modelspec.network import HousingNet

# Full-batch Adam on a linear head. On the default data the loss after 600 steps was within
# 3e-5 of the loss after 2,400 (-1.06964 against -1.06967); after 150, within 1e-3.
SCALE_STEPS = 600
SCALE_LEARNING_RATE = 0.02
# The powers of the head's scales tried on the calibration rows (``temper_scale_head``).
EXPONENTS = (0.25, 0.5, 0.75, 1.0)
# The coverages the report measures, and the one its breakdowns (and the tempering) use.
REPORTED = (0.8, 0.9, 0.95)
BREAKDOWN = 0.9
QUINTILES = 5


def fit_scale_head(model: HousingNet, x: Tensor, y: Tensor) -> float:
    """Fit ``model.scale_head`` to rows ``x`` with dollar targets ``y``; returns the final loss
    (mean Laplace negative log-likelihood, standardised units, without its constant)."""
    head = model.scale_head
    if head is None:
        raise ValueError("the model was built without a scale head (NetConfig.scale_head)")
    model.eval()
    with torch.no_grad():
        hidden = model.hidden(x)
        error = ((y - model(x)) / model.target_std).abs()
        head.weight.zero_()
        head.bias.fill_(math.log(float(error.mean())))  # the best constant scale
    optimizer = torch.optim.Adam(head.parameters(), lr=SCALE_LEARNING_RATE)
    loss = torch.tensor(math.nan)
    for _ in range(SCALE_STEPS):
        log_b = head(hidden).squeeze(-1)
        loss = (log_b + error * torch.exp(-log_b)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    head.requires_grad_(False)
    return float(loss.detach())


@torch.no_grad()
def temper_scale_head(model: HousingNet, x: Tensor, y: Tensor) -> float:
    """Multiply the head's output by the exponent of ``EXPONENTS`` whose intervals at
    ``BREAKDOWN`` coverage are narrowest on average over calibration rows ``x``, ``y``
    (calibrated on those rows too); returns it.

    Fitted to the residuals of the rows it was trained on, the head spreads its scales wider
    than the errors on new rows vary: raising every scale to a power below 1 narrows the
    intervals at the same coverage. One choice among four on the calibration rows moves the
    finite-sample guarantee negligibly; the validation split measures the result.
    """
    head = model.scale_head
    assert head is not None
    point, scale = point_and_scale(model, x)
    actual = y.double().numpy()

    def width(exponent: float) -> float:
        tempered = scale**exponent
        q = calibrate(actual, point, tempered, (BREAKDOWN,)).quantiles[0]
        low, high = bounds(point, tempered, q)
        return float(np.mean(high - low))

    best = min(EXPONENTS, key=width)
    # exp(g * log b) = b ** g times a constant factor, which the conformal quantile absorbs.
    head.weight.mul_(best)
    head.bias.mul_(best)
    return best


@torch.no_grad()
def point_and_scale(model: HousingNet, x: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Dollars and the scale head's dollars (``exp`` of its output) for rows ``x``."""
    model.eval()
    return model(x).double().numpy(), model.log_scale(x).double().exp().numpy()


class Labelled(Protocol):
    """Encoded rows and their dollar targets (``training.train.Rows``)."""

    @property
    def x(self) -> Tensor: ...

    @property
    def y(self) -> Tensor: ...


def calibrate_on(model: HousingNet, x: Tensor, y: Tensor) -> IntervalCalibration:
    """Temper the scale head on calibration rows the model did not train on, then compute the
    conformal table from them."""
    exponent = temper_scale_head(model, x, y)
    point, scale = point_and_scale(model, x)
    return calibrate(y.double().numpy(), point, scale, COVERAGES, exponent)


def _measure(actual: np.ndarray, low: np.ndarray, high: np.ndarray) -> dict[str, float]:
    width = high - low
    inside = (actual >= low) & (actual <= high)
    return {
        "coverage": float(inside.mean()),
        "mean_width": float(width.mean()),
        "median_width": float(np.median(width)),
    }


def interval_figures(
    calibration: IntervalCalibration,
    constant: IntervalCalibration,
    actual: np.ndarray,
    point: np.ndarray,
    scale: np.ndarray,
    ocean: list[str],
) -> dict[str, Any]:
    """What the report says about intervals, measured on the validation split (dollars)."""
    actual = np.asarray(actual, np.float64)
    ones = np.ones_like(point)

    def both(coverage: float, rows: np.ndarray | slice = slice(None)) -> dict[str, Any]:
        adaptive = bounds(point[rows], scale[rows], calibration.quantile(coverage))
        flat = bounds(point[rows], ones[rows], constant.quantile(coverage))
        return {
            **_measure(actual[rows], *adaptive),
            "rows": int(actual[rows].size),
            "constant": _measure(actual[rows], *flat),
        }

    categories = np.asarray(ocean)
    edges = np.quantile(point, np.linspace(0, 1, QUINTILES + 1))
    which = np.clip(np.searchsorted(edges, point, side="right") - 1, 0, QUINTILES - 1)
    return {
        "method": calibration.method,
        "calibration_rows": calibration.calibration_rows,
        "calibration_slice": "the early-stopping holdout of the training split",
        "scale_exponent": calibration.scale_exponent,
        "coverages": calibration.coverages,
        "quantiles": calibration.quantiles,
        "constant_quantiles_dollars": constant.quantiles,
        "validation": {f"{c:g}": both(c) for c in REPORTED},
        "breakdown_coverage": BREAKDOWN,
        "by_ocean_proximity": {
            name: both(BREAKDOWN, categories == name)
            for name in OCEAN_CATEGORIES
            if (categories == name).any()
        },
        "by_predicted_quintile": [
            {
                "predicted_from": float(edges[k]),
                "predicted_to": float(edges[k + 1]),
                **both(BREAKDOWN, which == k),
            }
            for k in range(QUINTILES)
        ],
    }


def measure_intervals(
    model: HousingNet,
    calibration: IntervalCalibration,
    holdout: Labelled,
    val: Labelled,
    val_ocean: list[str],
) -> tuple[dict[str, Any], np.ndarray]:
    """``interval_figures`` on the validation split, with constant width calibrated on the same
    holdout; and the validation rows' scales in dollars (for the plot)."""
    val_point, val_scale = point_and_scale(model, val.x)
    val_scale = np.clip(val_scale, *calibration.scale_range)  # as serving clamps it
    holdout_point, _ = point_and_scale(model, holdout.x)
    ones = np.ones_like(holdout_point)
    constant = calibrate(holdout.y.double().numpy(), holdout_point, ones, COVERAGES)
    figures = interval_figures(
        calibration, constant, val.y.double().numpy(), val_point, val_scale, val_ocean
    )
    return figures, val_scale
