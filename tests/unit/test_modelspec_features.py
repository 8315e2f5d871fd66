import math

import numpy as np
import pandas as pd
import pytest

from modelspec import features
from modelspec.features import (
    DERIVED_FEATURES,
    ENCODED_COLUMNS,
    GEO_FEATURES,
    N_ENCODED,
    NUMERIC_COLUMNS,
    OCEAN_CATEGORIES,
    DerivedFeature,
    encode,
    encode_records,
    encode_rows,
    feature_hash,
)

RECORD = {
    "longitude": -122.23,
    "latitude": 37.88,
    "housing_median_age": 41.0,
    "total_rooms": 880.0,
    "total_bedrooms": 129.0,
    "population": 322.0,
    "households": 126.0,
    "median_income": 8.3252,
    "ocean_proximity": "NEAR BAY",
}
ROW = [RECORD[c] for c in NUMERIC_COLUMNS]


def test_encoded_columns_are_numeric_then_one_hot() -> None:
    assert ENCODED_COLUMNS[:8] == NUMERIC_COLUMNS
    assert ENCODED_COLUMNS[8:] == tuple(f"ocean_proximity={c}" for c in OCEAN_CATEGORIES)
    assert N_ENCODED == 13


def test_encode_copies_numbers_and_one_hot_encodes_the_category() -> None:
    other = {**RECORD, "ocean_proximity": "<1H OCEAN"}
    out = encode_records([RECORD, other], bedrooms_median=435.0)
    assert out.dtype == np.float32
    assert out.shape == (2, 13)
    np.testing.assert_array_equal(out[0, :8], np.float32(ROW))
    assert out[0, 8:].tolist() == [0, 0, 0, 1, 0]
    assert out[1, 8:].tolist() == [1, 0, 0, 0, 0]


@pytest.mark.parametrize("missing", ["absent", None, math.nan])
def test_missing_bedrooms_are_imputed_with_the_given_median(missing: object) -> None:
    record = {k: v for k, v in RECORD.items() if k != "total_bedrooms"}
    if missing != "absent":
        record["total_bedrooms"] = missing
    out = encode_records([record, RECORD], bedrooms_median=435.0)
    assert out[0, 4] == 435.0
    assert out[1, 4] == 129.0


def test_a_missing_value_elsewhere_is_refused() -> None:
    with pytest.raises(ValueError, match="row 1: only total_bedrooms may be missing"):
        encode_records([RECORD, {**RECORD, "population": math.nan}], bedrooms_median=435.0)


def test_an_unknown_category_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown ocean_proximity 'LAKE'.*INLAND"):
        encode_records([{**RECORD, "ocean_proximity": "LAKE"}], bedrooms_median=435.0)


def test_no_records_encode_to_an_empty_batch() -> None:
    assert encode_records([], bedrooms_median=1.0).shape == (0, 13)


def test_the_encoders_agree_on_the_whole_data_set(housing_frame: pd.DataFrame) -> None:
    records = housing_frame.to_dict(orient="records")
    numeric = housing_frame[list(NUMERIC_COLUMNS)].to_numpy(dtype=np.float64)
    ocean = housing_frame["ocean_proximity"].tolist()
    by_record = encode_records(records, bedrooms_median=435.0)
    by_column = encode(numeric, ocean, bedrooms_median=435.0)
    by_row = encode_rows(numeric.tolist(), ocean, bedrooms_median=435.0)
    np.testing.assert_array_equal(by_record, by_column)
    np.testing.assert_array_equal(by_row, by_column)


def test_encode_refuses_bad_shapes_and_categories() -> None:
    with pytest.raises(ValueError, match="expected numeric shape"):
        encode(np.zeros((1, 7)), ["INLAND"], bedrooms_median=1.0)
    with pytest.raises(ValueError, match="1 numeric rows but 2"):
        encode(np.zeros((1, 8)), ["INLAND", "INLAND"], bedrooms_median=1.0)
    with pytest.raises(ValueError, match="unknown ocean_proximity 'LAKE'"):
        encode(np.zeros((1, 8)), ["LAKE"], bedrooms_median=1.0)


def test_the_whole_data_set_encodes_like_a_column_wise_reference(
    housing_frame: pd.DataFrame,
) -> None:
    out = encode_records(housing_frame.to_dict(orient="records"), bedrooms_median=435.0)
    numeric = housing_frame[list(NUMERIC_COLUMNS)].to_numpy(dtype=np.float32)
    numeric[:, 4] = np.where(np.isnan(numeric[:, 4]), np.float32(435.0), numeric[:, 4])
    np.testing.assert_array_equal(out[:, :8], numeric)
    hot = pd.get_dummies(housing_frame["ocean_proximity"])[list(OCEAN_CATEGORIES)]
    np.testing.assert_array_equal(out[:, 8:], hot.to_numpy(dtype=np.float32))


def test_feature_hash_is_pinned() -> None:
    # Changing the feature definition must be deliberate: update this value together with
    # SPEC_VERSION, and retrain -- servers refuse artifacts built with another hash.
    assert feature_hash() == "1d4b18e2e3217435cd87985eb8efe21a14437bb12511a414d616f56f484e1985"


def test_feature_hash_covers_the_derived_feature_definitions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = feature_hash()
    changed = (*features.DERIVED_FEATURES[:-1], DerivedFeature("x", "log1p", ("households",)))
    monkeypatch.setattr(features, "DERIVED_FEATURES", changed)
    assert feature_hash() != before


def test_derived_feature_names_are_unique() -> None:
    names = [f.name for f in DERIVED_FEATURES]
    assert len(names) == len(set(names)) == 116


def test_periodic_location_features_pair_a_sine_with_a_cosine() -> None:
    assert len(GEO_FEATURES) == 8 * 6 * 2
    sines = {(f.weights, f.origin) for f in GEO_FEATURES if f.op == "sin"}
    cosines = {(f.weights, f.origin) for f in GEO_FEATURES if f.op == "cos"}
    assert sines == cosines
    assert len(sines) == 48
    for f in GEO_FEATURES:
        assert f.inputs == ("longitude", "latitude")
        assert len(f.weights) == len(f.origin) == 2


def test_periodic_weights_are_exact_powers_of_two() -> None:
    # Exact in binary: the spec (and its hash) is the same on every machine, and the graph's
    # products (x - origin) * weight are exact in float32.
    for f in GEO_FEATURES:
        for w in f.weights:
            assert w == 0 or math.frexp(abs(w))[0] == 0.5, (f.name, w)
        for o in f.origin:
            assert float(np.float32(o)) == o
