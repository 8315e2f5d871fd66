"""The training loop: reproducible, normalisation from the training split, early stopping on a
slice of it, artifacts and report written."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from modelspec.features import feature_hash
from modelspec.manifest import CHECKPOINT_FILE, EXAMPLE_FILE, VALIDATION_FILE, Manifest
from training.__main__ import parse_args
from training.data import holdout_split, split_frame
from training.report import PLOT_FILES, REPORT_JSON, REPORT_MD
from training.train import EarlyStopping, Rows, TrainConfig, predict_dollars, rmse, train

ONE_EPOCH = TrainConfig(epochs=1)


def test_training_is_reproducible_on_the_cpu(housing_frame: pd.DataFrame, tmp_path: Path) -> None:
    a = train(housing_frame, ONE_EPOCH, "test", tmp_path / "a", report=False)
    b = train(housing_frame, ONE_EPOCH, "test", tmp_path / "b", report=False)
    assert a.history == b.history
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key


def test_a_different_seed_trains_a_different_model(
    housing_frame: pd.DataFrame, tmp_path: Path
) -> None:
    a = train(housing_frame, ONE_EPOCH, "test", tmp_path / "a", report=False)
    b = train(
        housing_frame,
        TrainConfig(epochs=1, seed=7),
        "test",
        tmp_path / "b",
        report=False,
    )
    assert not torch.equal(a.model.mlp[0].weight, b.model.mlp[0].weight)


def test_artifacts_manifest_and_report_are_written(
    housing_frame: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = train(housing_frame, ONE_EPOCH, "housing.csv", tmp_path)
    assert "epoch   1/1  train RMSE $" in capsys.readouterr().out
    for name in (CHECKPOINT_FILE, EXAMPLE_FILE, VALIDATION_FILE):
        assert (tmp_path / name).is_file()
    manifest = Manifest.load(tmp_path)
    assert manifest == result.manifest
    assert manifest.feature_hash == feature_hash()
    assert manifest.compiled is None
    training = manifest.training
    assert (training.rows_train, training.rows_val, training.rows_holdout) == (16_512, 4_128, 1_652)
    assert (training.epochs_run, training.best_epoch) == (1, 1)
    assert torch.load(tmp_path / EXAMPLE_FILE, weights_only=True).shape == (1, 13)

    report = json.loads((tmp_path / REPORT_JSON).read_text())
    assert report == result.report
    assert report["models"]["mlp"]["val"]["rmse"] == pytest.approx(training.metrics.val_rmse)
    assert set(report["models"]) == {"mlp", "mean", "linear_regression", "hist_gradient_boosting"}
    assert "| **MLP (this artifact)** |" in (tmp_path / REPORT_MD).read_text()
    for name in PLOT_FILES:
        assert (tmp_path / "plots" / name).read_bytes().startswith(b"\x89PNG")

    # Retrained without a report, the folder keeps no report of the previous model.
    train(housing_frame, ONE_EPOCH, "housing.csv", tmp_path, report=False)
    assert not (tmp_path / REPORT_JSON).exists() and not (tmp_path / REPORT_MD).exists()
    assert not any((tmp_path / "plots").iterdir())


def test_imputation_uses_the_training_median_only(
    housing_frame: pd.DataFrame, tmp_path: Path
) -> None:
    manifest = train(housing_frame, ONE_EPOCH, "test", tmp_path, report=False)
    train_df, val_df = split_frame(housing_frame)
    median = manifest.manifest.preprocessing.total_bedrooms_median
    assert median == train_df["total_bedrooms"].median()
    assert train_df["total_bedrooms"].median() != housing_frame["total_bedrooms"].median()


def test_the_kept_weights_are_those_of_the_best_holdout_epoch(
    housing_frame: pd.DataFrame, tmp_path: Path
) -> None:
    config = TrainConfig(epochs=3, learning_rate=3e-2)
    result = train(housing_frame, config, "test", tmp_path, report=False)
    holdout_rmses = [r.holdout_rmse for r in result.history]
    assert result.best_epoch == 1 + holdout_rmses.index(min(holdout_rmses))
    # Recomputed from the restored weights, the holdout RMSE is the best epoch's.
    train_df, _ = split_frame(housing_frame)
    _, holdout_df = holdout_split(train_df, config.holdout, config.seed)
    median = result.manifest.preprocessing.total_bedrooms_median
    rows = Rows.of(holdout_df, median)
    assert rmse(predict_dollars(result.model, rows.x), rows.y) == pytest.approx(
        min(holdout_rmses), rel=1e-6
    )
    assert result.manifest.training.metrics.holdout_rmse == min(holdout_rmses)


def test_early_stopping_keeps_the_lowest_score_and_stops_after_patience() -> None:
    stopper = EarlyStopping(patience=2)
    scores = [5.0, 4.0, 4.5, 4.0, 3.0, 3.5, 3.2, 9.0]
    stopped = []
    for epoch, score in enumerate(scores, start=1):
        stopper.update(epoch, score)
        if stopper.should_stop(epoch):
            stopped.append(epoch)
            break
    # Epoch 4 ties epoch 2 (the earlier is kept), so epoch 4 stops after 2 epochs without gain.
    assert stopped == [4]
    assert (stopper.best_epoch, stopper.best) == (2, 4.0)


def test_early_stopping_with_no_patience_never_stops() -> None:
    stopper = EarlyStopping(patience=0)
    for epoch in range(1, 100):
        stopper.update(epoch, float(epoch))
        assert not stopper.should_stop(epoch)
    assert stopper.best_epoch == 1


def test_a_nan_score_is_never_the_best() -> None:
    stopper = EarlyStopping(patience=5)
    assert not stopper.update(1, float("nan"))
    assert stopper.update(2, 1.0)
    assert stopper.best_epoch == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 0}, "epochs must be at least 1"),
        ({"holdout": 0.0}, r"holdout must be in \(0, 1\)"),
        ({"patience": -1}, "patience must be 0 or more"),
        ({"hidden": ()}, "hidden must be positive widths"),
        ({"threads": 0}, "threads must be at least 1"),
    ],
)
def test_invalid_settings_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**change)  # type: ignore[arg-type]


def test_the_cli_defaults_are_the_config_defaults() -> None:
    args = parse_args([])
    defaults = TrainConfig()
    assert (args.epochs, args.batch_size, args.lr, args.weight_decay, args.seed) == (
        defaults.epochs,
        defaults.batch_size,
        defaults.learning_rate,
        defaults.weight_decay,
        defaults.seed,
    )
    assert (args.hidden, args.dropout, args.holdout, args.patience, args.threads) == (
        "256,128,64",
        defaults.dropout,
        defaults.holdout,
        defaults.patience,
        defaults.threads,
    )
    assert parse_args(["--patience", "5", "--hidden", "64,32", "--no-report"]).no_report
