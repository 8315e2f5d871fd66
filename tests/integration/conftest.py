from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.compose import create_app
from app.settings import Settings
from modelspec.features import RAW_COLUMNS


@pytest.fixture
def client(artifacts: Path) -> Iterator[TestClient]:
    app = create_app(Settings(artifacts=artifacts, device="cpu", max_instances=300))
    with TestClient(app) as c:
        yield c


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Raw request records from data-set rows; a missing total_bedrooms becomes null."""
    out = []
    for row in frame[list(RAW_COLUMNS)].to_dict(orient="records"):
        if math.isnan(row["total_bedrooms"]):
            row["total_bedrooms"] = None
        out.append(row)
    return out
