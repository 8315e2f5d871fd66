"""training.data: loading data with the datasets library (the embedded copy by default), and the
blog's split."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pandas as pd
import pytest

from training.data import (
    DEFAULT_DATA,
    EMBEDDED_DATA,
    EMBEDDED_SHA256,
    DataError,
    data_label,
    data_source,
    holdout_split,
    load_frame,
    split_frame,
)


def test_the_embedded_copy_is_the_original_file_and_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert hashlib.sha256(gzip.decompress(EMBEDDED_DATA.read_bytes())).hexdigest() == (
        EMBEDDED_SHA256
    )
    monkeypatch.delenv("HOUSING_DATA", raising=False)
    assert data_source() == DEFAULT_DATA == str(EMBEDDED_DATA)
    monkeypatch.setenv("HOUSING_DATA", "leostelon/california-housing")
    assert data_source() == "leostelon/california-housing"


def test_the_embedded_copy_loads_through_datasets(housing_frame: pd.DataFrame) -> None:
    frame = load_frame(DEFAULT_DATA)
    assert len(frame) == 20_640
    assert frame["total_bedrooms"].isna().sum() == 207
    assert frame.iloc[0]["ocean_proximity"] == "NEAR BAY"
    pd.testing.assert_series_equal(frame["median_income"], housing_frame["median_income"])


def test_a_compressed_local_csv_loads(housing_frame: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "part.csv.xz"
    housing_frame.head(30).to_csv(path, index=False)
    assert (
        load_frame(str(path))["households"].tolist()
        == housing_frame.head(30)["households"].tolist()
    )


def test_a_local_csv_loads_in_file_order(housing_csv: Path, housing_frame: pd.DataFrame) -> None:
    frame = load_frame(str(housing_csv))
    assert len(frame) == 20_640
    assert frame["total_bedrooms"].isna().sum() == 207
    pd.testing.assert_series_equal(frame["longitude"], housing_frame["longitude"])


def test_a_local_parquet_loads(housing_frame: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "housing.parquet"
    housing_frame.head(50).to_parquet(path)
    assert (
        load_frame(str(path))["median_income"].tolist()
        == housing_frame.head(50)["median_income"].tolist()
    )


def test_the_split_is_the_blogs(housing_frame: pd.DataFrame) -> None:
    train, val = split_frame(housing_frame)
    assert (len(train), len(val)) == (16_512, 4_128)
    # train_test_split(random_state=42) on rows in file order: the first validation row is
    # row 20046 of the file, as in every copy of the blog's notebook.
    assert val.index[0] == 20046


def test_a_missing_file_says_to_set_housing_data(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist. Hint: set HOUSING_DATA"):
        load_frame(str(tmp_path / "nope.csv"))


def test_an_unreachable_hub_says_to_set_housing_data(monkeypatch: pytest.MonkeyPatch) -> None:
    # Offline mode, as on a machine without the hub; the libraries read it at import time.
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        DataError, match="Hint: without access to the Hugging Face hub, unset HOUSING_DATA"
    ):
        load_frame("someone/not-a-cached-dataset")


def test_a_table_without_the_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="lacks the columns"):
        load_frame(str(path))


def test_the_early_stopping_holdout_is_a_seeded_slice_of_the_training_split(
    housing_frame: pd.DataFrame,
) -> None:
    train, val = split_frame(housing_frame)
    fit, holdout = holdout_split(train, 0.1, seed=42)
    assert (len(fit), len(holdout)) == (14_860, 1_652)
    assert set(fit.index).isdisjoint(holdout.index)
    assert set(fit.index) | set(holdout.index) == set(train.index)
    assert set(holdout.index).isdisjoint(val.index)
    again = holdout_split(train, 0.1, seed=42)[1]
    assert holdout.index.equals(again.index)
    assert not holdout.index.equals(holdout_split(train, 0.1, seed=7)[1].index)


def test_the_manifest_names_a_file_of_the_project_the_same_in_every_clone(tmp_path: Path) -> None:
    assert data_label(DEFAULT_DATA) == "training/dataset/housing.csv.gz"
    outside = tmp_path / "housing.csv"
    outside.write_text("x\n")
    assert data_label(str(outside)) == str(outside)
    assert data_label("leostelon/california-housing") == "leostelon/california-housing"
