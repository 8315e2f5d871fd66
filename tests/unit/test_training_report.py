"""The training report: scores, the JSON and Markdown files, and the plots."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from modelspec.intervals import COVERAGES, calibrate
from training.baselines import BASELINE_FEATURES, Baseline
from training.calibration import interval_figures
from training.metrics import EpochRecord, scores
from training.report import (
    PLOT_FILES,
    REPORT_JSON,
    REPORT_MD,
    RunSummary,
    build_report,
    render_markdown,
    write_report,
)

CATEGORIES = ["<1H OCEAN", "INLAND", "NEAR BAY", "NEAR OCEAN", "ISLAND"]


def test_scores_are_rmse_mae_and_r2() -> None:
    s = scores([1.0, 2.0, 5.0], [1.0, 4.0, 3.0])
    assert s.rmse == pytest.approx(math.sqrt(8 / 3))
    assert s.mae == pytest.approx(4 / 3)
    assert s.r2 == pytest.approx(1 - 8 / (14 / 3))  # residual / total sum of squares
    assert scores([1.0, 2.0], [1.0, 2.0]).r2 == 1.0
    assert scores([1.5, 1.5], [1.0, 2.0]).r2 == 0.0


def test_scores_refuse_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="need as many predictions as values"):
        scores([1.0], [1.0, 2.0])


def _summary(n: int = 300, epochs: int = 6) -> RunSummary:
    rng = np.random.default_rng(0)
    actual = rng.uniform(15_000, 500_001, n)
    history = [
        EpochRecord(e, 60_000 / e, 70_000 / e + 1_000 * max(0, e - 4), 65_000 / e)
        for e in range(1, epochs + 1)
    ]

    def baseline(key: str, name: str, noise: float) -> Baseline:
        return Baseline(key, name, BASELINE_FEATURES, actual + rng.normal(0, noise, n), 0.5)

    # Intervals: errors whose scale each row's ``scale`` knows, calibrated on other rows.
    def rows(count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scale = rng.uniform(10_000, 60_000, count)
        truth = rng.uniform(15_000, 500_001, count)
        return truth, truth + rng.laplace(0, scale), scale

    cal_actual, cal_point, cal_scale = rows(400)
    val_actual, val_point, val_scale = rows(n)
    ocean = [CATEGORIES[i % 4] for i in range(n - 1)] + ["ISLAND"]
    figures = interval_figures(
        calibrate(cal_actual, cal_point, cal_scale, COVERAGES),
        calibrate(cal_actual, cal_point, np.ones(400), COVERAGES),
        val_actual,
        val_point,
        val_scale,
        ocean,
    )

    return RunSummary(
        data="housing.csv",
        settings={"epochs": epochs, "patience": 3, "learning_rate": 1e-3},
        rows={"train": 800, "fit": 720, "holdout": 80, "val": n},
        history=history,
        best_epoch=4,
        mlp_seconds=12.5,
        val_actual=actual,
        val_ocean=ocean,
        mlp_val_predictions=actual + rng.normal(0, 40_000, n),
        baselines=[
            Baseline("mean", "Mean", BASELINE_FEATURES, np.full(n, actual.mean()), 0.0),
            baseline("linear_regression", "LinearRegression", 70_000),
            baseline("hist_gradient_boosting", "HistGradientBoostingRegressor", 48_000),
        ],
        intervals=figures,
        val_scale=val_scale,
    )


def test_the_report_is_written_as_json_markdown_and_pngs(tmp_path: Path) -> None:
    summary = _summary()
    report = write_report(tmp_path, summary, run_started=time.perf_counter())
    assert json.loads((tmp_path / REPORT_JSON).read_text()) == report
    assert list(report["models"]) == ["mlp", "mean", "linear_regression", "hist_gradient_boosting"]
    mlp = report["models"]["mlp"]["val"]
    assert mlp == scores(summary.mlp_val_predictions, summary.val_actual).to_dict()
    assert report["mlp_minus_hgb_rmse"] == pytest.approx(
        mlp["rmse"] - report["models"]["hist_gradient_boosting"]["val"]["rmse"]
    )
    assert (report["mlp"]["best_epoch"], report["mlp"]["epochs_run"]) == (4, 6)
    assert report["mlp"]["history"][0] == {
        "epoch": 1,
        "train_rmse": 60_000.0,
        "holdout_rmse": 70_000.0,
        "val_rmse": 65_000.0,
    }
    assert report["plots"] == [f"plots/{name}" for name in PLOT_FILES]
    for name in PLOT_FILES:
        png = (tmp_path / "plots" / name).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000, name
    assert (tmp_path / REPORT_MD).read_text() == render_markdown(report)


def test_the_markdown_has_the_table_the_epochs_and_the_images() -> None:
    summary = _summary()
    report = build_report(summary, run_seconds=20.0, plot_files=list(PLOT_FILES))
    md = render_markdown(report)
    assert "| model | RMSE | MAE | R² | seconds | features |" in md
    rmse = report["models"]["mlp"]["val"]["rmse"]
    assert f"| **MLP (this artifact)** | ${rmse:,.0f} |" in md
    assert "| Mean | $" in md and "| 0.000 |" in md  # no "-0.000" for the mean
    assert "kept epoch 4 of 6 run (6 planned, patience 3)" in md
    for name in PLOT_FILES:
        assert f"(plots/{name})" in md
    assert "## Prediction intervals" in md
    assert "from 400 rows of the early-stopping holdout" in md
    at90 = report["intervals"]["validation"]["0.9"]
    assert f"| 90% | {100 * at90['coverage']:.1f}% | ${at90['mean_width']:,.0f} |" in md
    assert "| `ISLAND` | 1 |" in md
    assert "Weakest group: " in md


def test_a_short_run_plots_without_warnings(tmp_path: Path) -> None:
    # One epoch (the quick test runs): curves of one point, still a valid picture.
    summary = dataclasses.replace(_summary(n=50, epochs=1), best_epoch=1)
    write_report(tmp_path, summary, run_started=time.perf_counter())
    for name in PLOT_FILES:
        assert (tmp_path / "plots" / name).stat().st_size > 0
