"""The report's pictures (PNG): learning curves, predicted vs actual, residuals by category.

Drawn with matplotlib's object API on the Agg canvas: no pyplot, no GUI backend and no global
state, so training can run anywhere (a server, a container, a test).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from modelspec.features import OCEAN_CATEGORIES
from training.metrics import EpochRecord, scores

# The data set's values stop at $500,001 (the census capped them).
VALUE_CAP = 500_001
DPI = 110
COLORS = ("tab:blue", "tab:orange")


@dataclass(frozen=True)
class Predictions:
    """One model's validation predictions in dollars, and the name shown in the plots."""

    name: str
    values: np.ndarray


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)  # the Agg canvas, whatever matplotlib's default backend
    fig.savefig(path, dpi=DPI)
    return path


def learning_curves(
    path: Path,
    history: Sequence[EpochRecord],
    best_epoch: int,
    reference: tuple[str, float] | None = None,
) -> Path:
    """RMSE per epoch on the rows trained on, the early-stopping holdout and the validation
    split, with the epoch kept and a reference model's validation RMSE if given."""
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    epochs = [r.epoch for r in history]
    curves = {
        "train (rows trained on)": [r.train_rmse for r in history],
        "holdout (picks the epoch)": [r.holdout_rmse for r in history],
        "validation (reported only)": [r.val_rmse for r in history],
    }
    for label, values in curves.items():
        ax.plot(
            epochs, np.asarray(values) / 1e3, label=label, marker="." if len(epochs) < 20 else ""
        )
    # The first epochs are far above the rest; leave them out of the y range.
    shown = [v[2:] if len(v) > 5 else v for v in curves.values()]
    if reference is not None:
        name, rmse = reference
        ax.axhline(rmse / 1e3, color="gray", linestyle=":", label=f"{name}, validation")
        shown.append([rmse])
    ax.axvline(
        best_epoch, color="black", linestyle="--", linewidth=1, label=f"kept: epoch {best_epoch}"
    )
    span = np.concatenate([np.asarray(v, dtype=np.float64) for v in shown]) / 1e3
    ax.set_ylim(float(span.min()) * 0.9, float(span.max()) * 1.05)
    ax.set_xlabel("epoch")
    ax.set_ylabel("RMSE (thousand \\$)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Learning curves")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def _scatter(ax: Axes, model: Predictions, actual: np.ndarray) -> None:
    s = scores(model.values, actual)
    ax.scatter(actual / 1e3, model.values / 1e3, s=3, alpha=0.25, linewidths=0)
    top = max(float(actual.max()), float(model.values.max())) / 1e3
    ax.plot([0, top], [0, top], color="black", linewidth=1, label="predicted = actual")
    ax.axvline(VALUE_CAP / 1e3, color="gray", linestyle=":", label="the data's cap (\\$500,001)")
    # "\$": a plain "$" would start matplotlib's math mode.
    ax.set_title(f"{model.name}\nRMSE \\${s.rmse:,.0f}, MAE \\${s.mae:,.0f}, R² {s.r2:.3f}")
    ax.set_xlabel("actual (thousand \\$)")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)


def predicted_vs_actual(path: Path, models: Sequence[Predictions], actual: np.ndarray) -> Path:
    """One scatter per model of its validation predictions against the true values."""
    fig = Figure(figsize=(5.5 * len(models), 5.8), layout="constrained")
    axes = fig.subplots(1, len(models), squeeze=False, sharey=True)[0]
    for ax, model in zip(axes, models, strict=True):
        _scatter(ax, model, actual)
    axes[0].set_ylabel("predicted (thousand \\$)")
    axes[0].legend(loc="upper left")
    fig.suptitle(f"Validation split ({len(actual):,} block groups)")
    return _save(fig, path)


def residuals_by_ocean_proximity(
    path: Path, models: Sequence[Predictions], actual: np.ndarray, ocean: Sequence[str]
) -> Path:
    """Box plots of predicted - actual per ``ocean_proximity``, the models side by side
    (boxes: quartiles; whiskers: 5th to 95th percentile; diamonds: mean)."""
    categories = np.asarray(ocean)
    present = [c for c in OCEAN_CATEGORIES if (categories == c).any()]
    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(models)
    for k, (model, color) in enumerate(zip(models, COLORS, strict=False)):
        residuals = (model.values - actual) / 1e3
        groups = [residuals[categories == c] for c in present]
        positions = np.arange(len(present)) + (k - (len(models) - 1) / 2) * width
        boxes = ax.boxplot(
            groups,
            positions=positions,
            widths=width * 0.9,
            whis=(5, 95),
            showfliers=False,
            showmeans=True,
            patch_artist=True,
            meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": color},
            medianprops={"color": "black"},
        )
        for box in boxes["boxes"]:
            box.set_facecolor(color)
            box.set_alpha(0.6)
        boxes["boxes"][0].set_label(model.name)
    counts = [int((categories == c).sum()) for c in present]
    ax.set_xticks(
        np.arange(len(present)), [f"{c}\nn={n:,}" for c, n in zip(present, counts, strict=True)]
    )
    ax.axhline(0, color="gray", linewidth=1)
    ax.set_ylabel("predicted - actual (thousand \\$)")
    ax.set_title("Validation residuals by ocean_proximity")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return _save(fig, path)


def intervals(
    path: Path, figures: dict[str, Any], predicted: np.ndarray, scale: np.ndarray, q: float
) -> Path:
    """Left: coverage by predicted-price quintile, the scale head's intervals against constant
    width, at the breakdown coverage; right: each validation row's interval width against its
    predicted price, and the constant width."""
    coverage = figures["breakdown_coverage"]
    quintiles = figures["by_predicted_quintile"]
    fig = Figure(figsize=(12, 5), layout="constrained")
    left, right = fig.subplots(1, 2)
    x = np.arange(len(quintiles))
    for k, (label, key) in enumerate((("scale head", None), ("constant width", "constant"))):
        values = [(b[key] if key else b)["coverage"] for b in quintiles]
        left.bar(x + (k - 0.5) * 0.4, values, width=0.4, label=label, color=COLORS[k])
    left.axhline(coverage, color="black", linestyle="--", linewidth=1, label=f"{coverage:.0%}")
    left.set_xticks(
        x,
        [
            f"\\${b['predicted_from'] / 1e3:,.0f}k-\\${b['predicted_to'] / 1e3:,.0f}k"
            for b in quintiles
        ],
    )
    left.set_ylim(min(0.7, *(b["coverage"] for b in quintiles)) - 0.02, 1.0)
    left.set_xlabel("predicted price quintile")
    left.set_ylabel("share of true values inside")
    left.set_title(f"Coverage at {coverage:.0%} by predicted price")
    left.grid(axis="y", alpha=0.3)
    left.legend(loc="lower left", framealpha=0.9)
    low = np.maximum(predicted - q * scale, 0)
    right.scatter(predicted / 1e3, (predicted + q * scale - low) / 1e3, s=3, alpha=0.25)
    flat = figures["constant_quantiles_dollars"][figures["coverages"].index(coverage)]
    right.axhline(2 * flat / 1e3, color=COLORS[1], label="constant width (before the \\$0 clip)")
    right.axvline(VALUE_CAP / 1e3, color="gray", linestyle=":", label="the data's cap (\\$500,001)")
    right.set_xlabel("predicted (thousand \\$)")
    right.set_ylabel("interval width (thousand \\$)")
    right.set_title(f"Width at {coverage:.0%}, validation split")
    right.grid(alpha=0.3)
    right.legend(loc="upper left")
    return _save(fig, path)
