"""Split conformal intervals (``modelspec.intervals``): the rank rule, the table, the bounds."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from modelspec.intervals import (
    COVERAGES,
    IntervalCalibration,
    bounds,
    calibrate,
    conformal_quantile,
)


def test_the_quantile_is_the_ceil_n_plus_1_c_th_smallest_score() -> None:
    scores = np.arange(1.0, 10.0)  # 9 scores: 1 .. 9
    assert conformal_quantile(scores, 0.5) == 5.0  # ceil(10 * 0.5) = 5th
    assert conformal_quantile(scores, 0.8) == 8.0  # ceil(10 * 0.8) = 8th
    assert conformal_quantile(scores[::-1], 0.9) == 9.0  # order does not matter


def test_too_few_scores_for_a_coverage_are_refused() -> None:
    with pytest.raises(ValueError, match="9 calibration scores are too few for coverage 0.95"):
        conformal_quantile(np.arange(1.0, 10.0), 0.95)  # rank 10 of 9


def test_intervals_hold_their_coverage_on_new_exchangeable_rows() -> None:
    # Errors whose size each row's scale knows: calibrated on 2,000 rows, tested on 40,000.
    rng = np.random.default_rng(7)

    def rows(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scale = rng.uniform(5_000, 80_000, n)
        point = rng.uniform(50_000, 450_000, n)
        return point + rng.laplace(0, scale), point, scale

    table = calibrate(*rows(2_000), COVERAGES)
    actual, point, scale = rows(40_000)
    for coverage in COVERAGES:
        low, high = bounds(point, scale, table.quantile(coverage))
        measured = float(np.mean((actual >= low) & (actual <= high)))
        assert coverage - 0.02 <= measured <= coverage + 0.02, (coverage, measured)


def test_adaptive_intervals_are_narrower_than_constant_width_when_the_scale_knows() -> None:
    rng = np.random.default_rng(8)
    scale = rng.uniform(5_000, 80_000, 4_000)
    point = np.full(4_000, 300_000.0)
    actual = point + rng.laplace(0, scale)
    adaptive = calibrate(actual[:2000], point[:2000], scale[:2000], (0.9,))
    constant = calibrate(actual[:2000], point[:2000], np.ones(2000), (0.9,))
    low, high = bounds(point[2000:], scale[2000:], adaptive.quantiles[0])
    flat_low, flat_high = bounds(point[2000:], np.ones(2000), constant.quantiles[0])
    assert np.mean(high - low) < 0.95 * np.mean(flat_high - flat_low)


def test_bounds_never_go_below_zero_dollars() -> None:
    points = np.array([10_000.0, 300_000.0, -90_000.0])
    low, high = bounds(points, np.full(3, 20_000.0), 2.0)
    assert low.tolist() == [0.0, 260_000.0, 0.0]
    assert high.tolist() == [50_000.0, 340_000.0, 0.0]


def test_the_table_records_the_calibration_rows_scale_range() -> None:
    table = calibrate(np.array([1.0, 2.0, 3.0]), np.zeros(3), np.array([4.0, 1.0, 2.0]), (0.5,))
    assert table.scale_range == (1.0, 4.0)


def test_the_table_answers_its_coverages_and_names_them_otherwise() -> None:
    table = IntervalCalibration(
        calibration_rows=10, coverages=[0.8, 0.9], quantiles=[1.2, 1.7], scale_range=(1.0, 2.0)
    )
    assert table.quantile(0.9) == 1.7
    with pytest.raises(KeyError, match=r"coverage 0.85 is not one of \[0.8, 0.9\]"):
        table.quantile(0.85)


@pytest.mark.parametrize(
    ("coverages", "quantiles", "scales", "message"),
    [
        ([0.8, 0.9], [1.0], (1.0, 2.0), "the same length"),
        ([0.9, 0.8], [1.0, 2.0], (1.0, 2.0), "ascending, each in"),
        ([0.8, 1.0], [1.0, 2.0], (1.0, 2.0), "ascending, each in"),
        ([0.8, 0.9], [2.0, 1.0], (1.0, 2.0), "finite, positive and ascending"),
        ([0.8, 0.9], [0.0, 1.0], (1.0, 2.0), "finite, positive and ascending"),
        ([0.8, 0.9], [1.0, float("inf")], (1.0, 2.0), "finite, positive and ascending"),
        ([0.8, 0.9], [1.0, 2.0], (2.0, 1.0), "scale_range must be"),
        ([0.8, 0.9], [1.0, 2.0], (0.0, 1.0), "scale_range must be"),
        ([0.8, 0.9], [1.0, 2.0], (1.0, float("inf")), "scale_range must be"),
    ],
)
def test_a_malformed_table_is_refused(
    coverages: list[float], quantiles: list[float], scales: tuple[float, float], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        IntervalCalibration(
            calibration_rows=10, coverages=coverages, quantiles=quantiles, scale_range=scales
        )
