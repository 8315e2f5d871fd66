"""Bodies of one record per line, as SageMaker Batch Transform's ``SplitType=Line`` sends them.

``text/csv`` (``parse_csv``): columns are the raw features in the data set's order
(``RAW_COLUMNS``: eight numbers, then ``ocean_proximity``); a header line with exactly those
names may come first; an empty ``total_bedrooms`` is missing (imputed). Cells become numbers
here. JSON Lines (``parse_jsonlines``): each line is one JSON object, a record as ``/predict``
takes it. Either way blank lines are skipped, and bounds and categories are then checked by
the same validator as ``/predict``, so the rules live in one place; an error names the line
(1-based, as in the file) and the field. A leading UTF-8 BOM (spreadsheets write one) is
skipped. Numbers are plain ASCII (``app.protocols.numbers``).

A refusal lists the body's first errors by line (``HOUSING_MAX_ERROR_DETAILS``) and counts them
all: parsing goes on past a bad line to count, but keeps nothing of it, so a body of bad lines
costs no more than a valid body of the same size, and its answer stays a few KB. A body that is
not CSV at all (not UTF-8, a quote never closed) is refused where that is found.

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

from app.errors import MAX_ERROR_DETAILS, InvalidInput, validation_details
from app.protocols.numbers import strict_float
from app.schemas import RequestAdapter
from modelspec.features import CATEGORICAL_COLUMN, IMPUTED_COLUMN, RAW_COLUMNS

_INSTANCE = re.compile(r"^instances\.(\d+)")
# Rows checked in one call of the validator: a few milliseconds of work (see the docstring).
SLICE_ROWS = 2048
BOM = "\ufeff"
# Cells are stripped of ASCII blanks only: Unicode spaces are not part of a CSV number.
BLANKS = " \t\r"

Detail = dict[str, str]


class Problems:
    """A body's errors as they are found: the first ``most`` by line, and how many in all.

    Parse errors (a line that is not a row) and the validator's (a row out of bounds) are
    found in two passes; each keeps its first ``most``, so the first ``most`` of both merged
    by line are the body's first ``most``. Nothing else of a bad line is kept, so a body of a
    million bad lines costs a count, not a million error entries.
    """

    def __init__(self, most: int) -> None:
        self.most = most
        self.found: list[tuple[int, Detail]] = []
        self.total = 0

    def add(self, line: int, field: str, message: str, kind: str = "csv") -> None:
        self.total += 1
        if len(self.found) < self.most:
            self.found.append(
                (line, {"field": f"line {line}.{field}", "message": message, "type": kind})
            )

    def raise_any(self, validated: list[tuple[int, Detail]], invalid: int) -> None:
        """InvalidInput with the first ``most`` of both passes by line, if there are any."""
        total = self.total + invalid
        if total:
            merged = sorted(self.found + validated, key=lambda found: found[0])
            raise InvalidInput([d for _, d in merged[: self.most]], total)


def _problem(line: int, field: str, message: str) -> InvalidInput:
    return InvalidInput([{"field": f"line {line}.{field}", "message": message, "type": "csv"}])


def parse_csv(
    body: bytes, adapter: RequestAdapter, most: int = MAX_ERROR_DETAILS
) -> list[dict[str, Any]]:
    """Validated records, or InvalidInput naming each bad line (1-based, as in the file) and
    field: the first ``most`` and the count of all. A leading UTF-8 BOM is skipped; a body
    that is not CSV at all (bad UTF-8, a broken quote) is refused at the first such place."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _problem(1, "body", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    text = text.removeprefix(BOM)
    problems = Problems(most)
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    rows = csv.reader(io.StringIO(text), strict=True)  # row by row: see the module docstring
    first = True
    try:
        for row in rows:
            line = rows.line_num  # the row's last physical line: a quoted cell may span lines
            if not row or all(not cell.strip(BLANKS) for cell in row):
                continue
            if first and tuple(c.strip(BLANKS) for c in row) == RAW_COLUMNS:
                first = False
                continue  # the header
            first = False
            record = _record(line, row, problems)
            if record is not None:
                records.append(record)
                lines.append(line)
    except csv.Error as exc:
        raise _problem(rows.line_num, "body", f"not CSV: {exc}") from None
    if not records and not problems.total:
        raise _problem(1, "body", f"no rows; expected lines of {','.join(RAW_COLUMNS)}")
    return _validated(records, lines, adapter, problems)


def parse_jsonlines(
    body: bytes, adapter: RequestAdapter, most: int = MAX_ERROR_DETAILS
) -> list[dict[str, Any]]:
    """Validated records, one JSON object a line, or InvalidInput naming each bad line and
    field (the first ``most``, and the count of all). A leading UTF-8 BOM is skipped."""
    problems = Problems(most)
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    for line, text in enumerate(body.removeprefix(BOM.encode()).split(b"\n"), start=1):
        if not text.strip():
            continue
        try:
            record = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            problems.add(line, "row", f"not JSON: {exc}", "jsonlines")
            continue
        if not isinstance(record, dict):
            kind = type(record).__name__
            problems.add(line, "row", f"a JSON object is expected, not {kind}", "jsonlines")
            continue
        records.append(record)
        lines.append(line)
    if not records and not problems.total:
        raise _problem(1, "body", "no rows; expected one JSON object a line")
    return _validated(records, lines, adapter, problems)


def _validated(
    records: list[dict[str, Any]],
    lines: list[int],
    adapter: RequestAdapter,
    problems: Problems,
) -> list[dict[str, Any]]:
    found: list[tuple[int, Detail]] = []
    invalid = 0
    for start in range(0, len(records), SLICE_ROWS):
        try:
            adapter.validate_python({"instances": records[start : start + SLICE_ROWS]})
        except ValidationError as exc:
            invalid += exc.error_count()
            room = problems.most - len(found)
            if room <= 0:
                continue  # counted; the listed ones are earlier
            for d in validation_details(exc.errors(include_url=False)[:room]):
                where = _INSTANCE.match(d["field"])  # instances.4.latitude -> line 6.latitude
                line = lines[start + int(where[1])] if where is not None else 0
                if where is not None:
                    d["field"] = f"line {line}{d['field'][where.end() :]}"
                found.append((line, d))
    problems.raise_any(found, invalid)
    return records


def _record(line: int, row: Sequence[str], problems: Problems) -> dict[str, Any] | None:
    """The row as a record, or None with its first problem added to ``problems``."""
    if len(row) != len(RAW_COLUMNS):
        expected = f"expected {len(RAW_COLUMNS)}: {','.join(RAW_COLUMNS)}"
        problems.add(line, "row", f"{len(row)} columns, {expected}")
        return None
    record: dict[str, Any] = {}
    for name, cell in zip(RAW_COLUMNS, row, strict=True):
        try:
            record[name] = cell_value(name, cell)
        except ValueError as exc:
            problems.add(line, name, str(exc))
            return None
    return record


def cell_value(name: str, cell: str) -> float | str | None:
    """One CSV cell as the validator takes it (also ``python -m app.score``'s): the category as
    text, numbers parsed, an empty ``total_bedrooms`` missing; ValueError with the reason."""
    cell = cell.strip(BLANKS)
    if name == CATEGORICAL_COLUMN:
        return cell
    if cell == "":
        if name == IMPUTED_COLUMN:
            return None
        raise ValueError(f"missing (only {IMPUTED_COLUMN} may be empty)")
    return strict_float(cell)
