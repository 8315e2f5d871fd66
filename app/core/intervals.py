"""Serving's side of prediction intervals: which coverage a request gets, and its bounds.

The manifest's table (``modelspec.intervals``) holds one conformal quantile per coverage. A
request asks with ``?coverage=0.8``; without it, it gets ``HOUSING_INTERVAL_COVERAGE``; 0 leaves
intervals out. A coverage not in the table is a 422 that names the table's. A model trained
before intervals has no table: it serves points only, a request that asks for a coverage gets
a 422 saying how to get one, and the server says so once at startup.

The bounds are a few host operations per row -- ``max(0, value - q * scale)`` and
``max(0, value + q * scale)``, to the cent -- on the scale the device returned beside the value
(clamped by the runtime to the scales calibration saw).
"""

from __future__ import annotations

import math
from urllib.parse import parse_qsl

import numpy as np

from app.codecs.numbers import strict_float
from app.core.flags import VALUE_FLOOR
from app.errors import InvalidInput
from modelspec.intervals import IntervalCalibration
from modelspec.intervals import bounds as conformal_bounds

Interval = tuple[float, float]  # (low, high) in dollars


class Ranges:
    """A request's intervals: each row's ``(low, high)``, in order, at ``coverage``."""

    __slots__ = ("bounds", "coverage")

    def __init__(self, coverage: float, bounds: list[Interval]) -> None:
        self.coverage = coverage
        self.bounds = bounds


class Coverage:
    """One coverage and its conformal quantile."""

    __slots__ = ("coverage", "quantile")

    def __init__(self, coverage: float, quantile: float) -> None:
        self.coverage = coverage
        self.quantile = quantile

    def ranges(self, values: list[float], scales: list[float]) -> Ranges:
        """Each row's ``(low, high)``: value -/+ quantile x scale, to the cent, never below $0.
        A few rows in Python, more with numpy (its fixed cost per call would be most of the
        work for one row; for a hundred rows it took a fifth of Python's time); both round
        the same way (half a cent up)."""
        q = self.quantile
        if len(values) == 1:  # most requests: no loop at all
            value, half = values[0], q * scales[0]
            bounds = [(_cents(value - half), _cents(value + half))]
        elif len(values) <= _FEW_ROWS:
            bounds = [
                (_cents(v - q * s), _cents(v + q * s)) for v, s in zip(values, scales, strict=True)
            ]
        else:
            lows, highs = conformal_bounds(np.asarray(values), np.asarray(scales), q)
            cents = [(np.floor(b * 100 + 0.5) / 100).tolist() for b in (lows, highs)]
            bounds = list(zip(*cents, strict=True))
        return Ranges(self.coverage, bounds)


_FEW_ROWS = 4


def prices(out: np.ndarray, log_scale_range: tuple[float, float]) -> np.ndarray:
    """A device call's answers as the service passes them on: dollars to the cent (one rounding
    a batch), never below ``VALUE_FLOOR`` (``app.core.flags``: a value under it is the model
    extrapolating, and is flagged); with a scale head (``(n, 2)``), each row's scale in dollars
    beside them, its log clamped to ``log_scale_range``."""
    if out.ndim == 2:
        low, high = log_scale_range
        values = np.maximum(np.round(out[:, 0], 2), VALUE_FLOOR)
        return np.column_stack((values, np.exp(out[:, 1].clip(low, high))))
    return np.maximum(np.round(out, 2), VALUE_FLOOR)


def log_scale_range(table: IntervalCalibration | None) -> tuple[float, float]:
    """The logs of the calibration rows' smallest and largest scale (unbounded without a
    table, whose scales nobody reads)."""
    if table is None:
        return (-math.inf, math.inf)
    low, high = table.scale_range
    return (math.log(low), math.log(high))


def _cents(x: float) -> float:
    """``x`` (finite) to the cent, half a cent up; 0 for anything below."""
    return int(x * 100 + 0.5) / 100 if x > 0 else 0.0


class Intervals:
    """The model's table and the server's default; ``choose`` reads a request's query."""

    def __init__(self, table: IntervalCalibration | None, default: float) -> None:
        """ValueError, saying which it may be, for a ``default`` the table does not hold."""
        self.table = table
        self._by_coverage = (
            {} if table is None else dict(zip(table.coverages, table.quantiles, strict=True))
        )
        self.default: Coverage | None = None
        if table is not None and default:
            if default not in self._by_coverage:
                raise ValueError(
                    f"HOUSING_INTERVAL_COVERAGE={default:g} is not a calibrated coverage; the "
                    f"manifest has {listed(self.coverages)} (or 0 for no ranges)"
                )
            self.default = self._lookup(default)

    @property
    def coverages(self) -> list[float]:
        return [] if self.table is None else self.table.coverages

    def _lookup(self, coverage: float) -> Coverage:
        return Coverage(coverage, self._by_coverage[coverage])

    def choose(self, query: bytes) -> Coverage | None:
        """The coverage a request's query string asks for (the default without one); None
        for no intervals. InvalidInput (422) for a coverage the table does not hold."""
        if b"coverage" not in query:
            return self.default
        text = None
        for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if key == "coverage":
                text = value
        return self.default if text is None else self.parse(text, "coverage")

    def parse(self, text: str, field: str) -> Coverage | None:
        """``at`` for a coverage written as text (anything but a number is refused)."""
        try:
            coverage = strict_float(text.strip(" "))
        except ValueError:
            coverage = -1.0
        return self.at(coverage, field)

    def at(self, coverage: float, field: str) -> Coverage | None:
        """The table's ``coverage``, or None for 0 (no intervals). InvalidInput naming
        ``field`` (where the request said it) for a coverage the table does not hold, or for
        any coverage when the model has no table."""
        if coverage == 0:
            return None
        if self.table is None:
            reason = (
                "this model has no calibrated intervals (it was trained before them); "
                "ask with coverage 0, or retrain with `python -m training` and recompile"
            )
        elif coverage in self._by_coverage:
            return self._lookup(coverage)
        else:
            reason = f"must be one of {listed(self.coverages)}, or 0 for no intervals"
        raise InvalidInput([{"field": field, "message": reason, "type": "coverage"}])


def listed(coverages: list[float]) -> str:
    """``0.5, 0.6, ...``: the coverages as a request writes them."""
    return ", ".join(f"{c:g}" for c in coverages)
