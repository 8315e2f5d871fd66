"""Loading the California housing table with the ``datasets`` library, the blog's split, and the
early-stopping slice of its training part.

The default is the copy that ships with the project (``training/dataset/housing.csv.gz``, its
source and licence in the README beside it), so training and the tests need no network; the
Hugging Face hub copy is one setting away: ``HOUSING_DATA=leostelon/california-housing``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from modelspec.features import RAW_COLUMNS, TARGET_COLUMN

# The embedded copy: Geron's housing.csv, byte for byte once decompressed (sha256 below).
EMBEDDED_DATA = Path(__file__).resolve().parent / "dataset" / "housing.csv.gz"
EMBEDDED_SHA256 = "8a3727f4cf54ac1a327f69b1d5b4db54c5834ea81c6e4efc0d163300022a685e"
DEFAULT_DATA = str(EMBEDDED_DATA)
HUB_DATA = "leostelon/california-housing"
# A local file's format by its suffixes; ``.gz``, ``.xz``, ``.bz2`` and ``.zst`` CSVs are read by
# ``datasets`` (fsspec) as they are.
LOCAL_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
COMPRESSIONS = {".gz", ".xz", ".bz2", ".zst"}


class DataError(Exception):
    """The data could not be loaded; the message says how to fix it."""


def data_source() -> str:
    """``HOUSING_DATA`` if set, else the copy embedded in the project."""
    return os.environ.get("HOUSING_DATA") or DEFAULT_DATA


def load_frame(source: str, split: str = "train") -> pd.DataFrame:
    """Load a hub id or a local CSV/Parquet file into a data frame, rows in file order."""
    import datasets  # heavy import, only when data is really loaded

    datasets.disable_progress_bars()
    path = Path(source).expanduser()
    suffix = local_format(path)
    try:
        if suffix in LOCAL_FORMATS:
            if not path.is_file():
                raise DataError(
                    f"data file {path} does not exist. Hint: set HOUSING_DATA to the path of "
                    "housing.csv (or a Parquet or compressed copy of it), or unset it for the "
                    "copy embedded in the project."
                )
            ds = datasets.load_dataset(LOCAL_FORMATS[suffix], data_files=str(path), split=split)
        else:
            ds = datasets.load_dataset(source, split=split)
    except DataError:
        raise
    except Exception as exc:  # hub errors come in many types (HTTP, offline, not found)
        raise DataError(
            f"could not load {source!r} with the datasets library ({type(exc).__name__}: {exc}). "
            "Hint: without access to the Hugging Face hub, unset HOUSING_DATA (the project's "
            "embedded copy) or set it to a local housing.csv or Parquet file."
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


def data_label(source: str) -> str:
    """How the manifest names the data: a file inside the project by its path from the project's
    root (``training/dataset/housing.csv.gz``, the same in every clone), anything else as given."""
    project = EMBEDDED_DATA.parents[2]
    path = Path(source).expanduser()
    try:
        return str(path.resolve().relative_to(project)) if path.is_file() else source
    except ValueError:  # a file outside the project
        return source


def local_format(path: Path) -> str:
    """The suffix that names a local file's format (``.csv`` for ``housing.csv.gz``), or ""
    for anything else (a hub id)."""
    suffixes = [s.lower() for s in path.suffixes]
    if len(suffixes) >= 2 and suffixes[-1] in COMPRESSIONS and suffixes[-2] == ".csv":
        return ".csv"
    last = suffixes[-1] if suffixes else ""
    return last if last in LOCAL_FORMATS else ""


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
