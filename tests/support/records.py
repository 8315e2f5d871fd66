"""Request records: rows of the data set, or the documented example, as clients send them."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from modelspec.features import EXAMPLE_RECORD, RAW_COLUMNS


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Raw request records from data-set rows; a missing total_bedrooms becomes null."""
    out = []
    for row in frame[list(RAW_COLUMNS)].to_dict(orient="records"):
        if math.isnan(row["total_bedrooms"]):
            row["total_bedrooms"] = None
        out.append(row)
    return out


def example(rows: int = 1, **changes: Any) -> pd.DataFrame:
    """``rows`` copies of the documented example record, with ``changes`` applied."""
    return pd.DataFrame([{**EXAMPLE_RECORD, **changes}] * rows)
