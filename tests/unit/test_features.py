import math

import numpy as np
import pytest

from modelspec import features
from modelspec.features import (
    ENCODED_COLUMNS,
    N_ENCODED,
    NUMERIC_COLUMNS,
    OCEAN_CATEGORIES,
    DerivedFeature,
    encode,
    feature_hash,
)

ROW = [-122.23, 37.88, 41.0, 880.0, 129.0, 322.0, 126.0, 8.3252]


def test_encoded_columns_are_numeric_then_one_hot() -> None:
    assert ENCODED_COLUMNS[:8] == NUMERIC_COLUMNS
    assert ENCODED_COLUMNS[8:] == tuple(f"ocean_proximity={c}" for c in OCEAN_CATEGORIES)
    assert N_ENCODED == 13


def test_encode_copies_numbers_and_one_hot_encodes_the_category() -> None:
    out = encode(np.array([ROW, ROW]), ["NEAR BAY", "<1H OCEAN"], bedrooms_median=435.0)
    assert out.dtype == np.float32
    assert out.shape == (2, 13)
    np.testing.assert_allclose(out[0, :8], np.float32(ROW))
    assert out[0, 8:].tolist() == [0, 0, 0, 1, 0]
    assert out[1, 8:].tolist() == [1, 0, 0, 0, 0]


def test_missing_bedrooms_are_imputed_with_the_given_median() -> None:
    row = [*ROW]
    row[NUMERIC_COLUMNS.index("total_bedrooms")] = math.nan
    out = encode(np.array([row, ROW]), ["INLAND", "INLAND"], bedrooms_median=435.0)
    assert out[0, 4] == 435.0
    assert out[1, 4] == 129.0


def test_a_missing_value_elsewhere_is_refused() -> None:
    row = [*ROW]
    row[NUMERIC_COLUMNS.index("population")] = math.nan
    with pytest.raises(ValueError, match="row 0: only total_bedrooms may be missing"):
        encode(np.array([row]), ["INLAND"], bedrooms_median=435.0)


def test_an_unknown_category_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown ocean_proximity 'LAKE'.*INLAND"):
        encode(np.array([ROW]), ["LAKE"], bedrooms_median=435.0)


def test_shape_mismatches_are_refused() -> None:
    with pytest.raises(ValueError, match="expected numeric shape"):
        encode(np.array([ROW[:7]]), ["INLAND"], bedrooms_median=1.0)
    with pytest.raises(ValueError, match="1 numeric rows but 2"):
        encode(np.array([ROW]), ["INLAND", "INLAND"], bedrooms_median=1.0)


def test_feature_hash_is_pinned() -> None:
    # Changing the feature definition must be deliberate: update this value together with
    # SPEC_VERSION, and retrain -- servers refuse artifacts built with another hash.
    assert feature_hash() == "1582f3f827b4b6e61d65b68d1122b0d9744c8eefad94ea56dc587e8fdaec8b17"


def test_feature_hash_covers_the_derived_feature_definitions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = feature_hash()
    changed = (*features.DERIVED_FEATURES[:-1], DerivedFeature("x", "log1p", ("households",)))
    monkeypatch.setattr(features, "DERIVED_FEATURES", changed)
    assert feature_hash() != before
