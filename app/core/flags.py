"""Flags for inputs the model has not seen: warnings that ride along with a prediction.

A prediction is still made -- a flag never blocks one -- but a client (and a dashboard, through
``housing_input_warnings``) learns when a row is outside what training covered:

* ``out_of_range``: a numeric input below the 0.5th or above the 99.5th percentile of the
  training split (the manifest's ``preprocessing.input_ranges``);
* ``outside_california``: latitude/longitude outside California's bounding box;
* ``above_cap``: a prediction above $500,001, where the data set's values were capped, so the
  model has never seen a true value up there;
* ``below_floor``: the model's value was at or below $14,999, the data set's floor (values
  under $15,000 were recorded as $14,999). Such a value is the model extrapolating, down to
  negative millions for records far outside training, so the price is raised to the floor
  (``app.core.intervals.prices``) and its range computed around it: a price is never negative and
  always inside its own range.

``screen`` checks a whole batch in a few vectorised calls (the batcher runs it once per device
call); ``flags`` explains the rows of one request, and lists are built only for flagged rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypedDict

import numpy as np

from modelspec.features import NUMERIC_COLUMNS

VALUE_CAP = 500_001.0
VALUE_FLOOR = 14_999.0
# California's bounding box (degrees), a little wider than the data set's block groups.
LATITUDE = (32.5, 42.0)
LONGITUDE = (-124.5, -114.1)
_LAT = NUMERIC_COLUMNS.index("latitude")
_LON = NUMERIC_COLUMNS.index("longitude")


class Flag(TypedDict):
    row: int
    field: str
    code: str
    message: str


Count = Callable[[str, str], None]  # (field, code): one flag seen

_FEW_ROWS = 4  # up to this many rows, screen in Python
_AWAY, _CAPPED, _FLOORED = 2, 3, 4  # kinds of flag after below (0) and above (1) a range
_FIXED = {
    _AWAY: (
        "location",
        "outside_california",
        "latitude/longitude are outside California; the model only saw California block groups",
    ),
    _CAPPED: (
        "house_value",
        "above_cap",
        f"the prediction is above ${VALUE_CAP:,.0f}, where the training data was capped: the "
        "model never saw a true value this high",
    ),
    _FLOORED: (
        "house_value",
        "below_floor",
        f"the model's value was at or below ${VALUE_FLOOR:,.0f}, the lowest in the training "
        "data: the price is raised to it. The record is likely far outside what the model saw",
    ),
}


def _out_of_range(col: int, where: str, bound: float) -> tuple[str, str, str]:
    name = NUMERIC_COLUMNS[col]
    message = f"{name} is {where} percentile of the training data ({bound:.6g})"
    return name, "out_of_range", message


class Flagger:
    def __init__(
        self, ranges: Mapping[str, tuple[float, float]], count: Count | None = None
    ) -> None:
        # Columns without a recorded range (an older manifest) get an infinite one: no flags.
        bounds = [ranges.get(c, (-np.inf, np.inf)) for c in NUMERIC_COLUMNS]
        self.low = np.array([b[0] for b in bounds], dtype=np.float64)
        self.high = np.array([b[1] for b in bounds], dtype=np.float64)
        self._count = count
        # (field, code, message) of an out-of-range flag, by kind (below, above) and column.
        self._messages = [
            [_out_of_range(c, "below the 0.5th", self.low[c]) for c in range(len(bounds))],
            [_out_of_range(c, "above the 99.5th", self.high[c]) for c in range(len(bounds))],
        ]
        # The tighter of both bounds for latitude/longitude: one pass answers "nothing to flag".
        self._any_low, self._any_high = self.low.copy(), self.high.copy()
        for col, (lo, hi) in ((_LAT, LATITUDE), (_LON, LONGITUDE)):
            self._any_low[col] = max(self._any_low[col], lo)
            self._any_high[col] = min(self._any_high[col], hi)
        self._any_bounds = list(zip(self._any_low.tolist(), self._any_high.tolist(), strict=True))

    def screen(self, encoded: np.ndarray, dollars: np.ndarray) -> list[int]:
        """Indices of the rows that ``flags`` flags, ascending: a whole batch in a handful of
        vectorised calls, so the requests with no flagged row need no check of their own. A
        batch of a few rows is checked in Python: numpy's fixed cost per call would be most of
        the check (a lone request's batch is one row)."""
        if len(dollars) <= _FEW_ROWS:
            bounds = self._any_bounds
            rows = zip(encoded.tolist(), dollars.tolist(), strict=True)
            return [
                row
                for row, (values, value) in enumerate(rows)
                if value > VALUE_CAP
                or value <= VALUE_FLOOR
                or any(v < lo or v > hi for v, (lo, hi) in zip(values, bounds, strict=False))
            ]
        x = encoded[:, : len(NUMERIC_COLUMNS)]
        outside = ((x < self._any_low) | (x > self._any_high)).any(axis=1)
        return np.flatnonzero(outside | (dollars > VALUE_CAP) | (dollars <= VALUE_FLOOR)).tolist()

    def flags(self, encoded: np.ndarray, dollars: np.ndarray) -> list[Flag]:
        """Flags of every row of ``encoded`` (the model's input) and its ``dollars``, in row
        order (and within a row: below, above, location, cap, floor)."""
        if not self.screen(encoded, dollars):
            return []
        x = encoded[:, : len(NUMERIC_COLUMNS)]
        # Every flag as (row, kind, column), from a few vectorised calls; sorted, that is the
        # answer's order.
        found: list[tuple[int, int, int]] = []
        for kind, hits in enumerate((x < self.low, x > self.high)):
            rows, cols = np.nonzero(hits)
            found += zip(rows.tolist(), [kind] * len(rows), cols.tolist(), strict=True)
        lat, lon = x[:, _LAT], x[:, _LON]
        away = (
            (lat < LATITUDE[0]) | (lat > LATITUDE[1]) | (lon < LONGITUDE[0]) | (lon > LONGITUDE[1])
        )
        found += ((row, _AWAY, -1) for row in np.flatnonzero(away).tolist())
        found += ((row, _CAPPED, -1) for row in np.flatnonzero(dollars > VALUE_CAP).tolist())
        found += ((row, _FLOORED, -1) for row in np.flatnonzero(dollars <= VALUE_FLOOR).tolist())
        found.sort()
        out: list[Flag] = []
        for row, kind, col in found:
            field, code, message = self._messages[kind][col] if col >= 0 else _FIXED[kind]
            if self._count is not None:
                self._count(field, code)
            out.append({"row": row, "field": field, "code": code, "message": message})
        return out
