"""Reference models fitted in the same run, on the same split, with the same imputation.

Each gets the artifact's encoded input (``ENCODED_COLUMNS``): the eight raw numbers, with a
missing ``total_bedrooms`` imputed with the training split's median, and a one-hot of
``ocean_proximity`` -- no engineered features, so they measure what the MLP's own features
and training add. They are fitted on the whole training split (they need no early stopping;
gradient boosting's defaults hold out 10% of it internally) and scored on the validation split.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression
from threadpoolctl import threadpool_limits

from modelspec.features import N_ENCODED

# The reference: scikit-learn's defaults, seeded as the blog seeds its split.
HGB_RANDOM_STATE = 42
BASELINE_FEATURES = (
    "the 8 raw numbers (total_bedrooms imputed with the training median) "
    "+ one-hot ocean_proximity: 13 columns"
)


class Regressor(Protocol):
    """What the baselines need of a scikit-learn estimator."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> object: ...

    def predict(self, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class BaselineSpec:
    key: str
    name: str
    make: Callable[[], Regressor]


BASELINES: tuple[BaselineSpec, ...] = (
    BaselineSpec("mean", "Mean of the training split", lambda: DummyRegressor(strategy="mean")),
    BaselineSpec("linear_regression", "LinearRegression", LinearRegression),
    BaselineSpec(
        "hist_gradient_boosting",
        "HistGradientBoostingRegressor (defaults)",
        lambda: HistGradientBoostingRegressor(random_state=HGB_RANDOM_STATE),
    ),
)


@dataclass(frozen=True)
class Baseline:
    key: str
    name: str
    features: str
    val_predictions: np.ndarray  # dollars, one per validation row
    seconds: float  # fit and predict


def fit_baselines(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, threads: int = 1
) -> list[Baseline]:
    """Fit every baseline on ``(x_train, y_train)`` (encoded rows, dollars) and predict
    ``x_val``. ``threads`` caps OpenMP/BLAS threads: on a shared 2-core machine, two threads
    that wait for each other while the other core is busy are far slower than one."""
    for name, x in (("x_train", x_train), ("x_val", x_val)):
        if x.ndim != 2 or x.shape[1] != N_ENCODED:
            raise ValueError(f"{name} must be encoded rows (n, {N_ENCODED}), got {x.shape}")
    x_train = x_train.astype(np.float64)
    x_val = x_val.astype(np.float64)
    y = np.asarray(y_train, dtype=np.float64)
    out = []
    with threadpool_limits(limits=threads):
        for spec in BASELINES:
            started = time.perf_counter()
            model = spec.make()
            model.fit(x_train, y)
            predictions = np.asarray(model.predict(x_val), dtype=np.float64)
            seconds = time.perf_counter() - started
            out.append(Baseline(spec.key, spec.name, BASELINE_FEATURES, predictions, seconds))
    return out
