"""A fast accept-only check for ``/predict`` bodies, in front of the pydantic validator.

pydantic-core validates a strict record in about 2.4 us, most of a 100-record request's CPU.
This module parses with orjson and checks the whole batch with a few numpy operations. It only
ever *accepts*: anything it is not sure of -- a wrong type, a missing or unknown field, a value
out of bounds, a non-finite number, a JSON quirk -- returns ``None``, and the caller runs the
pydantic validator, which then produces the precise 422. So the rules live in one place
(``modelspec.features.NUMERIC_FIELDS`` and the schema); a property test checks that this never
accepts a body the validator refuses.
"""

from __future__ import annotations

import math
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from modelspec.features import (
    CATEGORICAL_COLUMN,
    IMPUTED_COLUMN,
    NUMERIC_COLUMNS,
    NUMERIC_FIELDS,
    OCEAN_CATEGORIES,
    numeric_values,
)

_ALL_FIELDS = itemgetter(*NUMERIC_COLUMNS, CATEGORICAL_COLUMN)
_N_NUMERIC = len(NUMERIC_COLUMNS)
_N_FIELDS = _N_NUMERIC + 1
_REQUIRED_KEYS = frozenset((*NUMERIC_COLUMNS, CATEGORICAL_COLUMN)) - {IMPUTED_COLUMN}
_CATEGORIES = frozenset(OCEAN_CATEGORIES)
_NUMBER_TYPES = frozenset((int, float))
_BEDROOMS = NUMERIC_COLUMNS.index(IMPUTED_COLUMN)
_ROOMS = NUMERIC_COLUMNS.index("total_rooms")
_LOW = np.array([-math.inf if f.ge is None else f.ge for f in NUMERIC_FIELDS])
_HIGH = np.array([math.inf if f.le is None else f.le for f in NUMERIC_FIELDS])
_ABOVE = np.array([-math.inf if f.gt is None else f.gt for f in NUMERIC_FIELDS])


class FastBody:
    """Accepted body: ``numeric`` ``(n, 8)`` float64 (NaN = missing bedrooms), categories."""

    __slots__ = ("numeric", "ocean", "single")

    def __init__(self, numeric: np.ndarray, ocean: list[str], single: bool) -> None:
        self.numeric = numeric
        self.ocean = ocean
        self.single = single


def accept(body: bytes, max_instances: int) -> FastBody | None:
    """The parsed body if it is certainly valid, else None (let pydantic decide and explain)."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict:
        return None
    single = "instances" not in data
    if single:
        records = [data]
    else:
        records = data["instances"]
        if len(data) != 1 or type(records) is not list:
            return None
        if not 1 <= len(records) <= max_instances:
            return None
    values: list[Any] = []  # nine per record: the eight numbers, then the category
    for r in records:
        if type(r) is not dict:
            return None
        # Nine distinct keys that all resolve are exactly the nine fields: cheaper than
        # comparing key sets.
        if len(r) == _N_FIELDS:
            try:
                values.extend(_ALL_FIELDS(r))
            except KeyError:
                return None
        elif r.keys() == _REQUIRED_KEYS:
            values.extend(numeric_values(r, math.nan))
            values.append(r[CATEGORICAL_COLUMN])
        else:
            return None
    ocean = values[_N_NUMERIC::_N_FIELDS]
    del values[_N_NUMERIC::_N_FIELDS]
    bedrooms = values[_BEDROOMS::_N_NUMERIC]
    if None in bedrooms:  # null: missing, imputed like an absent field
        values[_BEDROOMS::_N_NUMERIC] = [math.nan if b is None else b for b in bedrooms]
    # Exact types: bool is an int subclass, and numpy would turn "1.5" or None into floats.
    if not set(map(type, values)) <= _NUMBER_TYPES:
        return None
    if not set(ocean) <= _CATEGORIES:  # also refuses non-strings: they are not in the set
        return None
    try:
        numeric = np.array(values, dtype=np.float64).reshape(-1, _N_NUMERIC)
    except OverflowError:  # an integer beyond float64
        return None
    return FastBody(numeric, ocean, single) if valid_rows(numeric) else None


def valid_rows(numeric: np.ndarray) -> bool:
    """Whether every row of ``numeric`` (``(n, 8)`` float64 in ``NUMERIC_COLUMNS`` order, NaN
    for a missing ``total_bedrooms``) is certainly within the fields' bounds and rules. A lone
    row is checked in plain Python: numpy's fixed cost per call would be most of its check."""
    if numeric.shape[0] == 1:
        return _valid_row(numeric[0].tolist())
    inside = (numeric >= _LOW) & (numeric <= _HIGH) & (numeric > _ABOVE)  # NaN/inf fail
    inside[:, _BEDROOMS] |= np.isnan(numeric[:, _BEDROOMS])  # null or absent: imputed
    if not inside.all():
        return False
    # Bedrooms among the rooms (the schema's rule across fields); NaN (imputed) compares false.
    return not (numeric[:, _BEDROOMS] > numeric[:, _ROOMS]).any()


_BOUNDS = list(zip(_LOW.tolist(), _HIGH.tolist(), _ABOVE.tolist(), strict=True))


def _valid_row(row: list[float]) -> bool:
    for at, (value, (low, high, above)) in enumerate(zip(row, _BOUNDS, strict=True)):
        inside = low <= value <= high and value > above  # NaN fails every comparison
        if not inside and not (at == _BEDROOMS and math.isnan(value)):
            return False
    bedrooms = row[_BEDROOMS]
    return not bedrooms > row[_ROOMS]  # NaN (imputed) compares false


def valid_lists(rows: list[list[float]]) -> bool:
    """``valid_rows`` for a few rows given as Python lists."""
    return all(_valid_row(row) for row in rows)


def valid_categories(ocean: list[str]) -> bool:
    return set(ocean) <= _CATEGORIES
