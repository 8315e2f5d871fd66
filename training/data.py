"""Loading the California housing table with the ``datasets`` library, the blog's split, and the
early-stopping slice of its training part."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from modelspec.features import RAW_COLUMNS, TARGET_COLUMN

DEFAULT_DATA = "leostelon/california-housing"
LOCAL_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class DataError(Exception):
    """The data could not be loaded; the message says how to fix it."""


def data_source() -> str:
    """``HOUSING_DATA`` if set, else the Hugging Face hub id the blog uses."""
    return os.environ.get("HOUSING_DATA") or DEFAULT_DATA


def load_frame(source: str, split: str = "train") -> pd.DataFrame:
    """Load a hub id or a local CSV/Parquet file into a data frame, rows in file order."""
    import datasets  # heavy import, only when data is really loaded

    datasets.disable_progress_bars()
    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    try:
        if suffix in LOCAL_FORMATS:
            if not path.is_file():
                raise DataError(
                    f"data file {path} does not exist. Hint: set HOUSING_DATA to the path of "
                    "housing.csv (or a Parquet copy of it)."
                )
            ds = datasets.load_dataset(LOCAL_FORMATS[suffix], data_files=str(path), split=split)
        else:
            ds = datasets.load_dataset(source, split=split)
    except DataError:
        raise
    except Exception as exc:  # hub errors come in many types (HTTP, offline, not found)
        raise DataError(
            f"could not load {source!r} with the datasets library ({type(exc).__name__}: {exc}). "
            "Hint: without access to the Hugging Face hub, set HOUSING_DATA to a local "
            "housing.csv or Parquet file."
        ) from exc
    frame = ds.to_pandas()
    assert isinstance(frame, pd.DataFrame)
    missing = [c for c in (*RAW_COLUMNS, TARGET_COLUMN) if c not in frame.columns]
    if missing:
        raise DataError(
            f"{source!r} lacks the columns {missing}. Hint: HOUSING_DATA must be the California "
            "housing table with ocean_proximity (Geron's housing.csv)."
        )
    return frame


def split_frame(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The blog's 80/20 split, so validation figures compare with its $68k."""
    train, val = train_test_split(frame, test_size=0.2, random_state=42)
    return train, val


def holdout_split(
    train: pd.DataFrame, fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded slice of the *training* split for early stopping and tuning: ``(fit, holdout)``.

    The validation split is never looked at while training; it is only reported.
    """
    fit, holdout = train_test_split(train, test_size=fraction, random_state=seed)
    return fit, holdout
