"""The training loop: encode, fit normalisation on the training split, train with early stopping
on a held-out slice of it, write the artifacts and the report."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from modelspec.drift import DriftProfile, binned, category_shares
from modelspec.features import (
    CATEGORICAL_COLUMN,
    IMPUTED_COLUMN,
    NUMERIC_COLUMNS,
    RAW_COLUMNS,
    TARGET_COLUMN,
    encode_records,
    feature_hash,
    spec_dict,
)
from modelspec.manifest import (
    ARTIFACT_FILE,
    CHECKPOINT_FILE,
    EXAMPLE_FILE,
    VALIDATION_FILE,
    Manifest,
    Preprocessing,
    QualityMetrics,
    TrainingInfo,
)
from modelspec.network import HousingNet, NetConfig
from training.baselines import fit_baselines
from training.calibration import calibrate_on, fit_scale_head, measure_intervals
from training.console import Console
from training.data import holdout_split, split_frame
from training.metrics import EpochRecord, rmse, scores
from training.report import RunSummary, remove_report, write_report

# Rows of the validation split kept beside the checkpoint, so compile can check its output
# against the eager model without the data set.
VALIDATION_SAMPLE_ROWS = 1024


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    batch_size: int = 256
    learning_rate: float = 1e-3  # the one-cycle schedule's peak
    weight_decay: float = 1e-4
    seed: int = 42
    hidden: tuple[int, ...] = (256, 128, 64)
    dropout: float = 0.2
    # Early stopping: the share of the training split held out to pick the epoch kept, and the
    # epochs without a better holdout RMSE after which training stops (0: run every epoch).
    holdout: float = 0.1
    patience: int = 20
    # Torch (and baselines') threads. One: on a shared 2-core machine two threads that wait
    # for each other while the other core is busy were 30x slower (424 s instead of 14 s).
    threads: int = 1

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be {rule}"
            for name, ok, rule in (
                ("epochs", self.epochs >= 1, "at least 1"),
                ("batch_size", self.batch_size >= 1, "at least 1"),
                ("learning_rate", self.learning_rate > 0, "positive"),
                ("weight_decay", self.weight_decay >= 0, "0 or more"),
                ("hidden", bool(self.hidden) and min(self.hidden) >= 1, "positive widths"),
                ("dropout", 0 <= self.dropout < 1, "in [0, 1)"),
                ("holdout", 0 < self.holdout < 1, "in (0, 1)"),
                ("patience", self.patience >= 0, "0 or more"),
                ("threads", self.threads >= 1, "at least 1"),
            )
            if not ok
        ]
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class TrainResult:
    model: HousingNet
    manifest: Manifest
    history: list[EpochRecord]
    best_epoch: int
    report: dict[str, Any] | None = None


def encode_frame(frame: pd.DataFrame, bedrooms_median: float) -> np.ndarray:
    records: list[dict[str, Any]] = frame[list(RAW_COLUMNS)].to_dict(orient="records")  # type: ignore[assignment]
    return encode_records(records, bedrooms_median)


# The share of training values a warning treats as unusual: half a percent on each side.
RANGE_PERCENTILES = (0.5, 99.5)


def input_ranges(frame: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Each numeric input's ``RANGE_PERCENTILES`` over ``frame`` (missing values skipped)."""
    out = {}
    for column in NUMERIC_COLUMNS:
        low, high = np.nanpercentile(frame[column].to_numpy(dtype=np.float64), RANGE_PERCENTILES)
        out[column] = (float(low), float(high))
    return out


def drift_profile(frame: pd.DataFrame, predictions: np.ndarray) -> DriftProfile:
    """The training split's distribution (``modelspec.drift``): what drift is measured against."""
    return DriftProfile(
        rows=len(frame),
        numeric={c: binned(frame[c].to_numpy(dtype=np.float64)) for c in NUMERIC_COLUMNS},
        categories={CATEGORICAL_COLUMN: category_shares(frame[CATEGORICAL_COLUMN].tolist())},
        prediction=binned(predictions),
    )


@torch.no_grad()
def predict_dollars(model: HousingNet, x: Tensor, chunk: int = 4096) -> Tensor:
    model.eval()
    return torch.cat([model(x[i : i + chunk]) for i in range(0, len(x), chunk)])


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch intra-op threads, then restore the caller's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class Rows:
    """Encoded rows and their dollar targets."""

    x: Tensor
    y: Tensor

    @classmethod
    def of(cls, frame: pd.DataFrame, bedrooms_median: float) -> Rows:
        x = torch.from_numpy(encode_frame(frame, bedrooms_median))
        return cls(x, torch.tensor(frame[TARGET_COLUMN].to_numpy(), dtype=torch.float32))


class EarlyStopping:
    """Tracks the epoch with the lowest holdout score; ``should_stop`` once ``patience``
    epochs have passed without a lower one (``patience`` 0: never)."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_epoch = 0
        self.best = math.inf

    def update(self, epoch: int, score: float) -> bool:
        """Record an epoch's score; True if it is the best so far (ties keep the earlier)."""
        if score < self.best:
            self.best_epoch, self.best = epoch, score
            return True
        return False

    def should_stop(self, epoch: int) -> bool:
        return self.patience > 0 and epoch - self.best_epoch >= self.patience


def fit(
    model: HousingNet,
    fit_rows: Rows,
    holdout: Rows,
    val: Rows,
    config: TrainConfig,
    console: Console,
) -> tuple[list[EpochRecord], int]:
    """AdamW with a one-cycle schedule on the standardised target; keeps the weights of the
    epoch with the lowest holdout RMSE and stops after ``patience`` epochs without a better
    one. The validation RMSE is only logged and recorded for the learning curves."""
    y_scaled = (fit_rows.y - model.target_mean) / model.target_std
    steps_per_epoch = math.ceil(len(fit_rows.x) / config.batch_size)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=config.epochs * steps_per_epoch
    )
    shuffle = torch.Generator().manual_seed(config.seed)
    history: list[EpochRecord] = []
    stopper = EarlyStopping(config.patience)
    best_state = copy.deepcopy(model.state_dict())
    for epoch in console.steps(range(1, config.epochs + 1), "training"):
        model.train()
        order = torch.randperm(len(fit_rows.x), generator=shuffle)
        for i in range(0, len(order), config.batch_size):
            idx = order[i : i + config.batch_size]
            loss = torch.nn.functional.mse_loss(model.scaled(fit_rows.x[idx]), y_scaled[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        record = EpochRecord(
            epoch,
            *(rmse(predict_dollars(model, r.x), r.y) for r in (fit_rows, holdout, val)),
        )
        history.append(record)
        best = stopper.update(epoch, record.holdout_rmse)
        if best:
            best_state = copy.deepcopy(model.state_dict())
        console.status(holdout_rmse=f"${record.holdout_rmse:,.0f}", best_epoch=stopper.best_epoch)
        console.line(
            f"epoch {epoch:3d}/{config.epochs}  train RMSE ${record.train_rmse:>9,.0f}  "
            f"holdout RMSE ${record.holdout_rmse:>9,.0f}  val RMSE ${record.val_rmse:>9,.0f}"
            + ("  *" if best else ""),
            epoch=epoch,
            epochs=config.epochs,
            train_rmse=round(record.train_rmse, 2),
            holdout_rmse=round(record.holdout_rmse, 2),
            val_rmse=round(record.val_rmse, 2),
            best=best,
        )
        if stopper.should_stop(epoch):
            console.line(
                f"early stop: no better holdout RMSE in {config.patience} epochs", epoch=epoch
            )
            break
    if not stopper.best_epoch:
        raise RuntimeError(
            "training diverged: the holdout RMSE was never finite. Hint: lower --lr."
        )
    model.load_state_dict(best_state)
    console.line(
        f"kept epoch {stopper.best_epoch} (lowest holdout RMSE)", best_epoch=stopper.best_epoch
    )
    return history, stopper.best_epoch


def train(
    frame: pd.DataFrame,
    config: TrainConfig,
    data_name: str,
    out_dir: Path,
    report: bool = True,
    console: Console | None = None,
) -> TrainResult:
    """Train on the blog's training split, write the artifacts and, with ``report``, the report
    (the MLP against baselines fitted in the same run, on the same split) and its plots."""
    started = time.perf_counter()
    with torch_threads(config.threads):
        torch.manual_seed(config.seed)
        train_df, val_df = split_frame(frame)
        fit_df, holdout_df = holdout_split(train_df, config.holdout, config.seed)
        bedrooms_median = float(train_df[IMPUTED_COLUMN].median())
        fit_rows, holdout, val = (Rows.of(f, bedrooms_median) for f in (fit_df, holdout_df, val_df))

        model = HousingNet(NetConfig(hidden=config.hidden, dropout=config.dropout, scale_head=True))
        with torch.no_grad():  # normalisation fitted on the rows trained on only
            feats = model.derive(fit_rows.x)
            y = fit_rows.y
            model.set_normalization(feats.mean(0), feats.std(0), float(y.mean()), float(y.std()))
        console = console or Console("text", progress=False)
        history, best_epoch = fit(model, fit_rows, holdout, val, config, console)
        fit_scale_head(model, fit_rows.x, fit_rows.y)
        intervals = calibrate_on(model, holdout.x, holdout.y)

        val_pred = predict_dollars(model, val.x)
        val_scores = scores(val_pred.numpy(), val.y.numpy())
        metrics = QualityMetrics(
            train_rmse=history[best_epoch - 1].train_rmse,
            val_rmse=val_scores.rmse,
            val_mae=val_scores.mae,
            val_r2=val_scores.r2,
            holdout_rmse=history[best_epoch - 1].holdout_rmse,
        )
        mlp_seconds = round(time.perf_counter() - started, 2)
        manifest = Manifest(
            feature_hash=feature_hash(),
            feature_spec=spec_dict(),
            network=model.config.to_dict(),
            preprocessing=Preprocessing(
                total_bedrooms_median=bedrooms_median,
                feature_mean=model.feature_mean.tolist(),
                feature_std=model.feature_std.tolist(),
                target_mean=float(model.target_mean),
                target_std=float(model.target_std),
                input_ranges=input_ranges(train_df),
            ),
            intervals=intervals,
            drift=drift_profile(
                train_df, predict_dollars(model, Rows.of(train_df, bedrooms_median).x).numpy()
            ),
            training=TrainingInfo(
                data=data_name,
                rows_train=len(train_df),
                rows_val=len(val_df),
                epochs=config.epochs,
                batch_size=config.batch_size,
                learning_rate=config.learning_rate,
                weight_decay=config.weight_decay,
                seed=config.seed,
                seconds=mlp_seconds,
                torch_version=torch.__version__,
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                metrics=metrics,
                rows_holdout=len(holdout_df),
                epochs_run=len(history),
                best_epoch=best_epoch,
                patience=config.patience,
            ),
        )
        write_artifacts(out_dir, model.eval(), manifest, val.x)
        interval_report, val_scale = measure_intervals(
            model, intervals, holdout, val, val_df[CATEGORICAL_COLUMN].tolist()
        )
        at = interval_report["validation"]["0.9"]
        console.line(
            f"intervals at 90%: validation coverage {at['coverage']:.3f}, mean width "
            f"${at['mean_width']:,.0f} (constant width: {at['constant']['coverage']:.3f}, "
            f"${at['constant']['mean_width']:,.0f})",
            coverage=round(at["coverage"], 4),
            mean_width=round(at["mean_width"], 2),
        )
        written = None
        if report:
            baselines = fit_baselines(
                torch.cat([fit_rows.x, holdout.x]).numpy(),
                torch.cat([fit_rows.y, holdout.y]).numpy(),
                val.x.numpy(),
                threads=config.threads,
            )
            summary = RunSummary(
                data=data_name,
                settings=settings(config),
                rows={
                    "train": len(train_df),
                    "fit": len(fit_df),
                    "holdout": len(holdout_df),
                    "val": len(val_df),
                },
                history=history,
                best_epoch=best_epoch,
                mlp_seconds=mlp_seconds,
                val_actual=val.y.numpy(),
                val_ocean=val_df[CATEGORICAL_COLUMN].tolist(),
                mlp_val_predictions=val_pred.numpy(),
                baselines=baselines,
                intervals=interval_report,
                val_scale=val_scale,
            )
            written = write_report(out_dir, summary, run_started=started)
    return TrainResult(model, manifest, history, best_epoch, written)


def settings(config: TrainConfig) -> dict[str, Any]:
    """The training settings, as the report records them."""
    return {
        **asdict(config),
        "hidden": list(config.hidden),
        "optimizer": "AdamW",
        "schedule": "OneCycleLR (cosine), peak learning_rate, over all epochs",
        "loss": "MSE on the standardised dollar target",
        "early_stopping": f"lowest RMSE on {config.holdout:.0%} of the training split "
        f"(seed {config.seed}); patience {config.patience} epochs",
        "intervals": "scale head fitted on the rows trained on (Laplace likelihood, the point's "
        "weights frozen); conformal quantiles on the early-stopping holdout",
    }


def write_artifacts(out_dir: Path, model: HousingNet, manifest: Manifest, x_val: Tensor) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.checkpoint(), out_dir / CHECKPOINT_FILE)
    torch.save(x_val[:1].clone(), out_dir / EXAMPLE_FILE)
    torch.save(x_val[:VALIDATION_SAMPLE_ROWS].clone(), out_dir / VALIDATION_FILE)
    # A manifest from an earlier compile would describe an artifact of the old model, and so
    # would an earlier report: drop them.
    (out_dir / ARTIFACT_FILE).unlink(missing_ok=True)
    remove_report(out_dir)
    manifest.save(out_dir)
