"""Bodies of one record per line, as SageMaker Batch Transform's ``SplitType=Line`` sends them.

``text/csv`` (``parse_csv``): columns are the raw features in the data set's order
(``RAW_COLUMNS``: eight numbers, then ``ocean_proximity``); a header line with exactly those
names may come first; an empty ``total_bedrooms`` is missing (imputed). Cells become numbers
here. JSON Lines (``parse_jsonlines``): each line is one JSON object, a record as ``/predict``
takes it. Either way blank lines are skipped, and bounds and categories are then checked by
the same validator as ``/predict``, so the rules live in one place; an error names the line
(1-based, as in the file) and the field.

A large body is parsed on a worker thread (``app.api.sagemaker``), where a single C call holds
the GIL for as long as it runs: over 100,000 rows, ``list(csv.reader(...))`` or one call of the
validator took a quarter of a second each, and every other request waited. So rows are read
one by one and validated ``SLICE_ROWS`` at a time, and the thread gives way between them.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from typing import Any

import orjson
from pydantic import ValidationError

from app.errors import InvalidInput, validation_details
from app.schemas import RequestAdapter
from modelspec.features import CATEGORICAL_COLUMN, IMPUTED_COLUMN, RAW_COLUMNS

_INSTANCE = re.compile(r"^instances\.(\d+)")
# Rows checked in one call of the validator: a few milliseconds of work (see the docstring).
SLICE_ROWS = 2048


def _problem(line: int, field: str, message: str) -> InvalidInput:
    return InvalidInput([{"field": f"line {line}.{field}", "message": message, "type": "csv"}])


def parse_csv(body: bytes, adapter: RequestAdapter) -> list[dict[str, Any]]:
    """Validated records, or InvalidInput naming the line (1-based, as in the file) and field."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _problem(1, "body", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    rows = csv.reader(io.StringIO(text), strict=True)  # row by row: see the module docstring
    try:
        for line, row in enumerate(rows, start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if not records and tuple(c.strip() for c in row) == RAW_COLUMNS:
                continue  # the header
            records.append(_record(line, row))
            lines.append(line)
    except csv.Error as exc:
        raise _problem(rows.line_num, "body", f"not CSV: {exc}") from None
    if not records:
        raise _problem(1, "body", f"no rows; expected lines of {','.join(RAW_COLUMNS)}")
    return _validated(records, lines, adapter)


def parse_jsonlines(body: bytes, adapter: RequestAdapter) -> list[dict[str, Any]]:
    """Validated records, one JSON object a line, or InvalidInput naming the line and field."""
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    for line, text in enumerate(body.split(b"\n"), start=1):
        if not text.strip():
            continue
        try:
            record = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise _problem(line, "row", f"not JSON: {exc}") from None
        if not isinstance(record, dict):
            raise _problem(line, "row", f"a JSON object is expected, not {type(record).__name__}")
        records.append(record)
        lines.append(line)
    if not records:
        raise _problem(1, "body", "no rows; expected one JSON object a line")
    return _validated(records, lines, adapter)


def _validated(
    records: list[dict[str, Any]], lines: list[int], adapter: RequestAdapter
) -> list[dict[str, Any]]:
    details: list[dict[str, str]] = []
    for start in range(0, len(records), SLICE_ROWS):
        try:
            adapter.validate_python({"instances": records[start : start + SLICE_ROWS]})
        except ValidationError as exc:
            for d in validation_details(exc.errors()):  # instances.4.latitude -> line 6.latitude
                where = _INSTANCE.match(d["field"])
                if where is not None:
                    d["field"] = f"line {lines[start + int(where[1])]}{d['field'][where.end() :]}"
                details.append(d)
    if details:
        raise InvalidInput(details)
    return records


def _record(line: int, row: Sequence[str]) -> dict[str, Any]:
    if len(row) != len(RAW_COLUMNS):
        raise _problem(
            line, "row", f"{len(row)} columns, expected {len(RAW_COLUMNS)}: {','.join(RAW_COLUMNS)}"
        )
    record: dict[str, Any] = {}
    for name, cell in zip(RAW_COLUMNS, row, strict=True):
        try:
            record[name] = cell_value(name, cell)
        except ValueError as exc:
            raise _problem(line, name, str(exc)) from None
    return record


def cell_value(name: str, cell: str) -> float | str | None:
    """One CSV cell as the validator takes it (also ``python -m app.score``'s): the category as
    text, numbers parsed, an empty ``total_bedrooms`` missing; ValueError with the reason."""
    cell = cell.strip()
    if name == CATEGORICAL_COLUMN:
        return cell
    if cell == "":
        if name == IMPUTED_COLUMN:
            return None
        raise ValueError(f"missing (only {IMPUTED_COLUMN} may be empty)")
    try:
        return float(cell)
    except ValueError:
        raise ValueError(f"{cell[:40]!r} is not a number") from None
