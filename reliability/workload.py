"""Requests drawn from the real data set, each with the offline model's answer for its rows.

Every request takes its own random rows (not a contiguous slice), so an answer that belongs to
another request, or rows that come back shuffled, cannot pass for the right one. Some
``total_bedrooms`` are left out -- absent, ``null``, an empty CSV cell -- as clients send them.
The expected values come from the eager model in ``model.pt`` (training's checkpoint), not
from the compiled artifact the server runs: the check covers compile as well as serving. With
a model that has calibrated intervals, each row also expects its price range at the server's
default coverage (``DEFAULT_COVERAGE``), and the requests ask for it on every protocol: JSON's
``intervals``, OIP's ``house_value_low``/``_high``, CSV's ``Accept: text/csv;columns=3`` on half
of the CSV requests (the other half stays one value a line).
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

from app.codecs.oip import OUTPUTS
from app.core.flags import VALUE_FLOOR
from compile.targets import load_eager
from modelspec.features import (
    CATEGORICAL_COLUMN,
    IMPUTED_COLUMN,
    NUMERIC_COLUMNS,
    RAW_COLUMNS,
    encode_records,
)
from modelspec.intervals import bounds
from training.data import EMBEDDED_DATA

MISSING_SHARE = 0.05  # of rows sent without total_bedrooms (the data set itself has 1%)
JSON = "application/json"
CSV = "text/csv"
DEFAULT_COVERAGE = 0.9  # HOUSING_INTERVAL_COVERAGE's default: the server under test keeps it


def data_path() -> Path:
    """``HOUSING_DATA`` if it names a file, else the project's embedded copy of housing.csv."""
    path = Path(os.environ.get("HOUSING_DATA") or EMBEDDED_DATA)
    if not path.is_file():
        raise SystemExit(
            f"no data set at {path}. Hint: set HOUSING_DATA to housing.csv's path, or unset it "
            "for the copy embedded in the project."
        )
    return path


@dataclass(frozen=True)
class Request:
    route: str
    body: bytes
    content_type: str
    # Per row, in request order: dollars (rows, 1), or dollars, low and high (rows, 3).
    expected: np.ndarray
    read: Callable[[bytes], np.ndarray]  # the answer body -> its table, the same shape
    accept: str | None = None


@dataclass(frozen=True)
class Rows:
    records: list[dict[str, Any]]  # total_bedrooms is None where it is left out
    expected: np.ndarray  # (rows, 3) with ranges, else (rows, 1)


def offline_rows(artifacts: Path, frame: pd.DataFrame, seed: int) -> Rows:
    """Every row of ``frame`` as a request record, with the eager model's dollars for it and,
    when the model has intervals, its range at ``DEFAULT_COVERAGE`` (the scale clamped to the
    calibration rows' as serving clamps it)."""
    rng = np.random.default_rng(seed)
    records: list[dict[str, Any]] = frame[list(RAW_COLUMNS)].to_dict(orient="records")  # type: ignore[assignment]
    for r, drop in zip(records, rng.random(len(records)) < MISSING_SHARE, strict=True):
        if drop or math.isnan(r[IMPUTED_COLUMN]):
            r[IMPUTED_COLUMN] = None
    return Rows(records, eager_table(artifacts, records))


def eager_table(
    artifacts: Path, records: list[dict[str, Any]], coverage: float = DEFAULT_COVERAGE
) -> np.ndarray:
    """The eager model's answers for raw ``records`` (a missing ``total_bedrooms`` is None or
    NaN): ``(rows, 1)`` dollars, or ``(rows, 3)`` dollars, low and high at ``coverage`` when
    the model has intervals (its scale clamped to the calibration rows' as serving clamps it)."""
    model, manifest = load_eager(artifacts)
    median = manifest.preprocessing.total_bedrooms_median
    encoded = torch.from_numpy(encode_records(records, median))
    chunks = [encoded[i : i + 4096] for i in range(0, len(encoded), 4096)]
    model.eval()
    with torch.no_grad():
        point = torch.cat([model(chunk) for chunk in chunks]).double().numpy()
        point = np.maximum(point, VALUE_FLOOR)  # as serving floors it (app.core.flags)
        table = manifest.intervals
        if table is None:
            return point[:, None]
        log_scale = torch.cat([model.log_scale(chunk) for chunk in chunks]).double().numpy()
    scale = np.clip(np.exp(log_scale), *table.scale_range)
    low, high = bounds(point, scale, table.quantile(coverage))
    return np.column_stack((point, low, high))


def eager_dollars(artifacts: Path, frame: pd.DataFrame) -> np.ndarray:
    """The eager model's dollars for ``frame``'s rows."""
    records: list[dict[str, Any]] = frame[list(RAW_COLUMNS)].to_dict(orient="records")  # type: ignore[assignment]
    return eager_table(artifacts, records)[:, 0]


def _predict_one(record: dict[str, Any], rng: np.random.Generator) -> bytes:
    if record[IMPUTED_COLUMN] is None and rng.random() < 0.5:  # absent rather than null
        record = {k: v for k, v in record.items() if k != IMPUTED_COLUMN}
    return orjson.dumps(record)


def csv_body(records: list[dict[str, Any]]) -> bytes:
    """A SageMaker CSV body: the header, then one line a record (None: an empty cell)."""
    lines = [",".join(RAW_COLUMNS)]
    for r in records:
        cells = ["" if r[c] is None else str(r[c]) for c in RAW_COLUMNS]
        lines.append(",".join(cells))
    return ("\n".join(lines) + "\n").encode()


def oip_body(records: list[dict[str, Any]]) -> bytes:
    """An Open Inference Protocol JSON body: one tensor a raw column, shape ``[N]``."""
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


def _table(values: list[float], ranges: list[dict[str, float]] | None) -> np.ndarray:
    if ranges is None:
        return np.asarray(values, np.float64)[:, None]
    lows, highs = [r["low"] for r in ranges], [r["high"] for r in ranges]
    return np.column_stack((values, lows, highs)).astype(np.float64)


def read_one(body: bytes) -> np.ndarray:
    """One record's answer (``/predict``) as its table: ``(1, 1)``, or ``(1, 3)`` with a range."""
    answer = orjson.loads(body)
    interval = answer.get("interval")
    return _table([answer["house_value"]], None if interval is None else [interval])


def read_many(body: bytes) -> np.ndarray:
    """``{"predictions": ...}`` (and ``intervals``) as its table, a row per record."""
    answer = orjson.loads(body)
    return _table(answer["predictions"], answer.get("intervals"))


def read_csv_lines(body: bytes) -> np.ndarray:
    """A CSV answer (one value, or value, low and high, a line) as its table."""
    lines = body.decode().splitlines()
    return np.array([[float(v) for v in line.split(",")] for line in lines], np.float64)


def read_oip_outputs(body: bytes) -> np.ndarray:
    """An Open Inference Protocol answer's outputs, in ``OUTPUTS`` order, as its table."""
    outputs = {o["name"]: o["data"] for o in orjson.loads(body)["outputs"]}
    return np.column_stack([outputs[name] for name in OUTPUTS if name in outputs])


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
            out.append(Request("/predict", _predict_one(chosen[0], rng), JSON, expected, read_one))
            continue
        kind = rng.random()
        if kind < 0.7:
            body = orjson.dumps({"instances": chosen})
            out.append(Request("/predict", body, JSON, expected, read_many))
        elif kind < 0.85:
            ranges = expected.shape[1] > 1 and rng.random() < 0.5
            accept = f"{CSV};columns=3" if ranges else CSV
            csv_expected = expected if ranges else expected[:, :1]
            out.append(
                Request("/invocations", csv_body(chosen), CSV, csv_expected, read_csv_lines, accept)
            )
        else:
            out.append(
                Request(
                    "/v2/models/housing/infer", oip_body(chosen), JSON, expected, read_oip_outputs
                )
            )
    return out
