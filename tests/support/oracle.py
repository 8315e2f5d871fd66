"""The eager model's answers (training's checkpoint, not the compiled artifact the server runs),
which served answers must equal: dollars, and price ranges at a coverage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from reliability.workload import eager_dollars, eager_table
from tests.support.records import records

__all__ = ["eager_bounds", "eager_dollars", "eager_table"]


def eager_bounds(artifacts: Path, frame: pd.DataFrame, coverage: float) -> np.ndarray:
    """``(n, 2)`` low and high from the offline model and the manifest's quantile and scale
    range."""
    return eager_table(artifacts, records(frame), coverage)[:, 1:]
