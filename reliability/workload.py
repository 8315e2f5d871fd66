"""Requests drawn from the real data set, each with the offline model's answer for its rows.

Every request takes its own random rows (not a contiguous slice), so an answer that belongs to
another request, or rows that come back shuffled, cannot pass for the right one. Some
``total_bedrooms`` are left out -- absent, ``null``, an empty CSV cell -- as clients send them.
The expected values come from the eager model in ``model.pt`` (training's checkpoint), not
from the compiled artifact the server runs: the check covers compile as well as serving.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import torch

from compile.targets import load_eager
from modelspec.features import (
    CATEGORICAL_COLUMN,
    IMPUTED_COLUMN,
    NUMERIC_COLUMNS,
    RAW_COLUMNS,
    encode_records,
)

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared/data/california-housing"
MISSING_SHARE = 0.05  # of rows sent without total_bedrooms (the data set itself has 1%)
JSON = "application/json"
CSV = "text/csv"


def data_path() -> Path:
    path = Path(os.environ.get("HOUSING_DATA", DEFAULT_DATA / "housing.csv"))
    if not path.is_file():
        raise SystemExit(f"no data set at {path}. Hint: set HOUSING_DATA to housing.csv's path.")
    return path


@dataclass(frozen=True)
class Request:
    route: str
    body: bytes
    content_type: str
    expected: np.ndarray  # dollars, one per row, in request order
    read: Callable[[bytes], list[float]]  # the answer body -> its dollars


@dataclass(frozen=True)
class Rows:
    records: list[dict[str, Any]]  # total_bedrooms is None where it is left out
    expected: np.ndarray


def offline_rows(artifacts: Path, frame: pd.DataFrame, seed: int) -> Rows:
    """Every row of ``frame`` as a request record, with the eager model's dollars for it."""
    rng = np.random.default_rng(seed)
    records: list[dict[str, Any]] = frame[list(RAW_COLUMNS)].to_dict(orient="records")  # type: ignore[assignment]
    for r, drop in zip(records, rng.random(len(records)) < MISSING_SHARE, strict=True):
        if drop or math.isnan(r[IMPUTED_COLUMN]):
            r[IMPUTED_COLUMN] = None
    model, manifest = load_eager(artifacts)
    median = manifest.preprocessing.total_bedrooms_median
    encoded = torch.from_numpy(encode_records(records, median))
    model.eval()
    with torch.no_grad():
        expected = torch.cat([model(encoded[i : i + 4096]) for i in range(0, len(encoded), 4096)])
    return Rows(records, expected.double().numpy())


def _predict_one(record: dict[str, Any], rng: np.random.Generator) -> bytes:
    if record[IMPUTED_COLUMN] is None and rng.random() < 0.5:  # absent rather than null
        record = {k: v for k, v in record.items() if k != IMPUTED_COLUMN}
    return orjson.dumps(record)


def _csv(records: list[dict[str, Any]]) -> bytes:
    lines = [",".join(RAW_COLUMNS)]
    for r in records:
        cells = ["" if r[c] is None else str(r[c]) for c in RAW_COLUMNS]
        lines.append(",".join(cells))
    return ("\n".join(lines) + "\n").encode()


def _oip(records: list[dict[str, Any]]) -> bytes:
    n = len(records)
    inputs: list[dict[str, Any]] = [
        {"name": c, "shape": [n], "datatype": "FP64", "data": [r[c] for r in records]}
        for c in NUMERIC_COLUMNS
    ]
    inputs.append(
        {
            "name": CATEGORICAL_COLUMN,
            "shape": [n],
            "datatype": "BYTES",
            "data": [r[CATEGORICAL_COLUMN] for r in records],
        }
    )
    return orjson.dumps({"inputs": inputs})


def _read_one(body: bytes) -> list[float]:
    return [orjson.loads(body)["house_value"]]


def _read_many(body: bytes) -> list[float]:
    return list(orjson.loads(body)["predictions"])


def _read_csv(body: bytes) -> list[float]:
    return [float(line) for line in body.decode().splitlines()]


def _read_oip(body: bytes) -> list[float]:
    return list(orjson.loads(body)["outputs"][0]["data"])


def make_requests(rows: Rows, count: int, seed: int) -> list[Request]:
    """``count`` requests: 40% one record on ``/predict``; the rest 2-100 rows, mostly
    ``/predict`` instances, some SageMaker CSV and some Open Inference Protocol."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        single = rng.random() < 0.4
        idx = rng.choice(len(rows.records), size=1 if single else int(rng.integers(2, 101)))
        chosen = [rows.records[i] for i in idx]
        expected = rows.expected[idx]
        if single:
            out.append(Request("/predict", _predict_one(chosen[0], rng), JSON, expected, _read_one))
            continue
        kind = rng.random()
        if kind < 0.7:
            body = orjson.dumps({"instances": chosen})
            out.append(Request("/predict", body, JSON, expected, _read_many))
        elif kind < 0.85:
            out.append(Request("/invocations", _csv(chosen), CSV, expected, _read_csv))
        else:
            out.append(Request("/v2/models/housing/infer", _oip(chosen), JSON, expected, _read_oip))
    return out
