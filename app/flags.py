"""Flags for inputs the model has not seen: warnings that ride along with a prediction.

A prediction is still made -- a flag never blocks one -- but a client (and a dashboard, through
``housing_input_warnings``) learns when a row is outside what training covered:

* ``out_of_range``: a numeric input below the 0.5th or above the 99.5th percentile of the
  training split (the manifest's ``preprocessing.input_ranges``);
* ``outside_california``: latitude/longitude outside California's bounding box;
* ``above_cap``: a prediction above $500,001, where the data set's values were capped, so the
  model has never seen a true value up there.

``screen`` checks a whole batch in a few vectorised calls (the batcher runs it once per device
call); ``flags`` explains the rows of one request, and lists are built only for flagged rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypedDict

import numpy as np

from modelspec.features import NUMERIC_COLUMNS

VALUE_CAP = 500_001.0
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


class Flagger:
    def __init__(
        self, ranges: Mapping[str, tuple[float, float]], count: Count | None = None
    ) -> None:
        # Columns without a recorded range (an older manifest) get an infinite one: no flags.
        bounds = [ranges.get(c, (-np.inf, np.inf)) for c in NUMERIC_COLUMNS]
        self.low = np.array([b[0] for b in bounds], dtype=np.float64)
        self.high = np.array([b[1] for b in bounds], dtype=np.float64)
        self._count = count
        # The tighter of both bounds for latitude/longitude: one pass answers "nothing to flag".
        self._any_low, self._any_high = self.low.copy(), self.high.copy()
        for col, (lo, hi) in ((_LAT, LATITUDE), (_LON, LONGITUDE)):
            self._any_low[col] = max(self._any_low[col], lo)
            self._any_high[col] = min(self._any_high[col], hi)

    def screen(self, encoded: np.ndarray, dollars: np.ndarray) -> np.ndarray:
        """Indices of the rows that ``flags`` flags, ascending: a whole batch in a handful of
        vectorised calls, so the requests with no flagged row need no check of their own."""
        x = encoded[:, : len(NUMERIC_COLUMNS)]
        outside = ((x < self._any_low) | (x > self._any_high)).any(axis=1)
        return np.flatnonzero(outside | (dollars > VALUE_CAP))

    def flags(self, encoded: np.ndarray, dollars: np.ndarray) -> list[Flag]:
        """Flags of every row of ``encoded`` (the model's input) and its ``dollars``, in row
        order."""
        if not len(dollars):
            return []
        x = encoded[:, : len(NUMERIC_COLUMNS)]
        if not ((x < self._any_low) | (x > self._any_high)).any() and dollars.max() <= VALUE_CAP:
            return []
        low, high = x < self.low, x > self.high
        lat, lon = x[:, _LAT], x[:, _LON]
        away = (
            (lat < LATITUDE[0]) | (lat > LATITUDE[1]) | (lon < LONGITUDE[0]) | (lon > LONGITUDE[1])
        )
        capped = dollars > VALUE_CAP
        if not (low.any() or high.any() or away.any() or capped.any()):
            return []
        out: list[Flag] = []
        for row in np.flatnonzero(low.any(axis=1) | high.any(axis=1) | away | capped).tolist():
            for col in np.flatnonzero(low[row]).tolist():
                out.append(self._flag(row, col, "below the 0.5th", self.low[col]))
            for col in np.flatnonzero(high[row]).tolist():
                out.append(self._flag(row, col, "above the 99.5th", self.high[col]))
            if away[row]:
                out.append(
                    self._made(
                        row,
                        "location",
                        "outside_california",
                        "latitude/longitude are outside California; the model only saw "
                        "California block groups",
                    )
                )
            if capped[row]:
                out.append(
                    self._made(
                        row,
                        "house_value",
                        "above_cap",
                        f"the prediction is above ${VALUE_CAP:,.0f}, where the training data "
                        "was capped: the model never saw a true value this high",
                    )
                )
        return out

    def _flag(self, row: int, col: int, where: str, bound: float) -> Flag:
        name = NUMERIC_COLUMNS[col]
        return self._made(
            row,
            name,
            "out_of_range",
            f"{name} is {where} percentile of the training data ({bound:.6g})",
        )

    def _made(self, row: int, field: str, code: str, message: str) -> Flag:
        if self._count is not None:
            self._count(field, code)
        return {"row": row, "field": field, "code": code, "message": message}
