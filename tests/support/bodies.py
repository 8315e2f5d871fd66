"""Request bodies made from records (``tests.support.records``): SageMaker CSV lines and the
Open Inference Protocol's JSON tensors."""

from __future__ import annotations

from typing import Any

from modelspec.features import CATEGORICAL_COLUMN, NUMERIC_COLUMNS, RAW_COLUMNS

CSV = {"content-type": "text/csv"}
JSON = {"content-type": "application/json"}
JSONL = {"content-type": "application/jsonlines"}


def csv_body(rows: list[dict[str, Any]], header: bool = False) -> bytes:
    """One CSV line a record, the raw columns in the data set's order (a None is an empty
    cell); ``header``: the column names first."""
    lines = [",".join(RAW_COLUMNS)] if header else []
    for r in rows:
        lines.append(",".join("" if r[c] is None else str(r[c]) for c in RAW_COLUMNS))
    return ("\n".join(lines) + "\n").encode()


def tensors(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The OIP ``inputs`` of ``rows``: one FP64 tensor a numeric column (None: missing), and
    ``ocean_proximity`` as BYTES of shape ``[N, 1]``."""
    out: list[dict[str, Any]] = [
        {"name": c, "shape": [len(rows)], "datatype": "FP64", "data": [r[c] for r in rows]}
        for c in NUMERIC_COLUMNS
    ]
    out.append(
        {
            "name": CATEGORICAL_COLUMN,
            "shape": [len(rows), 1],
            "datatype": "BYTES",
            "data": [r[CATEGORICAL_COLUMN] for r in rows],
        }
    )
    return out
