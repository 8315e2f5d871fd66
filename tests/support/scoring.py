"""Files for ``python -m app.score`` (the local and the Ray engine): which cells to break."""

from __future__ import annotations

# (data row, column, bad cell, the field the error must name)
BAD_CELLS = [
    (5, "median_income", "abc", "median_income"),
    (10, "latitude", "95", "latitude"),
    (20, "ocean_proximity", "MOON", "ocean_proximity"),
    (40, "housing_median_age", "", "housing_median_age"),
]
