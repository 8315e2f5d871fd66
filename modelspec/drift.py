"""The training distribution that drift is measured against, and the measure.

Training records a ``DriftProfile`` in the manifest: for each numeric input, the edges of its
deciles over the training split and the share of training rows in each of the ten bins (not
exactly a tenth where values tie: ages are whole years, values are capped); the share of each
``ocean_proximity`` category; and the same bins for the model's predictions on the training
split. ``python -m app.drift`` puts captured requests in the same bins and compares the shares
with the population stability index,

    PSI = sum over bins of (actual - expected) * ln(actual / expected),

each share floored at ``FLOOR`` so that an empty bin counts as rare, not as infinite. A common
reading: below 0.1 no real change, 0.1-0.2 a moderate one, above 0.2 a shift worth acting on
(``THRESHOLD``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

FLOOR = 1e-4
THRESHOLD = 0.2
DECILES = tuple(range(10, 100, 10))


class Binned(BaseModel):
    """Inner bin edges (ascending) and the training share of each of their bins."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    edges: list[float]
    shares: list[float]


class DriftProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: int
    numeric: dict[str, Binned]
    categories: dict[str, dict[str, float]]
    prediction: Binned


def bin_shares(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """The share of ``values`` (NaN skipped) in each of the ``len(edges) + 1`` bins; a value on
    an edge goes to the bin above it."""
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def binned(values: np.ndarray) -> Binned:
    """Decile edges of ``values`` (ties merged) and the share in each bin."""
    values = np.asarray(values, np.float64)
    edges = sorted(set(np.nanpercentile(values, DECILES).tolist()))
    return Binned(edges=edges, shares=bin_shares(values, edges).tolist())


def category_shares(values: Sequence[str]) -> dict[str, float]:
    names, counts = np.unique(np.asarray(values, dtype=str), return_counts=True)
    return {str(n): float(c) / len(values) for n, c in zip(names, counts, strict=True)}


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray) -> float:
    """The population stability index of ``actual`` shares against ``expected`` ones."""
    e = np.maximum(np.asarray(expected, np.float64), FLOOR)
    a = np.maximum(np.asarray(actual, np.float64), FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))
