"""Flags for unseen inputs: what is flagged, what is not, and that each flag is counted."""

from __future__ import annotations

import numpy as np

from app.core.flags import VALUE_CAP, VALUE_FLOOR, Flagger
from modelspec.features import EXAMPLE_RECORD, encode_records

RANGES = {"median_income": (0.5, 15.0), "latitude": (32.6, 41.9), "longitude": (-124.3, -114.4)}


def row(**change: object) -> np.ndarray:
    return encode_records([{**EXAMPLE_RECORD, **change}], bedrooms_median=435.0)


def test_a_usual_row_has_no_flags() -> None:
    assert Flagger(RANGES).flags(row(), np.array([250_000.0])) == []


def test_each_kind_of_flag_names_its_row_field_and_code() -> None:
    seen: list[tuple[str, str]] = []
    flagger = Flagger(RANGES, lambda field, code: seen.append((field, code)))
    x = np.concatenate([row(), row(median_income=15.0001), row(latitude=45.0), row()])
    flags = flagger.flags(x, np.array([1e5, 2e5, 3e5, VALUE_CAP + 1]))
    got = [(f["row"], f["field"], f["code"]) for f in flags]
    assert got == [
        (1, "median_income", "out_of_range"),
        (2, "latitude", "out_of_range"),
        (2, "location", "outside_california"),
        (3, "house_value", "above_cap"),
    ]
    assert "above the 99.5th percentile" in flags[0]["message"]
    assert seen == [(field, code) for _, field, code in got]


def test_a_low_value_is_flagged_below() -> None:
    flags = Flagger(RANGES).flags(row(median_income=0.4999), np.array([1e5]))
    assert [f["code"] for f in flags] == ["out_of_range"]
    assert "below the 0.5th percentile" in flags[0]["message"]


def test_without_recorded_ranges_only_location_and_cap_are_flagged() -> None:
    flags = Flagger({}).flags(row(median_income=99.0, longitude=-100.0), np.array([1e5]))
    assert [f["code"] for f in flags] == ["outside_california"]


def test_no_rows_no_flags() -> None:
    assert Flagger(RANGES).flags(np.zeros((0, 13), np.float32), np.zeros(0)) == []


def test_screen_marks_exactly_the_rows_that_have_flags() -> None:
    x = np.concatenate(
        [row(), row(median_income=15.0001), row(), row(longitude=-100.0), row(), row()]
    )
    dollars = np.array([1e5, 2e5, 3e5, 4e5, VALUE_CAP + 1, 5e5])
    flagger = Flagger(RANGES)
    flagged_rows = sorted({f["row"] for f in flagger.flags(x, dollars)})
    assert flagger.screen(x, dollars) == flagged_rows == [1, 3, 4]
    assert flagger.screen(row(), np.array([1e5])) == []
    # A few rows are screened in Python, many with numpy: the same rows either way.
    for start in range(len(x)):
        for size in (1, 2, 4):
            part = slice(start, start + size)
            in_part = [r - start for r in flagged_rows if start <= r < start + size]
            assert flagger.screen(x[part], dollars[part]) == in_part


def test_a_value_at_the_floor_is_flagged_below_floor() -> None:
    flags = Flagger(RANGES).flags(np.concatenate([row(), row()]), np.array([VALUE_FLOOR, 2e5]))
    assert [(f["row"], f["field"], f["code"]) for f in flags] == [(0, "house_value", "below_floor")]
