"""Serving's choice of coverage (``app.core.intervals``) and its startup checks
(``app.core.runtime``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.core.intervals import Intervals
from app.core.served import serving_intervals
from app.errors import InvalidInput, StartupError
from modelspec.intervals import IntervalCalibration
from modelspec.manifest import Manifest

TABLE = IntervalCalibration(
    calibration_rows=100, coverages=[0.8, 0.9], quantiles=[1.5, 2.0], scale_range=(1.0, 9.0)
)


def test_the_query_chooses_the_coverage_and_the_default_fills_in() -> None:
    intervals = Intervals(TABLE, 0.9)
    assert intervals.default is not None and intervals.default.coverage == 0.9
    chosen = intervals.choose(b"coverage=0.8")
    assert chosen is not None and (chosen.coverage, chosen.quantile) == (0.8, 1.5)
    assert intervals.choose(b"") is intervals.default
    assert intervals.choose(b"other=1") is intervals.default
    assert intervals.choose(b"coverage=0") is None
    assert intervals.choose(b"x=1&coverage=0.80") is not None  # 0.80 is 0.8
    with pytest.raises(InvalidInput, match="must be one of 0.8, 0.9, or 0"):
        intervals.choose(b"coverage=")  # asked, but for nothing: not the default


def test_bounds_are_value_plus_or_minus_q_scales_to_the_cent_and_never_below_zero() -> None:
    chosen = Intervals(TABLE, 0.9).choose(b"coverage=0.8")
    assert chosen is not None
    ranges = chosen.ranges([100_000.0, 1_000.0, -9_000.0], [10_000.004, 2_000.0, 2_000.0])
    assert ranges.coverage == 0.8
    assert ranges.bounds == [(84_999.99, 115_000.01), (0.0, 4_000.0), (0.0, 0.0)]


def test_a_model_without_a_table_serves_points_and_says_how_to_get_ranges() -> None:
    intervals = Intervals(None, 0.9)
    assert intervals.choose(b"") is None
    assert intervals.choose(b"coverage=0") is None
    with pytest.raises(InvalidInput, match="retrain with `python -m training`"):
        intervals.choose(b"coverage=0.9")


def test_an_uncalibrated_default_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"=0.85 is not a calibrated coverage; the manifest has "):
        Intervals(TABLE, 0.85)
    assert Intervals(TABLE, 0).default is None


@pytest.fixture
def manifest(artifacts: Path) -> Manifest:
    return Manifest.load(artifacts)


def _manifest(
    artifacts_manifest: Manifest, table: IntervalCalibration | None, scales: bool
) -> Manifest:
    compiled = artifacts_manifest.compiled
    assert compiled is not None
    log_scales = compiled.reference_log_scales if scales else []
    return artifacts_manifest.model_copy(
        update={
            "intervals": table,
            "compiled": compiled.model_copy(update={"reference_log_scales": log_scales}),
        }
    )


def test_a_table_without_scales_in_the_artifact_stops_startup(manifest: Manifest) -> None:
    with pytest.raises(StartupError, match="compiled before prediction intervals"):
        serving_intervals(_manifest(manifest, TABLE, scales=False), 0.9)
    assert serving_intervals(_manifest(manifest, TABLE, scales=True), 0.9).default is not None


def test_a_model_without_a_table_logs_once_and_serves_points(
    manifest: Manifest, caplog: pytest.LogCaptureFixture
) -> None:
    intervals = serving_intervals(_manifest(manifest, None, scales=False), 0.9)
    assert intervals.default is None
    assert "answers carry no price range" in caplog.text


def test_one_row_a_few_rows_and_many_rows_get_the_same_cents() -> None:
    # Three paths (one row, a few in Python, many with numpy): the same rounding.
    chosen = Intervals(TABLE, 0.9).default
    assert chosen is not None
    rng = np.random.default_rng(3)
    values = rng.uniform(-50_000, 600_000, 400).round(2).tolist()
    scales = rng.uniform(1_000, 200_000, 400).tolist()
    many = chosen.ranges(values, scales).bounds
    few = [
        b
        for i in range(0, 400, 4)
        for b in chosen.ranges(values[i : i + 4], scales[i : i + 4]).bounds
    ]
    one = [chosen.ranges([v], [s]).bounds[0] for v, s in zip(values, scales, strict=True)]
    assert many == few == one
    assert all(0 <= low <= high for low, high in many)
