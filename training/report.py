"""The training report beside the artifact: the MLP against baselines fitted in the same run on
the same split, as ``report.json`` (for programs and tests) and ``report.md`` (for people),
with the plots in ``plots/``."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from modelspec.features import DERIVED_FEATURES, GEO_DIRECTIONS, GEO_PERIODS, N_ENCODED
from training.baselines import Baseline
from training.metrics import EpochRecord, scores

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PLOTS_DIR = "plots"
LEARNING_CURVES = "learning_curves.png"
PREDICTED_VS_ACTUAL = "predicted_vs_actual.png"
RESIDUALS_BY_OCEAN = "residuals_by_ocean_proximity.png"
INTERVALS = "intervals.png"
PLOT_FILES = (LEARNING_CURVES, PREDICTED_VS_ACTUAL, RESIDUALS_BY_OCEAN, INTERVALS)
MLP_KEY = "mlp"
HGB_KEY = "hist_gradient_boosting"
SPLIT = "train_test_split(test_size=0.2, random_state=42), the blog's"


@dataclass(frozen=True)
class RunSummary:
    """What a training run hands the report."""

    data: str
    settings: dict[str, Any]
    rows: dict[str, int]  # train, fit, holdout, val
    history: list[EpochRecord]
    best_epoch: int
    mlp_seconds: float
    val_actual: np.ndarray
    val_ocean: list[str]
    mlp_val_predictions: np.ndarray
    baselines: list[Baseline]
    # ``training.calibration.interval_figures``, and the validation rows' scales in dollars.
    intervals: dict[str, Any]
    val_scale: np.ndarray


def describe_mlp_features() -> str:
    ops = Counter(f.op for f in DERIVED_FEATURES)
    periodic = ops["sin"] + ops["cos"]
    return (
        f"{len(DERIVED_FEATURES)} features computed inside the graph from the same "
        f"{N_ENCODED} columns: the numbers, logs of the counts and of income, per-household "
        "ratios, bedrooms per room, rotated coordinates, the one-hot, and "
        f"{periodic} sines/cosines of the location ({len(GEO_DIRECTIONS)} directions x "
        f"{len(GEO_PERIODS)} periods, {max(GEO_PERIODS):g} to {min(GEO_PERIODS):g} degrees)"
    )


def build_report(summary: RunSummary, run_seconds: float, plot_files: list[str]) -> dict[str, Any]:
    """The report as plain JSON data; ``models`` lists the MLP first, then the baselines."""
    actual = summary.val_actual
    models: dict[str, dict[str, Any]] = {
        MLP_KEY: {
            "name": "MLP (this artifact)",
            "features": describe_mlp_features(),
            "val": scores(summary.mlp_val_predictions, actual).to_dict(),
            "seconds": summary.mlp_seconds,
        }
    }
    for b in summary.baselines:
        models[b.key] = {
            "name": b.name,
            "features": b.features,
            "val": scores(b.val_predictions, actual).to_dict(),
            "seconds": round(b.seconds, 2),
        }
    best = summary.history[summary.best_epoch - 1]
    report: dict[str, Any] = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": summary.data,
        "split": {"validation": SPLIT, **{f"rows_{k}": v for k, v in summary.rows.items()}},
        "models": models,
        "mlp": {
            "epochs": summary.settings["epochs"],
            "epochs_run": len(summary.history),
            "best_epoch": summary.best_epoch,
            "holdout_rmse": best.holdout_rmse,
            "train_rmse": best.train_rmse,
            "seconds": summary.mlp_seconds,
            "settings": summary.settings,
            "history": [vars(r) for r in summary.history],
        },
        "intervals": summary.intervals,
        "run_seconds": round(run_seconds, 2),
        "plots": [f"{PLOTS_DIR}/{name}" for name in plot_files],
    }
    if HGB_KEY in models:
        report["mlp_minus_hgb_rmse"] = (
            models[MLP_KEY]["val"]["rmse"] - models[HGB_KEY]["val"]["rmse"]
        )
    return report


def _money(x: float) -> str:
    return f"${x:,.0f}"


def render_markdown(report: dict[str, Any]) -> str:
    split, mlp = report["split"], report["mlp"]
    lines = [
        "# Training report",
        "",
        f"Data `{report['data']}`, split `{split['validation']}`: "
        f"{split['rows_train']:,} training rows, {split['rows_val']:,} validation rows. "
        f"The MLP trains on {split['rows_fit']:,} of the training rows and picks its epoch on "
        f"the other {split['rows_holdout']:,}; the baselines fit all {split['rows_train']:,}. "
        "The validation rows are only scored, never used to choose anything.",
        "",
        "## Validation scores (same run, same split, same imputation)",
        "",
        "| model | RMSE | MAE | R² | seconds | features |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for key, m in report["models"].items():
        name = f"**{m['name']}**" if key == MLP_KEY else m["name"]
        v = m["val"]
        r2 = round(v["r2"], 3) + 0.0  # no "-0.000" for the mean predictor
        lines.append(
            f"| {name} | {_money(v['rmse'])} | {_money(v['mae'])} | {r2:.3f} | "
            f"{m['seconds']:.1f} | {m['features']} |"
        )
    if "mlp_minus_hgb_rmse" in report:
        diff = report["mlp_minus_hgb_rmse"]
        word = "below" if diff <= 0 else "above"
        lines += ["", f"The MLP's RMSE is {_money(abs(diff))} {word} gradient boosting's."]
    settings = mlp["settings"]
    lines += [
        "",
        "## MLP training",
        "",
        f"- Epochs: kept epoch {mlp['best_epoch']} of {mlp['epochs_run']} run "
        f"({mlp['epochs']} planned, patience {settings['patience']}); holdout RMSE "
        f"{_money(mlp['holdout_rmse'])}, train RMSE {_money(mlp['train_rmse'])}.",
        f"- Time: {mlp['seconds']:.1f} s for the MLP, {report['run_seconds']:.1f} s for the "
        "whole run (baselines, report and plots included).",
        "",
        "| setting | value |",
        "| --- | --- |",
        *(f"| {k} | {v} |" for k, v in settings.items()),
        "",
        *interval_section(report["intervals"], split["rows_val"]),
        "## Plots",
        "",
        *(f"![{Path(p).stem.replace('_', ' ')}]({p})" for p in report["plots"]),
        "",
    ]
    return "\n".join(lines)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def interval_section(figures: dict[str, Any], rows_val: int) -> list[str]:
    """The report's prediction-interval section, from ``interval_figures``."""
    at = f"{figures['breakdown_coverage']:.0%}"
    lines = [
        "## Prediction intervals",
        "",
        f"Method: {figures['method']}. The scale head is fitted on the rows trained on, with the "
        f"point's weights frozen, and its scales raised to the power "
        f"{figures['scale_exponent']:g}; the conformal quantiles come from "
        f"{figures['calibration_rows']:,} rows of {figures['calibration_slice']}; everything "
        "below is measured on the "
        f"{rows_val:,} validation rows. Constant width is the same rule with one width for every"
        " row, what a generic conformal library gives.",
        "",
        "| coverage asked | measured | mean width | median width | constant width: measured "
        "| its mean width |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for coverage, m in figures["validation"].items():
        c = m["constant"]
        lines.append(
            f"| {float(coverage):.0%} | {_pct(m['coverage'])} | {_money(m['mean_width'])} | "
            f"{_money(m['median_width'])} | {_pct(c['coverage'])} | {_money(c['mean_width'])} |"
        )
    groups = [
        *((f"`{name}`", m) for name, m in figures["by_ocean_proximity"].items()),
        *(
            (f"predicted {_money(b['predicted_from'])}-{_money(b['predicted_to'])}", b)
            for b in figures["by_predicted_quintile"]
        ),
    ]
    lines += [
        "",
        f"Coverage at {at} by group (conditional coverage: the guarantee is on average over all "
        "rows, not within each group):",
        "",
        "| group | rows | measured | mean width | constant width: measured | its mean width |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {name} | {m['rows']:,} | {_pct(m['coverage'])} | {_money(m['mean_width'])} | "
            f"{_pct(m['constant']['coverage'])} | {_money(m['constant']['mean_width'])} |"
            for name, m in groups
        ),
    ]
    weakest_name, weakest = min(groups, key=lambda g: g[1]["coverage"])
    lines += [
        "",
        f"Weakest group: {weakest_name}, {_pct(weakest['coverage'])} at {at} "
        f"({weakest['rows']:,} rows). The data's values stop at $500,001, so near the top the "
        "true value of a capped block group is unknown and an interval above the cap is never "
        "tested by it.",
        "",
    ]
    return lines


def remove_report(out_dir: Path) -> None:
    """Delete a report left by an earlier run: it would describe another model."""
    for path in (
        out_dir / REPORT_JSON,
        out_dir / REPORT_MD,
        *(out_dir / PLOTS_DIR / p for p in PLOT_FILES),
    ):
        path.unlink(missing_ok=True)


def write_report(out_dir: Path, summary: RunSummary, run_started: float) -> dict[str, Any]:
    """Write the plots, ``report.json`` and ``report.md`` into ``out_dir``; return the report."""
    from training import plots  # matplotlib: only when a report is written (not --no-report)

    folder = out_dir / PLOTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    actual = summary.val_actual
    models = [plots.Predictions("MLP", summary.mlp_val_predictions)]
    reference = next((b for b in summary.baselines if b.key == HGB_KEY), None)
    reference_rmse = None
    if reference is not None:
        models.append(plots.Predictions("Gradient boosting (defaults)", reference.val_predictions))
        reference_rmse = ("gradient boosting", scores(reference.val_predictions, actual).rmse)
    plots.learning_curves(
        folder / LEARNING_CURVES, summary.history, summary.best_epoch, reference_rmse
    )
    plots.predicted_vs_actual(folder / PREDICTED_VS_ACTUAL, models, actual)
    plots.residuals_by_ocean_proximity(
        folder / RESIDUALS_BY_OCEAN, models, actual, summary.val_ocean
    )
    figures = summary.intervals
    q = figures["quantiles"][figures["coverages"].index(figures["breakdown_coverage"])]
    plots.intervals(folder / INTERVALS, figures, summary.mlp_val_predictions, summary.val_scale, q)
    report = build_report(summary, time.perf_counter() - run_started, list(PLOT_FILES))
    (out_dir / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / REPORT_MD).write_text(render_markdown(report))
    return report
