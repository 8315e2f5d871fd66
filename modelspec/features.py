"""The one definition of the model's features, shared by training, compile and serving.

Two layers, kept apart on purpose:

* **Encoding** (host side, numpy): the nine raw fields of a census block group become
  ``ENCODED_COLUMNS`` -- the eight numbers, with a missing ``total_bedrooms`` imputed, followed by
  a one-hot of ``ocean_proximity``. This is the artifact's input, and what the Open Inference
  Protocol's FP32 tensor carries.
* **Derivation** (inside the compiled graph, torch): ``DERIVED_FEATURES`` turns encoded columns
  into the network's features (logs of skewed counts, per-household ratios, rotated coordinates,
  and sines and cosines of the location along several directions at several periods).
  It is declarative so that the hash below covers the real definition, not just names.

Change anything here and ``feature_hash()`` changes; the server then refuses artifacts built
with the old definition instead of serving them wrong.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from operator import itemgetter
from typing import Any, Literal, get_args

import numpy as np

SPEC_VERSION = 2

OceanProximity = Literal["<1H OCEAN", "INLAND", "ISLAND", "NEAR BAY", "NEAR OCEAN"]
OCEAN_CATEGORIES: tuple[str, ...] = get_args(OceanProximity)

# Raw numeric fields, in the data set's column order.
NUMERIC_COLUMNS: tuple[str, ...] = (
    "longitude",
    "latitude",
    "housing_median_age",
    "total_rooms",
    "total_bedrooms",
    "population",
    "households",
    "median_income",
)
CATEGORICAL_COLUMN = "ocean_proximity"
RAW_COLUMNS: tuple[str, ...] = (*NUMERIC_COLUMNS, CATEGORICAL_COLUMN)
# The only field that may be missing (207 rows of the data set); imputed with the training median.
IMPUTED_COLUMN = "total_bedrooms"
TARGET_COLUMN = "median_house_value"


@dataclass(frozen=True)
class RawField:
    """A numeric request field: its meaning and the values the service accepts.

    Bounds are physical limits, generous enough for any real block group; they also keep every
    derived feature finite in float32.
    """

    name: str
    description: str
    example: float
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    optional: bool = False


MAX_COUNT = 1e9
NUMERIC_FIELDS: tuple[RawField, ...] = (
    RawField(
        "longitude", "Longitude in decimal degrees (west is negative)", -122.23, -180, None, 180
    ),
    RawField("latitude", "Latitude in decimal degrees", 37.88, -90, None, 90),
    RawField("housing_median_age", "Median age of the houses, years", 41.0, 0, None, 1000),
    RawField("total_rooms", "Rooms in the block group (above 0)", 880.0, None, 0, MAX_COUNT),
    RawField(
        "total_bedrooms",
        "Bedrooms in the block group; null or absent: imputed with the training median",
        129.0,
        0,
        None,
        MAX_COUNT,
        optional=True,
    ),
    RawField("population", "People living in the block group", 322.0, 0, None, MAX_COUNT),
    RawField("households", "Households in the block group", 126.0, None, 0, MAX_COUNT),
    RawField(
        "median_income",
        "Median household income in tens of thousands of 1990 USD",
        8.3252,
        0,
        None,
        1000,
    ),
)
assert tuple(f.name for f in NUMERIC_FIELDS) == NUMERIC_COLUMNS
# A rule across fields, beside the bounds: bedrooms are counted among the rooms, so a block
# group never has more (none of the data set's 20,640 does). Records that break it are
# refused: their ratios are far outside anything the model saw.
BEDROOMS_ABOVE_ROOMS = "bedrooms_above_rooms"
EXAMPLE_RECORD: dict[str, object] = {
    **{f.name: f.example for f in NUMERIC_FIELDS},
    CATEGORICAL_COLUMN: "NEAR BAY",
}

ENCODED_COLUMNS: tuple[str, ...] = (
    *NUMERIC_COLUMNS,
    *(f"{CATEGORICAL_COLUMN}={c}" for c in OCEAN_CATEGORIES),
)
N_ENCODED = len(ENCODED_COLUMNS)

FeatureOp = Literal["identity", "log1p", "ratio", "log1p_ratio", "lincomb", "sin", "cos"]


@dataclass(frozen=True)
class DerivedFeature:
    """One network feature computed from encoded columns inside the graph.

    ``ratio`` divides by ``max(denominator, 1)`` so that a zero count in a request cannot make
    an infinity; on the data set every denominator is already at least 1.

    ``sin`` and ``cos`` are periodic features of a phase counted in cycles,
    ``t = sum(w * (x - origin))`` over the inputs (``origin`` empty: zeros): the feature is
    ``sin(2 pi t)`` or ``cos(2 pi t)``. The graph measures inputs from ``origin`` (so the
    phase stays small and exact in float32) and keeps only the phase's fraction of a cycle
    before calling sin (so every backend evaluates it on one period).
    """

    name: str
    op: FeatureOp
    inputs: tuple[str, ...]
    weights: tuple[float, ...] = ()
    origin: tuple[float, ...] = ()


def _ident(col: str) -> DerivedFeature:
    return DerivedFeature(col, "identity", (col,))


# Location features richer than latitude and longitude: a sine and a cosine of the position
# along 8 directions (dx degrees of longitude plus dy of latitude) at periods from 8 degrees
# (the state) down to a quarter of a degree (about 25 km: a city's districts). Every weight is
# a power of two and the origin is exact in binary, so the definition, and its hash, are the
# same on every machine and the graph's products are exact.
GEO_ORIGIN = (-119.5, 37.0)  # longitude, latitude: near the middle of California
GEO_DIRECTIONS: tuple[tuple[int, int], ...] = (
    (1, 0),
    (0, 1),
    (1, 1),
    (1, -1),
    (2, 1),
    (1, 2),
    (2, -1),
    (1, -2),
)
GEO_PERIODS: tuple[float, ...] = (8.0, 4.0, 2.0, 1.0, 0.5, 0.25)


def _periodic(op: Literal["sin", "cos"], dx: int, dy: int, period: float) -> DerivedFeature:
    return DerivedFeature(
        f"geo_{op}_{dx}_{dy}_p{period:g}",
        op,
        ("longitude", "latitude"),
        (dx / period, dy / period),
        GEO_ORIGIN,
    )


GEO_FEATURES: tuple[DerivedFeature, ...] = tuple(
    _periodic(op, dx, dy, period)
    for dx, dy in GEO_DIRECTIONS
    for period in GEO_PERIODS
    for op in ("sin", "cos")
)

DERIVED_FEATURES: tuple[DerivedFeature, ...] = (
    _ident("longitude"),
    _ident("latitude"),
    DerivedFeature("lon_plus_lat", "lincomb", ("longitude", "latitude"), (1.0, 1.0)),
    DerivedFeature("lon_minus_lat", "lincomb", ("longitude", "latitude"), (1.0, -1.0)),
    _ident("housing_median_age"),
    _ident("median_income"),
    DerivedFeature("log_median_income", "log1p", ("median_income",)),
    DerivedFeature("log_total_rooms", "log1p", ("total_rooms",)),
    DerivedFeature("log_total_bedrooms", "log1p", ("total_bedrooms",)),
    DerivedFeature("log_population", "log1p", ("population",)),
    DerivedFeature("log_households", "log1p", ("households",)),
    DerivedFeature("log_rooms_per_household", "log1p_ratio", ("total_rooms", "households")),
    DerivedFeature("log_bedrooms_per_household", "log1p_ratio", ("total_bedrooms", "households")),
    DerivedFeature("log_people_per_household", "log1p_ratio", ("population", "households")),
    DerivedFeature("bedrooms_per_room", "ratio", ("total_bedrooms", "total_rooms")),
    *(_ident(f"{CATEGORICAL_COLUMN}={c}") for c in OCEAN_CATEGORIES),
    *GEO_FEATURES,
)
N_DERIVED = len(DERIVED_FEATURES)


def spec_dict() -> dict[str, object]:
    """Everything that defines the features, as plain JSON data (hashed and recorded)."""
    spec = {
        "version": SPEC_VERSION,
        "numeric": list(NUMERIC_COLUMNS),
        "categorical": {CATEGORICAL_COLUMN: list(OCEAN_CATEGORIES)},
        "imputed": {IMPUTED_COLUMN: "training median"},
        "encoded": list(ENCODED_COLUMNS),
        "derived": [asdict(f) for f in DERIVED_FEATURES],
        "target": {"column": TARGET_COLUMN, "unit": "USD"},
    }
    normalised: dict[str, object] = json.loads(json.dumps(spec))  # tuples become lists
    return normalised


def feature_hash() -> str:
    """sha256 of the canonical JSON of ``spec_dict()``; stable across runs and machines."""
    canonical = json.dumps(spec_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


_BEDROOMS_AT = NUMERIC_COLUMNS.index(IMPUTED_COLUMN)
_BEFORE_BEDROOMS = itemgetter(*NUMERIC_COLUMNS[:_BEDROOMS_AT])
_AFTER_BEDROOMS = itemgetter(*NUMERIC_COLUMNS[_BEDROOMS_AT + 1 :])
_CATEGORY_INDEX = {c: i for i, c in enumerate(OCEAN_CATEGORIES)}
_ONE_HOT = {c: tuple(float(c == d) for d in OCEAN_CATEGORIES) for c in OCEAN_CATEGORIES}


def numeric_values(record: Mapping[str, Any], missing: float) -> tuple[Any, ...]:
    """The eight numbers of a raw record in ``NUMERIC_COLUMNS`` order, with ``missing`` where
    ``total_bedrooms`` is absent, None or NaN. Raises KeyError for any other absent field."""
    bedrooms = record.get(IMPUTED_COLUMN)
    if bedrooms is None or bedrooms != bedrooms:  # absent, null or NaN
        bedrooms = missing
    return (*_BEFORE_BEDROOMS(record), bedrooms, *_AFTER_BEDROOMS(record))


def _unknown_category(value: object) -> ValueError:
    return ValueError(f"unknown {CATEGORICAL_COLUMN} {value!r}; expected one of {OCEAN_CATEGORIES}")


def _refuse_missing(out: np.ndarray) -> None:
    # One reduction, cheaper than a mask for a request's few rows (add.reduce: sum's wrapper
    # costs as much again).
    if math.isnan(np.add.reduce(out, axis=None)):
        row = int(np.argwhere(np.isnan(out))[0, 0])
        raise ValueError(f"row {row}: only {IMPUTED_COLUMN} may be missing")


def encode(numeric: np.ndarray, ocean: Sequence[str], bedrooms_median: float) -> np.ndarray:
    """Encode raw fields into the artifact's float32 input of shape ``(n, N_ENCODED)``.

    ``numeric`` is ``(n, 8)`` in ``NUMERIC_COLUMNS`` order with NaN where ``total_bedrooms`` is
    missing (imputed with ``bedrooms_median``); ``ocean`` holds the ``n`` categories. Used by
    the fast request check on whole batches; ``encode_records`` is its per-record twin.
    """
    numeric = np.asarray(numeric, dtype=np.float64)
    n = numeric.shape[0]
    if numeric.shape != (n, len(NUMERIC_COLUMNS)):
        raise ValueError(f"expected numeric shape (n, {len(NUMERIC_COLUMNS)}), got {numeric.shape}")
    if len(ocean) != n:
        raise ValueError(f"got {n} numeric rows but {len(ocean)} {CATEGORICAL_COLUMN} values")
    out = np.zeros((n, N_ENCODED), dtype=np.float32)
    out[:, : len(NUMERIC_COLUMNS)] = numeric
    bedrooms = out[:, _BEDROOMS_AT]
    bedrooms[np.isnan(bedrooms)] = bedrooms_median
    _refuse_missing(out)
    hot = []
    for c in ocean:
        if c not in _CATEGORY_INDEX:
            raise _unknown_category(c)
        hot.append(_CATEGORY_INDEX[c])
    out[np.arange(n), len(NUMERIC_COLUMNS) + np.asarray(hot, dtype=np.int64)] = 1.0
    return out


def encode_rows(
    rows: Sequence[Sequence[float]], ocean: Sequence[str], bedrooms_median: float
) -> np.ndarray:
    """``encode`` for a few rows given as Python sequences (``NUMERIC_COLUMNS`` order, NaN for a
    missing ``total_bedrooms``), already known to be valid numbers: plain Python, as
    ``encode_records``, without a record's dict."""
    out = []
    for row, category in zip(rows, ocean, strict=True):
        hot = _ONE_HOT.get(category)
        if hot is None:
            raise _unknown_category(category)
        bedrooms = row[_BEDROOMS_AT]
        if bedrooms != bedrooms:  # NaN: missing
            row = [*row[:_BEDROOMS_AT], bedrooms_median, *row[_BEDROOMS_AT + 1 :]]
        out.append((*row, *hot))
    return np.array(out, dtype=np.float32).reshape(-1, N_ENCODED)


def encode_records(
    records: Iterable[Mapping[str, Any]], bedrooms_median: float, *, validated: bool = False
) -> np.ndarray:
    """``encode`` for records mapping raw field names to values (``total_bedrooms`` may be
    absent, None or NaN): data-frame rows in training, validated request records in serving.
    ``validated``: every value is already known to be a finite number (the request schemas'
    strict check), so the scan for NaN is skipped.

    Plain Python per record rather than a call to ``encode``: a request has one or a few rows,
    and numpy's fixed cost per call would be most of their encoding. A test checks that both
    encode the whole data set identically.
    """
    rows = []
    for r in records:
        category = r.get(CATEGORICAL_COLUMN)
        if category not in _ONE_HOT:
            raise _unknown_category(category)
        rows.append((*numeric_values(r, bedrooms_median), *_ONE_HOT[category]))
    out = np.array(rows, dtype=np.float32).reshape(-1, N_ENCODED)
    if not validated:
        _refuse_missing(out)
    return out
