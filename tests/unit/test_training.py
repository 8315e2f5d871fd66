"""The training loop: reproducible, normalisation from the training split, artifacts written."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from modelspec.features import feature_hash
from modelspec.manifest import CHECKPOINT_FILE, EXAMPLE_FILE, VALIDATION_FILE, Manifest
from training.data import split_frame
from training.train import TrainConfig, train

ONE_EPOCH = TrainConfig(epochs=1)


def test_training_is_reproducible_on_the_cpu(housing_frame: pd.DataFrame, tmp_path: Path) -> None:
    a = train(housing_frame, ONE_EPOCH, "test", tmp_path / "a", progress=False).model
    b = train(housing_frame, ONE_EPOCH, "test", tmp_path / "b", progress=False).model
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


def test_a_different_seed_trains_a_different_model(
    housing_frame: pd.DataFrame, tmp_path: Path
) -> None:
    a = train(housing_frame, ONE_EPOCH, "test", tmp_path / "a", progress=False).model
    b = train(
        housing_frame, TrainConfig(epochs=1, seed=7), "test", tmp_path / "b", progress=False
    ).model
    assert not torch.equal(a.mlp[0].weight, b.mlp[0].weight)


def test_artifacts_and_manifest_are_written(
    housing_frame: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = train(housing_frame, ONE_EPOCH, "housing.csv", tmp_path, progress=False)
    assert "epoch   1/1  train RMSE $" in capsys.readouterr().out
    for name in (CHECKPOINT_FILE, EXAMPLE_FILE, VALIDATION_FILE):
        assert (tmp_path / name).is_file()
    manifest = Manifest.load(tmp_path)
    assert manifest == result.manifest
    assert manifest.feature_hash == feature_hash()
    assert manifest.compiled is None
    assert (manifest.training.rows_train, manifest.training.rows_val) == (16_512, 4_128)
    assert torch.load(tmp_path / EXAMPLE_FILE, weights_only=True).shape == (1, 13)


def test_imputation_uses_the_training_median_only(
    housing_frame: pd.DataFrame, tmp_path: Path
) -> None:
    manifest = train(housing_frame, ONE_EPOCH, "test", tmp_path, progress=False).manifest
    train_df, val_df = split_frame(housing_frame)
    assert manifest.preprocessing.total_bedrooms_median == train_df["total_bedrooms"].median()
    assert train_df["total_bedrooms"].median() != housing_frame["total_bedrooms"].median()
