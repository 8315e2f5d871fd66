"""Regression scores in dollars, and one epoch's record for the learning curves."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class Scores:
    """RMSE and MAE in dollars, and R² (the share of the variance explained), in float64."""

    rmse: float
    mae: float
    r2: float

    def to_dict(self) -> dict[str, float]:
        return {"rmse": self.rmse, "mae": self.mae, "r2": self.r2}


def rmse(predicted: ArrayLike, actual: ArrayLike) -> float:
    """Root mean squared error, in float64."""
    return scores(predicted, actual).rmse


def scores(predicted: ArrayLike, actual: ArrayLike) -> Scores:
    p = np.asarray(predicted, dtype=np.float64).ravel()
    a = np.asarray(actual, dtype=np.float64).ravel()
    if p.shape != a.shape or p.size == 0:
        raise ValueError(f"need as many predictions as values, got {p.size} and {a.size}")
    error = p - a
    total = float(np.sum((a - a.mean()) ** 2))
    return Scores(
        rmse=math.sqrt(float(np.mean(error**2))),
        mae=float(np.mean(np.abs(error))),
        r2=1.0 - float(np.sum(error**2)) / total if total > 0 else math.nan,
    )


@dataclass(frozen=True)
class EpochRecord:
    """RMSE in dollars after one epoch: on the rows trained on, on the early-stopping holdout
    (which picks the epoch kept) and on the validation split (plotted, never used to choose)."""

    epoch: int
    train_rmse: float
    holdout_rmse: float
    val_rmse: float
